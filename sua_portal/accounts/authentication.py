"""``Authorization: Token <key>`` for personal API tokens, and for DRF's tokens made by an admin."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from sua_portal.accounts import tokens


class PersonalTokenAuthentication(TokenAuthentication):
    """A personal token (``sua_…``: hashed, expiring, revocable) or, for any other key, DRF's own token."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if not key.startswith(tokens.KEY_PREFIX):
            return super().authenticate_credentials(key)
        token = tokens.check(key)
        if isinstance(token, str):
            raise AuthenticationFailed(token)
        return (token.user, token)
