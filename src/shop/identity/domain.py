"""Identity rules: accounts, clients, scopes, PKCE and sign-in throttling. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from cleave.errors import Unprocessable

EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # patterns match whole: fullmatch
CLIENT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
# RFC 7636 §4.1: 43-128 characters of the unreserved set.
VERIFIER_PATTERN = re.compile(r"[A-Za-z0-9._~-]{43,128}")
MIN_PASSWORD = 10
# zxcvbn's score (0-4): 3 is "safely unguessable" against an online attack and a slow hash.
MIN_PASSWORD_SCORE = 3
# zxcvbn slows down with length; a password this long is strong whatever its tail is.
SCORED_LENGTH = 72

# Scopes a person's token may carry; admin is for clients granted it explicitly.
USER_SCOPES = frozenset(
    {"openid", "profile", "email", "orders:read", "orders:write", "payments:read"}
)
ADMIN_SCOPE = "admin"
GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials"})


@dataclass(frozen=True)
class Account:
    email: str
    name: str
    password: str


def validate_account(account: Account) -> Account:
    email = account.email.strip().lower()
    if not EMAIL_PATTERN.fullmatch(email) or len(email) > 320:
        raise Unprocessable("enter a valid email address", code="invalid-email")
    if not account.name.strip() or len(account.name) > 200:
        raise Unprocessable("enter your name", code="invalid-name")
    if len(account.password) < MIN_PASSWORD or len(account.password) > 1024:
        raise Unprocessable(
            f"a password has at least {MIN_PASSWORD} characters", code="weak-password"
        )
    return Account(email, account.name.strip(), account.password)


def check_password_strength(account: Account) -> None:
    """Refuse a common or guessable password (zxcvbn's packaged lists: common passwords, words,
    names, keyboard patterns), and one built from the person's own email or name."""
    from zxcvbn import zxcvbn  # its word lists take a tenth of a second to load: only when asked

    scored = zxcvbn(
        account.password[:SCORED_LENGTH],
        user_inputs=[account.email, *account.email.split("@"), *account.name.split()],
        max_length=SCORED_LENGTH,
    )
    if scored["score"] >= MIN_PASSWORD_SCORE:
        return
    feedback = scored["feedback"]
    why = feedback.get("warning") or "it is easy to guess"
    hint = " ".join(feedback.get("suggestions") or ["Add another word or two."])
    detail = f"choose a harder password: {why.rstrip('.').lower()}. {hint}"
    raise Unprocessable(detail.rstrip("."), code="weak-password")  # one sentence end, the page's


def validate_client_id(client_id: str) -> str:
    if not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise Unprocessable(
            "a client id is 2-64 lowercase letters, digits, '.', '_' or '-'", code="invalid-client"
        )
    return client_id


def granted_scopes(requested: str | None, allowed: frozenset[str]) -> frozenset[str] | None:
    """The scopes to grant: all allowed when none are asked for, None when any is not allowed."""
    if not requested:
        return allowed
    asked = frozenset(requested.split())
    return asked if asked <= allowed else None


def person_scopes(granted: frozenset[str], *, admin: bool) -> frozenset[str]:
    """What a person's token carries of what the client may have: the admin scope only for an
    administrator, whichever client asked (RFC 6749 §3.3 lets the provider grant less)."""
    return granted if admin else granted - {ADMIN_SCOPE}


def pkce_matches(verifier: str, challenge: str) -> bool:
    """S256 only: `plain` is refused when the code is asked for, so it never reaches here."""
    return bool(VERIFIER_PATTERN.fullmatch(verifier)) and (
        create_s256_code_challenge(verifier) == challenge
    )


@dataclass(frozen=True)
class ThrottlePolicy:
    """Repeated failures slow sign-in down, then lock it for a while."""

    slow_after: int = 3
    lock_after: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)
    delay_step_seconds: float = 0.25
    max_delay_seconds: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before answering, given the failures so far."""
        extra = failures - self.slow_after + 1
        return 0.0 if extra <= 0 else min(self.max_delay_seconds, extra * self.delay_step_seconds)


@dataclass(frozen=True)
class Attempts:
    failures: int
    first_failure_at: datetime
    locked_until: datetime | None


def is_locked(attempts: Attempts | None, now: datetime) -> bool:
    return (
        attempts is not None and attempts.locked_until is not None and attempts.locked_until > now
    )


def after_failure(attempts: Attempts | None, policy: ThrottlePolicy, now: datetime) -> Attempts:
    if attempts is None or now - attempts.first_failure_at > policy.window:
        attempts = Attempts(0, now, None)
    failures = attempts.failures + 1
    locked_until = now + policy.lock_for if failures >= policy.lock_after else None
    return Attempts(failures, attempts.first_failure_at, locked_until)


class OAuthError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2): `error` and `error_description`."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
