"""The storefront's public face: how it is registered with the identity provider.

The storefront is a confidential OpenID Connect client. The provider's development seed
registers it from these facts (as it registers `cleave-cli`), with a generated secret it keeps in
the owner-only development credentials file; another provider registers it by hand the same way.
"""

from __future__ import annotations

CLIENT_ID = "storefront"
CLIENT_NAME = "Storefront (the shop's web site)"
# What the site asks for on a person's behalf: who they are, their profile and their orders.
SCOPES = frozenset({"openid", "profile", "email", "orders:read", "orders:write"})
CALLBACK_PATH = "/account/callback"
SIGNED_OUT_PATH = "/"


def redirect_uris(public_url: str) -> tuple[str, str]:
    """Where the provider may send a person back: after signing in, and after signing out."""
    base = public_url.rstrip("/")
    return f"{base}{CALLBACK_PATH}", f"{base}{SIGNED_OUT_PATH}"


__all__ = [
    "CALLBACK_PATH",
    "CLIENT_ID",
    "CLIENT_NAME",
    "SCOPES",
    "SIGNED_OUT_PATH",
    "redirect_uris",
]
