"""Errors that cross layers: each maps to one RFC 9457 problem over HTTP and one line on the CLI."""

from __future__ import annotations

from typing import Any


class CleaveError(Exception):
    """Base of every error the chassis expects and explains."""


class ConfigError(CleaveError):
    """The configuration is wrong: the CLI prints it on one line and exits 2."""


class DatabaseUnavailable(CleaveError):
    """A service's database cannot be reached."""


class Problem(CleaveError):
    """A domain or request error that reaches the client as `application/problem+json`.

    `code` is the machine-readable kind (it becomes the problem `type`); services raise the
    subclasses below rather than HTTP exceptions, so the domain stays free of web words.
    """

    status = 400

    def __init__(self, detail: str, *, code: str = "bad-request", **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.extensions = extensions


class NotFound(Problem):
    status = 404

    def __init__(self, detail: str, *, code: str = "not-found", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)


class Conflict(Problem):
    status = 409

    def __init__(self, detail: str, *, code: str = "conflict", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)


class Unprocessable(Problem):
    status = 422

    def __init__(self, detail: str, *, code: str = "unprocessable", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)


class Unauthorized(Problem):
    status = 401

    def __init__(self, detail: str, *, code: str = "unauthorized", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)


class Forbidden(Problem):
    status = 403

    def __init__(self, detail: str, *, code: str = "forbidden", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)


class ServiceUnavailable(Problem):
    """A port's far side did not answer in time: the caller may retry later."""

    status = 503

    def __init__(self, detail: str, *, code: str = "unavailable", **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)
