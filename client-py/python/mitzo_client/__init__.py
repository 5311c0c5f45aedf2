"""Python client for mitzod.

    from mitzo_client import Client
    with Client() as client:      # finds the URL and the token by itself
        print(client.list_tasks())

See :class:`Client` for the discovery order, :mod:`mitzo_client.errors` for
the exceptions (one per status) and :mod:`mitzo_client.types` for the shapes
of the answers.
"""

from typing import Any

from . import types
from ._native import DEFAULT_URL, Client, __version__, token_file_candidates
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    InsecureTokenFileWarning,
    InvalidTokenFileError,
    MitzoError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    ServiceUnavailableError,
    TokenNotFoundError,
)

__all__ = [
    "Client",
    "DEFAULT_URL",
    "__version__",
    "token_file_candidates",
    "types",
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


def __getattr__(name: str) -> Any:
    # Deprecated aliases (ConnectionError, RateLimitedError) warn on use.
    from . import errors

    return getattr(errors, name)
