"""Thin Celery tasks: ids in, services do the work. Inference and training run on the gpu queue
(served by CPU workers where there is no GPU); the SUA step is a run's (``runs.tasks``)."""

from __future__ import annotations

from celery import shared_task

from sua_portal.ensembles import services


@shared_task(name="ensembles.infer_slide", queue="gpu", acks_late=True, reject_on_worker_lost=True)
def infer_slide(heatmap_id: int) -> str:
    # The SUA step (regions, flags) belongs to runs, which pick the heatmaps up when they are done.
    return services.infer(heatmap_id)


@shared_task(name="ensembles.train_ensemble", queue="gpu", acks_late=True, reject_on_worker_lost=True)
def train_ensemble(ensemble_id: int) -> None:
    services.train(ensemble_id)
