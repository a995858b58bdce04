"""Calibration and evaluation metrics (SPEC §6, paper §5).

- F-beta (beta = 0.5) of flagged NPRs or pixels, pooled over a cohort, and the
  exact threshold calibration that maximises it;
- Dice, the false negative conversion rate (FNCR) and the count of tumor-free
  slides changed by refinement;
- the Camelyon16 FROC, reproducing the official evaluation script
  (``Evaluation_FROC.py``: evaluation mask, ITC list, lesion probabilities
  held as float32, ``computeFROC``), scored as the script does not but MONAI's
  ``compute_froc_score`` does (the mean of ``np.interp`` at 1/4 ... 8 false
  positives per slide), and the slide-level ROC-AUC;
- the slide bootstrap: seeded resamples, vectorised metric samples from
  per-slide sufficient statistics (no Python loop over resamples for the
  count-based metrics) and their summaries.

Per-slide *sufficient statistics* are small numbers (tp, fp, fn counts, pixel
counts, FROC hit lists) from which a cohort metric is recomputed for any
multiset of slides: a bootstrap resample is a ``(n_slides,)`` vector of
multiplicities ``counts[b]`` and a pooled count is ``counts[b] @ per_slide``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.measure import label as _skimage_label
from skimage.measure import regionprops

from analysis import defaults
from analysis.sua import _as_segmentation, parse_aggregate

__all__ = [
    "AggregateChoice",
    "SlideFROC",
    "Summary",
    "bootstrap_count",
    "bootstrap_f_beta",
    "bootstrap_fn_conversion_rate",
    "bootstrap_froc",
    "bootstrap_indices",
    "bootstrap_mean",
    "bootstrap_roc_auc",
    "calibrate_threshold",
    "choose_aggregate",
    "confusion_counts",
    "detections",
    "dice",
    "dice_from_counts",
    "f_beta",
    "f_beta_array",
    "fn_conversion_rate",
    "froc_curve",
    "froc_score",
    "isolated_tumor_cells",
    "lesion_labels",
    "resample_counts",
    "roc_auc",
    "slide_froc",
    "summarise",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _counts_array(values: npt.ArrayLike, what: str) -> FloatArray:
    """Non-negative finite counts as float64 (exact for integers < 2**53)."""
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numbers, not {a.dtype}")
    a = a.astype(np.float64)
    if a.size:
        if np.isnan(a).any():
            raise ValueError(f"{what} contains NaN")
        if np.isinf(a).any():
            raise ValueError(f"{what} contains infinite values")
        if a.min() < 0:
            raise ValueError(f"{what} must be >= 0")
    return a


def _check_beta(beta: float) -> float:
    b = float(beta)
    if not (b > 0 and math.isfinite(b)):
        raise ValueError(f"beta ({beta}) must be a positive number")
    return b


def _finite_scores(scores: npt.ArrayLike, what: str = "scores") -> FloatArray:
    s = np.asarray(scores)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numbers, not {s.dtype}")
    s = s.astype(np.float64).reshape(-1)
    if s.size and np.isnan(s).any():
        raise ValueError(f"{what} contains NaN")
    return s


def _bool_vector(values: npt.ArrayLike, what: str) -> BoolArray:
    v = np.asarray(values)
    if v.dtype != np.bool_:
        if v.dtype.kind not in "iuf" or (v.size and not np.isin(v, (0, 1)).all()):
            raise ValueError(f"{what} must be boolean (or 0/1)")
        v = v != 0
    return v.reshape(-1)


def _positive(value: float, what: str) -> float:
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{what} ({value}) must be a positive number")
    return v


# --------------------------------------------------------------------------
# F-beta and calibration
# --------------------------------------------------------------------------


def f_beta_array(
    tp: npt.ArrayLike,
    fp: npt.ArrayLike,
    fn: npt.ArrayLike,
    *,
    beta: float = defaults.BETA,
) -> FloatArray:
    """F-beta of many (tp, fp, fn) triples at once.

    ``(1 + b^2) P R / (b^2 P + R)`` with P (or R) = 0 when its denominator is
    0 and F = 0 when P + R = 0; computed as the algebraically identical
    ``(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)`` (0 when tp = 0), whose
    numerator and denominator are exact for beta = 0.5, so that equal F
    values compare equal (calibration breaks ties on them).

    Parameters
    ----------
    tp, fp, fn : array_like of non-negative numbers, broadcastable
        True positives, false positives, false negatives.
    beta : float, optional
        0.5 (the paper's) weighs precision more than recall.

    Returns
    -------
    ndarray of float64, the broadcast shape

    Examples
    --------
    >>> f_beta_array([3, 0], [1, 0], [2, 5])
    array([0.71428571, 0.        ])
    """
    b2 = _check_beta(beta) ** 2
    tp_ = _counts_array(tp, "tp")
    fp_ = _counts_array(fp, "fp")
    fn_ = _counts_array(fn, "fn")
    numerator = (1.0 + b2) * tp_
    denominator = numerator + b2 * fn_ + fp_
    tp_b, denominator = np.broadcast_arrays(tp_, denominator)
    numerator = np.broadcast_to(numerator, denominator.shape)
    out = np.zeros(denominator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=tp_b > 0)
    return out


def f_beta(tp: float, fp: float, fn: float, *, beta: float = defaults.BETA) -> float:
    """F-beta score from pooled counts (SPEC §6).

    Parameters
    ----------
    tp, fp, fn : int (or float) >= 0
        Pooled true positives, false positives, false negatives.
    beta : float, optional
        Default 0.5.

    Returns
    -------
    float
        In [0, 1]; 0 when there is no true positive.

    Examples
    --------
    >>> round(f_beta(3, 1, 2), 6)   # P = 0.75, R = 0.6
    0.714286
    >>> f_beta(0, 0, 0)
    0.0
    """
    for name, value in (("tp", tp), ("fp", fp), ("fn", fn)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a single number; use f_beta_array for arrays")
    return float(f_beta_array(tp, fp, fn, beta=beta))


def confusion_counts(flagged: npt.ArrayLike, actual: npt.ArrayLike) -> tuple[int, int, int]:
    """(tp, fp, fn) of flagged items against the truth.

    Parameters
    ----------
    flagged, actual : ndarray of bool, same shape

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> confusion_counts([True, True, False], [True, False, True])
    (1, 1, 1)
    """
    f = np.asarray(flagged, dtype=bool)
    a = np.asarray(actual, dtype=bool)
    if f.shape != a.shape:
        raise ValueError(f"flagged shape {f.shape} differs from actual shape {a.shape}")
    tp = int(np.count_nonzero(f & a))
    return tp, int(np.count_nonzero(f)) - tp, int(np.count_nonzero(a)) - tp


def calibrate_threshold(
    scores: npt.ArrayLike,
    is_positive: npt.ArrayLike,
    *,
    beta: float = defaults.BETA,
) -> float | None:
    """Threshold with the highest F-beta on a validation set (SPEC §6).

    The candidates are every distinct score (flagged = ``score >= t``) plus
    "none" (+inf: flag nothing, F = 0).  Searched exactly with one sort; ties
    go to the higher threshold, so "none" wins whenever no threshold beats
    F = 0.

    Parameters
    ----------
    scores : (N,) array_like of float
        Validation scores (NPR scores, or candidate-pixel uncertainties for
        the baseline), pooled over the cohort; no NaN.
    is_positive : (N,) array_like of bool
        Whether each item is a true false negative.
    beta : float, optional
        Default 0.5.

    Returns
    -------
    float or None
        The chosen threshold (one of ``scores``), or None to flag nothing
        (also for N = 0 or no positive).

    Examples
    --------
    >>> calibrate_threshold([0.1, 0.4, 0.35, 0.8], [False, True, False, True])
    0.4
    >>> calibrate_threshold([0.1, 0.2], [False, False]) is None
    True
    """
    s = _finite_scores(scores)
    positive = _bool_vector(is_positive, "is_positive")
    if positive.shape != s.shape:
        raise ValueError(f"is_positive has {positive.size} entries but scores has {s.size}")
    b = _check_beta(beta)
    if s.size == 0 or not positive.any():
        return None
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    pos_sorted = positive[order]
    # First index of every distinct score, ascending; flagging ``s >= v``
    # flags the suffix from there.
    starts = np.flatnonzero(np.concatenate(([True], s_sorted[1:] != s_sorted[:-1])))
    suffix_pos = np.cumsum(pos_sorted[::-1])[::-1]
    n_total = s.size
    n_pos = int(suffix_pos[0])
    tp = suffix_pos[starts]
    fp = (n_total - starts) - tp
    fn = n_pos - tp
    f = f_beta_array(tp, fp, fn, beta=b)
    best = float(f.max())
    if best <= 0.0:
        return None
    # Highest threshold among the best: last maximum in ascending order.
    chosen = int(np.flatnonzero(f == best)[-1])
    return float(s_sorted[starts[chosen]])


@dataclass(frozen=True)
class AggregateChoice:
    """Which NPR aggregate a run uses under ``aggregation = "auto"``, and why.

    Attributes
    ----------
    aggregate : str
        The chosen aggregate (``"mean"`` or ``"pNN"``).
    threshold : float or None
        Its calibrated threshold (None: flag nothing).
    f_beta : dict of str to float
        Calibrated validation F-beta of every candidate aggregate.
    thresholds : dict of str to float or None
        Calibrated threshold of every candidate aggregate.
    reason : str
        One sentence for the run's record.
    """

    aggregate: str
    threshold: float | None
    f_beta: dict[str, float]
    thresholds: dict[str, float | None]
    reason: str


def choose_aggregate(
    scores: Mapping[str, npt.ArrayLike],
    is_positive: npt.ArrayLike,
    *,
    beta: float = defaults.BETA,
    prefer: str = defaults.AGGREGATE,
) -> AggregateChoice:
    """Pick the NPR aggregate with the better calibrated F-beta, as the paper did.

    Each aggregate's validation scores are calibrated on their own
    (:func:`calibrate_threshold`); the one whose threshold reaches the higher
    F-beta wins; ties go to ``prefer`` (the mean, the paper's choice), then to
    the order of ``scores``.

    Parameters
    ----------
    scores : mapping of str to (N,) array_like of float
        Validation NPR scores per aggregate, pooled over the cohort, the same
        N regions in the same order for every aggregate (e.g.
        ``{"mean": ..., "p90": ...}``).
    is_positive : (N,) array_like of bool
        Whether each NPR is a true false negative.
    beta : float, optional
        Default 0.5.
    prefer : str, optional
        The aggregate that wins ties; default ``"mean"``.

    Returns
    -------
    AggregateChoice

    Examples
    --------
    >>> fn = [False, True, False, True]
    >>> choice = choose_aggregate({"mean": [0.1, 0.4, 0.45, 0.8], "p90": [0.1, 0.5, 0.2, 0.9]}, fn)
    >>> choice.aggregate, choice.threshold, choice.f_beta
    ('p90', 0.5, {'mean': 0.8333333333333334, 'p90': 1.0})
    """
    if isinstance(scores, str) or not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must map aggregate names (such as 'mean', 'p90') to score arrays")
    positive = _bool_vector(is_positive, "is_positive")
    names = list(scores)
    for name in names:
        parse_aggregate(name)
    if prefer in names:
        names.remove(prefer)
        names.insert(0, prefer)
    f_values: dict[str, float] = {}
    thresholds: dict[str, float | None] = {}
    for name in names:
        s = _finite_scores(scores[name], f"scores[{name!r}]")
        if s.shape != positive.shape:
            raise ValueError(f"scores[{name!r}] has {s.size} entries but is_positive has {positive.size}")
        t = calibrate_threshold(s, positive, beta=beta)
        thresholds[name] = t
        f_values[name] = 0.0 if t is None else f_beta(*confusion_counts(s >= t, positive), beta=beta)
    best = max(f_values.values())
    chosen = next(name for name in names if f_values[name] == best)  # first = preferred on ties
    label = f"F{beta:g}"
    others = [name for name in names if name != chosen]
    if not others:
        reason = f"{chosen} is the only candidate (calibrated {label} {best:.4f})"
    elif all(f_values[name] == best for name in others):
        reason = f"{chosen}: calibrated {label} {best:.4f} ties with {', '.join(others)}; ties go to {chosen}"
    else:
        beaten = ", ".join(f"{name} {f_values[name]:.4f}" for name in others)
        reason = f"{chosen}: calibrated {label} {best:.4f} on {positive.size} validation NPRs beats {beaten}"
    return AggregateChoice(
        aggregate=chosen,
        threshold=thresholds[chosen],
        f_beta={name: f_values[name] for name in scores},
        thresholds={name: thresholds[name] for name in scores},
        reason=reason,
    )


# --------------------------------------------------------------------------
# Dice and FNCR
# --------------------------------------------------------------------------


def dice_from_counts(tp: npt.ArrayLike, fp: npt.ArrayLike, fn: npt.ArrayLike) -> FloatArray:
    """Dice ``2tp / (2tp + fp + fn)`` from counts; 1 where all three are 0.

    Examples
    --------
    >>> dice_from_counts([2, 0], [1, 0], [1, 0])
    array([0.66666667, 1.        ])
    """
    tp_ = _counts_array(tp, "tp")
    fp_ = _counts_array(fp, "fp")
    fn_ = _counts_array(fn, "fn")
    denominator = 2.0 * tp_ + fp_ + fn_
    numerator = np.broadcast_to(2.0 * tp_, denominator.shape)
    out = np.ones(denominator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def dice(prediction: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Dice coefficient of a predicted mask against the truth.

    Parameters
    ----------
    prediction, truth : ndarray of bool, same shape

    Returns
    -------
    float
        ``2|P & T| / (|P| + |T|)``; 1.0 when both are empty.

    Examples
    --------
    >>> dice(np.array([True, True, False]), np.array([True, False, False]))
    0.6666666666666666
    >>> dice(np.zeros(3, bool), np.zeros(3, bool))
    1.0
    """
    p = np.asarray(prediction)
    t = np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    p = p.astype(bool, copy=False)
    t = t.astype(bool, copy=False)
    n_p = int(np.count_nonzero(p))
    n_t = int(np.count_nonzero(t))
    if n_p + n_t == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & t)) / (n_p + n_t)


