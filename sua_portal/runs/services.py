"""Runs: start one (every input checked first), carry it through on the workers, choose the review run.

The pipeline, on Celery (``runs.tasks``):

1. **heatmaps** — every slide of the run's cohorts gets the ensemble's heatmaps on the
   ``gpu`` queue; a slide whose heatmaps are done already (same ensemble, slide and
   downsample) is reused, so two runs never compute one twice.
2. **evaluation** — a ``sua evaluate`` manifest of the stored heatmaps and the truth is
   written and evaluated by :func:`analysis.manifest.evaluate_manifest`, the code the
   command line runs: the web and ``sua evaluate`` give the same numbers.
3. **regions** — per slide and range the NPRs as level-0 polygons with their scores,
   truth and flags (score >= the run's threshold), the SUA- and baseline-refined masks
   as pyramidal TIFFs, and the per-slide figures.
4. **recorded** — every row in one transaction, only if this worker still holds the run:
   a worker killed mid-run leaves nothing marked done, and the redelivered task redoes it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from shapely.geometry import mapping

from analysis import defaults
from analysis.bundle import write_bundle
from analysis.errors import InputError
from analysis.evaluation import PIXEL_BINS, Evaluation, EvaluationSettings, SlideArrays
from analysis.io import read_heatmap_tiff
from analysis.manifest import evaluate_manifest, read_manifest, slide_inputs
from analysis.metrics import choose_aggregate, confusion_counts, dice_from_counts, f_beta
from analysis.polygons import region_polygons
from analysis.refine import mask_png as refined_mask_png
from analysis.refine import read_mask_tiff, write_mask_tiff
from analysis.report import write_report, write_report_json
from analysis.sua import baseline_refine, candidate_pixels, find_regions, flag, parse_aggregate, sua_refine
from analysis.uncertainty import UNCERTAINTY_METHODS
from sua_portal.accounts.models import Project
from sua_portal.celery import enqueue
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.ensembles.services import UNCERTAINTY_FIELD, queue_inference, worker_name
from sua_portal.errors import Conflict, DomainError
from sua_portal.runs.models import Region, Run, RunCohort, RunRange, RunSlide
from sua_portal.slides.models import Cohort, Slide
from sua_portal.slides.truth import truth_mask

log = logging.getLogger(__name__)

AGGREGATE_AUTO = "auto"


class RunError(DomainError, ValueError):
    """A run that cannot start or go on: the message names the cohort, slide or setting."""


class Waiting(Exception):
    """Heatmaps are still being computed: the task comes back later."""


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """The snapshot of a run's settings; every default is a Django setting (``SUA_*``, ``RUN_*``)."""

    uncertainty: str
    aggregate: str
    ranges: tuple[tuple[float, float], ...]
    fn_fraction: float
    beta: float
    bootstrap: int
    seed: int
    heatmap_downsample: float
    review_range: int = 0

    @classmethod
    def defaults(cls) -> RunSettings:
        return cls(
            uncertainty=settings.SUA_UNCERTAINTY, aggregate=settings.SUA_AGGREGATE,
            ranges=tuple((float(lo), float(up)) for lo, up in settings.SUA_RANGES),
            fn_fraction=settings.SUA_FN_FRACTION, beta=settings.SUA_BETA, bootstrap=settings.SUA_BOOTSTRAP,
            seed=settings.RUN_SEED, heatmap_downsample=settings.HEATMAP_DOWNSAMPLE,
            review_range=settings.RUN_REVIEW_RANGE,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        """Defaults overridden by ``values`` (unknown names are refused)."""
        base = asdict(cls.defaults())
        unknown = sorted(set(values) - set(base))
        if unknown:
            raise RunError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(base))}")
        merged = {**base, **values}
        ranges = merged["ranges"]
        if isinstance(ranges, str) or not isinstance(ranges, list | tuple) or not ranges or not all(
            isinstance(r, list | tuple) and len(r) == 2 for r in ranges
        ):
            raise RunError("ranges must be a list of [lower, upper] pairs, e.g. [[0.55, 0.95]]")
        try:
            merged["ranges"] = tuple((float(lo), float(up)) for lo, up in ranges)
            for name in ("fn_fraction", "beta", "heatmap_downsample"):
                merged[name] = float(merged[name])
        except (TypeError, ValueError) as exc:
            raise RunError(f"a setting is not a number: {exc}") from exc
        for name in ("bootstrap", "seed", "review_range"):
            if isinstance(merged[name], bool) or not isinstance(merged[name], int):
                raise RunError(f"{name} must be a whole number, got {merged[name]!r}")
        made = cls(**merged)
        made.check()
        return made

    def evaluation(self, aggregate: str) -> EvaluationSettings:
        return EvaluationSettings(ranges=self.ranges, aggregate=aggregate, uncertainty=self.uncertainty,
                                  fn_fraction=self.fn_fraction, beta=self.beta, bootstrap=self.bootstrap,
                                  seed=self.seed)

    def check(self) -> None:
        """Raise :class:`RunError` naming the first bad setting."""
        if self.aggregate != AGGREGATE_AUTO:
            try:
                parse_aggregate(self.aggregate)
            except ValueError as exc:
                raise RunError(f"{exc} (or 'auto')") from exc
        if self.uncertainty not in UNCERTAINTY_METHODS:
            raise RunError(f"unknown uncertainty {self.uncertainty!r}; use one of {', '.join(UNCERTAINTY_METHODS)}")
        if not 1 <= self.bootstrap <= settings.RUN_MAX_BOOTSTRAP:
            raise RunError(f"bootstrap resamples must be between 1 and {settings.RUN_MAX_BOOTSTRAP}, "
                           f"got {self.bootstrap}")
        if not (self.heatmap_downsample > 0 and math.isfinite(self.heatmap_downsample)):
            raise RunError(f"heatmap downsample must be a positive number, got {self.heatmap_downsample:g}")
        if not 0 <= self.review_range < len(self.ranges):
            raise RunError(f"review range {self.review_range} is not one of the {len(self.ranges)} ranges (0-based)")
        try:
            self.evaluation(defaults.AGGREGATE if self.aggregate == AGGREGATE_AUTO else self.aggregate).check()
        except InputError as exc:
            raise RunError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["ranges"] = [list(r) for r in self.ranges]
        return values


