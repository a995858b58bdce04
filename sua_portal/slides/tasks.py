"""Celery tasks of the slides app: thin, they pass ids and call services."""

from __future__ import annotations

from celery import shared_task

from sua_portal.slides import imports, services


@shared_task(name="slides.check_slide", queue="cpu")
def check_slide(slide_id: int) -> str | None:
    """Check one slide with large-image; returns its new status (None when another worker has it)."""
    slide = services.check_slide(slide_id)
    return None if slide is None else str(slide.status)


@shared_task(name="slides.purge_stale_uploads", queue="cpu")
def purge_stale_uploads() -> int:
    """Forget resumable uploads and unfinished cohort imports untouched for two days (celery beat runs it:
    settings.CELERY_BEAT_SCHEDULE); returns how many."""
    return services.purge_stale_uploads() + imports.purge_stale_imports()
