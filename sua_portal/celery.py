"""The one Celery app: configuration from Django settings under ``CELERY_``."""

from __future__ import annotations

import os

from celery import Celery, uuid
from django.db import transaction
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sua_portal.settings")

app = Celery("sua_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Inference goes to the gpu queue (served by CPU workers where no GPU exists),
# everything else to cpu.
app.conf.task_queues = (Queue("gpu"), Queue("cpu"))
app.autodiscover_tasks()


def enqueue(task_name: str, *args: object, queue: str, robust: bool = False) -> str:
    """Send the task registered as ``task_name`` to ``queue`` once the current transaction commits;
    returns the task's id at once.

    Services queue work by the task's name: the tasks module imports its services, so a
    service importing its tasks would close an import circle (tasks stay the thin top).
    Sending on commit means a worker never picks up a task for a row it cannot see yet (or that
    is rolled back); outside a transaction it is sent at once. ``robust``: a broker outage is
    logged instead of raised (the row stays queued).
    """
    task_id = uuid()
    transaction.on_commit(
        lambda: app.send_task(task_name, args=list(args), queue=queue, task_id=task_id), robust=robust
    )
    return task_id
