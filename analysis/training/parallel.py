"""Training the ensemble: every member, one after the other or side by side in spawned processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from analysis.training.config import TrainingConfig
from analysis.training.loop import EpochReport, TrainedMember, train_member
from analysis.training.sampling import PatchSet, TrainingSlide, sample_patches


def train_ensemble(
    config: TrainingConfig,
    train: Sequence[TrainingSlide] | PatchSet,
    validation: Sequence[TrainingSlide] | PatchSet | None = None,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> list[TrainedMember]:
    """Train all ``config.members`` members on the same patches (one pool per
    healthy:tumor ratio when ``member_healthy_per_tumor`` varies it), one after
    the other or ``workers`` at a time.

    Parameters
    ----------
    config
    train
        Annotated slides (patches are sampled once, seeded by ``config.seed``)
        or a ready :class:`PatchSet`.
    validation
        Slides or patches for the validation Dice.  None or empty: validation
        patches are sampled from the training slides with another seed (a
        weaker check; prefer separate slides).
    progress, device, should_stop
        As in :func:`train_member`.
    workers
        Members trained side by side on the CPU, each in its own (spawned)
        process with one torch thread: members are independent, and a tiny
        network's steps are too small to split across cores.  The results are
        those of training each member alone on one thread.  Not from inside a
        daemonic process (a Celery prefork child): keep 1 there.

    Returns
    -------
    list of TrainedMember
        In member order.
    """
    size, level = config.patch_size, config.level_downsample
    pools: dict[float, PatchSet] = {}

    def train_pool(member: int) -> PatchSet:
        """The member's training patches: one pool per healthy:tumor ratio, sampled once."""
        if isinstance(train, PatchSet):
            return train
        ratio = config.healthy_per_tumor_of(member)
        if ratio not in pools:
            pools[ratio] = sample_patches(
                train,
                tumor_patches=config.tumor_patches,
                healthy_per_tumor=ratio,
                patch_size=size,
                level_downsample=level,
                seed=config.seed,
            )
        return pools[ratio]

    if isinstance(validation, PatchSet):
        val_patches = validation
    else:
        val_slides = list(validation or [])
        if not val_slides:
            if isinstance(train, PatchSet):
                raise ValueError("give validation patches when training from patches")
            val_slides = list(train)
        val_patches = sample_patches(
            val_slides,
            tumor_patches=config.val_tumor_patches,
            healthy_per_tumor=config.healthy_per_tumor,
            patch_size=size,
            level_downsample=level,
            seed=config.seed + 7919,
        )
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    if workers > 1 and config.members > 1 and torch.device(device).type == "cpu":
        return _train_side_by_side(config, [train_pool(i) for i in range(config.members)], val_patches,
                                   progress=progress, should_stop=should_stop, workers=workers)
    return [
        train_member(config, i, train_pool(i), val_patches, progress=progress, device=device, should_stop=should_stop)
        for i in range(config.members)
    ]


class _QueueReporter:
    """``progress`` for a member trained in another process: epoch reports go back through a queue."""

    def __init__(self, reports: Any) -> None:
        self.reports = reports

    def __call__(self, report: EpochReport) -> None:
        self.reports.put(report)


class _EventStop:
    """``should_stop`` for a member trained in another process: the parent sets the event."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __call__(self) -> bool:
        return bool(self.event.is_set())


def _train_in_worker(
    config: TrainingConfig, member: int, train_patches: PatchSet, val_patches: PatchSet, reports: Any, stop: Any
) -> tuple[TrainedMember, dict[str, np.ndarray]]:
    """One member in a spawned process; weights go back as numpy arrays (plain pickling, no shared memory)."""
    torch.set_num_threads(1)
    trained = train_member(config, member, train_patches, val_patches, progress=_QueueReporter(reports),
                           should_stop=_EventStop(stop))
    weights = {k: v.detach().cpu().numpy() for k, v in trained.state_dict.items()}
    return replace(trained, state_dict={}), weights


def _train_side_by_side(
    config: TrainingConfig,
    pools: Sequence[PatchSet],
    val_patches: PatchSet,
    *,
    progress: Callable[[EpochReport], None] | None,
    should_stop: Callable[[], bool] | None,
    workers: int,
) -> list[TrainedMember]:
    import multiprocessing
    import queue
    from concurrent.futures import ProcessPoolExecutor, wait

    # Never fork this process: torch has run here already, and a forked child can hang on its locks. A fork
    # server is a clean process that imported torch and this module but never ran a model; members forked
    # from it start in milliseconds, where a spawned interpreter spent ~3 s of CPU importing torch again
    # (for each member and the manager, at every training). It lives as long as this process.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Manager() as manager, ProcessPoolExecutor(
        max_workers=min(workers, config.members), mp_context=context
    ) as pool:
        reports, stop = manager.Queue(), manager.Event()
        futures = [pool.submit(_train_in_worker, config, i, pools[i], val_patches, reports, stop)
                   for i in range(config.members)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.2)
            while True:  # the parent calls progress, in epoch order per member
                try:
                    report = reports.get_nowait()
                except queue.Empty:
                    break
                if progress is not None:
                    progress(report)
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
        results = [future.result() for future in futures]  # re-raises a member's error (TrainingCancelled too)
    return [replace(member, state_dict={k: torch.from_numpy(v) for k, v in weights.items()})
            for member, weights in results]
