"""The one Celery app: configuration from Django settings under ``CELERY_``."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sua_portal.settings")

app = Celery("sua_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Inference goes to the gpu queue (served by CPU workers where no GPU exists),
# everything else to cpu.
app.conf.task_queues = (Queue("gpu"), Queue("cpu"))
app.autodiscover_tasks()
