"""Spatial uncertainty aggregation (SUA): negative prediction regions and their scores.

The per-slide step of the paper (SPEC §3-6, paper §3.2-3.4, Algorithm 1):

1. *candidate pixels*: ``lower < s < upper`` on the segmentation heatmap ``s``;
   pixels with ``s >= upper`` are predicted positive.
2. *negative prediction regions* (NPRs): 8-connected components of the
   candidate pixels, labelled 1..N exactly as
   ``skimage.measure.label(candidate, connectivity=2)`` numbers them.
3. each NPR's *score* aggregates the pixel uncertainty over it ("mean", the
   paper's choice, or any percentile "pNN" with numpy's linear interpolation).
4. an NPR is *flagged* as a likely false negative when its score is at or above
   the calibrated threshold; with an annotation, an NPR is a *true false
   negative* when at least ``fn_fraction`` of its pixels lie in tumor.
5. *refinement*: flagged NPRs (SUA) or flagged candidate pixels (baseline) are
   added to the original positives.

Whole-slide heatmaps are tens of megapixels with thousands of NPRs, so every
per-region statistic is computed for all regions at once (``np.bincount``, one
sort), never with a Python loop over regions, on the labelled pixels only
(gathered once), so that no 64-bit temporary the size of the slide is made.

Thresholds are compared the way numpy compares: a float32 heatmap is compared
with the threshold rounded to float32 (``s >= 0.95`` means
``s >= np.float32(0.95)``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.measure import label as _skimage_label

from analysis import defaults
from analysis.errors import InputError

__all__ = [
    "SlideRegions",
    "aggregate_uncertainties",
    "aggregate_uncertainty",
    "baseline_refine",
    "candidate_pixels",
    "check_range",
    "false_negative_regions",
    "find_regions",
    "flag",
    "negative_prediction_regions",
    "parse_aggregate",
    "region_areas",
    "region_boxes",
    "region_truth_fraction",
    "sua_refine",
]

BoolArray = npt.NDArray[np.bool_]
Float64Array = npt.NDArray[np.float64]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]

_AGGREGATE_RE = re.compile(r"p(\d+(?:\.\d+)?)")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_real(values: np.ndarray, what: str) -> None:
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be real numbers, not {values.dtype}")


def _min_max(values: np.ndarray, what: str) -> tuple[float, float]:
    """Min and max of a real array, raising ValueError on NaN or infinity.

    ``np.min``/``np.max`` propagate NaN and make no slide-sized temporary,
    unlike ``np.isnan(values).any()``.
    """
    if values.size == 0:
        return (0.0, 0.0)
    low = float(np.min(values))
    high = float(np.max(values))
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"{what} contains NaN")
    if math.isinf(low) or math.isinf(high):
        raise ValueError(f"{what} contains infinite values")
    return low, high


def _as_segmentation(segmentation: npt.ArrayLike) -> np.ndarray:
    s = np.asarray(segmentation)
    _check_real(s, "segmentation")
    if s.ndim != 2:
        raise ValueError(f"segmentation must be a 2-D heatmap; got shape {s.shape}")
    low, high = _min_max(s, "segmentation")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"segmentation has values outside [0, 1] (min {low:g}, max {high:g})")
    return s


def _as_uncertainty(uncertainty: npt.ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    u = np.asarray(uncertainty)
    _check_real(u, "uncertainty")
    if u.shape != shape:
        raise ValueError(f"uncertainty shape {u.shape} differs from segmentation shape {shape}")
    _min_max(u, "uncertainty")
    return u


_NEGATIVE_LABELS = "labels must be >= 0 (0 = outside every region)"


def _as_labels(labels: npt.ArrayLike, *, check_negative: bool = True) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, not {lab.dtype}")
    if check_negative and lab.dtype.kind == "i" and lab.size and lab.min() < 0:
        raise ValueError(_NEGATIVE_LABELS)
    return lab


def check_range(lower: float, upper: float) -> tuple[float, float]:
    """``(lower, upper)`` as floats; :class:`~analysis.errors.InputError` unless ``0 <= lower < upper <= 1``.

    The one check of a candidate range, for the functions here, the evaluation
    settings and the command line alike.

    >>> check_range(0.55, 0.95)
    (0.55, 0.95)
    """
    lo, up = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(up)):
        raise InputError(f"range {lo:g}:{up:g}: bounds must be numbers")
    if not lo < up:
        raise InputError(f"range {lo:g}:{up:g}: lower must be below upper")
    if lo < 0.0 or up > 1.0:
        raise InputError(f"range {lo:g}:{up:g}: bounds must lie in [0, 1]")
    return lo, up


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} shape {b.shape} differs from {name_a} shape {a.shape}")


def _as_mask(mask: npt.ArrayLike, what: str) -> BoolArray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if m.dtype.kind not in "biuf":
            raise ValueError(f"{what} must be a boolean mask, not {m.dtype}")
        _min_max(m, what)
        m = m != 0
    return m


def parse_aggregate(how: str) -> float | None:
    """Percentile named by an aggregate, or None for the mean.

    Parameters
    ----------
    how : str
        ``"mean"`` or ``"pNN"`` / ``"pNN.N"`` with ``0 <= NN <= 100``.

    Returns
    -------
    float or None
        The percentile (``"p90"`` -> 90.0); None for ``"mean"``.

    Examples
    --------
    >>> parse_aggregate("p90"), parse_aggregate("mean")
    (90.0, None)
    """
    if how == "mean":
        return None
    match = _AGGREGATE_RE.fullmatch(how) if isinstance(how, str) else None
    if match is not None:
        q = float(match.group(1))
        if 0.0 <= q <= 100.0:
            return q
    raise ValueError(f"unknown aggregate {how!r}; use 'mean' or 'pNN' with 0 <= NN <= 100")


# --------------------------------------------------------------------------
# Per-label reductions over the labelled pixels
# --------------------------------------------------------------------------


def _n_regions(labels: np.ndarray) -> int:
    return int(labels.max()) if labels.size else 0


@dataclass(frozen=True)
class _LabelledPixels:
    """The pixels inside some region, in raster order.

    NPRs cover a fraction of a slide, so gathering their pixels once (one
    byte per pixel of mask, then 4 bytes per labelled pixel) makes every later
    per-region statistic a cheap pass over the regions only, and avoids the
    8-byte-per-pixel copy that ``np.bincount(labels.ravel())`` would make of a
    whole int32 label image.
    """

    n: int
    labels: np.ndarray  # (P,) int, 1..n
    counts: Int64Array  # (n,) pixels per label 1..n

    @classmethod
    def of(cls, labels: np.ndarray, inside: BoolArray | None = None) -> tuple[_LabelledPixels, BoolArray]:
        """Gather, validate (no negative label) and count; also the mask (``labels != 0``, or ``inside``
        where the caller has it already: the candidate pixels the labels were made from)."""
        if inside is None:
            inside = labels != 0
        lab_in = labels[inside]
        # min/max of the labelled pixels only: two passes fewer over a slide.
        if lab_in.dtype.kind == "i" and lab_in.size and lab_in.min() < 0:
            raise ValueError(_NEGATIVE_LABELS)
        if lab_in.dtype == np.uint64:
            lab_in = lab_in.astype(np.int64)  # np.bincount refuses uint64
        n = int(lab_in.max()) if lab_in.size else 0
        counts = np.bincount(lab_in, minlength=n + 1)[1:].astype(np.int64)
        return cls(n=n, labels=lab_in, counts=counts), inside


def _divide(numerator: np.ndarray, counts: np.ndarray) -> Float64Array:
    """``numerator / counts`` with NaN where a label has no pixel."""
    out = np.full(counts.shape, np.nan, dtype=np.float64)
    np.divide(numerator, counts, out=out, where=counts > 0)
    return out


def _means(pixels: _LabelledPixels, values: np.ndarray) -> Float64Array:
    sums = np.bincount(pixels.labels, weights=values, minlength=pixels.n + 1)[1:]
    return _divide(sums, pixels.counts)


def _orderable_float32_bits(values: np.ndarray) -> npt.NDArray[np.uint32]:
    """float32 bit patterns that sort, as unsigned integers, like the floats.

    Set the sign bit of non-negative numbers, flip every bit of negative ones
    (then -0.0 sorts just before +0.0, which is harmless: they are equal).
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).copy()
    flip = (np.uint32(0) - (bits >> np.uint32(31))) | np.uint32(0x80000000)
    bits ^= flip
    return bits


