"""Orchestration of the deep ensemble: training, importing, inference and the SUA step.

Celery tasks pass ids and call these functions; the numerics live in ``analysis``.
Results are written to temporary files first and recorded in one transaction, so a
worker killed mid-slide leaves nothing half-stored and the redelivered task starts over.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from PIL import Image

from analysis.io import heatmap_rgba, read_heatmap_tiff, write_heatmap_tiff
from sua_portal.celery import enqueue
from sua_portal.ensembles.models import Ensemble, EnsembleMember, SlideHeatmap
from sua_portal.errors import Conflict, DomainError
from sua_portal.slides.models import Cohort, Slide
from sua_portal.slides.services import slide_file
from sua_portal.slides.truth import tumor_geometry

log = logging.getLogger(__name__)

HEATMAP_KINDS = ("segmentation", "entropy", "mutual_information", "variance")
UNCERTAINTY_FIELD = {"entropy": "entropy", "mi": "mutual_information", "variance": "variance"}


class EnsembleError(DomainError, ValueError):
    """Bad input a person can fix: the message says what and where."""


class ResolutionUnknown(EnsembleError, Conflict):
    """Slides whose resolution (µm per pixel) nobody knows: an admin sets an override first."""


class Cancelled(Exception):
    pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _torch_device(threads: int | None = None) -> str:
    """The device this worker runs models on; also caps torch's CPU threads.

    A prefork pool already runs one process per core: letting each also start a
    thread per core oversubscribes the machine and is slower than one thread each.
    """
    # torch is imported in the worker process only: a Celery parent must not import it before it forks.
    import torch

    threads = threads or settings.TORCH_THREADS
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_tile_size(tile_size: int, level_downsample: float, heatmap_downsample: float | None = None) -> None:
    """The inference core's own check of the tiling, as a message for the person who chose it."""
    # analysis.inference imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.inference import check_tiling

    try:
        check_tiling(tile_size=tile_size, overlap=settings.INFERENCE_OVERLAP, level_downsample=level_downsample,
                     heatmap_downsample=heatmap_downsample or settings.HEATMAP_DOWNSAMPLE)
    except ValueError as exc:
        raise EnsembleError(str(exc)) from None


# --- members -------------------------------------------------------------------------------


def load_members(ensemble: Ensemble, *, device: str = "cpu") -> list[Any]:
    """Build the members inside the calling (worker) process: never before a fork."""
    # analysis.models imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.models import load_member

    modules = []
    for member in ensemble.members.order_by("index"):
        with member.checkpoint.open("rb") as fh:
            module, _config = load_member(fh)
        modules.append(module.to(device).eval())
    if not modules:
        raise EnsembleError(f"ensemble {ensemble.name!r} has no members")
    return modules


@dataclass(frozen=True)
class MemberCheck:
    """What the dry run of one uploaded member found: the file, its format, its network and its size."""

    file: str
    format: str
    config: dict[str, Any]
    parameters: int
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "config": self.config, "parameters": self.parameters,
                "size_bytes": self.size_bytes}


def check_members(*, project: Any, name: str, files: Sequence[Any], tile_size: int,
                  level_downsample: float) -> list[MemberCheck]:
    """The import's dry run: each uploaded member loaded and run on one tile; nothing is stored.

    Raises :class:`EnsembleError` naming the first file that fails (or the name, tile size or
    resolution that does not fit).
    """
    # analysis.models imports torch, which a Celery parent must not import before it forks its workers.
    import torch

    from analysis.models import dry_run, load_member

    if not files:
        raise EnsembleError("upload at least one member file")
    _check_tile_size(tile_size, level_downsample)
    if Ensemble.objects.filter(project=project, name=name).exists():
        raise EnsembleError(f"an ensemble called {name!r} already exists in this project")
    checked = []
    for upload in files:
        upload.seek(0)
        try:
            module, config = load_member(upload)
            dry_run(module, tile_size=tile_size)
        except Exception as exc:
            raise EnsembleError(f"{upload.name}: {exc}") from None
        # The file type decides the label: TorchScript may carry its configuration too.
        is_script = isinstance(module, torch.jit.ScriptModule)
        checked.append(MemberCheck(
            file=Path(upload.name).name,
            format=str(EnsembleMember.Format.TORCHSCRIPT if is_script else EnsembleMember.Format.STATE_DICT),
            config=config.to_dict() if config is not None else {},
            parameters=int(sum(p.numel() for p in module.parameters())),
            size_bytes=int(getattr(upload, "size", 0) or 0),
        ))
    return checked


