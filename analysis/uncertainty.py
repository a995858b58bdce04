"""Segmentation and uncertainty heatmaps from a deep ensemble (SPEC §2, paper §3.1).

From K ensemble members, each a tumor probability map ``p_k`` in [0, 1]:

- segmentation heatmap ``s = mean_k p_k``;
- entropy of the mean prediction ``H(s) = -(s ln s + (1-s) ln(1-s))`` (the
  paper's uncertainty; natural log, ``0 ln 0 = 0``, so 0 ... ln 2);
- mutual information ``H(s) - mean_k H(p_k)`` (the part of the entropy due to
  disagreement between members);
- population variance of ``p_k`` across members (``ddof=0``).

Whole-slide heatmaps can be large (20 000 x 20 000 x 5 members), so the
members are read in row chunks: memory is bounded by a few ``(chunk_rows, W)``
float64 buffers, whatever K is, and ``members`` may be a ``np.memmap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import entr

from analysis import defaults

__all__ = [
    "UNCERTAINTY_METHODS",
    "EnsembleHeatmaps",
    "binary_entropy",
    "ensemble_heatmaps",
    "uncertainty_map",
]

#: Pixel-wise uncertainties offered (SPEC §2); "entropy" is the paper's.
UNCERTAINTY_METHODS: tuple[str, ...] = ("entropy", "mi", "variance")


def _check_probabilities(values: np.ndarray, what: str) -> None:
    """Raise ValueError unless ``values`` are finite and inside [0, 1].

    ``min``/``max`` propagate NaN and need no temporary array the size of the
    input, which matters for whole-slide heatmaps.
    """
    if values.size == 0:
        return
    low = float(np.min(values))
    high = float(np.max(values))
    if np.isnan(low) or np.isnan(high):
        raise ValueError(f"{what} contains NaN")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{what} has values outside [0, 1] (min {low:g}, max {high:g})")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of a two-class prediction, in nats.

    Parameters
    ----------
    p : ndarray, any shape, values in [0, 1]
        Probability of class 1 (tumor).

    Returns
    -------
    ndarray, same shape
        ``-(p ln p + (1-p) ln(1-p))`` with ``0 ln 0 = 0``; values in
        [0, ln 2].  float32 for float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``p`` contains NaN or values outside [0, 1].

    Examples
    --------
    >>> binary_entropy(np.array([0.0, 0.5, 1.0]))
    array([0.        , 0.69314718, 0.        ])
    """
    p = np.asarray(p)
    if p.dtype.kind not in "biuf":
        raise ValueError(f"probabilities must be real numbers, not {p.dtype}")
    dtype = np.float32 if p.dtype == np.float32 else np.float64
    p = p.astype(dtype, copy=False)
    _check_probabilities(p, "probability map")
    return _entropy(p)


def _entropy(p: np.ndarray) -> np.ndarray:
    """:func:`binary_entropy` without validation, for already checked input."""
    # scipy's entr(x) = -x ln x with entr(0) = 0: the 0 ln 0 = 0 convention
    # without a division-by-zero warning or a masked assignment.
    out = np.asarray(entr(p))
    out += entr(p.dtype.type(1) - p)
    return out


@dataclass(frozen=True)
class EnsembleHeatmaps:
    """Per-pixel summaries of an ensemble's tumor probability maps.

    Attributes
    ----------
    mean : (H, W) float32
        Segmentation heatmap ``s = mean_k p_k``.
    entropy : (H, W) float32
        Entropy of the mean prediction, ``H(s)`` (nats).
    mutual_information : (H, W) float32
        ``H(s) - mean_k H(p_k)``, clipped at 0 (nats).
    variance : (H, W) float32
        Population variance of ``p_k`` over members (``ddof=0``).
    """

    mean: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    variance: np.ndarray


def _check_members(members: np.ndarray, chunk_rows: int) -> None:
    if not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool):
        raise ValueError(f"chunk_rows must be a positive integer, not {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, not {chunk_rows}")
    if members.ndim != 3:
        raise ValueError(f"ensemble members must have shape (K, H, W); got shape {members.shape}")
    if members.shape[0] < 1:
        raise ValueError("the ensemble has no members (K = 0)")
    if members.dtype.kind not in "biuf":
        raise ValueError(f"ensemble members must be real numbers, not {members.dtype}")