def _float32_from_orderable_bits(bits: np.ndarray) -> Float64Array:
    bits = np.asarray(bits, dtype=np.uint32)
    negative = bits < np.uint32(0x80000000)
    restored = np.where(negative, ~bits, bits ^ np.uint32(0x80000000)).astype(np.uint32)
    return restored.view(np.float32).astype(np.float64)


def _sorted_by_label_then_value(pixels: _LabelledPixels, values: np.ndarray) -> Callable[[np.ndarray], Float64Array]:
    """Sort the labelled pixels by (label, value); return ``take(positions)``.

    ``take`` reads float64 values at positions of the sorted order, in which
    label ``i``'s values occupy ``[start_i, start_i + count_i)`` ascending.
    """
    if values.dtype.kind == "f" and values.dtype.itemsize <= 4:
        # One in-place sort of uint64 keys (label << 32 | value bits) orders
        # by label and value at once: several times faster than np.lexsort,
        # 8 bytes per labelled pixel and no index array.
        keys = pixels.labels.astype(np.uint64)
        keys <<= np.uint64(32)
        low32 = np.uint64(0xFFFFFFFF)
        values32 = np.ascontiguousarray(values, dtype=np.float32)
        if values32.size == 0 or values32.min() >= 0:
            # Uncertainties are usually >= 0, whose IEEE bits already sort as
            # unsigned integers; clearing the sign bit turns -0.0 into +0.0.
            keys |= values32.view(np.uint32) & np.uint32(0x7FFFFFFF)
            keys.sort()

            def take_nonnegative(positions: np.ndarray) -> Float64Array:
                bits = (keys[positions] & low32).astype(np.uint32)
                return np.asarray(bits.view(np.float32), dtype=np.float64)

            return take_nonnegative

        keys |= _orderable_float32_bits(values32)
        keys.sort()

        def take_key(positions: np.ndarray) -> Float64Array:
            return _float32_from_orderable_bits(keys[positions] & low32)

        return take_key

    # 64-bit values do not fit beside the label in one key: sort by value,
    # then stably by label with numpy's radix sort on 16-bit digits (much
    # faster than np.lexsort, which falls back to a comparison sort).
    as_float = values.astype(np.float64)
    order = np.argsort(as_float)
    lab = pixels.labels[order]
    shift = 0
    while shift == 0 or (pixels.n >> shift) > 0:
        digit = ((lab >> shift) & 0xFFFF).astype(np.uint16)
        by_digit = np.argsort(digit, kind="stable")
        order = order[by_digit]
        lab = lab[by_digit]
        shift += 16
    sorted_values = as_float[order]

    def take_value(positions: np.ndarray) -> Float64Array:
        return np.asarray(sorted_values[positions], dtype=np.float64)

    return take_value