def import_members(
    *,
    project: Any,
    name: str,
    files: Sequence[Any],
    tile_size: int,
    level_downsample: float,
    user: Any,
) -> Ensemble:
    """Check each uploaded member by a dry run on one tile (:func:`check_members`), then store all or nothing."""
    checked = check_members(project=project, name=name, files=files, tile_size=tile_size,
                            level_downsample=level_downsample)
    with transaction.atomic():
        ensemble = Ensemble.objects.create(
            project=project, name=name, origin=Ensemble.Origin.IMPORTED, status=Ensemble.Status.READY,
            network_config=checked[0].config, tile_size=tile_size, level_downsample=level_downsample, created_by=user,
        )
        for index, (upload, check) in enumerate(zip(files, checked, strict=True)):
            upload.seek(0)
            member = EnsembleMember(ensemble=ensemble, index=index, format=check.format, config=check.config)
            member.checkpoint.save(Path(upload.name).name, File(upload), save=False)
            member.save()
    return ensemble


# --- training ------------------------------------------------------------------------------


def training_slides(cohorts: Iterable[Cohort], pins: ExitStack) -> list[Any]:
    """The ready slides of ``cohorts`` for training; their local files stay on disk until ``pins`` closes."""
    # analysis.training imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.training import TrainingSlide

    slides = []
    for cohort in cohorts:
        for slide in cohort.slides.filter(status=Slide.Status.READY):
            slides.append(TrainingSlide(path=pins.enter_context(slide_file(slide)), tumor=tumor_geometry(slide)))
    if not slides:
        raise EnsembleError("the training cohorts have no ready slides")
    return slides


def create_training(*, project: Any, name: str, cohorts: Sequence[Cohort], validation: Sequence[Cohort],
                    config: dict[str, Any], user: Any) -> Ensemble:
    """Check the training settings and record the ensemble (status training, no members yet)."""
    # analysis.training imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.training import TrainingConfig

    try:
        TrainingConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise EnsembleError(f"training settings: {exc}") from None
    if not cohorts:
        raise EnsembleError("name at least one training cohort")
    with transaction.atomic():
        ensemble = Ensemble.objects.create(
            project=project, name=name, origin=Ensemble.Origin.TRAINED, status=Ensemble.Status.TRAINING,
            training_config={**config, "validation_cohorts": [c.pk for c in validation]}, created_by=user,
        )
        ensemble.training_cohorts.set(cohorts)
    return ensemble


def start_training(*, project: Any, name: str, cohorts: Sequence[Cohort], validation: Sequence[Cohort],
                   config: dict[str, Any], user: Any) -> Ensemble:
    """Record the ensemble and queue its training on the workers (the ensembles.train_ensemble task)."""
    ensemble = create_training(project=project, name=name, cohorts=cohorts, validation=validation, config=config,
                               user=user)
    enqueue("ensembles.train_ensemble", ensemble.pk, queue="gpu")
    return ensemble


def _training_config(ensemble: Ensemble) -> Any:
    """The ensemble's training settings as an ``analysis.training.TrainingConfig``."""
    # analysis.training imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.training import TrainingConfig

    return TrainingConfig.from_dict({k: v for k, v in ensemble.training_config.items() if k != "validation_cohorts"})