def fn_conversion_rate(turned_positive_tumor: npt.ArrayLike, turned_positive: npt.ArrayLike) -> float | None:
    """False negative conversion rate, pooled over slides (SPEC §6).

    Parameters
    ----------
    turned_positive_tumor : int or (n,) array_like of int
        Pixels that refinement turned positive and that are tumor, per slide.
    turned_positive : int or (n,) array_like of int
        All pixels that refinement turned positive, per slide.

    Returns
    -------
    float or None
        ``sum(turned_positive_tumor) / sum(turned_positive)``; None when
        nothing was turned positive.

    Examples
    --------
    >>> fn_conversion_rate([9, 0], [10, 2])
    0.75
    >>> fn_conversion_rate(0, 0) is None
    True
    """
    tumor = _counts_array(turned_positive_tumor, "turned_positive_tumor")
    turned = _counts_array(turned_positive, "turned_positive")
    if tumor.shape != turned.shape:
        raise ValueError(f"turned_positive_tumor shape {tumor.shape} differs from turned_positive shape {turned.shape}")
    if (tumor > turned).any():
        raise ValueError("turned_positive_tumor cannot exceed turned_positive")
    denominator = float(turned.sum())
    if denominator == 0:
        return None
    return float(tumor.sum()) / denominator


# --------------------------------------------------------------------------
# FROC (Camelyon16)
# --------------------------------------------------------------------------