def _percentiles(pixels: _LabelledPixels, values: np.ndarray, qs: Sequence[float]) -> list[Float64Array]:
    """Per-label ``np.percentile(values[labels == i].astype(float64), q)``.

    Sorts the labelled pixels once by (label, value), then for each q picks
    the two order statistics around numpy's virtual index and interpolates
    with numpy's own formula, so that results match ``np.percentile`` bit for
    bit.
    """
    outs = [np.full(pixels.n, np.nan, dtype=np.float64) for _ in qs]
    if pixels.n == 0 or not qs:
        return outs
    take = _sorted_by_label_then_value(pixels, values)
    present = pixels.counts > 0
    counts = pixels.counts[present]
    starts = (np.cumsum(pixels.counts) - pixels.counts)[present]
    for q, out in zip(qs, outs, strict=True):
        # numpy's "linear" method: virtual index (n - 1) * q, neighbours
        # floor and floor + 1 clipped to the last element, weight the
        # fractional part.
        virtual = (counts - 1) * np.true_divide(q, 100)
        previous = np.floor(virtual)
        at_end = virtual >= counts - 1
        prev_idx = np.where(at_end, counts - 1, previous.astype(np.int64))
        next_idx = np.where(at_end, counts - 1, prev_idx + 1)
        gamma = virtual - previous
        a = take(starts + prev_idx)
        b = take(starts + next_idx)
        # numpy's _lerp, written the same way so that rounding is identical.
        diff = b - a
        result = a + diff * gamma
        upper_half = gamma >= 0.5
        result[upper_half] = (b - diff * (1 - gamma))[upper_half]
        out[present] = result
    return outs


