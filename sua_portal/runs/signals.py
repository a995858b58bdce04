"""A slide checked after its cohort's review run finished joins that run (slides cannot import runs)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from sua_portal.runs import services
from sua_portal.slides.models import Slide


@receiver(post_save, sender=Slide, dispatch_uid="runs.slide_ready")
def slide_ready(sender: type[Slide], instance: Slide, *, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.status == Slide.Status.READY and (update_fields is None or "status" in update_fields):
        services.queue_joining(instance)