def _as_truth(truth: npt.ArrayLike) -> BoolArray:
    t = np.asarray(truth)
    if t.ndim != 2:
        raise ValueError(f"truth must be a 2-D mask; got shape {t.shape}")
    if t.dtype != np.bool_:
        if t.dtype.kind not in "biuf":
            raise ValueError(f"truth must be a boolean mask, not {t.dtype}")
        t = t != 0
    return t


def lesion_labels(
    truth: npt.ArrayLike,
    *,
    mpp: float,
    downsample: float,
    dilation_um: float = defaults.FROC_DILATION_UM,
) -> npt.NDArray[np.int32]:
    """The Camelyon16 evaluation mask: labelled, dilated tumor lesions.

    As the official script: Euclidean distance of every pixel to the nearest
    tumor pixel, kept where ``< dilation_um / (mpp * downsample * 2)`` pixels,
    holes filled, 8-connected components labelled 1..L.

    Parameters
    ----------
    truth : (H, W) ndarray of bool
        Tumor annotation on the analysis grid.
    mpp : float
        Micrometres per level-0 pixel.
    downsample : float
        Level-0 pixels per analysis pixel (``d``).
    dilation_um : float, optional
        75 um in the official script.

    Returns
    -------
    (H, W) ndarray of int32

    Examples
    --------
    >>> truth = np.zeros((5, 7), bool); truth[2, 1] = truth[2, 4] = True
    >>> lesion_labels(truth, mpp=1.0, downsample=25.0)   # threshold 1.5 px
    array([[0, 0, 0, 0, 0, 0, 0],
           [1, 1, 1, 1, 1, 1, 0],
           [1, 1, 1, 1, 1, 1, 0],
           [1, 1, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0, 0]], dtype=int32)
    """
    t = _as_truth(truth)
    m = _positive(mpp, "mpp")
    d = _positive(downsample, "downsample")
    dil = float(dilation_um)
    if not (dil >= 0 and math.isfinite(dil)):
        raise ValueError(f"dilation_um ({dilation_um}) must be >= 0")
    if not t.any():
        # The distance transform of an image without background is undefined.
        return np.zeros(t.shape, dtype=np.int32)
    threshold = dil / (m * d * 2)
    distance = ndi.distance_transform_edt(~t)
    filled = ndi.binary_fill_holes(distance < threshold)
    labels = _skimage_label(filled, connectivity=2)  # type: ignore[no-untyped-call]
    return np.asarray(labels, dtype=np.int32)


