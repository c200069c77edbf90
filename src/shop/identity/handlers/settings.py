"""What identity's settings (`[settings.identity]`) make of its tokens' lifetimes and of the
sign-in throttle."""

from __future__ import annotations

from datetime import timedelta

from cleave.service import ServiceContext
from shop.identity.domain import ThrottlePolicy
from shop.identity.tokens import Lifetimes


def lifetimes(context: ServiceContext) -> Lifetimes:
    return Lifetimes(access=timedelta(seconds=context.setting("access_token_seconds", 600)))


def throttle_policy(context: ServiceContext) -> ThrottlePolicy:
    return ThrottlePolicy(
        slow_after=int(context.setting("sign_in_slow_after", 3)),
        lock_after=int(context.setting("sign_in_lock_after", 5)),
        lock_for=timedelta(seconds=context.setting("sign_in_lock_seconds", 900)),
    )