def train(ensemble_id: int, *, echo: Any = None, threads: int | None = None, workers: int = 1,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Train every member; progress (epoch, loss, validation score) lands in member.history.

    ``echo`` gets each epoch as a line of text, ``on_epoch`` as the dictionary stored in the history.

    ``workers`` > 1 trains that many members side by side in spawned processes: for a
    management command, never inside a Celery prefork child (daemonic, it may not have any).
    """
    # analysis.training imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.training import train_ensemble

    ensemble = Ensemble.objects.get(pk=ensemble_id)
    if ensemble.status != Ensemble.Status.TRAINING:
        return  # already trained (a redelivered task): nothing to do
    config = _training_config(ensemble)
    validation = Cohort.objects.filter(pk__in=ensemble.training_config.get("validation_cohorts", []))
    # With object storage the slides are copies in this machine's cache: none may go while training reads them.
    pins = ExitStack()
    try:
        train_slides = training_slides(ensemble.training_cohorts.all(), pins)
        val_slides = training_slides(validation, pins) if validation else []
        EnsembleMember.objects.filter(ensemble=ensemble).delete()
        rows = {
            i: EnsembleMember.objects.create(ensemble=ensemble, index=i, status=Ensemble.Status.TRAINING,
                                             seed=config.seed_of(i))
            for i in range(config.members)
        }

        def progress(report: Any) -> None:
            EnsembleMember.objects.filter(pk=rows[report.member].pk).update(
                history=[*rows[report.member].history, report.as_dict()]
            )
            rows[report.member].history.append(report.as_dict())
            if on_epoch is not None:
                on_epoch(report.as_dict())
            if echo is not None:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.as_dict().items()}
                echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shown.items()))

        trained = train_ensemble(config, train_slides, val_slides, progress=progress,
                                 device=_torch_device(threads), workers=workers)
        with transaction.atomic():
            for i, result in enumerate(trained):
                member = rows[i]
                with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
                    result.save(tmp.name)
                    with open(tmp.name, "rb") as fh:
                        member.checkpoint.save(f"member-{i}.pt", File(fh), save=False)
                member.config = {"network": result.network_config, "seed": config.seed_of(i),
                                 "optimizer": config.optimizer_of(i),
                                 "healthy_per_tumor": config.healthy_per_tumor_of(i)}
                member.status = Ensemble.Status.READY
                member.save()
            ensemble.network_config = trained[0].network_config
            # Members train on small patches but segment whole slides in large tiles: a
            # fully convolutional network takes any size that is a multiple of its strides.
            multiple = trained[0].network.size_multiple
            ensemble.tile_size = max(multiple, settings.INFERENCE_TILE // multiple * multiple)
            ensemble.level_downsample = config.level_downsample
            ensemble.status = Ensemble.Status.READY
            ensemble.save()
    except Exception as exc:
        log.exception("training ensemble %s failed", ensemble_id)
        Ensemble.objects.filter(pk=ensemble_id).update(status=Ensemble.Status.FAILED, failure_reason=str(exc))
        raise
    finally:
        pins.close()


# --- inference -----------------------------------------------------------------------------


def unknown_resolution(slides: Iterable[Slide]) -> ResolutionUnknown | None:
    """The refusal for slides whose resolution nobody knows (:attr:`Slide.effective_mpp` is None), or None.

    Without it a heatmap cannot be placed in micrometres (sizes, the metrics' 75 µm and 275 µm), and
    a network trained at one resolution would be run blind at another.
    """
    unknown = [slide for slide in slides if slide.effective_mpp is None]
    if not unknown:
        return None
    names = ", ".join(repr(slide.name) for slide in unknown[:5]) + (f" and {len(unknown) - 5} more"
                                                                     if len(unknown) > 5 else "")
    return ResolutionUnknown(
        f"{len(unknown)} slide{'s' if len(unknown) != 1 else ''} ha{'ve' if len(unknown) != 1 else 's'} no known "
        f"resolution ({names}): the file does not say how many µm a pixel is. An admin sets mpp_override "
        "(µm per pixel) on the slide (PATCH /api/slides/{id}/) or on its cohort (PATCH /api/cohorts/{id}/); "
        "nothing was queued.",
        slides=[slide.pk for slide in unknown],
    )


def queue_inference(ensemble: Ensemble, slides: Iterable[Slide]) -> list[SlideHeatmap]:
    """One ensembles.infer_slide task per slide; a slide already done stays done (running twice is idempotent).

    Slides without a known resolution refuse the whole request (nothing is queued).
    """
    if ensemble.status != Ensemble.Status.READY:
        raise EnsembleError(f"ensemble {ensemble.name!r} is {ensemble.status}, not ready")
    slides = [slide for slide in slides if slide.status == Slide.Status.READY]
    if (refusal := unknown_resolution(slides)) is not None:
        raise refusal
    queued = []
    for slide in slides:
        heatmap, created = SlideHeatmap.objects.get_or_create(ensemble=ensemble, slide=slide)
        if not created and heatmap.status in (SlideHeatmap.Status.FAILED, SlideHeatmap.Status.CANCELLED):
            SlideHeatmap.objects.filter(pk=heatmap.pk).update(status=SlideHeatmap.Status.QUEUED, progress=0,
                                                               failure_reason="")
            heatmap.refresh_from_db()
        if heatmap.status == SlideHeatmap.Status.QUEUED:
            task_id = enqueue("ensembles.infer_slide", heatmap.pk, queue="gpu")
            SlideHeatmap.objects.filter(pk=heatmap.pk).update(task_id=task_id)
            queued.append(heatmap)
    return queued


def cancel(heatmap: SlideHeatmap) -> bool:
    changed = SlideHeatmap.objects.filter(
        pk=heatmap.pk, status__in=[SlideHeatmap.Status.QUEUED, SlideHeatmap.Status.RUNNING]
    ).update(status=SlideHeatmap.Status.CANCELLED, finished=timezone.now())
    return changed == 1


@dataclass
class _Progress:
    heatmap_id: int
    claim: str
    last_write: float = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last_write < 0.5 and fraction < 1.0:
            return
        self.last_write = now
        SlideHeatmap.objects.filter(pk=self.heatmap_id, worker=self.claim).update(progress=round(100 * fraction, 1))

    def should_stop(self) -> bool:
        return not SlideHeatmap.objects.filter(pk=self.heatmap_id, worker=self.claim,
                                               status=SlideHeatmap.Status.RUNNING).exists()


def record_heatmap(heatmap: SlideHeatmap, files: Mapping[str, File], downsample: float) -> None:
    """Store a heatmap's maps (``files`` by kind: segmentation, entropy, mutual_information, variance, as
    heatmap TIFFs) and mark it done, its row saved."""
    for kind, content in files.items():
        getattr(heatmap, kind).save(f"{kind}.tiff", content, save=False)
    heatmap.downsample = downsample
    heatmap.status = SlideHeatmap.Status.DONE
    heatmap.progress = 100.0
    heatmap.finished = timezone.now()
    heatmap.save()


def infer(heatmap_id: int, *, heatmap_downsample: float | None = None, threads: int | None = None) -> str:
    """Run one slide through its ensemble and store the four heatmaps.

    The claim is a conditional update: a queued row, or a running one whose worker died
    (the task came back because of acks_late + reject_on_worker_lost), becomes ours.
    """
    # analysis.inference imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.inference import InferenceCancelled, InferenceOptions, run_ensemble

    claim = f"{worker_name()}:{uuid.uuid4().hex[:8]}"
    claimed = SlideHeatmap.objects.filter(
        pk=heatmap_id, status__in=[SlideHeatmap.Status.QUEUED, SlideHeatmap.Status.RUNNING]
    ).update(status=SlideHeatmap.Status.RUNNING, worker=claim, started=timezone.now(), progress=0)
    if claimed != 1:
        return "skipped"  # done, cancelled or failed already: nothing to redo
    heatmap = SlideHeatmap.objects.select_related("ensemble", "slide__cohort").get(pk=heatmap_id)
    ensemble = heatmap.ensemble
    progress = _Progress(heatmap_id, claim)
    downsample = heatmap_downsample or settings.HEATMAP_DOWNSAMPLE
    # With object storage the slide is a copy in this machine's cache: it may not go while it is read.
    pins = ExitStack()
    try:
        if (refusal := unknown_resolution([heatmap.slide])) is not None:
            raise refusal  # its resolution was taken away after it was queued
        _check_tile_size(ensemble.tile_size, ensemble.level_downsample, downsample)
        device = _torch_device(threads)
        members = load_members(ensemble, device=device)
        slide_path = pins.enter_context(slide_file(heatmap.slide))
        # large-image reads the missing tiles of a truncated TIFF as black: check the file is
        # still the one that was checked, or the slide would get a silently empty heatmap.
        size = slide_path.stat().st_size
        if heatmap.slide.size_bytes and size != heatmap.slide.size_bytes:
            raise EnsembleError(f"the stored slide file is {size} bytes, not the {heatmap.slide.size_bytes} bytes "
                                "that were uploaded and checked: it was damaged in storage")
        options = InferenceOptions(
            level_downsample=ensemble.level_downsample, heatmap_downsample=downsample,
            tile_size=ensemble.tile_size, overlap=settings.INFERENCE_OVERLAP, batch_size=settings.INFERENCE_BATCH,
            device=device, compile=settings.INFERENCE_COMPILE and device == "cuda",  # CPU images have no compiler
        )
        result = run_ensemble(slide_path, members, options, progress=progress, should_stop=progress.should_stop)
        if progress.should_stop():
            raise Cancelled()
        with tempfile.TemporaryDirectory(prefix="heatmap-") as tmp:
            paths = {}
            for kind, array in (("segmentation", result.mean), ("entropy", result.entropy),
                                ("mutual_information", result.mutual_information), ("variance", result.variance)):
                paths[kind] = Path(tmp) / f"{kind}.tiff"
                write_heatmap_tiff(array, paths[kind], downsample=result.downsample)
            with transaction.atomic(), ExitStack() as files:
                row = SlideHeatmap.objects.select_for_update().get(pk=heatmap_id)
                if row.worker != claim or row.status != SlideHeatmap.Status.RUNNING:
                    raise Cancelled()
                record_heatmap(row, {kind: File(files.enter_context(open(path, "rb")))
                                     for kind, path in paths.items()}, result.downsample)
        return "done"
    except (Cancelled, InferenceCancelled):
        return "cancelled"
    except Exception as exc:
        log.exception("inference of heatmap %s failed", heatmap_id)
        SlideHeatmap.objects.filter(pk=heatmap_id, worker=claim).update(
            status=SlideHeatmap.Status.FAILED, failure_reason=f"{exc.__class__.__name__}: {exc}",
            finished=timezone.now(),
        )
        return "failed"
    finally:
        pins.close()


def read_heatmap(heatmap: SlideHeatmap, kind: str) -> np.ndarray:
    field = getattr(heatmap, kind)
    with field.open("rb") as fh, tempfile.NamedTemporaryFile(suffix=".tiff") as tmp:
        tmp.write(fh.read())
        tmp.flush()
        array, _ = read_heatmap_tiff(tmp.name)
    return array


def heatmap_png(heatmap: SlideHeatmap, kind: str) -> bytes:
    """The heatmap coloured for the viewer (:func:`analysis.io.heatmap_rgba`), PNG-encoded."""

    out = io.BytesIO()
    Image.fromarray(heatmap_rgba(read_heatmap(heatmap, kind), kind), mode="RGBA").save(out, format="PNG")
    return out.getvalue()


# --- the demo ------------------------------------------------------------------------------

DEMO_ENSEMBLE = "Demo ensemble"


def load_demo_ensemble(
    project: Any,
    cohorts: Sequence[Cohort],
    *,
    preset: str = "demo",
    overrides: dict[str, Any] | None = None,
    threads: int | None = None,
    log_line: Any = log.info,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_heatmaps: Callable[[Ensemble, int, int], None] | None = None,
) -> Ensemble:
    """Train the demo ensemble and compute every validation and test heatmap.

    Runs in the calling process (``manage.py load_demo``), each step idempotent: a
    trained ensemble and a computed heatmap are kept.  The SUA step is the demo run's
    (:mod:`sua_portal.runs`). ``preset`` names the training preset
    (:data:`analysis.training.TRAINING_PRESETS`), ``overrides`` settings over it.
    Progress: ``on_epoch`` gets each member's finished epochs (as :func:`train` does; then
    ``log_line`` gets no epoch lines), ``on_heatmaps(ensemble, done, total)`` is called before
    the heatmaps and after each slide's.
    """
    train_cohorts = [c for c in cohorts if c.split == Cohort.Split.TRAIN]
    validation = [c for c in cohorts if c.split == Cohort.Split.VALIDATION]
    evaluated = [c for c in cohorts if c.split != Cohort.Split.TRAIN]
    ensemble = Ensemble.objects.filter(project=project, name=DEMO_ENSEMBLE).first()
    if ensemble is not None and ensemble.status != Ensemble.Status.READY:
        log_line(f"{DEMO_ENSEMBLE}: {ensemble.status} before, training it again")
        ensemble.delete()
        ensemble = None
    if ensemble is None:
        ensemble = create_training(project=project, name=DEMO_ENSEMBLE, cohorts=train_cohorts,
                                   validation=validation, config={"preset": preset, **(overrides or {})},
                                   user=None)
        started = time.monotonic()
        log_line(f"Training the {DEMO_ENSEMBLE.lower()} ({preset!r} preset) on {len(train_cohorts)} cohort(s) ...")
        # Members side by side, one thread each: the tiny network on 32 px patches is too little work
        # per step to split, and a second intra-op thread made epochs slower (9.8 s against 7.3 s).
        # Every member at once (up to 4 a core): 5 members 2 at a time leave a core idle for the last one.
        cores = threads or os.cpu_count() or 1
        members = _training_config(ensemble).members
        train(ensemble.pk, echo=None if on_epoch else log_line, threads=1,
              workers=max(cores, min(members, 4 * cores)), on_epoch=on_epoch)
        ensemble.refresh_from_db()
        log_line(f"{DEMO_ENSEMBLE}: {ensemble.members.count()} members trained in {time.monotonic() - started:.0f} s")
    else:
        log_line(f"{DEMO_ENSEMBLE}: trained already")

    slides = list(Slide.objects.filter(cohort__in=evaluated, status=Slide.Status.READY).order_by("cohort", "name"))
    for done, slide in enumerate(slides):
        if on_heatmaps is not None:
            on_heatmaps(ensemble, done, len(slides))
        heatmap, _ = SlideHeatmap.objects.get_or_create(ensemble=ensemble, slide=slide)
        if heatmap.status == SlideHeatmap.Status.DONE:
            continue
        SlideHeatmap.objects.filter(pk=heatmap.pk).update(status=SlideHeatmap.Status.QUEUED, failure_reason="")
        started = time.monotonic()
        outcome = infer(heatmap.pk, threads=threads)
        heatmap.refresh_from_db()
        log_line(f"heatmaps of {slide.name}: {outcome} in {time.monotonic() - started:.1f} s"
                 + (f" ({heatmap.failure_reason})" if heatmap.failure_reason else ""))
    if on_heatmaps is not None:
        on_heatmaps(ensemble, len(slides), len(slides))
    return ensemble
