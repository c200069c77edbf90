"""Errors that cross layers: each maps to one RFC 9457 problem over HTTP and one line on the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class CleaveError(Exception):
    """Base of every error the chassis expects and explains."""


class ConfigError(CleaveError):
    """The configuration is wrong: the CLI prints it on one line and exits 2."""


# sysexits.h's EX_CONFIG: the process cannot run as configured (os.EX_CONFIG is Unix-only).
EX_CONFIG = 78


class Unrecoverable(CleaveError):
    """A unit cannot start for a reason no restart fixes (a missing role or database, a bad URL
    or password, a port in use, a service that cannot be imported): the CLI prints it on one line
    and exits `EX_CONFIG`, so that a supervisor stops instead of restarting it forever."""


class DatabaseUnavailable(CleaveError):
    """A service's database cannot be reached."""


class Problem(CleaveError):
    """A domain or request error that reaches the client as `application/problem+json`.

    `code` is the machine-readable kind (it becomes the problem `type`); services raise the
    subclasses below rather than HTTP exceptions, so the domain stays free of web words.
    """

    status = 400
    default_code = "bad-request"
    # Every subclass by `problem_type()`, so a problem raised in another process comes back as
    # its own class: only classes this process has imported can be restored, never any other.
    _known: ClassVar[dict[str, type[Problem]]] = {}

    def __init__(self, detail: str, *, code: str | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extensions = extensions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Problem._known[cls.problem_type()] = cls

    @classmethod
    def problem_type(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def restore(
        cls, problem_type: str, detail: str, code: str, status: int, extensions: Mapping[str, Any]
    ) -> Problem:
        """A problem raised elsewhere, as its own class when this process knows it (else the
        chassis class of its status), each extension an attribute again, as contracts keep them.
        """
        kind = cls._known.get(problem_type) or _BY_STATUS.get(status, Problem)
        problem = kind.__new__(kind)
        Problem.__init__(problem, detail, code=code, **extensions)
        for name, value in extensions.items():
            if not name.startswith("_") and name not in _RESERVED:
                setattr(problem, name, value)
        if problem.status != status:
            problem.status = status
        return problem


class NotFound(Problem):
    status = 404
    default_code = "not-found"


class Conflict(Problem):
    status = 409
    default_code = "conflict"


class Unprocessable(Problem):
    status = 422
    default_code = "unprocessable"


class Unauthorized(Problem):
    status = 401
    default_code = "unauthorized"


class Forbidden(Problem):
    status = 403
    default_code = "forbidden"


class ServiceUnavailable(Problem):
    """A port's far side did not answer in time: the caller may retry later."""

    status = 503
    default_code = "unavailable"


class TooManyRequests(Problem):
    """A rate limit was reached: `retry_after` says in how many seconds to try again."""

    status = 429
    default_code = "rate-limited"


class RemoteFailure(Problem):
    """A port's far side failed in a way it did not explain: a bug there, or a version mismatch."""

    status = 502
    default_code = "remote-failure"


_RESERVED = frozenset({"detail", "code", "status", "extensions", "args"})
_BY_STATUS: dict[int, type[Problem]] = {
    kind.status: kind
    for kind in (NotFound, Conflict, Unprocessable, Unauthorized, Forbidden, ServiceUnavailable)
}
