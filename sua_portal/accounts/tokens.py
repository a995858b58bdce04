"""Personal API tokens: made, checked and revoked here; the API view, the page and DRF's authentication call these."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from sua_portal.accounts.models import ApiToken

#: Every personal key starts so: tells it from DRF's 40-hex-digit tokens (and from other secrets in a script).
KEY_PREFIX = "sua_"
#: last_used is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be made as asked (the message says why)."""


def hash_key(key: str) -> str:
    # The key is 240 random bits: a plain SHA-256 is enough (no password-style stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def max_days() -> int:
    return int(settings.API_TOKEN_MAX_DAYS)


def issue(user: Any, *, name: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A new token of ``user`` valid for ``days`` (default API_TOKEN_DAYS), and its key (never stored)."""
    days = int(settings.API_TOKEN_DAYS) if days is None else days
    if not 1 <= days <= max_days():
        raise TokenError(f"A token is valid for 1 to {max_days()} days, not {days}.")
    if not name.strip():
        raise TokenError("Name the token (what is it for?).")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(user=user, name=name.strip(), prefix=key[:10], key_hash=hash_key(key),
                                    expires=timezone.now() + timedelta(days=days))
    return token, key


def revoke(user: Any, token_id: int) -> bool:
    """Delete one of ``user``'s own tokens; False when there is no such token of theirs."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return deleted > 0


def check(key: str) -> ApiToken | str:
    """The live token of ``key`` (its use recorded), or a sentence saying why it does not authenticate."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.user.is_active:
        return "Invalid token."
    now = timezone.now()
    if token.expires <= now:
        return f"This token expired on {token.expires:%Y-%m-%d %H:%M} UTC; make a new one."
    if token.last_used is None or now - token.last_used >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token
