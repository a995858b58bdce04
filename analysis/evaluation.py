"""Cohort evaluation of SUA and the pixel baseline (SPEC §6, paper §5).

:func:`evaluate_cohort` calibrates the SUA threshold (on NPR scores) and the
baseline threshold (on candidate pixels) on the validation slides for each
candidate range, applies them to every test domain, and summarises each
metric over a seeded bootstrap of slides.

Memory: slides are loaded one at a time (a :class:`SlideInput` may carry a
loader instead of arrays).  Of a test slide only per-slide sufficient
statistics are kept (NPR and pixel counts, Dice counts, turned-positive
counts, FROC hit lists, the slide maximum); of a validation slide its NPR
scores and its candidate pixels' uncertainties, which calibration needs in
full because it is exact.  Every slide is read exactly once.

The bootstrap draws B resamples of each test domain's slides; every metric of
every resample is a matrix product of the (B, n) multiplicities with a
per-slide vector (:mod:`analysis.metrics`), so B = 1000 costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis import defaults
from analysis.io import InputError, check_unit_interval
from analysis.metrics import (
    SlideFROC,
    bootstrap_f_beta,
    bootstrap_fn_conversion_rate,
    bootstrap_froc,
    bootstrap_indices,
    bootstrap_mean,
    bootstrap_roc_auc,
    calibrate_threshold,
    confusion_counts,
    dice_from_counts,
    f_beta,
    fn_conversion_rate,
    froc_score,
    roc_auc,
    slide_froc,
    summarise,
)
from analysis.sua import (
    baseline_refine,
    candidate_pixels,
    check_range,
    find_regions,
    flag,
    parse_aggregate,
    sua_refine,
)
from analysis.uncertainty import UNCERTAINTY_METHODS

__all__ = [
    "PIXEL_BINS",
    "SPLITS",
    "DomainFigures",
    "Evaluation",
    "EvaluationSettings",
    "Progress",
    "RangeFigures",
    "SlideArrays",
    "SlideInput",
    "evaluate_cohort",
    "load_slide",
    "run_evaluation",
]

#: The manifest's splits: thresholds are calibrated on one, reported on the other.
SPLITS: tuple[str, ...] = ("validation", "test")
#: Histogram bin edges of candidate-pixel uncertainty (figures only): the
#: baseline's pixels are too many to keep, so test pixels are binned on the fly.
PIXEL_BINS: npt.NDArray[np.float64] = np.linspace(0.0, 1.0, 101)

#: ``progress(stage, done, total)``, called after each slide and each domain.
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings of a cohort evaluation; every default comes from :mod:`analysis.defaults`.

    Attributes
    ----------
    ranges
        Candidate ranges (lower, upper), ``0 <= lower < upper <= 1``.
    aggregate
        NPR score: "mean" or "pNN".
    uncertainty
        How the uncertainty maps were made (recorded with the results).
    fn_fraction
        An NPR is a true FN when at least this fraction lies in tumor.
    beta
        F-beta of calibration and reporting.
    bootstrap, seed
        Resamples of slides and the seed that makes them repeatable.
    """

    ranges: tuple[tuple[float, float], ...] = defaults.PAPER_RANGES
    aggregate: str = defaults.AGGREGATE
    uncertainty: str = defaults.UNCERTAINTY
    fn_fraction: float = defaults.FN_FRACTION
    beta: float = defaults.BETA
    bootstrap: int = defaults.BOOTSTRAP
    seed: int = defaults.SEED

    def check(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if not self.ranges:
            raise InputError("no candidate range given")
        for lower, upper in self.ranges:
            check_range(lower, upper)
        try:
            parse_aggregate(self.aggregate)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if self.uncertainty not in UNCERTAINTY_METHODS:
            raise InputError(f"unknown uncertainty {self.uncertainty!r}; use one of {', '.join(UNCERTAINTY_METHODS)}")
        if not 0.0 < self.fn_fraction <= 1.0:
            raise InputError(f"fn fraction {self.fn_fraction:g} must be in (0, 1]")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise InputError(f"beta {self.beta:g} must be a positive number")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 1:
            raise InputError(f"bootstrap resamples {self.bootstrap!r} must be a positive integer")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed {self.seed!r} must be a non-negative integer")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with the fixed FROC parameters they were run with."""
        return {
            "ranges": [[float(lo), float(up)] for lo, up in self.ranges],
            "aggregate": self.aggregate,
            "uncertainty": self.uncertainty,
            "fn_fraction": float(self.fn_fraction),
            "beta": float(self.beta),
            "bootstrap": int(self.bootstrap),
            "seed": int(self.seed),
            "detection_cutoff": defaults.DETECTION_CUTOFF,
            "froc_dilation_um": defaults.FROC_DILATION_UM,
            "itc_major_axis_um": defaults.ITC_MAJOR_AXIS_UM,
            "froc_fp_rates": list(defaults.FROC_FP_RATES),
        }


@dataclass(frozen=True)
class SlideArrays:
    """The three maps of one slide on its analysis grid.

    Attributes
    ----------
    segmentation : (H, W) float, values in [0, 1]
    uncertainty : (H, W) float, values in [0, 1]
    truth : (H, W) bool
    """

    segmentation: np.ndarray
    uncertainty: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True, eq=False)