# --- starting ------------------------------------------------------------------------------


def _cohort_slides(cohort: Cohort) -> QuerySet[Slide]:
    return cohort.slides.filter(status=Slide.Status.READY).order_by("name")


def _resolution(slide: Slide) -> float | None:
    """µm per level-0 pixel: the slide's own, or an admin's override for it or its cohort."""
    return slide.effective_mpp


def _check_cohorts(project: Project, validation: Sequence[Cohort], test: Sequence[Cohort]) -> None:
    if not validation:
        raise RunError("choose at least one validation cohort: thresholds are calibrated on it")
    if not test:
        raise RunError("choose at least one test cohort: the run is evaluated on it")
    for cohort in [*validation, *test]:
        if cohort.project_id != project.pk:
            raise RunError(f"cohort {cohort.name!r} is not in project {project.name!r}")
    for cohort in set(validation) & set(test):
        raise RunError(f"cohort {cohort.name!r} cannot be both the validation and a test cohort: "
                       "test cohorts must stay unseen by calibration")
    for cohort in validation:
        if not _cohort_slides(cohort).filter(has_tumor=True).exists():
            raise RunError(f"validation cohort {cohort.name!r} has no slide with annotated tumor: "
                           "the threshold cannot be calibrated without false negatives to find")
    for cohort in [*validation, *test]:
        slides = list(_cohort_slides(cohort))
        if not slides:
            raise RunError(f"cohort {cohort.name!r} has no checked slide")
        unknown = [s.name for s in slides if _resolution(s) is None]
        if unknown:
            raise RunError(f"slide(s) {', '.join(unknown[:5])} of cohort {cohort.name!r} have no resolution "
                           "(µm per pixel): FROC and the 75 µm rule need it; set an override first")
        untruthful = [s.name for s in slides if s.has_tumor is None]
        if untruthful:
            raise RunError(f"slide(s) {', '.join(untruthful[:5])} of cohort {cohort.name!r} have no ground truth: "
                           "annotate their tumor or mark them tumor-free")


def _check_ensemble(ensemble: Ensemble | None, project: Project, run_settings: RunSettings,
                    cohorts: Sequence[Cohort]) -> Ensemble:
    if ensemble is None:
        raise RunError("choose the ensemble whose heatmaps the run uses")
    if ensemble.project_id != project.pk:
        raise RunError(f"ensemble {ensemble.name!r} is not in project {project.name!r}")
    if ensemble.status != Ensemble.Status.READY:
        raise RunError(f"ensemble {ensemble.name!r} is {ensemble.status}, not ready: its heatmaps cannot be computed")
    other = (SlideHeatmap.objects.filter(ensemble=ensemble, slide__cohort__in=cohorts, status=SlideHeatmap.Status.DONE)
             .exclude(downsample=run_settings.heatmap_downsample).select_related("slide").first())
    if other is not None:
        raise RunError(f"the heatmaps of {other.slide.name} were computed at downsample {other.downsample:g}, "
                       f"not {run_settings.heatmap_downsample:g}: start the run at {other.downsample:g}")
    return ensemble


def start_run(
    *,
    project: Project,
    ensemble: Ensemble | None,
    validation: Sequence[Cohort],
    test: Sequence[Cohort],
    values: dict[str, Any] | None = None,
    name: str = "",
    user: Any = None,
    copied_from: Run | None = None,
    queue: bool = True,
) -> Run:
    """Check every input, record the run and queue it; nothing is stored or queued on bad input.

    ``queue=False`` records it only, for a caller that carries it through itself (the demo loader).
    """
    run_settings = RunSettings.from_dict(values or {})
    validation, test = list(dict.fromkeys(validation)), list(dict.fromkeys(test))
    _check_cohorts(project, validation, test)
    ensemble = _check_ensemble(ensemble, project, run_settings, [*validation, *test])
    with transaction.atomic():
        number = Run.objects.filter(project=project).count() + 1
        run = Run.objects.create(
            project=project, name=name.strip() or f"Run {number}", ensemble=ensemble, ensemble_name=ensemble.name,
            settings=run_settings.to_dict(), created_by=user if getattr(user, "is_authenticated", False) else None,
            copied_from=copied_from, step="queued",
        )
        RunCohort.objects.bulk_create(
            [RunCohort(run=run, cohort=c, name=c.name, role=RunCohort.Role.VALIDATION, domain=c.domain)
             for c in validation]
            + [RunCohort(run=run, cohort=c, name=c.name, role=RunCohort.Role.TEST, domain=c.domain) for c in test]
        )
        if queue:
            enqueue("runs.execute", run.pk, queue="cpu")
    return run


