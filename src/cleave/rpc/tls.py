"""TLS on gRPC between units, when a topology names a certificate folder (`grpc_tls`): each unit
serves with its own certificate and presents it as a client too (mutual TLS), and trusts only the
folder's CA. `cleave certs` makes a development CA and a certificate per unit there.

The folder holds `ca.pem`, and for each unit `<unit>.pem` and `<unit>.key` (owner-only).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from cleave.errors import ConfigError

CA_CERTIFICATE = "ca.pem"
CA_KEY = "ca.key"


def certificate_files(folder: Path, unit: str) -> tuple[Path, Path]:
    return folder / f"{unit}.pem", folder / f"{unit}.key"


@dataclass(frozen=True)
class UnitTls:
    """One unit's certificate, its key and the CA it trusts, as gRPC wants them."""

    ca: bytes
    certificate: bytes
    key: bytes

    @classmethod
    def load(cls, folder: Path, unit: str) -> UnitTls:
        certificate, key = certificate_files(folder, unit)
        try:
            return cls(
                (folder / CA_CERTIFICATE).read_bytes(), certificate.read_bytes(), key.read_bytes()
            )
        except OSError as error:
            raise ConfigError(
                f"gRPC TLS: cannot read {error.filename} ({error.strerror}); "
                f"`cleave certs` makes a development CA and a certificate per unit in {folder}"
            ) from None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.certificate)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.certificate
        )


def make_development_certificates(
    folder: Path, hosts: Mapping[str, Iterable[str]], *, days: int = 365
) -> list[Path]:
    """A development CA (kept if there is one) and, for each unit that has none, a certificate
    for the unit's host names (plus `localhost` and 127.0.0.1), good for serving and calling.
    Returns the files written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    now = datetime.datetime.now(datetime.UTC)

    def write(path: Path, data: bytes, *, secret: bool) -> None:
        descriptor = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        written.append(path)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_path, ca_key_path = folder / CA_CERTIFICATE, folder / CA_KEY
    if ca_path.exists() and ca_key_path.exists():
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{ca_key_path} is not the EC key `cleave certs` makes")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cleave development CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write(ca_key_path, pem_key(ca_key), secret=True)
        write(ca_path, ca.public_bytes(serialization.Encoding.PEM), secret=False)

    for unit, names in hosts.items():
        certificate_path, key_path = certificate_files(folder, unit)
        if certificate_path.exists() and key_path.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        alternatives: list[x509.GeneralName] = []
        for host in dict.fromkeys([unit, *names, "localhost", "127.0.0.1"]):
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alternatives.append(x509.DNSName(host))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unit)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write(key_path, pem_key(key), secret=True)
        write(certificate_path, certificate.public_bytes(serialization.Encoding.PEM), secret=False)
    return written
