"""Exceptions raised by :class:`mitzo_client.Client`.

Every error carries ``status`` (the HTTP status, or ``None`` when no answer
came), ``error`` (the server's ``{"error": ...}`` text) and ``retry_after``
(seconds, from a ``Retry-After`` header).

    MitzoError
    ├── APIStatusError                the server answered with an error status
    │   ├── BadRequestError           400, 422
    │   ├── AuthError
    │   │   ├── AuthenticationError   401: no credential, or a bad one
    │   │   └── PermissionDeniedError 403: the credential lacks the scope
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── GoneError                 410
    │   ├── RequestTooLargeError      413
    │   ├── RateLimitError            429 (``retry_after``)
    │   └── ServerError               5xx, or a success answer that is not JSON
    │       └── ServiceUnavailableError 503 (an agent that cannot start, a restart)
    ├── APIConnectionError            the server could not be reached (also a builtins.ConnectionError)
    └── TokenNotFoundError            no token anywhere the client looks
        └── InvalidTokenFileError     a token file that holds no token

``ConnectionError`` and ``RateLimitedError`` are deprecated aliases of
``APIConnectionError`` and ``RateLimitError``.
"""

from __future__ import annotations

import builtins
import warnings
from typing import Any, Optional

__all__ = [
    "MitzoError",
    "APIStatusError",
    "BadRequestError",
    "AuthError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "GoneError",
    "RequestTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "TokenNotFoundError",
    "InvalidTokenFileError",
    "InsecureTokenFileWarning",
]


class MitzoError(Exception):
    """Base class: the server said no, or could not be asked."""

    status: Optional[int]
    error: Optional[str]
    retry_after: Optional[float]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        error: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.retry_after = retry_after

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class APIStatusError(MitzoError):
    """The server answered with a status that is not a success."""


class BadRequestError(APIStatusError):
    """400 or 422: the request is malformed or names something invalid; ``error`` says what."""


class AuthError(APIStatusError):
    """401 or 403 (the common base of the two)."""


class AuthenticationError(AuthError):
    """401: no credential, or one the server does not accept (expired, revoked, rotated)."""


class PermissionDeniedError(AuthError):
    """403: the credential is valid but lacks the scope (e.g. the internal token on an owner route)."""


class NotFoundError(APIStatusError):
    """404: no such route, session, task or repo."""


class ConflictError(APIStatusError):
    """409: the thing is not in a state that allows this (a task not in review, a busy session)."""


class GoneError(APIStatusError):
    """410: the thing existed and is gone (an ended session's permission, a used capability)."""


class RequestTooLargeError(APIStatusError):
    """413: the body is larger than the server accepts (1 MiB)."""


class RateLimitError(APIStatusError):
    """429; ``retry_after`` says how many seconds to wait."""


class ServerError(APIStatusError):
    """5xx, or a success answer that is not JSON."""


class ServiceUnavailableError(ServerError):
    """503: a dependency is missing (no agent binary, no Landlock) or the server is stopping."""


class APIConnectionError(MitzoError, builtins.ConnectionError):
    """The server could not be reached within the client's timeout.

    Also an instance of the built-in :class:`ConnectionError`.
    """


class TokenNotFoundError(MitzoError, LookupError):
    """No token in any of the places the client looks; the message lists them."""


class InvalidTokenFileError(TokenNotFoundError):
    """A token file exists but does not hold a token (64 hex characters)."""


class InsecureTokenFileWarning(UserWarning):
    """A token file is readable by its group or by others."""


_DEPRECATED = {
    "ConnectionError": ("APIConnectionError", APIConnectionError),
    "RateLimitedError": ("RateLimitError", RateLimitError),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, cls = _DEPRECATED[name]
        warnings.warn(
            f"mitzo_client.{name} is deprecated; use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