class SlideInput:
    """One slide of a cohort: its identity, split, domain and grid, and its maps.

    Give either the three arrays or ``loader`` (called once, when the slide's
    turn comes, so that a cohort never sits in memory).  ``mpp`` is
    micrometres per level-0 pixel; ``downsample`` is the heatmaps' ``d``.
    """

    id: str
    split: str
    domain: str
    mpp: float
    downsample: float
    segmentation: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    truth: np.ndarray | None = None
    loader: Callable[[], SlideArrays] | None = None

    def load(self) -> SlideArrays:
        """The slide's maps (from the loader when there is one)."""
        if self.loader is not None:
            return self.loader()
        if self.segmentation is None or self.uncertainty is None or self.truth is None:
            raise InputError(f"slide {self.id}: needs segmentation, uncertainty and truth, or a loader")
        return SlideArrays(self.segmentation, self.uncertainty, self.truth)


def check_slides(slides: Sequence[SlideInput]) -> None:
    """Raise :class:`InputError` on a bad cohort description (no arrays read)."""
    seen: set[str] = set()
    for slide in slides:
        if slide.id in seen:
            raise InputError(f"slide {slide.id}: id used twice")
        seen.add(slide.id)
        if slide.split not in SPLITS:
            raise InputError(f"slide {slide.id}: split must be 'validation' or 'test', got {slide.split!r}")
        if not (isinstance(slide.domain, str) and slide.domain):
            raise InputError(f"slide {slide.id}: domain must be a non-empty name")
        if slide.split == "test" and slide.domain == "validation":
            # The figures show the validation split under that name.
            raise InputError(f"slide {slide.id}: a test domain may not be called 'validation'")
        for name in ("mpp", "downsample"):
            value = getattr(slide, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not (float(value) > 0 and math.isfinite(value))
            ):
                raise InputError(f"slide {slide.id}: {name} must be a positive number, got {value!r}")
    if not any(slide.split == "validation" for slide in slides):
        raise InputError("no validation slides: thresholds are calibrated on the validation split")


def load_slide(slide: SlideInput) -> SlideArrays:
    """Load a slide and check its maps; errors name the slide.

    Returns
    -------
    SlideArrays
        segmentation and uncertainty as float arrays, truth as bool, all (H, W).
    """
    try:
        arrays = slide.load()
        return _checked(arrays, slide)
    except InputError as exc:
        message = str(exc)
        raise InputError(message if message.startswith("slide ") else f"slide {slide.id}: {message}") from exc


