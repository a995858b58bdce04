"""Refined segmentation masks (SPEC §6, experiment 2) and their pyramidal TIFF files.

A run stores, per slide and range, the two refined masks of the paper:

- *SUA-refined*: the original positives (``s >= upper``) plus every pixel of
  each NPR flagged by the calibrated threshold (:func:`analysis.sua.sua_refine`);
- *baseline-refined*: the original positives plus every candidate pixel whose
  own uncertainty reaches the baseline threshold
  (:func:`analysis.sua.baseline_refine`).

They are written as tiled, compressed, pyramidal TIFFs (sub-IFDs, each level
half the previous one, a pixel of a coarser level set when any of the 2 x 2
pixels under it is, so that a one-pixel region stays visible when zoomed
out) that a tile server or :func:`read_mask_tiff` reads back; the heatmap's
downsample travels in the image description.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image

from analysis import defaults
from analysis.sua import baseline_refine, find_regions, flag, sua_refine

__all__ = ["RefinedMasks", "read_mask_tiff", "refined_masks", "write_mask_tiff"]

BoolArray = npt.NDArray[np.bool_]

_MASK_FORMAT = "sua-mask"
_INSIDE = 255  # stored value of a set pixel: white in any viewer


@dataclass(frozen=True)
class RefinedMasks:
    """The masks of one slide in one range.

    Attributes
    ----------
    original : (H, W) bool
        ``s >= upper``.
    sua : (H, W) bool
        Original positives plus every pixel of the flagged NPRs.
    baseline : (H, W) bool
        Original positives plus every flagged candidate pixel.
    flagged_regions : (N,) bool
        Which NPRs (labels 1..N) the SUA threshold flagged.
    """

    original: BoolArray
    sua: BoolArray
    baseline: BoolArray
    flagged_regions: BoolArray


def refined_masks(
    segmentation: npt.ArrayLike,
    uncertainty: npt.ArrayLike,
    *,
    lower: float,
    upper: float,
    threshold: float | None,
    baseline_threshold: float | None,
    how: str = defaults.AGGREGATE,
) -> RefinedMasks:
    """The SUA- and baseline-refined masks of one slide (SPEC §6).

    Parameters
    ----------
    segmentation : (H, W) ndarray of float in [0, 1]
    uncertainty : (H, W) ndarray of float
    lower, upper : float
        The range: candidates ``lower < s < upper``, positives ``s >= upper``.
    threshold : float or None
        Calibrated NPR threshold ``tau`` (None flags nothing).
    baseline_threshold : float or None
        Calibrated pixel threshold ``tau_b`` (None flags nothing).
    how : str, optional
        NPR aggregate, ``"mean"`` or ``"pNN"``.

    Returns
    -------
    RefinedMasks

    Examples
    --------
    >>> s = np.array([[0.99, 0.7, 0.1, 0.7]])
    >>> u = np.array([[0.05, 0.6, 0.9, 0.2]])
    >>> m = refined_masks(s, u, lower=0.55, upper=0.95, threshold=0.5, baseline_threshold=0.1)
    >>> m.sua, m.baseline
    (array([[ True,  True, False, False]]), array([[ True,  True, False,  True]]))
    """
    regions = find_regions(segmentation, uncertainty, lower=lower, upper=upper, how=how)
    flagged = flag(regions.scores, threshold)
    s = np.asarray(segmentation)
    return RefinedMasks(
        original=s >= upper,
        sua=sua_refine(s, regions.labels, flagged, upper=upper),
        baseline=baseline_refine(s, uncertainty, lower=lower, upper=upper, threshold=baseline_threshold),
        flagged_regions=flagged,
    )


def _as_binary_mask(mask: npt.ArrayLike) -> BoolArray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W); got shape {m.shape}")
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iuf" or (m.size and not np.isin(m, (0, 1)).all()):
            raise ValueError(f"mask must be boolean (or 0/1), not {m.dtype}")
        m = m != 0
    return m


def _halve_any(mask: BoolArray) -> BoolArray:
    """(ceil(H/2), ceil(W/2)): set where any pixel of the 2 x 2 block is set."""
    h, w = mask.shape
    padded = np.zeros((h + h % 2, w + w % 2), dtype=bool)
    padded[:h, :w] = mask
    return np.asarray(padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).any(axis=(1, 3)))


def write_mask_tiff(
    mask: npt.ArrayLike,
    path: str | os.PathLike[str],
    *,
    downsample: float,
    tile: int = 256,
    compression: str = "zlib",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a binary mask as a tiled, compressed, pyramidal TIFF.

    Parameters
    ----------
    mask : (H, W) ndarray of bool (or 0/1)
        On the heatmap grid.
    path : path-like
    downsample : float
        Level-0 pixels per mask pixel; stored in the description.
    tile : int, optional
        Tile side, a multiple of 16 (TIFF); levels are added, each half the
        previous (2 x 2 "any"), until one fits in a tile.
    compression : str, optional
        A tifffile compression ("zlib", "zstd", "lzw", ...).
    extra : dict, optional
        More JSON-ready metadata for the description (e.g. the range).

    Returns
    -------
    Path
        ``path``; set pixels are stored as 255, others 0 (uint8).

    Examples
    --------
    >>> import tempfile; folder = tempfile.mkdtemp()
    >>> mask = np.zeros((600, 300), bool); mask[10:20, 30:40] = True
    >>> path = write_mask_tiff(mask, f"{folder}/sua.tif", downsample=16.0)
    >>> back, d = read_mask_tiff(path)
    >>> bool((back == mask).all()), d, read_mask_tiff(path, level=2)[0].shape
    (True, 16.0, (150, 75))
    """
    m = _as_binary_mask(mask)
    d = float(downsample)
    if not (d > 0 and math.isfinite(d)):
        raise ValueError(f"downsample ({downsample}) must be a positive number")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 16 or tile % 16:
        raise ValueError(f"tile ({tile!r}) must be a positive multiple of 16")
    levels = [m]
    while max(levels[-1].shape) > tile:
        levels.append(_halve_any(levels[-1]))
    description = {"format": _MASK_FORMAT, "downsample": d, "shape": list(m.shape), **(extra or {})}
    options: dict[str, Any] = {
        "tile": (tile, tile),
        "compression": compression,
        "photometric": "minisblack",
        "metadata": None,
    }
    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=m.size > 2**31) as tw:
        tw.write(
            levels[0].astype(np.uint8) * _INSIDE,
            subifds=len(levels) - 1,
            description=json.dumps(description),
            **options,
        )
        for level in levels[1:]:
            tw.write(level.astype(np.uint8) * _INSIDE, subfiletype=1, **options)
    return path


