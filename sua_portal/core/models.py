from __future__ import annotations

from django.db import models


class WorkerPing(models.Model):
    """A row written by a Celery worker: proves the web app and workers share a database."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"ping {self.token} from {self.hostname}"