def _checked(arrays: SlideArrays, slide: SlideInput) -> SlideArrays:
    s = np.asarray(arrays.segmentation)
    u = np.asarray(arrays.uncertainty)
    truth = np.asarray(arrays.truth)
    if s.ndim != 2:
        raise InputError(f"segmentation must be 2-D (H, W), got shape {s.shape}")
    for name, values in (("segmentation", s), ("uncertainty", u)):
        if not np.issubdtype(values.dtype, np.floating):
            raise InputError(f"{name} must be floating point, got {values.dtype}")
        check_unit_interval(values, what=name)
    if u.shape != s.shape:
        raise InputError(f"uncertainty shape {u.shape} != segmentation shape {s.shape}")
    if truth.shape != s.shape:
        raise InputError(f"truth shape {truth.shape} != heatmap shape {s.shape} at downsample {slide.downsample:g}")
    return SlideArrays(s, u, truth.astype(bool, copy=False))


# --------------------------------------------------------------------------- per-slide statistics


@dataclass
class _Counts:
    """(tp, fp, fn) triples, one row per slide."""

    rows: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, counts: tuple[int, int, int]) -> None:
        self.rows.append(counts)

    def array(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.rows, dtype=np.float64).reshape(-1, 3)


@dataclass
class _MethodStats:
    """Per-slide statistics of one refinement method (SUA or baseline) in one range."""

    detection: _Counts = field(default_factory=_Counts)  # NPRs (SUA) or candidate pixels (baseline)
    pixels: _Counts = field(default_factory=_Counts)  # refined mask vs truth
    turned: list[int] = field(default_factory=list)
    turned_tumor: list[int] = field(default_factory=list)


@dataclass
class _DomainRangeStats:
    """One test domain, one range: per-slide statistics and figure data."""

    npr_count: int = 0
    fn_npr_count: int = 0
    original: _Counts = field(default_factory=_Counts)
    sua: _MethodStats = field(default_factory=_MethodStats)
    baseline: _MethodStats = field(default_factory=_MethodStats)
    npr_scores: list[np.ndarray] = field(default_factory=list)
    npr_is_fn: list[np.ndarray] = field(default_factory=list)
    pixel_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(PIXEL_BINS) - 1, dtype=np.int64))
    pixel_tn: np.ndarray = field(default_factory=lambda: np.zeros(len(PIXEL_BINS) - 1, dtype=np.int64))


@dataclass
class _DomainStats:
    ids: list[str] = field(default_factory=list)
    has_tumor: list[bool] = field(default_factory=list)
    max_s: list[float] = field(default_factory=list)
    froc: list[SlideFROC] = field(default_factory=list)
    ranges: list[_DomainRangeStats] = field(default_factory=list)


@dataclass
class _Calibration:
    """Validation data of one range: everything calibration and the figures need."""

    npr_scores: list[np.ndarray] = field(default_factory=list)
    npr_is_fn: list[np.ndarray] = field(default_factory=list)
    pixel_u: list[np.ndarray] = field(default_factory=list)
    pixel_is_fn: list[np.ndarray] = field(default_factory=list)


