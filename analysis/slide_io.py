"""A thin reader over large-image: RGB regions at a downsample, and a tissue mask.

Coordinates
-----------
A slide of level-0 size ``W0 x H0`` is seen at a downsample ``d`` as a grid of
``floor(W0 / d) x floor(H0 / d)`` pixels (:func:`level_shape`); pixel (r, c)
covers level-0 pixels ``[c d, (c+1) d) x [r d, (r+1) d)``.  Only whole blocks
are read: asking large-image for a partial block at the right or bottom edge
would change its scale and make it resample (LANCZOS) the whole region, and
then one pixel would differ depending on the region it was read in.  Regions
may reach outside the grid; what is outside reads as white (glass).

large-image fixes a source's encoding when it is opened, so arrays are
requested with ``format=TILE_FORMAT_NUMPY`` rather than by re-opening with an
encoding.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "Slide",
    "SlideError",
    "level_shape",
    "open_slide",
    "read_region",
    "read_thumbnail",
    "tissue_mask",
]


class SlideError(ValueError):
    """A slide that cannot be opened or read; the message names the file."""


@dataclass(frozen=True)
class Slide:
    """An open whole-slide image.

    Attributes
    ----------
    path : Path
    source : large_image tile source
        Not thread-safe to share between processes; reading from one thread
        at a time is what this module does.
    width, height : int
        Level-0 size in pixels.
    mpp : float or None
        Micrometres per level-0 pixel, when the file says.
    """

    path: Path
    source: Any
    width: int
    height: int
    mpp: float | None


def open_slide(path: str | os.PathLike[str]) -> Slide:
    """Open a whole-slide image with large-image (tiff, openslide, ... sources).

    Raises
    ------
    SlideError
        If no large-image source opens the file.
    """
    import large_image  # imported here: its source plugins are slow to discover.

    path = Path(path)
    if not path.is_file():
        raise SlideError(f"{path}: no such slide file")
    try:
        source = large_image.open(str(path))
        metadata = source.getMetadata()
    except Exception as exc:  # large-image raises its own TileSourceError, and others on bad files
        raise SlideError(f"{path}: cannot open the slide ({' '.join(str(exc).split())})") from exc
    mm_x = metadata.get("mm_x")
    mpp = float(mm_x) * 1000.0 if mm_x else None
    return Slide(path=path, source=source, width=int(metadata["sizeX"]), height=int(metadata["sizeY"]), mpp=mpp)


def level_shape(slide: Slide, downsample: float) -> tuple[int, int]:
    """(height, width) of the slide's grid at ``downsample`` (whole blocks only)."""
    _check_downsample(downsample)
    return int(slide.height // downsample), int(slide.width // downsample)


def _check_downsample(downsample: float) -> None:
    if not (downsample >= 1.0 and math.isfinite(downsample)):
        raise ValueError(f"downsample must be a finite number >= 1, got {downsample!r}")


def _to_rgb8(array: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 from whatever large-image returned (grey, grey+alpha, RGB, RGBA; 8/16 bit, float)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype != np.uint8:
        if array.dtype == np.uint16:
            array = (array >> 8).astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating):
            # Float sources are taken as 0..1 when they fit, else 0..255.
            scale = 255.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 1.0
            array = np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
        else:
            array = np.clip(array, 0, 255).astype(np.uint8)
    bands = array.shape[2]
    if bands in (2, 4):
        # Transparent means nothing scanned there: composite over white.
        alpha = array[:, :, -1:].astype(np.float32) / 255.0
        colour = array[:, :, :-1].astype(np.float32)
        array = (colour * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
        bands -= 1
    if bands == 1:
        array = np.repeat(array, 3, axis=2)
    elif bands > 3:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def read_region(slide: Slide, *, level_downsample: float, left: int, top: int, width: int, height: int) -> np.ndarray:
    """RGB pixels of a rectangle of the grid at ``level_downsample``.

    Parameters
    ----------
    slide
        From :func:`open_slide`.
    level_downsample
        ``d`` >= 1 relative to level 0 (a native level when the file has one;
        large-image resamples otherwise).
    left, top, width, height
        The rectangle in grid pixels at ``d``; it may reach outside the slide.

    Returns
    -------
    np.ndarray
        ``(height, width, 3)`` uint8; pixels outside the slide are white.

    Examples
    --------
    >>> tile = read_region(slide, level_downsample=4, left=-8, top=0, width=64, height=64)  # doctest: +SKIP
    >>> tile.shape, tile[0, 0].tolist()  # doctest: +SKIP
    ((64, 64, 3), [255, 255, 255])
    """
    import large_image

    _check_downsample(level_downsample)
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be non-negative, got {width} x {height}")
    d = float(level_downsample)
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    grid_h, grid_w = level_shape(slide, d)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, grid_w), min(top + height, grid_h)
    if x1 <= x0 or y1 <= y0:
        return out
    try:
        array, _ = slide.source.getRegion(
            region={
                "left": x0 * d,
                "top": y0 * d,
                "width": (x1 - x0) * d,
                "height": (y1 - y0) * d,
                "units": "base_pixels",
            },
            output={"maxWidth": x1 - x0, "maxHeight": y1 - y0},
            format=large_image.constants.TILE_FORMAT_NUMPY,
        )
    except Exception as exc:
        raise SlideError(
            f"{slide.path}: cannot read region x {x0}..{x1}, y {y0}..{y1} at downsample {d:g} "
            f"({' '.join(str(exc).split())})"
        ) from exc
    rgb = _to_rgb8(np.asarray(array))
    # large-image can round the output size by a pixel for non-native downsamples.
    h = min(rgb.shape[0], y1 - y0)
    w = min(rgb.shape[1], x1 - x0)
    out[y0 - top : y0 - top + h, x0 - left : x0 - left + w] = rgb[:h, :w]
    return out


def read_thumbnail(slide: Slide, *, downsample: float) -> np.ndarray:
    """The whole slide at ``downsample``, shape ``(ceil(H0/d), ceil(W0/d), 3)`` uint8.

    Resampled by large-image from the nearest finer level; for masks and
    previews, not for exact pixels (use :func:`read_region`).
    """
    import large_image

    _check_downsample(downsample)
    out_h, out_w = math.ceil(slide.height / downsample), math.ceil(slide.width / downsample)
    try:
        array, _ = slide.source.getRegion(
            output={"maxWidth": out_w, "maxHeight": out_h}, format=large_image.constants.TILE_FORMAT_NUMPY
        )
    except Exception as exc:
        raise SlideError(f"{slide.path}: cannot read a thumbnail ({' '.join(str(exc).split())})") from exc
    rgb = _to_rgb8(np.asarray(array))
    out = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
    h, w = min(out_h, rgb.shape[0]), min(out_w, rgb.shape[1])
    out[:h, :w] = rgb[:h, :w]
    return out


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256-bin histogram)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected components smaller than ``min_size`` pixels."""
    if min_size <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return np.asarray(keep[labels])


def tissue_mask(
    slide: Slide | np.ndarray,
    *,
    downsample: float,
    min_saturation: float = 0.04,
    min_object_px: int = 16,
    max_hole_px: int = 64,
) -> np.ndarray:
    """Where the slide holds tissue, on the grid at ``downsample``.

    Otsu's threshold on the HSV saturation of a low-resolution thumbnail
    (glass is grey-white: unsaturated; stained tissue is not), never below
    ``min_saturation`` so that a blank slide is not split into "tissue" noise;
    then components under ``min_object_px`` pixels (dust) are removed and
    holes under ``max_hole_px`` pixels (nuclei-free spots, small lumina) are
    filled.

    Parameters
    ----------
    slide
        An open :class:`Slide`, or an RGB thumbnail ``(h, w, 3)`` uint8 already
        read at ``downsample``.
    downsample
        Of the mask relative to level 0; coarse (16-64) is enough and fast.

    Returns
    -------
    np.ndarray
        bool, ``(ceil(H0 / d), ceil(W0 / d))`` for a slide, the thumbnail's
        ``(h, w)`` otherwise.
    """
    rgb = read_thumbnail(slide, downsample=downsample) if isinstance(slide, Slide) else np.asarray(slide)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an RGB image (h, w, 3), got shape {rgb.shape}")
    colour = rgb[:, :, :3].astype(np.float32)
    high = colour.max(axis=2)
    low = colour.min(axis=2)
    saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    threshold = min_saturation
    if saturation.size and float(saturation.max() - saturation.min()) > min_saturation:
        threshold = max(threshold, _otsu(saturation))
    mask = saturation > threshold
    mask = _remove_small(mask, min_object_px)
    if max_hole_px > 0 and mask.any():
        holes = ~mask
        labels, n = ndimage.label(holes)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        # Holes touching the border are background, whatever their size.
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        small = sizes <= max_hole_px
        small[0] = False
        small[border] = False
        mask = mask | small[labels]
    return mask