def isolated_tumor_cells(
    labels: npt.ArrayLike,
    *,
    mpp: float,
    downsample: float,
    itc_um: float = defaults.ITC_MAJOR_AXIS_UM,
) -> set[int]:
    """Labels of isolated-tumor-cell (ITC) regions of an evaluation mask.

    A region is ITC when the major axis of its moment ellipse
    (``regionprops(...).axis_major_length``) is shorter than
    ``itc_um / (mpp * downsample)`` pixels.

    Examples
    --------
    >>> labels = np.zeros((20, 20), np.int32); labels[1:3, 1:3] = 1; labels[5:19, 5:7] = 2
    >>> isolated_tumor_cells(labels, mpp=1.0, downsample=55.0)   # 5 px
    {1}
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, not {lab.dtype}")
    m = _positive(mpp, "mpp")
    d = _positive(downsample, "downsample")
    threshold = float(itc_um) / (m * d)
    return {
        int(region.label)
        for region in regionprops(lab)  # type: ignore[no-untyped-call]
        if region.axis_major_length < threshold
    }


def detections(segmentation: npt.ArrayLike, *, cutoff: float = defaults.DETECTION_CUTOFF) -> FloatArray:
    """Detections of a segmentation heatmap for FROC.

    One per 8-connected component of ``s >= cutoff``, placed at its maximum
    (the first in row-major order on ties) with that maximum as probability.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
    cutoff : float, optional
        0.5 by default.

    Returns
    -------
    (M, 3) ndarray of float64
        Rows ``(probability, row, col)``, in the order of the components'
        labels (raster order of their first pixel).

    Examples
    --------
    >>> s = np.array([[0.6, 0.0, 0.0],
    ...               [0.0, 0.9, 0.0],
    ...               [0.0, 0.0, 0.0],
    ...               [0.7, 0.7, 0.2]])
    >>> detections(s)
    array([[0.9, 1. , 1. ],
           [0.7, 3. , 0. ]])
    """
    s = _as_segmentation(segmentation)
    c = float(cutoff)
    if math.isnan(c):
        raise ValueError("cutoff is NaN")
    components = _skimage_label(s >= c, connectivity=2)  # type: ignore[no-untyped-call]
    n = int(components.max()) if components.size else 0
    if n == 0:
        return np.zeros((0, 3), dtype=np.float64)
    flat = np.flatnonzero(components)  # raster order
    lab = components.reshape(-1)[flat]
    prob = s.reshape(-1)[flat].astype(np.float64)
    maxima = np.full(n + 1, -np.inf)
    np.maximum.at(maxima, lab, prob)
    at_max = prob == maxima[lab]
    # np.unique's return_index is the first occurrence (stable sort), i.e.
    # the first maximum in raster order of each component.
    _, first = np.unique(lab[at_max], return_index=True)
    where = flat[at_max][first]
    rows, cols = np.unravel_index(where, s.shape)
    return np.column_stack((maxima[1:], rows, cols)).astype(np.float64)


@dataclass(frozen=True)
class SlideFROC:
    """Per-slide sufficient statistics of the Camelyon16 FROC.

    Attributes
    ----------
    fp_probabilities : (F,) float64
        Probability of every false-positive detection (hitting no lesion; on
        a tumor-free slide, every detection).
    lesion_probabilities : (L,) float64
        For each countable (non-ITC) lesion, the highest probability of the
        detections that hit it, 0.0 when none did (as ``TP_probs`` of the
        official script).  Any dtype; the FROC curve rounds them to float32,
        as the script's ``TP_probs`` array holds them.
    n_itc : int
        Number of ITC regions (their hits are ignored; the official script
        keeps a 0 probability for each, which matters for its threshold list).
    """

    fp_probabilities: FloatArray
    lesion_probabilities: FloatArray
    n_itc: int = 0

    @property
    def n_lesions(self) -> int:
        """Countable lesions (the sensitivity's denominator)."""
        return int(self.lesion_probabilities.shape[0])


def slide_froc(
    segmentation: npt.ArrayLike,
    truth: npt.ArrayLike,
    *,
    mpp: float,
    downsample: float,
    cutoff: float = defaults.DETECTION_CUTOFF,
    dilation_um: float = defaults.FROC_DILATION_UM,
    itc_um: float = defaults.ITC_MAJOR_AXIS_UM,
    points: npt.ArrayLike | None = None,
) -> SlideFROC:
    """FROC statistics of one slide (``compute_FP_TP_Probs`` of the official script).

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
        Segmentation heatmap (source of the detections unless ``points``).
    truth : (H, W) ndarray of bool
        Tumor annotation on the same grid; all False for a tumor-free slide.
    mpp, downsample : float
        Micrometres per level-0 pixel; level-0 pixels per heatmap pixel.
    cutoff, dilation_um, itc_um : float, optional
        Detection cutoff, lesion dilation and ITC size (SPEC §6 defaults).
    points : (M, 3) array_like, optional
        Detections ``(probability, row, col)`` on the heatmap grid to use
        instead of :func:`detections`.

    Returns
    -------
    SlideFROC

    Examples
    --------
    >>> s = np.zeros((40, 40)); s[5:25, 5:25] = 0.9; s[35, 35] = 0.6
    >>> truth = np.zeros((40, 40), bool); truth[5:25, 5:25] = True
    >>> r = slide_froc(s, truth, mpp=10.0, downsample=1.0)
    >>> r.fp_probabilities, r.lesion_probabilities
    (array([0.6]), array([0.9]))
    """
    s = _as_segmentation(segmentation)
    t = _as_truth(truth)
    if t.shape != s.shape:
        raise ValueError(f"truth shape {t.shape} differs from segmentation shape {s.shape}")
    if points is None:
        found = detections(s, cutoff=cutoff)
    else:
        found = np.asarray(points, dtype=np.float64)
        if found.ndim != 2 or found.shape[1] != 3:
            raise ValueError(f"points must have shape (M, 3); got {found.shape}")
        if found.size and np.isnan(found).any():
            raise ValueError("points contains NaN")
    probs = found[:, 0].copy()
    rows = found[:, 1].astype(np.int64)
    cols = found[:, 2].astype(np.int64)
    if found.shape[0] and (rows.min() < 0 or cols.min() < 0 or rows.max() >= s.shape[0] or cols.max() >= s.shape[1]):
        raise ValueError("a detection lies outside the heatmap")

    labels = lesion_labels(t, mpp=mpp, downsample=downsample, dilation_um=dilation_um)
    n_labels = int(labels.max()) if labels.size else 0
    if n_labels == 0:
        return SlideFROC(fp_probabilities=probs, lesion_probabilities=np.zeros(0), n_itc=0)
    itc = isolated_tumor_cells(labels, mpp=mpp, downsample=downsample, itc_um=itc_um)
    hit = labels[rows, cols]
    is_itc = np.zeros(n_labels + 1, dtype=bool)
    is_itc[list(itc)] = True
    tp_probs = np.zeros(n_labels + 1, dtype=np.float64)
    counted = (hit > 0) & ~is_itc[hit]
    # Several hits on one lesion count once, with the highest probability.
    np.maximum.at(tp_probs, hit[counted], probs[counted])
    countable = np.flatnonzero(~is_itc[1:]) + 1
    return SlideFROC(
        fp_probabilities=probs[hit == 0],
        lesion_probabilities=tp_probs[countable],
        n_itc=len(itc),
    )


@dataclass(frozen=True)
class _PooledFROC:
    """FROC statistics of a cohort, pooled once for any slide weighting."""

    n_slides: int
    fp_probs: FloatArray  # ascending
    fp_slide: IntArray
    tp_probs: FloatArray  # float32 values, ascending (0.0 = missed lesion)
    tp_slide: IntArray
    n_lesions: FloatArray  # per slide
    has_itc: BoolArray  # per slide

    @classmethod
    def of(cls, slides: Sequence[SlideFROC]) -> _PooledFROC:
        def pool(arrays: list[FloatArray]) -> tuple[FloatArray, IntArray]:
            if not arrays:
                return np.zeros(0), np.zeros(0, dtype=np.int64)
            probs = np.concatenate(arrays).astype(np.float64)
            owner = np.repeat(np.arange(len(arrays)), [a.size for a in arrays])
            order = np.argsort(probs, kind="stable")
            return probs[order], owner[order].astype(np.int64)

        for slide in slides:
            if not isinstance(slide, SlideFROC):
                raise ValueError(f"expected SlideFROC entries, got {type(slide).__name__}")
        fp_probs, fp_slide = pool([np.asarray(s.fp_probabilities).reshape(-1) for s in slides])
        tp_probs, tp_slide = pool([np.asarray(s.lesion_probabilities).reshape(-1) for s in slides])
        for name, probs in (("fp_probabilities", fp_probs), ("lesion_probabilities", tp_probs)):
            if probs.size and np.isnan(probs).any():
                raise ValueError(f"{name} contains NaN")
        # The official script holds lesion probabilities in a float32 array
        # (``TP_probs``) and false positives as Python floats: a lesion found
        # with 0.1 counts as 0.10000000149, no longer tied with a false
        # positive at 0.1.  Rounding is monotone, so the order stays sorted.
        tp_probs = _as_float32(tp_probs)
        return cls(
            n_slides=len(slides),
            fp_probs=fp_probs,
            fp_slide=fp_slide,
            tp_probs=tp_probs,
            tp_slide=tp_slide,
            n_lesions=np.array([s.n_lesions for s in slides], dtype=np.float64),
            has_itc=np.array([s.n_itc > 0 for s in slides], dtype=bool),
        )

    def curve(self, weights: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """``computeFROC`` for the multiset of slides with these multiplicities.

        Returns (average FPs per slide, sensitivity) per threshold, or None
        when the slides hold no countable lesion.
        """
        total_lesions = float(weights @ self.n_lesions)
        if total_lesions == 0:
            return None
        fp_w = weights[self.fp_slide]
        tp_w = weights[self.tp_slide]
        present = [self.fp_probs[fp_w > 0], self.tp_probs[tp_w > 0]]
        if (weights[self.has_itc] > 0).any():
            # ITC lesions keep TP_probs = 0 in the official script.
            present.append(np.zeros(1))
        all_probs = np.unique(np.concatenate(present))
        # The official script skips the lowest probability (normally the 0
        # of missed lesions, at which every missed lesion would count).
        thresholds = all_probs[1:]
        fp_at = np.concatenate((np.cumsum(fp_w[::-1])[::-1], [0.0]))
        tp_at = np.concatenate((np.cumsum(tp_w[::-1])[::-1], [0.0]))
        total_fps = fp_at[np.searchsorted(self.fp_probs, thresholds, side="left")]
        # ``TP_probs >= Thresh`` on its float32 array compares in float32: a
        # threshold taken from a false positive is rounded to float32 first
        # (so a lesion at float32(0.7) < 0.7 still counts at 0.7).
        total_tps = tp_at[np.searchsorted(self.tp_probs, _as_float32(thresholds), side="left")]
        total_fps = np.append(total_fps, 0.0) / float(weights.sum())
        sensitivity = np.append(total_tps, 0.0) / total_lesions
        return total_fps, sensitivity


def _as_float32(values: FloatArray) -> FloatArray:
    """Values rounded to the nearest float32, held as float64."""
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as numpy casts
        return values.astype(np.float32).astype(np.float64)


def _froc_from_curve(curve: tuple[FloatArray, FloatArray] | None, fp_rates: Sequence[float]) -> float | None:
    if curve is None:
        return None
    total_fps, sensitivity = curve
    at_rates = np.interp(np.asarray(fp_rates, dtype=np.float64), total_fps[::-1], sensitivity[::-1])
    return float(np.mean(at_rates))


def _check_fp_rates(fp_rates: Sequence[float]) -> tuple[float, ...]:
    rates = tuple(float(r) for r in fp_rates)
    if not rates or any(not (r >= 0 and math.isfinite(r)) for r in rates):
        raise ValueError(f"fp_rates must be non-negative numbers; got {fp_rates!r}")
    return rates


def froc_curve(slides: Sequence[SlideFROC]) -> tuple[FloatArray, FloatArray] | None:
    """The FROC curve of a cohort, as ``computeFROC`` of the official script.

    Thresholds are the distinct probabilities of all detections (false
    positives and lesion maxima, 0 for missed and ITC lesions) but the lowest;
    at each, the false positives per slide and the sensitivity of the
    detections at or above it; then the point (0, 0).

    As in the script, lesion probabilities are held as float32 and false
    positives as float64, whatever the input dtype: a float64 lesion
    probability that is not a float32 number no longer ties with an equal
    false positive, and a threshold is rounded to float32 before lesions are
    compared with it.  With float32 (or float16) heatmaps nothing changes.

    Returns
    -------
    (total_fps, sensitivity) : tuple of (T + 1,) float64, or None
        None when the cohort has no countable lesion.

    Examples
    --------
    >>> slides = [SlideFROC(np.array([0.7]), np.array([0.9, 0.0]), 0),
    ...           SlideFROC(np.array([0.6, 0.95]), np.zeros(0), 0)]
    >>> froc_curve(slides)
    (array([1.5, 1. , 0.5, 0.5, 0. ]), array([0.5, 0.5, 0.5, 0. , 0. ]))
    """
    pooled = _PooledFROC.of(slides)
    if pooled.n_slides == 0:
        return None
    return pooled.curve(np.ones(pooled.n_slides))


def froc_score(slides: Sequence[SlideFROC], *, fp_rates: Sequence[float] = defaults.FROC_FP_RATES) -> float | None:
    """Camelyon16 FROC score: mean sensitivity at the given FP rates per slide.

    The official script stops at the curve (:func:`froc_curve`); the score
    is read off it as MONAI's ``compute_froc_score`` does,
    ``np.mean(np.interp(fp_rates, total_fps[::-1], sensitivity[::-1]))``.

    Like the official script, the lowest distinct probability is not a
    threshold.  In a real cohort it is the 0 of missed or ITC lesions; when
    there is none, the least probable detection is never counted (below, the
    lesion found with 0.8 is missed at every threshold, while a false
    positive at 0.6 on a third slide would make the score 1.0).

    Parameters
    ----------
    slides : sequence of SlideFROC
        One per slide of the cohort (tumor-free slides included).
    fp_rates : sequence of float, optional
        0.25, 0.5, 1, 2, 4, 8 by default.

    Returns
    -------
    float or None
        None when the cohort has no countable lesion.

    Examples
    --------
    >>> perfect = [SlideFROC(np.zeros(0), np.array([0.9]), 0),
    ...            SlideFROC(np.zeros(0), np.array([0.8]), 0)]
    >>> froc_score(perfect)
    0.5
    >>> froc_score(perfect + [SlideFROC(np.array([0.6]), np.zeros(0), 0)])
    1.0
    """
    rates = _check_fp_rates(fp_rates)
    return _froc_from_curve(froc_curve(slides), rates)


# --------------------------------------------------------------------------
# ROC-AUC
# --------------------------------------------------------------------------


def _weighted_auc(scores: FloatArray, labels: BoolArray, weights: FloatArray) -> FloatArray:
    """Mann-Whitney AUC for each row of ``weights`` (B, n) at once.

    Sort the slides by score once; per group of tied scores, a positive beats
    the negatives of lower groups and ties half of those in its own group.
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    w = weights[:, order]
    pos = labels[order]
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    w_pos = np.add.reduceat(w * pos, starts, axis=1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    u = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    n_pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    out = np.full(w.shape[0], np.nan)
    np.divide(u, n_pairs, out=out, where=n_pairs > 0)
    return out


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float | None:
    """Slide-level ROC-AUC (Mann-Whitney; ties count one half).

    Parameters
    ----------
    scores : (n,) array_like of float
        E.g. the maximum of ``s`` on each slide.
    labels : (n,) array_like of bool
        Whether each slide has tumor.

    Returns
    -------
    float or None
        None when either class is absent.

    Examples
    --------
    >>> roc_auc([0.9, 0.4, 0.4, 0.1], [True, True, False, False])
    0.875
    """
    s = _finite_scores(scores)
    y = _bool_vector(labels, "labels")
    if y.shape != s.shape:
        raise ValueError(f"labels has {y.size} entries but scores has {s.size}")
    if s.size == 0:
        return None
    value = float(_weighted_auc(s, y, np.ones((1, s.size)))[0])
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------


def bootstrap_indices(n_slides: int, *, resamples: int = defaults.BOOTSTRAP, seed: int = defaults.SEED) -> IntArray:
    """Slide indices of bootstrap resamples (with replacement), seeded.

    Parameters
    ----------
    n_slides : int
        Slides in the cohort.
    resamples : int, optional
        B, 1000 by default.
    seed : int, optional
        Seed of ``np.random.default_rng``.

    Returns
    -------
    (B, n_slides) ndarray of int64

    Examples
    --------
    >>> bootstrap_indices(3, resamples=2, seed=0).shape
    (2, 3)
    """
    if isinstance(n_slides, bool) or not isinstance(n_slides, (int, np.integer)) or n_slides < 0:
        raise ValueError(f"n_slides must be a non-negative integer, not {n_slides!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, not {resamples!r}")
    if n_slides == 0:
        return np.zeros((int(resamples), 0), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_slides, size=(int(resamples), int(n_slides)), dtype=np.int64)


def resample_counts(indices: npt.ArrayLike, n_slides: int) -> FloatArray:
    """Multiplicity of every slide in every resample.

    Parameters
    ----------
    indices : (B, n) array_like of int
        From :func:`bootstrap_indices`.
    n_slides : int
        Slides in the cohort.

    Returns
    -------
    (B, n_slides) ndarray of float64
        ``counts[b, i]`` = times slide i was drawn in resample b (float so
        that pooled sums are one BLAS matrix product; exact below 2**53).

    Examples
    --------
    >>> resample_counts([[0, 0, 2]], 3)
    array([[2., 0., 1.]])
    """
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be a (B, n) integer array; got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_slides):
        raise ValueError(f"indices must lie in 0 .. {n_slides - 1}")
    b = idx.shape[0]
    offsets = (np.arange(b, dtype=np.int64) * n_slides)[:, None]
    flat = np.bincount((idx + offsets).reshape(-1), minlength=b * n_slides)
    return flat.reshape(b, n_slides).astype(np.float64)


def _per_slide(values: npt.ArrayLike, what: str, n: int | None = None) -> FloatArray:
    v = _counts_array(values, what).reshape(-1)
    if n is not None and v.size != n:
        raise ValueError(f"{what} has {v.size} entries but the other statistics have {n}")
    return v


def _weights(indices: npt.ArrayLike, n: int) -> FloatArray:
    """Multiplicities (B, n) from resampled indices (any number of draws)."""
    return resample_counts(indices, n)


def bootstrap_f_beta(
    tp: npt.ArrayLike,
    fp: npt.ArrayLike,
    fn: npt.ArrayLike,
    indices: npt.ArrayLike,
    *,
    beta: float = defaults.BETA,
) -> FloatArray:
    """Pooled F-beta of every bootstrap resample.

    Parameters
    ----------
    tp, fp, fn : (n,) array_like of int
        Per-slide counts (NPRs for SUA, candidate pixels for the baseline).
    indices : (B, n) array_like of int
        Resampled slide indices.
    beta : float, optional

    Returns
    -------
    (B,) ndarray of float64

    Examples
    --------
    >>> bootstrap_f_beta([3, 0], [1, 0], [2, 1], [[0, 0], [1, 1]])
    array([0.71428571, 0.        ])
    """
    tp_ = _per_slide(tp, "tp")
    n = tp_.size
    fp_ = _per_slide(fp, "fp", n)
    fn_ = _per_slide(fn, "fn", n)
    w = _weights(indices, n)
    return f_beta_array(w @ tp_, w @ fp_, w @ fn_, beta=beta)


def bootstrap_fn_conversion_rate(
    turned_positive_tumor: npt.ArrayLike,
    turned_positive: npt.ArrayLike,
    indices: npt.ArrayLike,
) -> FloatArray:
    """Pooled FNCR of every resample; NaN where nothing was turned positive.

    Examples
    --------
    >>> bootstrap_fn_conversion_rate([9, 0], [10, 0], [[0, 1], [1, 1]])
    array([0.9, nan])
    """
    tumor = _per_slide(turned_positive_tumor, "turned_positive_tumor")
    turned = _per_slide(turned_positive, "turned_positive", tumor.size)
    if (tumor > turned).any():
        raise ValueError("turned_positive_tumor cannot exceed turned_positive")
    w = _weights(indices, tumor.size)
    numerator = w @ tumor
    denominator = w @ turned
    out = np.full(denominator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def bootstrap_mean(
    values: npt.ArrayLike,
    indices: npt.ArrayLike,
    *,
    where: npt.ArrayLike | None = None,
) -> FloatArray:
    """Mean of a per-slide value (e.g. Dice) over the slides of each resample.

    Parameters
    ----------
    values : (n,) array_like of float
        Per-slide values.
    indices : (B, n) array_like of int
    where : (n,) array_like of bool, optional
        Only these slides count (e.g. tumor slides); NaN for a resample
        without any.

    Returns
    -------
    (B,) ndarray of float64

    Examples
    --------
    >>> bootstrap_mean([1.0, 0.5], [[0, 1], [1, 1]])
    array([0.75, 0.5 ])
    >>> bootstrap_mean([1.0, 0.5], [[0, 0], [1, 1]], where=[False, True])
    array([nan, 0.5])
    """
    v = _finite_scores(values, "values")
    mask = np.ones(v.size, dtype=bool) if where is None else _bool_vector(where, "where")
    if mask.size != v.size:
        raise ValueError(f"where has {mask.size} entries but values has {v.size}")
    w = _weights(indices, v.size)
    denominator = w @ mask.astype(np.float64)
    numerator = w @ np.where(mask, v, 0.0)
    out = np.full(denominator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def bootstrap_count(flags: npt.ArrayLike, indices: npt.ArrayLike) -> FloatArray:
    """How many drawn slides are flagged, per resample (draws counted with multiplicity).

    E.g. ``flags = tumor_free & changed_by_refinement`` gives the paper's
    Table 4 count.

    Examples
    --------
    >>> bootstrap_count([True, False], [[0, 0], [1, 0]])
    array([2., 1.])
    """
    f = _bool_vector(flags, "flags")
    w = _weights(indices, f.size)
    return w @ f.astype(np.float64)


def bootstrap_roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike, indices: npt.ArrayLike) -> FloatArray:
    """Slide-level ROC-AUC of every resample (vectorised; NaN where a class is absent).

    Examples
    --------
    >>> bootstrap_roc_auc([0.9, 0.1], [True, False], [[0, 1], [0, 0]])
    array([ 1., nan])
    """
    s = _finite_scores(scores)
    y = _bool_vector(labels, "labels")
    if y.size != s.size:
        raise ValueError(f"labels has {y.size} entries but scores has {s.size}")
    w = _weights(indices, s.size)
    if s.size == 0:
        return np.full(w.shape[0], np.nan)
    return _weighted_auc(s, y, w)


def bootstrap_froc(
    slides: Sequence[SlideFROC],
    indices: npt.ArrayLike,
    *,
    fp_rates: Sequence[float] = defaults.FROC_FP_RATES,
) -> FloatArray:
    """FROC score of every resample; NaN where a resample has no countable lesion.

    The slides are pooled once; each resample then costs a few vector
    operations over the pooled detections.

    Examples
    --------
    >>> slides = [SlideFROC(np.zeros(0), np.array([0.9]), 0),
    ...           SlideFROC(np.array([0.7]), np.zeros(0), 0)]
    >>> bootstrap_froc(slides, [[0, 1], [1, 1]])
    array([ 1., nan])
    """
    rates = _check_fp_rates(fp_rates)
    pooled = _PooledFROC.of(slides)
    w = _weights(indices, pooled.n_slides)
    out = np.full(w.shape[0], np.nan)
    for b in range(w.shape[0]):
        value = _froc_from_curve(pooled.curve(w[b]), rates)
        if value is not None:
            out[b] = value
    return out


@dataclass(frozen=True)
class Summary:
    """A metric on the cohort and its bootstrap distribution.

    Attributes
    ----------
    value : float or None
        The metric on the whole cohort (None when undefined).
    mean, std, median : float or None
        Over the resamples where the metric is defined (``std`` with
        ``ddof=1``, 0 for a single resample); None when it never is.
    ci95 : (float or None, float or None)
        2.5th and 97.5th percentiles (numpy's linear interpolation).
    n_samples : int
        Resamples where the metric is defined.
    """

    value: float | None
    mean: float | None
    std: float | None
    median: float | None
    ci95: tuple[float | None, float | None]
    n_samples: int = field(default=0)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary (``ci95`` as a two-element list)."""
        return {
            "value": self.value,
            "mean": self.mean,
            "std": self.std,
            "median": self.median,
            "ci95": list(self.ci95),
            "n_samples": self.n_samples,
        }


def summarise(value: float | None, samples: npt.ArrayLike | Sequence[float | None]) -> Summary:
    """Summarise a metric's bootstrap samples (NaN = undefined in that resample).

    Parameters
    ----------
    value : float or None
        The metric on the whole cohort; NaN is read as None.
    samples : (B,) array_like of float
        The metric per resample; NaN (or None) where it is undefined there;
        those resamples are dropped.

    Returns
    -------
    Summary

    Examples
    --------
    >>> summarise(0.5, [0.4, 0.6, np.nan])
    Summary(value=0.5, mean=0.5, std=0.14142135623730948, median=0.5, ci95=(0.405, 0.595), n_samples=2)
    """
    raw = np.asarray(samples)
    if raw.dtype == object:
        raw = np.array([np.nan if x is None else x for x in raw.reshape(-1)], dtype=np.float64)
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"samples must be numbers (NaN where undefined), not {raw.dtype}")
    s = raw.astype(np.float64).reshape(-1)
    s = s[~np.isnan(s)]
    v: float | None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        v = None
    else:
        v = float(value)
        if math.isnan(v):
            v = None
    if s.size == 0:
        return Summary(value=v, mean=None, std=None, median=None, ci95=(None, None), n_samples=0)
    low, high = np.percentile(s, [2.5, 97.5])
    return Summary(
        value=v,
        mean=float(np.mean(s)),
        std=float(np.std(s, ddof=1)) if s.size > 1 else 0.0,
        median=float(np.median(s)),
        ci95=(float(low), float(high)),
        n_samples=int(s.size),
    )