def _pixel_histograms(values: np.ndarray, is_fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fn_counts, _ = np.histogram(values[is_fn], bins=PIXEL_BINS)
    tn_counts, _ = np.histogram(values[~is_fn], bins=PIXEL_BINS)
    return fn_counts.astype(np.int64), tn_counts.astype(np.int64)


def _validation_slide(arrays: SlideArrays, settings: EvaluationSettings, calibration: list[_Calibration]) -> None:
    s, u, truth = arrays.segmentation, arrays.uncertainty, arrays.truth
    for (lower, upper), store in zip(settings.ranges, calibration, strict=True):
        regions = find_regions(
            s, u, lower=lower, upper=upper, how=settings.aggregate, truth=truth, fn_fraction=settings.fn_fraction
        )
        assert regions.is_false_negative is not None  # truth was given
        store.npr_scores.append(regions.scores)
        store.npr_is_fn.append(regions.is_false_negative)
        candidates = candidate_pixels(s, lower=lower, upper=upper)
        store.pixel_u.append(np.asarray(u[candidates]))
        store.pixel_is_fn.append(np.asarray(truth[candidates]))


def _test_slide(
    arrays: SlideArrays,
    slide: SlideInput,
    settings: EvaluationSettings,
    thresholds: list[tuple[float | None, float | None]],
    domain: _DomainStats,
) -> None:
    s, u, truth = arrays.segmentation, arrays.uncertainty, arrays.truth
    domain.ids.append(slide.id)
    domain.has_tumor.append(bool(truth.any()))
    domain.max_s.append(float(s.max()) if s.size else 0.0)
    domain.froc.append(slide_froc(s, truth, mpp=slide.mpp, downsample=slide.downsample))
    for (lower, upper), (tau, tau_b), stats in zip(settings.ranges, thresholds, domain.ranges, strict=True):
        regions = find_regions(
            s, u, lower=lower, upper=upper, how=settings.aggregate, truth=truth, fn_fraction=settings.fn_fraction
        )
        is_fn = regions.is_false_negative
        assert is_fn is not None  # truth was given
        flagged = flag(regions.scores, tau)
        stats.npr_count += regions.n_regions
        stats.fn_npr_count += int(is_fn.sum())
        stats.npr_scores.append(regions.scores)
        stats.npr_is_fn.append(is_fn)

        original = s >= upper
        stats.original.add(confusion_counts(original, truth))
        candidates = candidate_pixels(s, lower=lower, upper=upper)
        fn_counts, tn_counts = _pixel_histograms(np.asarray(u[candidates]), np.asarray(truth[candidates]))
        stats.pixel_fn += fn_counts
        stats.pixel_tn += tn_counts

        sua_mask = sua_refine(s, regions.labels, flagged, upper=upper)
        stats.sua.detection.add(confusion_counts(flagged, is_fn))
        _refinement(stats.sua, sua_mask, original, truth)

        base_mask = baseline_refine(s, u, lower=lower, upper=upper, threshold=tau_b)
        # The baseline flags exactly the candidate pixels it turns positive.
        stats.baseline.detection.add(confusion_counts(base_mask & ~original, candidates & truth))
        _refinement(stats.baseline, base_mask, original, truth)


def _refinement(method: _MethodStats, refined: np.ndarray, original: np.ndarray, truth: np.ndarray) -> None:
    method.pixels.add(confusion_counts(refined, truth))
    turned = refined & ~original
    method.turned.append(int(np.count_nonzero(turned)))
    method.turned_tumor.append(int(np.count_nonzero(turned & truth)))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DomainFigures:
    """What the figures of one cohort part (validation or a test domain) need.

    Attributes
    ----------
    npr_scores, npr_is_fn : (N,) float64 and bool
        Every NPR's score and whether it is a true FN.
    pixel_fn, pixel_tn : (len(PIXEL_BINS) - 1,) int64
        Candidate-pixel uncertainty histograms over :data:`PIXEL_BINS`.
    fncr_samples : dict method -> (B,) float64
        Bootstrap FNCR of "sua" and "baseline" (NaN where undefined); empty
        for the validation split.
    """

    npr_scores: np.ndarray
    npr_is_fn: np.ndarray
    pixel_fn: np.ndarray
    pixel_tn: np.ndarray
    fncr_samples: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class RangeFigures:
    """Figure data of one candidate range, by cohort part ("validation" first)."""

    lower: float
    upper: float
    sua_threshold: float | None
    baseline_threshold: float | None
    parts: dict[str, DomainFigures]


@dataclass(frozen=True)
class Evaluation:
    """The report (JSON-ready) and what the tables and figures need beyond it.

    Attributes
    ----------
    report
        The ``report.json`` structure (see :func:`evaluate_cohort`).
    ranges
        Figure data per range.
    slide_counts
        Per test domain: ``{"slides": n, "tumor_free": m}``.
    """

    report: dict[str, Any]
    ranges: list[RangeFigures]
    slide_counts: dict[str, dict[str, int]]


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _summary(value: float | None, samples: npt.ArrayLike) -> dict[str, Any]:
    """The report's metric block ``{"value", "mean", "std", "median", "ci95": [lo, hi]}``."""
    summary = summarise(_number(value), samples)
    return {
        "value": summary.value,
        "mean": summary.mean,
        "std": summary.std,
        "median": summary.median,
        "ci95": [summary.ci95[0], summary.ci95[1]],
    }


def _mean(values: np.ndarray, where: np.ndarray | None = None) -> float | None:
    chosen = values if where is None else values[where]
    return float(chosen.mean()) if chosen.size else None


def _dice_blocks(counts: np.ndarray, has_tumor: np.ndarray, indices: np.ndarray) -> dict[str, Any]:
    per_slide = dice_from_counts(counts[:, 0], counts[:, 1], counts[:, 2])
    return {
        "dice": _summary(_mean(per_slide), bootstrap_mean(per_slide, indices)),
        "dice_tumor_slides": _summary(_mean(per_slide, has_tumor), bootstrap_mean(per_slide, indices, where=has_tumor)),
    }


def _method_block(
    method: _MethodStats, has_tumor: np.ndarray, indices: np.ndarray, beta: float
) -> tuple[dict[str, Any], np.ndarray]:
    detection = method.detection.array()
    turned = np.asarray(method.turned, dtype=np.float64)
    turned_tumor = np.asarray(method.turned_tumor, dtype=np.float64)
    totals = detection.sum(axis=0)
    fncr_samples = bootstrap_fn_conversion_rate(turned_tumor, turned, indices)
    dice = _dice_blocks(method.pixels.array(), has_tumor, indices)
    block = {
        "f_beta": _summary(
            f_beta(totals[0], totals[1], totals[2], beta=beta),
            bootstrap_f_beta(detection[:, 0], detection[:, 1], detection[:, 2], indices, beta=beta),
        ),
        "dice": dice["dice"],
        "dice_tumor_slides": dice["dice_tumor_slides"],
        "fncr": _summary(fn_conversion_rate(turned_tumor, turned), fncr_samples),
        "negative_slides_changed": int(np.count_nonzero((turned > 0) & ~has_tumor)),
    }
    return block, fncr_samples


def _concat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)


