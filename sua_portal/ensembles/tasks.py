"""Thin Celery tasks: ids in, services do the work. Inference runs on the gpu queue
(served by CPU workers where there is no GPU), the SUA step and training bookkeeping on cpu."""

from __future__ import annotations

from celery import shared_task

from sua_portal.ensembles import services
from sua_portal.ensembles.models import SlideHeatmap


@shared_task(name="ensembles.infer_slide", queue="gpu", acks_late=True, reject_on_worker_lost=True)
def infer_slide(heatmap_id: int) -> str:
    outcome = services.infer(heatmap_id)
    if outcome == "done":
        find_regions.delay(heatmap_id)
    return outcome


@shared_task(name="ensembles.find_regions", queue="cpu")
def find_regions(heatmap_id: int) -> int:
    return services.find_regions(SlideHeatmap.objects.select_related("slide").get(pk=heatmap_id))


@shared_task(name="ensembles.train_ensemble", queue="gpu", acks_late=True, reject_on_worker_lost=True)
def train_ensemble(ensemble_id: int) -> None:
    services.train(ensemble_id)
