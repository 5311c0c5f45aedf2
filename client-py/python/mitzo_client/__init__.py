"""Python client for mitzod.

    from mitzo_client import Client
    client = Client()            # finds the URL and the token by itself
    print(client.list_tasks())

See :class:`Client` for the discovery order and :mod:`mitzo_client.errors`
for the exceptions.
"""

from ._native import DEFAULT_URL, Client, __version__, token_file_candidates
from .errors import (
    AuthError,
    ConflictError,
    ConnectionError,
    InsecureTokenFileWarning,
    InvalidTokenFileError,
    MitzoError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TokenNotFoundError,
)

__all__ = [
    "Client",
    "DEFAULT_URL",
    "__version__",
    "token_file_candidates",
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