# --------------------------------------------------------------------------- the evaluation


def _calibrate(
    calibration: Sequence[_Calibration], *, beta: float
) -> tuple[list[tuple[float | None, float | None]], list[DomainFigures]]:
    """Per range: the (SUA, baseline) thresholds calibrated on the validation slides, and their figures' data."""
    thresholds: list[tuple[float | None, float | None]] = []
    validation_parts: list[DomainFigures] = []
    for store in calibration:
        scores, is_fn = _concat(store.npr_scores, np.float64), _concat(store.npr_is_fn, bool)
        pixel_u, pixel_fn = _concat(store.pixel_u, np.float64), _concat(store.pixel_is_fn, bool)
        thresholds.append(
            (calibrate_threshold(scores, is_fn, beta=beta), calibrate_threshold(pixel_u, pixel_fn, beta=beta))
        )
        hist_fn, hist_tn = _pixel_histograms(pixel_u, pixel_fn)
        validation_parts.append(DomainFigures(scores, is_fn, hist_fn, hist_tn))
    return thresholds, validation_parts


def run_evaluation(
    slides: Sequence[SlideInput], settings: EvaluationSettings, *, progress: Progress | None = None
) -> Evaluation:
    """Evaluate a cohort; the report plus the data of the figures.

    See :func:`evaluate_cohort` for the report; raises :class:`InputError`
    (a ``ValueError``) naming the slide and the problem on bad input.
    """
    settings.check()
    check_slides(slides)
    notify: Progress = progress or (lambda stage, done, total: None)
    validation = [slide for slide in slides if slide.split == "validation"]
    tests = [slide for slide in slides if slide.split == "test"]

    calibration = [_Calibration() for _ in settings.ranges]
    for done, slide in enumerate(validation, start=1):
        _validation_slide(load_slide(slide), settings, calibration)
        notify("validation", done, len(validation))

    thresholds, validation_parts = _calibrate(calibration, beta=settings.beta)
    del calibration  # the validation pixels are the largest thing held

    domains: dict[str, _DomainStats] = {}
    for done, slide in enumerate(tests, start=1):
        if slide.domain not in domains:
            domains[slide.domain] = _DomainStats(ranges=[_DomainRangeStats() for _ in settings.ranges])
        _test_slide(load_slide(slide), slide, settings, thresholds, domains[slide.domain])
        notify("test", done, len(tests))

    report_ranges: list[dict[str, Any]] = []
    figures = [
        RangeFigures(lo, up, tau, tau_b, {"validation": part})
        for (lo, up), (tau, tau_b), part in zip(settings.ranges, thresholds, validation_parts, strict=True)
    ]
    for (lower, upper), (tau, tau_b) in zip(settings.ranges, thresholds, strict=True):
        report_ranges.append(
            {
                "lower": float(lower),
                "upper": float(upper),
                "sua_threshold": tau,
                "baseline_threshold": tau_b,
                "domains": {},
            }
        )
    for done, (name, domain) in enumerate(domains.items(), start=1):
        indices = bootstrap_indices(len(domain.ids), resamples=settings.bootstrap, seed=settings.seed)
        has_tumor = np.asarray(domain.has_tumor, dtype=bool)
        max_s = np.asarray(domain.max_s, dtype=np.float64)
        froc = _summary(froc_score(domain.froc), bootstrap_froc(domain.froc, indices))
        auc = _summary(roc_auc(max_s, has_tumor), bootstrap_roc_auc(max_s, has_tumor, indices))
        for k, stats in enumerate(domain.ranges):
            sua_block, sua_fncr = _method_block(stats.sua, has_tumor, indices, settings.beta)
            base_block, base_fncr = _method_block(stats.baseline, has_tumor, indices, settings.beta)
            original = _dice_blocks(stats.original.array(), has_tumor, indices)
            report_ranges[k]["domains"][name] = {
                "npr_count": stats.npr_count,
                "fn_npr_count": stats.fn_npr_count,
                "sua": sua_block,
                "baseline": base_block,
                "original": {
                    "dice": original["dice"],
                    "dice_tumor_slides": original["dice_tumor_slides"],
                    "froc": froc,
                    "roc_auc": auc,
                },
            }
            figures[k].parts[name] = DomainFigures(
                _concat(stats.npr_scores, np.float64),
                _concat(stats.npr_is_fn, bool),
                stats.pixel_fn,
                stats.pixel_tn,
                {"sua": sua_fncr, "baseline": base_fncr},
            )
        notify("bootstrap", done, len(domains))

    report = {"settings": settings.to_dict(), "ranges": report_ranges}
    counts = {
        name: {"slides": len(d.ids), "tumor_free": int(np.count_nonzero(~np.asarray(d.has_tumor, dtype=bool)))}
        for name, d in domains.items()
    }
    return Evaluation(report=report, ranges=figures, slide_counts=counts)


