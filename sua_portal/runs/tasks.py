"""Thin Celery tasks of runs: ids in, services do the work, on the cpu queue (heatmaps go to gpu)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from sua_portal.runs import services
from sua_portal.slides.models import Slide


@shared_task(name="runs.execute", queue="cpu", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def execute(self: Any, run_id: int) -> str:
    outcome = services.execute(run_id)
    if outcome == "waiting":
        # Heatmaps are being computed on the gpu queue: look again shortly, holding no worker meanwhile.
        raise self.retry(countdown=settings.RUN_POLL_SECONDS)
    return outcome


@shared_task(name="runs.add_slide", queue="cpu", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def add_slide(self: Any, run_id: int, slide_id: int) -> str:
    try:
        return services.add_slide(run_id, slide_id)
    except services.Waiting:
        raise self.retry(countdown=settings.RUN_POLL_SECONDS) from None


@shared_task(name="runs.write_report", queue="cpu", acks_late=True, reject_on_worker_lost=True)
def write_report(run_id: int) -> list[str]:
    return services.write_report_files(run_id)


@shared_task(name="runs.join_review_run", queue="cpu")
def join_review_run(slide_id: int) -> int:
    slide = Slide.objects.select_related("cohort").filter(pk=slide_id).first()
    return 0 if slide is None else services.queue_joining(slide)