def _aggregates(pixels: _LabelledPixels, values: np.ndarray, percentiles: Sequence[float | None]) -> list[Float64Array]:
    """Aggregates (None = mean, else a percentile), sharing one sort."""
    qs = [q for q in percentiles if q is not None]
    by_q = dict(zip(qs, _percentiles(pixels, values, qs), strict=True))
    mean = _means(pixels, values) if None in percentiles else None
    return [mean if q is None else by_q[q] for q in percentiles]  # type: ignore[misc]


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def candidate_pixels(segmentation: npt.ArrayLike, *, lower: float, upper: float) -> BoolArray:
    """Candidate pixels of negative prediction regions: ``lower < s < upper``.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
        Segmentation heatmap ``s``.
    lower, upper : float
        ``0 <= lower < upper <= 1``; both comparisons are strict.

    Returns
    -------
    (H, W) ndarray of bool

    Examples
    --------
    >>> candidate_pixels(np.array([[0.5, 0.55, 0.7, 0.95]]), lower=0.55, upper=0.95)
    array([[False, False,  True, False]])
    """
    s = _as_segmentation(segmentation)
    lo, up = check_range(lower, upper)
    return _candidates(s, lo, up)


def _candidates(s: np.ndarray, lower: float, upper: float) -> BoolArray:
    """``lower < s < upper`` of a checked heatmap and range (two passes over it, one mask)."""
    out = s > lower
    out &= s < upper
    return out


def _label(candidate: BoolArray) -> Int32Array:
    """The NPRs of a candidate mask, numbered as ``skimage.measure.label(candidate, connectivity=2)``."""
    return np.asarray(_skimage_label(candidate, connectivity=2), dtype=np.int32)  # type: ignore[no-untyped-call]


def negative_prediction_regions(segmentation: npt.ArrayLike, *, lower: float, upper: float) -> Int32Array:
    """Label the negative prediction regions (NPRs) of a heatmap.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
        Segmentation heatmap ``s``.
    lower, upper : float
        Candidate range, ``lower < s < upper``.

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 outside every NPR, 1..N inside; identical (numbering included) to
        ``skimage.measure.label(candidate, connectivity=2)``: 8-connectivity,
        so diagonal neighbours belong to one region.

    Examples
    --------
    >>> s = np.array([[0.7, 0.0, 0.0],
    ...               [0.0, 0.7, 0.0],
    ...               [0.0, 0.0, 0.99]])
    >>> negative_prediction_regions(s, lower=0.55, upper=0.95)
    array([[1, 0, 0],
           [0, 1, 0],
           [0, 0, 0]], dtype=int32)
    """
    return _label(candidate_pixels(segmentation, lower=lower, upper=upper))


def aggregate_uncertainty(
    labels: npt.ArrayLike, uncertainty: npt.ArrayLike, *, how: str = defaults.AGGREGATE
) -> Float64Array:
    """Score every region by aggregating the uncertainty over its pixels.

    Parameters
    ----------
    labels : ndarray of int, any shape
        Region labels, 0 = background, 1..N regions (N = ``labels.max()``).
    uncertainty : ndarray of float, same shape
        Pixel-wise uncertainty; NaN and infinity are rejected.
    how : str, optional
        ``"mean"`` or ``"pNN"`` (e.g. ``"p90"``, ``"p97.5"``): the NN-th
        percentile with numpy's default linear interpolation.

    Returns
    -------
    scores : (N,) ndarray of float64
        ``scores[i]`` aggregates region ``i + 1``; equal to
        ``np.mean(u[labels == i + 1].astype(float64))`` (to rounding of the
        summation order) or exactly ``np.percentile(u[labels == i + 1]
        .astype(float64), NN)``.  NaN for a label with no pixel.

    Notes
    -----
    Vectorised over regions: the mean is one ``np.bincount``; percentiles sort
    the labelled pixels once by (label, value).  float32 uncertainty is
    promoted to float64 before interpolating, so a percentile may differ from
    ``np.percentile`` on the float32 values by float32 rounding.

    Examples
    --------
    >>> labels = np.array([[1, 1, 0, 2]])
    >>> u = np.array([[0.2, 0.4, 0.9, 0.6]])
    >>> aggregate_uncertainty(labels, u, how="mean")
    array([0.3, 0.6])
    >>> aggregate_uncertainty(labels, u, how="p90")
    array([0.38, 0.6 ])
    """
    return aggregate_uncertainties(labels, uncertainty, hows=(how,))[0]


