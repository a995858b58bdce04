"""Health of the parts the portal needs: the database and the Celery broker."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from kombu import Connection


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "down", and we say why
        return f"database: {exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def check_broker(timeout: float = 2.0) -> str | None:
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        return f"broker: {exc.__class__.__name__}: {exc}"
    return None
