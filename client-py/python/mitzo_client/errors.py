"""Exceptions raised by :class:`mitzo_client.Client`.

Every error carries ``status`` (the HTTP status, or ``None`` when no answer
came), ``error`` (the server's ``{"error": ...}`` text) and ``retry_after``
(seconds, from a 429's ``Retry-After``).
"""

from __future__ import annotations

import builtins
from typing import Optional

__all__ = [
    "MitzoError",
    "AuthError",
    "NotFoundError",
    "ConflictError",
    "RateLimitedError",
    "ServerError",
    "ConnectionError",
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


class AuthError(MitzoError):
    """401 (bad or missing credential) or 403 (credential lacks the scope)."""


class NotFoundError(MitzoError):
    """404."""


class ConflictError(MitzoError):
    """409."""


class RateLimitedError(MitzoError):
    """429; ``retry_after`` says how many seconds to wait."""


class ServerError(MitzoError):
    """5xx, or a success answer that is not JSON."""


class ConnectionError(MitzoError, builtins.ConnectionError):
    """The server could not be reached within the client's timeout.

    Also an instance of the built-in :class:`ConnectionError`.
    """


class TokenNotFoundError(MitzoError, LookupError):
    """No token in any of the places the client looks; the message lists them."""


class InvalidTokenFileError(TokenNotFoundError):
    """A token file exists but does not hold a token (64 hex characters)."""


class InsecureTokenFileWarning(UserWarning):
    """A token file is readable by its group or by others."""