def run_again(run: Run, *, user: Any = None) -> Run:
    """A new run from a copy of ``run``'s settings, ensemble and (still existing) cohorts."""
    if run.ensemble is None:
        raise RunError(f"the ensemble of {run.name} ({run.ensemble_name}) was deleted: start a new run instead")
    cohorts = list(run.cohorts.select_related("cohort"))
    missing = [c.name for c in cohorts if c.cohort is None]
    if missing:
        raise RunError(f"cohort(s) {', '.join(missing)} of {run.name} were deleted: start a new run instead")
    return start_run(
        project=run.project, ensemble=run.ensemble,
        validation=[c.cohort for c in cohorts if c.role == RunCohort.Role.VALIDATION and c.cohort is not None],
        test=[c.cohort for c in cohorts if c.role == RunCohort.Role.TEST and c.cohort is not None],
        values=run.settings, name=f"{run.name} (again)", user=user, copied_from=run,
    )


# --- the review run ---------------------------------------------------------------------------


def review_run(project: Project | int) -> Run | None:
    """The run whose flags pathologists review: the one chosen, else the newest finished run."""
    runs = Run.objects.filter(project=project, status=Run.Status.DONE)
    return runs.filter(is_review_run=True).first() or runs.order_by("-finished", "-pk").first()


def choose_review_run(run: Run) -> Run:
    if run.status != Run.Status.DONE:
        raise Conflict(f"{run.name} is {run.status}: only a finished run can be reviewed")
    with transaction.atomic():
        Run.objects.filter(project=run.project_id, is_review_run=True).exclude(pk=run.pk).update(is_review_run=False)
        Run.objects.filter(pk=run.pk).update(is_review_run=True)
    run.refresh_from_db()
    return run


def review_range(run: Run) -> RunRange | None:
    return run.range_set.filter(index=run.settings.get("review_range", 0)).first()


def flagged_per_slide(run: Run, slides: Iterable[Slide | int]) -> dict[int, int]:
    """Flagged regions per slide in the run's review range (slides without any are left out)."""
    chosen = review_range(run)
    if chosen is None:
        return {}
    rows = (Region.objects.filter(run_range=chosen, flagged=True, run_slide__slide__in=slides)
            .values("run_slide__slide").annotate(n=Count("id")))
    return {row["run_slide__slide"]: row["n"] for row in rows}


# --- carrying a run through ---------------------------------------------------------------------


@dataclass
class _Claim:
    run_id: int
    token: str

    def update(self, **fields: Any) -> None:
        Run.objects.filter(pk=self.run_id, worker=self.token, status=Run.Status.RUNNING).update(**fields)


def _claim(run_id: int) -> _Claim | None:
    """A queued run, or a running one whose worker died (the task came back), becomes ours."""
    token = f"{worker_name()}:{uuid.uuid4().hex[:8]}"
    claimed = Run.objects.filter(pk=run_id, status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).update(
        status=Run.Status.RUNNING, worker=token)
    if claimed != 1:
        return None
    Run.objects.filter(pk=run_id, started__isnull=True).update(started=timezone.now())
    return _Claim(run_id, token)


@dataclass(frozen=True)
class _RunSlideInput:
    """One slide of the run with where it sits (role, domain) and its done heatmap."""

    slide: Slide
    cohort: RunCohort
    heatmap: SlideHeatmap


def _ensure_heatmaps(run: Run, slides: Sequence[tuple[Slide, RunCohort]], claim: _Claim | None) -> list[_RunSlideInput]:
    """Every slide's done heatmap, queueing the missing ones; :class:`Waiting` until all are done."""
    assert run.ensemble is not None
    # A slide whose heatmaps failed or were cancelled while this run waited fails the run; one that
    # failed before it started is tried again (queue_inference queues it anew).
    since = run.started or run.created
    failed = (SlideHeatmap.objects.filter(ensemble=run.ensemble, slide__in=[s for s, _ in slides],
                                          status__in=[SlideHeatmap.Status.FAILED, SlideHeatmap.Status.CANCELLED],
                                          finished__gte=since).select_related("slide").first())
    if failed is not None:
        raise RunError(f"the heatmaps of slide {failed.slide.name} {failed.status}: "
                       f"{failed.failure_reason or 'no reason given'}")
    queue_inference(run.ensemble, [slide for slide, _ in slides])
    heatmaps = {h.slide_id: h for h in SlideHeatmap.objects.filter(ensemble=run.ensemble,
                                                                    slide__in=[s for s, _ in slides])}
    done = [h for h in heatmaps.values() if h.status == SlideHeatmap.Status.DONE]
    if claim is not None:
        claim.update(step=f"heatmaps: {len(done)} of {len(slides)} slides done",
                     progress=round(50.0 * len(done) / max(len(slides), 1), 1))
    if len(done) < len(slides):
        raise Waiting()
    wrong = [h for h in done if h.downsample != run.settings["heatmap_downsample"]]
    if wrong:
        raise RunError(f"the heatmaps of {wrong[0].slide.name} are at downsample {wrong[0].downsample:g}, "
                       f"not the run's {run.settings['heatmap_downsample']:g}")
    return [_RunSlideInput(slide, cohort, heatmaps[slide.pk]) for slide, cohort in slides]