def aggregate_uncertainties(
    labels: npt.ArrayLike, uncertainty: npt.ArrayLike, *, hows: Sequence[str]
) -> tuple[Float64Array, ...]:
    """Several aggregates at once, sharing one gather and one sort.

    Parameters
    ----------
    labels : ndarray of int, any shape
        Region labels, 0 = background, 1..N regions.
    uncertainty : ndarray of float, same shape
        Pixel-wise uncertainty (finite).
    hows : sequence of str
        Aggregates as in :func:`aggregate_uncertainty`.

    Returns
    -------
    tuple of (N,) ndarray of float64
        One score array per entry of ``hows``, in order.

    Examples
    --------
    >>> mean, p90 = aggregate_uncertainties(np.array([[1, 1, 0, 2]]),
    ...                                     np.array([[0.2, 0.4, 0.9, 0.6]]),
    ...                                     hows=("mean", "p90"))
    >>> p90
    array([0.38, 0.6 ])
    """
    if isinstance(hows, str):
        raise ValueError("hows must be a sequence of aggregates such as ('mean', 'p90')")
    qs = [parse_aggregate(h) for h in hows]
    lab = _as_labels(labels, check_negative=False)
    u = np.asarray(uncertainty)
    _check_real(u, "uncertainty")
    if u.shape != lab.shape:
        raise ValueError(f"uncertainty shape {u.shape} differs from labels shape {lab.shape}")
    pixels, inside = _LabelledPixels.of(lab)
    u_inside = u[inside]
    # Only the aggregated pixels matter, and they are a fraction of a slide.
    _min_max(u_inside, "uncertainty")
    return tuple(_aggregates(pixels, u_inside, qs))


def region_areas(labels: npt.ArrayLike) -> Int64Array:
    """Number of pixels of each region.

    Parameters
    ----------
    labels : ndarray of int
        0 = background, 1..N regions.

    Returns
    -------
    (N,) ndarray of int64
        ``areas[i]`` = pixels labelled ``i + 1``.

    Examples
    --------
    >>> region_areas(np.array([[1, 1, 0, 2]]))
    array([2, 1])
    """
    pixels, _ = _LabelledPixels.of(_as_labels(labels, check_negative=False))
    return pixels.counts


def region_boxes(labels: npt.ArrayLike) -> Int64Array:
    """Bounding box of each region, ``[row0, col0, row1, col1)``.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        0 = background, 1..N regions.

    Returns
    -------
    (N, 4) ndarray of int64
        Half-open boxes as ``scipy.ndimage.find_objects`` gives them; a label
        without pixels gets ``(0, 0, 0, 0)``.

    Examples
    --------
    >>> region_boxes(np.array([[1, 1, 0],
    ...                        [0, 0, 2]]))
    array([[0, 0, 1, 2],
           [1, 2, 2, 3]])
    """
    lab = _as_labels(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D for bounding boxes; got shape {lab.shape}")
    return _boxes(lab, _n_regions(lab))


def _boxes(labels: np.ndarray, n: int) -> Int64Array:
    """:func:`region_boxes` of checked 2-D labels 0..n (one pass: ``scipy.ndimage.find_objects``)."""
    boxes = np.zeros((n, 4), dtype=np.int64)
    if n == 0:
        return boxes
    for i, found in enumerate(ndi.find_objects(labels, max_label=n)):
        if found is not None:
            rows, cols = found
            boxes[i] = (rows.start, cols.start, rows.stop, cols.stop)
    return boxes


def region_truth_fraction(labels: npt.ArrayLike, truth: npt.ArrayLike) -> Float64Array:
    """Fraction of each region's pixels that lie inside the tumor annotation.

    Parameters
    ----------
    labels : ndarray of int
        0 = background, 1..N regions.
    truth : ndarray of bool, same shape
        Rasterised tumor annotation (non-zero = tumor).

    Returns
    -------
    (N,) ndarray of float64
        In [0, 1]; NaN for a label without pixels.

    Examples
    --------
    >>> region_truth_fraction(np.array([[1, 1, 0, 2]]),
    ...                       np.array([[True, False, True, True]]))
    array([0.5, 1. ])
    """
    lab = _as_labels(labels, check_negative=False)
    t = _as_mask(truth, "truth")
    _check_same_shape(lab, t, "labels", "truth")
    pixels, inside = _LabelledPixels.of(lab)
    return _truth_fraction(pixels, t[inside])


def _truth_fraction(pixels: _LabelledPixels, truth_inside: BoolArray) -> Float64Array:
    tumor = np.bincount(pixels.labels[truth_inside], minlength=pixels.n + 1)[1:]
    return _divide(tumor, pixels.counts)


def false_negative_regions(fraction: npt.ArrayLike, *, fn_fraction: float = defaults.FN_FRACTION) -> BoolArray:
    """Which regions are true false negatives: ``fraction >= fn_fraction``.

    Parameters
    ----------
    fraction : (N,) ndarray of float
        From :func:`region_truth_fraction`.
    fn_fraction : float, optional
        In (0, 1]; the paper's 0.9.

    Returns
    -------
    (N,) ndarray of bool
        Every other region is a true negative.

    Examples
    --------
    >>> false_negative_regions(np.array([0.95, 0.9, 0.5]))
    array([ True,  True, False])
    """
    f = np.asarray(fraction, dtype=np.float64)
    level = float(fn_fraction)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"fn_fraction ({level}) must be in (0, 1]")
    return f >= level