def _heatmaps(
    members: np.ndarray,
    *,
    chunk_rows: int,
    want_mi: bool,
    want_variance: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Chunked core of :func:`ensemble_heatmaps`; skips what is not wanted."""
    _check_members(members, chunk_rows)
    n_members, height, width = members.shape
    mean = np.empty((height, width), dtype=np.float32)
    entropy = np.empty((height, width), dtype=np.float32)
    mi = np.empty((height, width), dtype=np.float32) if want_mi else None
    variance = np.empty((height, width), dtype=np.float32) if want_variance else None

    for r0 in range(0, height, chunk_rows):
        r1 = min(r0 + chunk_rows, height)
        # One member at a time, so memory does not grow with K; float64 so
        # that the mean and the variance do not lose bits to accumulation.
        total = np.zeros((r1 - r0, width), dtype=np.float64)
        member_entropy = np.zeros_like(total) if want_mi else None
        for k in range(n_members):
            p = np.asarray(members[k, r0:r1], dtype=np.float64)
            _check_probabilities(p, "ensemble members")
            total += p
            if member_entropy is not None:
                member_entropy += _entropy(p)
        s = total
        s /= n_members
        mean[r0:r1] = s
        # Entropy of the stored (float32) mean, so that the pair written to
        # disk is consistent: binary_entropy(mean) reproduces it to float32.
        h = _entropy(mean[r0:r1].astype(np.float64))
        entropy[r0:r1] = h
        if mi is not None and member_entropy is not None:
            member_entropy /= n_members
            # H(s) >= mean_k H(p_k) by concavity of H; only rounding can make
            # the difference negative, and a negative information is nonsense.
            diff = h - member_entropy
            np.maximum(diff, 0.0, out=diff)
            mi[r0:r1] = diff
        if variance is not None:
            # Two passes (mean first) rather than E[p^2] - E[p]^2, which
            # cancels catastrophically when the members agree.
            acc = np.zeros_like(total)
            d = np.empty_like(total)
            for k in range(n_members):
                # Into a scratch buffer: members must never be written to,
                # and a float64 slice of a float64 input would be a view.
                np.subtract(members[k, r0:r1], s, out=d, casting="unsafe")
                d *= d
                acc += d
            acc /= n_members
            variance[r0:r1] = acc
    return mean, entropy, mi, variance


def ensemble_heatmaps(members: np.ndarray, *, chunk_rows: int = 256) -> EnsembleHeatmaps:
    """Segmentation and all uncertainty heatmaps of an ensemble.

    Parameters
    ----------
    members : (K, H, W) ndarray of float (may be a ``np.memmap``)
        Tumor probability of each of the K members, values in [0, 1].
    chunk_rows : int, optional
        Rows processed at a time; peak memory is a few ``(chunk_rows, W)``
        float64 buffers plus the four ``(H, W)`` float32 outputs.

    Returns
    -------
    EnsembleHeatmaps
        ``mean``, ``entropy``, ``mutual_information``, ``variance``, each
        ``(H, W)`` float32.

    Raises
    ------
    ValueError
        If ``members`` is not 3-D, is empty along K, or holds NaN or values
        outside [0, 1].

    Examples
    --------
    >>> members = np.array([[[0.2, 1.0]], [[0.8, 1.0]]])
    >>> maps = ensemble_heatmaps(members)
    >>> maps.mean
    array([[0.5, 1. ]], dtype=float32)
    >>> maps.variance
    array([[0.09, 0.  ]], dtype=float32)
    """
    members = members if isinstance(members, np.ndarray) else np.asarray(members)
    mean, entropy, mi, variance = _heatmaps(members, chunk_rows=chunk_rows, want_mi=True, want_variance=True)
    assert mi is not None and variance is not None
    return EnsembleHeatmaps(mean=mean, entropy=entropy, mutual_information=mi, variance=variance)


def uncertainty_map(
    members: np.ndarray,
    *,
    method: str = defaults.UNCERTAINTY,
    chunk_rows: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation heatmap and one uncertainty heatmap of an ensemble.

    Parameters
    ----------
    members : (K, H, W) ndarray of float (may be a ``np.memmap``)
        Tumor probability of each member, values in [0, 1].
    method : {"entropy", "mi", "variance"}, optional
        Which uncertainty (see :data:`UNCERTAINTY_METHODS`); only that one is
        computed.
    chunk_rows : int, optional
        Rows processed at a time.

    Returns
    -------
    segmentation : (H, W) float32
        ``mean_k p_k``.
    uncertainty : (H, W) float32
        The chosen uncertainty.

    Examples
    --------
    >>> members = np.array([[[0.2, 1.0]], [[0.8, 1.0]]])
    >>> s, u = uncertainty_map(members, method="entropy")
    >>> u
    array([[0.6931472, 0.       ]], dtype=float32)
    """
    if method not in UNCERTAINTY_METHODS:
        raise ValueError(
            f"unknown uncertainty method {method!r}; use one of " + ", ".join(repr(m) for m in UNCERTAINTY_METHODS)
        )
    members = members if isinstance(members, np.ndarray) else np.asarray(members)
    mean, entropy, mi, variance = _heatmaps(
        members,
        chunk_rows=chunk_rows,
        want_mi=method == "mi",
        want_variance=method == "variance",
    )
    if method == "mi":
        assert mi is not None
        return mean, mi
    if method == "variance":
        assert variance is not None
        return mean, variance
    return mean, entropy