def _run_slides(run: Run) -> list[tuple[Slide, RunCohort]]:
    out: list[tuple[Slide, RunCohort]] = []
    for entry in run.cohorts.select_related("cohort").order_by("role", "name"):
        if entry.cohort is None:
            raise RunError(f"cohort {entry.name} was deleted before the run could read it")
        out += [(slide, entry) for slide in _cohort_slides(entry.cohort)]
    return out


def _copy_from_storage(name: str | None, target: Path) -> Path:
    if not name:
        raise RunError(f"a heatmap file ({target.name}) is missing from storage")
    with default_storage.open(name, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, length=1 << 20)
    return target


def _slide_entry(item: _RunSlideInput, uncertainty: str, data: Path) -> dict[str, Any]:
    """The slide's ``sua evaluate`` manifest entry, its heatmaps and truth copied under ``data``."""
    heatmap, slide = item.heatmap, item.slide
    assert heatmap.downsample is not None
    stem = f"{slide.pk:06d}"
    segmentation = _copy_from_storage(heatmap.segmentation.name, data / f"{stem}-segmentation.tiff")
    field_name = UNCERTAINTY_FIELD[uncertainty]
    uncertainty_file = _copy_from_storage(getattr(heatmap, field_name).name, data / f"{stem}-{field_name}.tiff")
    truth_file = None
    if slide.has_tumor:
        shape = _heatmap_shape(segmentation)
        mask = truth_mask(slide, shape=shape, downsample=heatmap.downsample)
        if mask is not None:
            truth_file = data / f"{stem}-truth.npy"
            np.save(truth_file, mask)
    return {
        "id": slide.name, "split": item.cohort.role, "domain": item.cohort.domain if item.cohort.role == "test"
        else "validation", "mpp": _resolution(slide), "downsample": heatmap.downsample,
        "segmentation": segmentation.relative_to(data.parent).as_posix(),
        "uncertainty": uncertainty_file.relative_to(data.parent).as_posix(),
        "truth": None if truth_file is None else truth_file.relative_to(data.parent).as_posix(),
    }


def _heatmap_shape(path: Path) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return int(page.shape[0]), int(page.shape[1])