def flag(scores: npt.ArrayLike, threshold: float | None) -> BoolArray:
    """Flag scores at or above a threshold.

    Parameters
    ----------
    scores : ndarray of float
        Region (or pixel) scores.
    threshold : float or None
        Calibrated threshold; None or ``+inf`` flags nothing (NaN scores are
        never flagged).

    Returns
    -------
    ndarray of bool, shape of ``scores``

    Examples
    --------
    >>> flag(np.array([0.1, 0.3, 0.5]), 0.3)
    array([False,  True,  True])
    >>> flag(np.array([0.1, np.inf]), None)
    array([False, False])
    """
    s = np.asarray(scores)
    _check_real(s, "scores")
    if threshold is None:
        return np.zeros(s.shape, dtype=bool)
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN; use None to flag nothing")
    if t == math.inf:
        return np.zeros(s.shape, dtype=bool)
    return np.asarray(s >= t)


def sua_refine(
    segmentation: npt.ArrayLike,
    labels: npt.ArrayLike,
    flagged_regions: npt.ArrayLike,
    *,
    upper: float,
) -> BoolArray:
    """Refined mask of SUA: original positives plus every pixel of flagged NPRs.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
    labels : (H, W) ndarray of int
        NPR labels 1..N.
    flagged_regions : (N,) ndarray of bool
        ``flagged_regions[i]`` refers to label ``i + 1``.
    upper : float
        Segmentation cutoff: original positives are ``s >= upper``.

    Returns
    -------
    (H, W) ndarray of bool

    Examples
    --------
    >>> s = np.array([[0.99, 0.7, 0.1, 0.7]])
    >>> sua_refine(s, np.array([[0, 1, 0, 2]]), np.array([False, True]), upper=0.95)
    array([[ True, False, False,  True]])
    """
    s = _as_segmentation(segmentation)
    lab = _as_labels(labels)
    _check_same_shape(s, lab, "segmentation", "labels")
    flagged = np.asarray(flagged_regions)
    if flagged.dtype != np.bool_:
        raise ValueError(f"flagged_regions must be boolean, not {flagged.dtype}")
    n = _n_regions(lab)
    if flagged.shape != (n,):
        raise ValueError(f"flagged_regions has shape {flagged.shape} but labels has {n} regions")
    up = float(upper)
    if not 0.0 <= up <= 1.0:
        raise ValueError(f"upper ({up}) must be in [0, 1]")
    refined = s >= up
    if flagged.any():
        lookup = np.concatenate(([False], flagged))
        refined |= lookup[lab]
    return refined


def baseline_refine(
    segmentation: npt.ArrayLike,
    uncertainty: npt.ArrayLike,
    *,
    lower: float,
    upper: float,
    threshold: float | None,
) -> BoolArray:
    """Refined mask of the pixel baseline: positives plus uncertain candidates.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
    uncertainty : (H, W) ndarray of float
    lower, upper : float
        Candidate range ``lower < s < upper``; positives are ``s >= upper``.
    threshold : float or None
        Baseline threshold ``tau_b``; a candidate pixel is flagged when its
        uncertainty is ``>= threshold``. None flags nothing.

    Returns
    -------
    (H, W) ndarray of bool

    Examples
    --------
    >>> s = np.array([[0.99, 0.7, 0.7, 0.1]])
    >>> u = np.array([[0.05, 0.6, 0.2, 0.9]])
    >>> baseline_refine(s, u, lower=0.55, upper=0.95, threshold=0.5)
    array([[ True,  True, False, False]])
    """
    s = _as_segmentation(segmentation)
    u = _as_uncertainty(uncertainty, s.shape)
    lo, up = check_range(lower, upper)
    refined = s >= up
    flagged = flag(u, threshold)
    flagged &= s > lo
    flagged &= s < up
    refined |= flagged
    return refined