def evaluate_cohort(
    slides: Sequence[SlideInput], settings: EvaluationSettings, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Calibrate on the validation slides and evaluate every test domain.

    Parameters
    ----------
    slides
        The cohort; at least one validation slide.  Test slides are grouped
        by ``domain``.
    settings
        Ranges, aggregate, FN fraction, beta, bootstrap size and seed.
    progress
        Optional ``progress(stage, done, total)`` callback; stages are
        "validation", "test" and "bootstrap".

    Returns
    -------
    dict
        JSON-ready::

            {"settings": {...},
             "ranges": [{"lower", "upper", "sua_threshold", "baseline_threshold",
                         "domains": {DOMAIN: {
                             "npr_count", "fn_npr_count",
                             "sua": {"f_beta": M, "dice": M, "dice_tumor_slides": M,
                                     "fncr": M, "negative_slides_changed": int},
                             "baseline": {same},
                             "original": {"dice": M, "dice_tumor_slides": M,
                                          "froc": M, "roc_auc": M}}}}]}

        where M = ``{"value", "mean", "std", "median", "ci95": [lo, hi]}``
        (value on the whole domain, the rest over the bootstrap resamples in
        which the metric is defined); thresholds and undefined metrics are
        None.

    Raises
    ------
    ValueError
        (:class:`analysis.io.InputError`) naming the slide and the problem:
        NaN or out-of-range values, shapes that differ, no validation slide,
        a bad setting.
    """
    return run_evaluation(slides, settings, progress=progress).report