def write_manifest(items: Sequence[_RunSlideInput], uncertainty: str, folder: Path) -> Path:
    """A ``sua evaluate`` manifest of the run's slides under ``folder`` (data in ``folder/data``)."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    names = [item.slide.name for item in items]
    if len(set(names)) != len(names):
        # The manifest names slides; two cohorts may hold files of one name.
        raise RunError("two slides of the run's cohorts have the same name: rename one before running")
    entries = [_slide_entry(item, uncertainty, data) for item in items]
    path = folder / "manifest.json"
    path.write_text(json.dumps({"slides": entries}, indent=1) + "\n", encoding="utf-8")
    return path


def _choose_aggregate(manifest: Path, run_settings: RunSettings) -> tuple[str, dict[str, Any]]:
    """The aggregate of the run: as set, or under "auto" the better calibrated one on validation."""
    if run_settings.aggregate != AGGREGATE_AUTO:
        return run_settings.aggregate, {}
    candidates = settings.RUN_AUTO_AGGREGATES
    scores: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    positives: list[np.ndarray] = []
    inputs = slide_inputs(read_manifest(manifest, uncertainty=run_settings.uncertainty),
                          uncertainty=run_settings.uncertainty)
    for slide in inputs:
        if slide.split != "validation":
            continue
        arrays = slide.load()
        for lower, upper in run_settings.ranges:
            for name in candidates:
                regions = find_regions(arrays.segmentation, arrays.uncertainty, lower=lower, upper=upper, how=name,
                                       truth=arrays.truth, fn_fraction=run_settings.fn_fraction)
                scores[name].append(regions.scores)
                if name == candidates[0]:
                    assert regions.is_false_negative is not None
                    positives.append(regions.is_false_negative)
    choice = choose_aggregate({k: np.concatenate(v) if v else np.zeros(0) for k, v in scores.items()},
                              np.concatenate(positives) if positives else np.zeros(0, bool), beta=run_settings.beta)
    return choice.aggregate, {"aggregate": choice.aggregate, "f_beta": choice.f_beta, "reason": choice.reason}


@dataclass
class _ValidationCounts:
    """Flag counts on the validation slides at the calibrated thresholds, per range."""

    sua: list[list[int]] = field(default_factory=list)  # [tp, fp, fn]
    baseline: list[list[int]] = field(default_factory=list)

    def figures(self, which: str, index: int, beta: float) -> dict[str, Any]:
        tp, fp, fn = getattr(self, which)[index]
        return {
            "f_beta": f_beta(tp, fp, fn, beta=beta) if tp + fp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "flagged": tp + fp, "positives": tp + fn,
        }


def _dice(mask: np.ndarray, truth: np.ndarray) -> float:
    tp, fp, fn = confusion_counts(mask, truth)
    return float(dice_from_counts(tp, fp, fn))


def _slide_results(
    arrays: SlideArrays, *, run: Run, ranges: Sequence[RunRange], aggregate: str, mpp: float | None,
    downsample: float, has_truth: bool, folder: Path, stem: str, counts: _ValidationCounts | None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[tuple[int, dict[str, Any]]]]:
    """One slide in every range: its figures, its refined masks' files and its regions' fields.

    Arrays are (H, W) on the heatmap grid; regions come back as (range position, fields).
    """
    s, u, truth = arrays.segmentation, arrays.uncertainty, arrays.truth
    figures: list[dict[str, Any]] = []
    masks: list[dict[str, str]] = []
    regions: list[tuple[int, dict[str, Any]]] = []
    pixel_area = (downsample * mpp) ** 2 if mpp else None
    for k, run_range in enumerate(ranges):
        lower, upper = run_range.lower, run_range.upper
        found = find_regions(s, u, lower=lower, upper=upper, how=aggregate, truth=truth if has_truth else None,
                             fn_fraction=run.settings["fn_fraction"])
        flagged = flag(found.scores, run_range.sua_threshold)
        outlines = region_polygons(found.labels, downsample=downsample)
        for i, outline in enumerate(outlines):
            x0, y0, x1, y1 = outline.bounds
            regions.append((k, {
                "label": i + 1, "area_px": int(found.areas[i]),
                "area_um2": None if pixel_area is None else float(found.areas[i]) * pixel_area,
                "score": float(found.scores[i]),
                "truth_fraction": None if found.truth_fraction is None else float(found.truth_fraction[i]),
                "is_false_negative": None if found.is_false_negative is None else bool(found.is_false_negative[i]),
                "flagged": bool(flagged[i]), "geometry": mapping(outline),
                "x": float(x0), "y": float(y0), "width": float(x1 - x0), "height": float(y1 - y0),
            }))
        original = s >= upper
        sua = sua_refine(s, found.labels, flagged, upper=upper)
        baseline = baseline_refine(s, u, lower=lower, upper=upper, threshold=run_range.baseline_threshold)
        true_fns = int(np.count_nonzero(found.is_false_negative)) if found.is_false_negative is not None else None
        figures.append({
            "nprs": len(found.scores), "true_fns": true_fns, "flagged": int(np.count_nonzero(flagged)),
            "dice_before": _dice(original, truth) if has_truth else None,
            "dice_sua": _dice(sua, truth) if has_truth else None,
            "dice_baseline": _dice(baseline, truth) if has_truth else None,
            "changed_sua": bool(np.any(sua & ~original)), "changed_baseline": bool(np.any(baseline & ~original)),
        })
        if counts is not None and found.is_false_negative is not None:
            counts.sua[k] = [a + b for a, b in zip(counts.sua[k], confusion_counts(flagged, found.is_false_negative),
                                                   strict=True)]
            candidates = candidate_pixels(s, lower=lower, upper=upper)
            picked = baseline[candidates] if run_range.baseline_threshold is not None else np.zeros(0, bool)
            actual = truth[candidates]
            if picked.size:
                counts.baseline[k] = [a + b for a, b in zip(counts.baseline[k], confusion_counts(picked, actual),
                                                            strict=True)]
            else:
                counts.baseline[k][2] += int(np.count_nonzero(actual))
        names = {}
        for method, mask in (("sua", sua), ("baseline", baseline)):
            path = folder / f"{stem}-range{k}-{method}.tiff"
            write_mask_tiff(mask, path, downsample=downsample)
            names[method] = path.name
        masks.append(names)
    return figures, masks, regions


def _store(path: Path, name: str) -> str:
    with open(path, "rb") as fh:
        return default_storage.save(name, File(fh))


def execute(run_id: int) -> str:
    """Carry a run through (see the module's docstring); "waiting" while heatmaps are computed."""
    claim = _claim(run_id)
    if claim is None:
        return "skipped"  # done or failed already: nothing to redo
    run = Run.objects.select_related("ensemble", "project").get(pk=run_id)
    try:
        if run.ensemble is None:
            raise RunError(f"the ensemble {run.ensemble_name} was deleted before the run could use it")
        items = _ensure_heatmaps(run, _run_slides(run), claim)
        _compute(run, items, claim)
        return "done"
    except Waiting:
        return "waiting"
    except Exception as exc:
        log.exception("run %s failed", run_id)
        reason = str(exc) if isinstance(exc, DomainError | InputError) else f"{exc.__class__.__name__}: {exc}"
        Run.objects.filter(pk=run_id, worker=claim.token).update(
            status=Run.Status.FAILED, failure_reason=reason, finished=timezone.now(), step="failed")
        return "failed"


def _compute(run: Run, items: Sequence[_RunSlideInput], claim: _Claim) -> None:
    run_settings = RunSettings.from_dict(run.settings)
    prefix = f"runs/{run.pk}/{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix=f"run-{run.pk}-") as tmp:
        work = Path(tmp)
        claim.update(step="evaluation: reading heatmaps and truth", progress=50.0)
        manifest = write_manifest(items, run_settings.uncertainty, work / "bundle")
        aggregate, choice = _choose_aggregate(manifest, run_settings)
        evaluation_settings = run_settings.evaluation(aggregate)

        def progress(stage: str, done: int, total: int) -> None:
            claim.update(step=f"evaluation: {stage} {done} of {total}")

        evaluation = evaluate_manifest(manifest, evaluation_settings, progress=progress)
        report = evaluation.report
        report["settings"]["manifest"] = "manifest.json"
        if choice:
            report["settings"]["aggregate_choice"] = choice
        claim.update(step="report and bundle", progress=65.0)
        (work / "report").mkdir()
        write_report_json(report, work / "report" / "report.json")
        write_bundle(manifest, work / "bundle.zip", settings=evaluation_settings)

        ranges = [
            RunRange(run=run, index=k, lower=entry["lower"], upper=entry["upper"],
                     sua_threshold=entry["sua_threshold"], baseline_threshold=entry["baseline_threshold"])
            for k, entry in enumerate(report["ranges"])
        ]
        counts = _ValidationCounts(sua=[[0, 0, 0] for _ in ranges], baseline=[[0, 0, 0] for _ in ranges])
        masks_folder = work / "masks"
        masks_folder.mkdir()
        inputs = {s.id: s for s in slide_inputs(read_manifest(manifest, uncertainty=run_settings.uncertainty),
                                                uncertainty=run_settings.uncertainty)}
        slide_rows: list[tuple[RunSlide, list[tuple[int, dict[str, Any]]]]] = []
        for done, item in enumerate(items, start=1):
            claim.update(step=f"regions and refined masks: slide {done} of {len(items)}",
                         progress=round(65.0 + 30.0 * done / len(items), 1))
            arrays = inputs[item.slide.name].load()
            assert item.heatmap.downsample is not None
            figures, masks, regions = _slide_results(
                arrays, run=run, ranges=ranges, aggregate=aggregate, mpp=_resolution(item.slide),
                downsample=item.heatmap.downsample, has_truth=True, folder=masks_folder, stem=f"{item.slide.pk:06d}",
                counts=counts if item.cohort.role == RunCohort.Role.VALIDATION else None)
            stored_masks = [{m: _store(masks_folder / n, f"{prefix}/masks/{n}") for m, n in entry.items()}
                            for entry in masks]
            row = RunSlide(run=run, slide=item.slide, heatmap=item.heatmap, name=item.slide.name,
                           cohort_name=item.cohort.name, role=item.cohort.role, domain=item.cohort.domain,
                           has_tumor=bool(item.slide.has_tumor), downsample=item.heatmap.downsample,
                           figures=figures, masks=stored_masks)
            slide_rows.append((row, regions))
        for k, run_range in enumerate(ranges):
            run_range.sua_validation = counts.figures("sua", k, run_settings.beta)
            run_range.baseline_validation = counts.figures("baseline", k, run_settings.beta)
        files = {path.name: _store(path, f"{prefix}/report/{path.name}")
                 for path in sorted((work / "report").iterdir()) if path.is_file()}
        files["bundle.zip"] = _store(work / "bundle.zip", f"{prefix}/bundle.zip")
        _record(run, claim, report=report, aggregate=aggregate, ranges=ranges, slide_rows=slide_rows, files=files,
                figures=chart_data(evaluation))
    # Tables, figures, HTML and PDF take matplotlib seconds: the run is done (and reviewable) without them.
    enqueue("runs.write_report", run.pk, queue="cpu", robust=True)


def write_report_files(run_id: int) -> list[str]:
    """The run's report files (CSV tables, figures as PNG and SVG, HTML, PDF), from its own bundle.

    The bundle is evaluated again by :func:`analysis.manifest.evaluate_manifest` (the figures need
    every NPR score, which the run does not keep) and must give the stored report.json, or
    nothing is written: the downloads never disagree with the dashboard.  Returns the names added.
    """
    run = Run.objects.get(pk=run_id)
    if run.status != Run.Status.DONE or "report.pdf" in run.files or "bundle.zip" not in run.files:
        return []
    with tempfile.TemporaryDirectory(prefix=f"run-{run.pk}-report-") as tmp:
        work = Path(tmp)
        with default_storage.open(run.files["bundle.zip"], "rb") as fh, zipfile.ZipFile(fh) as archive:
            archive.extractall(work / "bundle")
        run_settings = RunSettings.from_dict(run.settings)
        evaluation = evaluate_manifest(work / "bundle" / "manifest.json", run_settings.evaluation(run.aggregate))
        assert run.report is not None
        again = {**evaluation.report, "settings": {**evaluation.report["settings"],
                                                   **{k: run.report["settings"][k] for k in ("manifest",
                                                      "aggregate_choice") if k in run.report["settings"]}}}
        if again != run.report:
            raise RunError(f"{run.name}: its bundle no longer gives its report.json; the report files are not written")
        (work / "report").mkdir()
        write_report(Evaluation(report=run.report, ranges=evaluation.ranges, slide_counts=evaluation.slide_counts),
                     work / "report")
        prefix = f"runs/{run.pk}/{uuid.uuid4().hex[:8]}"
        added = {path.name: _store(path, f"{prefix}/report/{path.name}")
                 for path in sorted((work / "report").iterdir()) if path.is_file() and path.name != "report.json"}
    with transaction.atomic():
        current = Run.objects.select_for_update().get(pk=run.pk)
        current.files = {**added, **current.files}
        current.save(update_fields=["files"])
    return sorted(added)


def chart_data(evaluation: Evaluation) -> dict[str, Any]:
    """The figures' data, JSON-ready and small: histograms instead of every NPR score."""
    edges = np.linspace(0.0, 1.0, settings.RUN_SCORE_BINS + 1)

    def histogram(values: np.ndarray) -> list[int]:
        return [int(n) for n in np.histogram(np.clip(values, 0.0, 1.0), bins=edges)[0]]

    ranges = []
    for entry in evaluation.ranges:
        parts = {}
        for name, part in entry.parts.items():
            parts[name] = {
                "npr_fn": histogram(part.npr_scores[part.npr_is_fn]),
                "npr_tn": histogram(part.npr_scores[~part.npr_is_fn]),
                "pixel_fn": [int(n) for n in part.pixel_fn], "pixel_tn": [int(n) for n in part.pixel_tn],
                "fncr": {method: [None if math.isnan(v) else float(v) for v in samples]
                         for method, samples in part.fncr_samples.items()},
            }
        ranges.append({"lower": entry.lower, "upper": entry.upper, "sua_threshold": entry.sua_threshold,
                       "baseline_threshold": entry.baseline_threshold, "parts": parts})
    return {"slide_counts": evaluation.slide_counts, "score_edges": [float(e) for e in edges],
            "pixel_edges": [float(e) for e in PIXEL_BINS], "ranges": ranges}


def _record(run: Run, claim: _Claim, *, report: dict[str, Any], aggregate: str, ranges: list[RunRange],
            slide_rows: list[tuple[RunSlide, list[tuple[int, dict[str, Any]]]]], files: dict[str, str],
            figures: dict[str, Any]) -> None:
    """Every row of the run in one transaction, only while this worker still holds it."""
    with transaction.atomic():
        current = Run.objects.select_for_update().get(pk=run.pk)
        if current.worker != claim.token or current.status != Run.Status.RUNNING:
            raise RunError("another worker took the run over")
        current.range_set.all().delete()
        current.slide_set.all().delete()
        RunRange.objects.bulk_create(ranges)
        _create_slides(current, ranges, slide_rows)
        current.report, current.aggregate, current.files, current.figures = report, aggregate, files, figures
        current.status, current.step, current.progress = Run.Status.DONE, "done", 100.0
        current.finished = timezone.now()
        current.save()


def _create_slides(run: Run, ranges: Sequence[RunRange],
                   slide_rows: Sequence[tuple[RunSlide, list[tuple[int, dict[str, Any]]]]]) -> None:
    RunSlide.objects.bulk_create([row for row, _ in slide_rows])
    Region.objects.bulk_create(
        [Region(run=run, run_slide=row, run_range=ranges[k], **fields)
         for row, regions in slide_rows for k, fields in regions],
        batch_size=2000,
    )


# --- a slide that arrives later ------------------------------------------------------------------


def runs_to_join(slide: Slide) -> list[Run]:
    """The review run a newly checked slide joins: the project's, if it holds the slide's cohort."""
    if slide.status != Slide.Status.READY:
        return []
    run = review_run(slide.cohort.project_id)
    if run is None or not run.cohorts.filter(cohort=slide.cohort_id).exists():
        return []
    if run.slide_set.filter(slide=slide).exists():
        return []
    return [run]


def queue_joining(slide: Slide) -> int:
    """Queue the slide's joining of the runs it belongs to; how many."""
    runs = runs_to_join(slide)
    for run in runs:
        enqueue("runs.add_slide", run.pk, slide.pk, queue="cpu", robust=True)
    return len(runs)


def add_slide(run_id: int, slide_id: int) -> str:
    """A slide added to a cohort of a finished run: its heatmaps, regions and flags under the run's thresholds.

    The run's report stays as it was (it is a record of what was evaluated); the slide is
    marked as added after the run.
    """
    run = Run.objects.select_related("ensemble").get(pk=run_id)
    slide = Slide.objects.select_related("cohort").get(pk=slide_id)
    if run.status != Run.Status.DONE or run.ensemble is None or run.slide_set.filter(slide=slide).exists():
        return "skipped"
    entry = run.cohorts.filter(cohort=slide.cohort_id).first()
    if entry is None or slide.status != Slide.Status.READY:
        return "skipped"
    item = _ensure_heatmaps(run, [(slide, entry)], None)[0]
    heatmap = item.heatmap
    assert heatmap.downsample is not None
    ranges = list(run.range_set.all())
    run_settings = RunSettings.from_dict(run.settings)
    prefix = f"runs/{run.pk}/{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix=f"run-{run.pk}-slide-") as tmp:
        work = Path(tmp)
        s, _ = read_heatmap_tiff(_copy_from_storage(heatmap.segmentation.name, work / "s.tiff"))
        u, _ = read_heatmap_tiff(_copy_from_storage(
            getattr(heatmap, UNCERTAINTY_FIELD[run_settings.uncertainty]).name, work / "u.tiff"))
        truth = truth_mask(slide, shape=s.shape, downsample=heatmap.downsample)
        arrays = SlideArrays(s, u, truth if truth is not None else np.zeros(s.shape, bool))
        figures, masks, regions = _slide_results(
            arrays, run=run, ranges=ranges, aggregate=run.aggregate, mpp=_resolution(slide),
            downsample=heatmap.downsample, has_truth=truth is not None, folder=work, stem=f"{slide.pk:06d}",
            counts=None)
        stored = [{m: _store(work / n, f"{prefix}/masks/{n}") for m, n in e.items()} for e in masks]
    with transaction.atomic():
        if RunSlide.objects.select_for_update().filter(run=run, slide=slide).exists():
            return "skipped"
        row = RunSlide(run=run, slide=slide, heatmap=heatmap, name=slide.name, cohort_name=entry.name,
                       role=entry.role, domain=entry.domain, has_tumor=bool(slide.has_tumor),
                       downsample=heatmap.downsample, figures=figures, masks=stored, added_after_run=True)
        _create_slides(run, ranges, [(row, regions)])
    return "done"


def mask_png(name: str) -> bytes:
    """A stored refined mask as the viewer's layer: one RGBA pixel per heatmap cell, clear outside the mask."""
    with tempfile.NamedTemporaryFile(suffix=".tiff") as tmp:
        _copy_from_storage(name, Path(tmp.name))
        mask, _ = read_mask_tiff(tmp.name)
    return refined_mask_png(mask, settings.RUN_MASK_RGBA)


def regions_of(run: Run, *, slide: Slide | int | None = None, flagged: bool | None = None,
               run_range: RunRange | None = None) -> QuerySet[Region]:
    regions = Region.objects.filter(run=run).select_related("run_range", "run_slide")
    if slide is not None:
        regions = regions.filter(run_slide__slide=slide)
    if flagged is not None:
        regions = regions.filter(flagged=flagged)
    if run_range is not None:
        regions = regions.filter(run_range=run_range)
    return regions


def runs_of(projects: Iterable[Project | int]) -> QuerySet[Run]:
    return Run.objects.filter(project__in=projects).select_related("project")


def flagged_in_review_range(runs: Iterable[Run]) -> dict[int, int]:
    """Flagged regions of each run in its own review range (runs that flag nothing are left out)."""
    wanted = Q()
    for run in runs:
        wanted |= Q(run=run, run_range__index=run.settings.get("review_range", 0))
    if not wanted:
        return {}
    rows = Region.objects.filter(wanted, flagged=True).values("run").annotate(n=Count("id"))
    return {row["run"]: row["n"] for row in rows}


# --- the demo ------------------------------------------------------------------------------------

DEMO_RUN = "Demo run"


def load_demo_run(project: Project, ensemble: Ensemble, cohorts: Sequence[Cohort], *, log_line: Any = log.info
                  ) -> Run:
    """The demo's finished run (the paper's settings) over its validation and test cohorts, carried
    through in this process; kept when it exists and finished, started again when it failed."""
    run = Run.objects.filter(project=project, name=DEMO_RUN).first()
    if run is not None and run.status == Run.Status.DONE:
        log_line(f"{DEMO_RUN}: finished already")
        return run
    if run is not None:
        log_line(f"{DEMO_RUN}: {run.status} before ({run.failure_reason or 'no reason'}), starting it again")
        run.delete()
    run = start_run(project=project, ensemble=ensemble,
                    validation=[c for c in cohorts if c.split == Cohort.Split.VALIDATION],
                    test=[c for c in cohorts if c.split == Cohort.Split.TEST], name=DEMO_RUN, queue=False)
    # The heatmaps were computed by the demo loader: carried through here, at once.
    outcome = execute(run.pk)
    run.refresh_from_db()
    if outcome != "done":
        raise RunError(f"{DEMO_RUN} {outcome}: {run.failure_reason or run.step}")
    write_report_files(run.pk)
    for run_range in run.range_set.all():
        tau = "none (no false negatives in validation)" if run_range.sua_threshold is None \
            else f"{run_range.sua_threshold:.4g}"
        flagged = run.regions.filter(run_range=run_range, flagged=True).count()
        log_line(f"{DEMO_RUN}, range {run_range.label}: threshold {tau}, {flagged} regions flagged")
    return run