@dataclass(frozen=True)
class SlideRegions:
    """Negative prediction regions of one slide, with their scores.

    Attributes
    ----------
    labels : (H, W) int32
        0 outside NPRs, 1..N (``skimage.measure.label`` numbering).
    scores : (N,) float64
        Aggregated uncertainty of each NPR.
    areas : (N,) int64
        Pixels per NPR.
    boxes : (N, 4) int64
        ``[row0, col0, row1, col1)`` bounding boxes.
    truth_fraction : (N,) float64 or None
        Fraction of each NPR inside tumor (None without an annotation).
    is_false_negative : (N,) bool or None
        ``truth_fraction >= fn_fraction`` (None without an annotation).
    """

    labels: Int32Array
    scores: Float64Array
    areas: Int64Array
    boxes: Int64Array
    truth_fraction: Float64Array | None
    is_false_negative: BoolArray | None

    @property
    def n_regions(self) -> int:
        """N, the number of NPRs."""
        return int(self.scores.shape[0])


def find_regions(
    segmentation: npt.ArrayLike,
    uncertainty: npt.ArrayLike,
    *,
    lower: float,
    upper: float,
    how: str = defaults.AGGREGATE,
    truth: npt.ArrayLike | None = None,
    fn_fraction: float = defaults.FN_FRACTION,
) -> SlideRegions:
    """The per-slide SUA step: NPRs, their scores, sizes, boxes and truth.

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
        Segmentation heatmap.
    uncertainty : (H, W) ndarray of float
        Uncertainty heatmap (finite).
    lower, upper : float
        Candidate range ``lower < s < upper``.
    how : str, optional
        Aggregate: ``"mean"`` or ``"pNN"``.
    truth : (H, W) ndarray of bool, optional
        Rasterised tumor annotation; enables ``truth_fraction`` and
        ``is_false_negative``.
    fn_fraction : float, optional
        An NPR is a true false negative when at least this fraction is tumor.

    Returns
    -------
    SlideRegions

    Examples
    --------
    >>> s = np.array([[0.7, 0.0, 0.8],
    ...               [0.0, 0.6, 0.0]])
    >>> u = np.array([[0.6, 0.0, 0.5],
    ...               [0.0, 0.7, 0.0]])
    >>> r = find_regions(s, u, lower=0.55, upper=0.95)
    >>> r.scores, r.areas
    (array([0.6]), array([3]))
    """
    q = parse_aggregate(how)
    s = _as_segmentation(segmentation)
    u = _as_uncertainty(uncertainty, s.shape)
    lo, up = check_range(lower, upper)
    level = float(fn_fraction)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"fn_fraction ({level}) must be in (0, 1]")
    t: BoolArray | None = None
    if truth is not None:
        t = _as_mask(truth, "truth")
        _check_same_shape(s, t, "segmentation", "truth")

    # The steps of negative_prediction_regions and region_boxes on inputs checked once, the candidate mask
    # kept as the labelled pixels' mask: each skipped check or mask is a pass over the whole heatmap
    # (82 megapixels on a Camelyon-size slide at downsample 16).
    candidate = _candidates(s, lo, up)
    labels = _label(candidate)
    pixels, inside = _LabelledPixels.of(labels, inside=candidate)
    (scores,) = _aggregates(pixels, u[inside], [q])
    boxes = _boxes(labels, pixels.n)
    fraction: Float64Array | None = None
    is_fn: BoolArray | None = None
    if t is not None:
        fraction = _truth_fraction(pixels, t[inside])
        is_fn = fraction >= level
    return SlideRegions(
        labels=labels,
        scores=scores,
        areas=pixels.counts,
        boxes=boxes,
        truth_fraction=fraction,
        is_false_negative=is_fn,
    )