def _json_description(text: str) -> dict[str, Any]:
    """The JSON object a writer put in the image description; {} for any other text."""
    try:
        meta = json.loads(text)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def read_mask_tiff(path: str | os.PathLike[str], *, level: int = 0) -> tuple[BoolArray, float]:
    """Read a mask written by :func:`write_mask_tiff`.

    Parameters
    ----------
    path : path-like
    level : int, optional
        0 = the mask itself, k = the k-th halving (downsample ``d * 2**k``
        for even sizes).

    Returns
    -------
    (mask, downsample)
        (H_k, W_k) bool, and the level-0 pixels per pixel of level 0.

    Raises
    ------
    ValueError
        If the file is not such a mask or has no such level.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            meta = _json_description(tif.pages.first.description)
            if meta.get("format") != _MASK_FORMAT:
                raise ValueError(f"{path}: not a SUA mask TIFF (no {_MASK_FORMAT!r} description)")
            levels = tif.series[0].levels
            if not 0 <= level < len(levels):
                raise ValueError(f"{path}: no level {level} (the pyramid has {len(levels)})")
            data = levels[level].asarray()
    except (OSError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{path}: cannot read the mask ({' '.join(str(exc).split())})") from exc
    return data != 0, float(meta["downsample"])


def mask_png(mask: npt.ArrayLike, rgba: tuple[int, int, int, int]) -> bytes:
    """A mask as a viewer layer: a PNG of one RGBA pixel per mask cell, ``rgba`` inside, clear outside.

    Parameters
    ----------
    mask : (H, W) bool
        The mask (for example a refined mask at the heatmap's grid).
    rgba
        The colour of the mask's pixels (0-255 each, alpha last).
    """
    inside = _as_binary_mask(mask)
    pixels = np.zeros((*inside.shape, 4), dtype=np.uint8)
    pixels[inside] = rgba
    out = io.BytesIO()
    Image.fromarray(pixels, mode="RGBA").save(out, format="PNG")
    return out.getvalue()
