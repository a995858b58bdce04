from __future__ import annotations

import socket

from celery import shared_task

from sua_portal.core.models import WorkerPing


@shared_task(name="core.ping", queue="cpu")
def ping(token: str) -> str:
    """Record that a worker ran: the round trip web -> broker -> worker -> database."""
    WorkerPing.objects.get_or_create(token=token, defaults={"hostname": socket.gethostname()})
    return token
