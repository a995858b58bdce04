"""A thin reader over large-image: RGB regions at a downsample, and a tissue mask.

The one slide reader and the one definition of tissue: inference, training and
the portal (its tile service and the cohort page's "Tissue %") all read pixels
with :func:`to_rgb8` and find tissue with :func:`tissue_mask`.

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

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

from analysis import defaults

__all__ = [
    "Slide",
    "SlideError",
    "check_tiff_complete",
    "level_shape",
    "open_slide",
    "read_region",
    "read_thumbnail",
    "slide_from_source",
    "tissue_downsample",
    "tissue_fraction",
    "tissue_mask",
    "to_rgb8",
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
    except Exception as exc:  # large-image raises its own TileSourceError, and others on bad files
        raise SlideError(f"{path}: cannot open the slide ({' '.join(str(exc).split())})") from exc
    return slide_from_source(path, source)


def slide_from_source(path: str | os.PathLike[str], source: Any) -> Slide:
    """A :class:`Slide` over a large-image source someone else opened (the tile service's, say).

    Raises
    ------
    SlideError
        If the source cannot describe itself.
    """
    path = Path(path)
    try:
        metadata = source.getMetadata()
    except Exception as exc:
        raise SlideError(f"{path}: cannot open the slide ({' '.join(str(exc).split())})") from exc
    mm_x = metadata.get("mm_x")
    mpp = float(mm_x) * 1000.0 if mm_x else None
    return Slide(path=path, source=source, width=int(metadata["sizeX"]), height=int(metadata["sizeY"]), mpp=mpp)


def check_tiff_complete(path: str | os.PathLike[str]) -> None:
    """Raise :class:`SlideError` when a TIFF's image directories or image data run past its end.

    A truncated pyramidal TIFF still opens (large-image makes up the missing
    levels from the ones it finds) and its first tiles decode, so only the
    structure tells: every image directory, strip and tile must lie inside the
    file.  tifffile reads the directories and their data offsets and byte
    counts; the chain of directories ends where tifffile stopped only if the
    last one's next-directory pointer is 0.  Files that are not TIFF (DICOM,
    MIRAX) are left to the decode checks.  The message names no path (it is
    shown to the person who uploaded the file).
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fh.read(2) not in (b"II", b"MM"):
            return

    def truncated(what: str, end: int) -> SlideError:
        return SlideError(f"the file is truncated: {what} reaches byte {end:,} but the file has only {size:,} bytes")

    # tifffile logs, and skips, a tag whose value lies past the end: collect those.
    past_end = _PastEndRecords()
    tifffile_log = logging.getLogger("tifffile")
    tifffile_log.addHandler(past_end)
    try:
        with tifffile.TiffFile(path) as tif:
            pages: dict[int, Any] = {page.offset: page for page in tif.pages}
            for series in tif.series:
                for level in series.levels:
                    pages.update((page.offset, page) for page in level.pages if page is not None)
            # tifffile stops quietly (it logs) at a directory beyond the end: read the pointer it stopped at.
            pointer_at = tif.pages.next_page_offset
            if pointer_at is not None:
                if pointer_at + tif.tiff.offsetsize > size:
                    raise truncated("an image directory", pointer_at + tif.tiff.offsetsize)
                tif.filehandle.seek(pointer_at)
                raw = tif.filehandle.read(tif.tiff.offsetsize)
                following = int.from_bytes(raw, "little" if tif.byteorder == "<" else "big")
                if following >= size:
                    raise truncated("an image directory", following)
            for page in pages.values():
                for subifd in getattr(page, "subifds", None) or ():
                    if subifd >= size:
                        raise truncated("an image directory", subifd)
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
                if ends and max(ends) > size:
                    raise truncated("the image data", max(ends))
    except tifffile.TiffFileError as exc:
        # A cut inside the first directories leaves tifffile nothing to read at all.
        raise SlideError(
            f"the file is truncated or damaged: its image directories cannot be read ({' '.join(str(exc).split())})"
        ) from exc
    finally:
        tifffile_log.removeHandler(past_end)
    if past_end.offsets:
        raise truncated("a tag's value", max(past_end.offsets))


class _PastEndRecords(logging.Handler):
    """The offsets of tifffile's "invalid value offset N" records (tag values past the end of the file)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.offsets: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"invalid value offset (\d+)", record.getMessage())
        if found:
            self.offsets.append(int(found.group(1)))


def level_shape(slide: Slide, downsample: float) -> tuple[int, int]:
    """(height, width) of the slide's grid at ``downsample`` (whole blocks only)."""
    _check_downsample(downsample)
    return int(slide.height // downsample), int(slide.width // downsample)


def _check_downsample(downsample: float) -> None:
    if not (downsample >= 1.0 and math.isfinite(downsample)):
        raise ValueError(f"downsample must be a finite number >= 1, got {downsample!r}")


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 from whatever large-image returned.

    Grey, grey + alpha, RGB or RGBA; 8 or 16 bit, or float.  Transparent
    pixels are composited over white (glass), so a reader never sees the
    colour values under a zero alpha.

    >>> to_rgb8(np.array([[[0, 0, 0, 0], [10, 20, 30, 255]]], dtype=np.uint8)).tolist()
    [[[255, 255, 255], [10, 20, 30]]]
    """
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
    rgb = to_rgb8(np.asarray(array))
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
    rgb = to_rgb8(np.asarray(array))
    out = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
    h, w = min(out_h, rgb.shape[0]), min(out_w, rgb.shape[1])
    out[:h, :w] = rgb[:h, :w]
    return out


def tissue_mask(
    slide: Slide | np.ndarray,
    *,
    downsample: float,
    min_saturation: float = defaults.TISSUE_MIN_SATURATION,
    min_object_px: int = defaults.TISSUE_MIN_OBJECT_PX,
    max_hole_px: int = defaults.TISSUE_MAX_HOLE_PX,
) -> np.ndarray:
    """Where the slide holds tissue, on the grid at ``downsample``.

    Otsu's threshold on the HSV saturation of a low-resolution thumbnail
    (glass is grey-white: unsaturated; stained tissue is not), never below
    ``min_saturation`` so that a blank slide is not split into "tissue" noise;
    then 8-connected components under ``min_object_px`` pixels (dust) are
    removed and holes of at most ``max_hole_px`` pixels (nuclei-free spots,
    small lumina) are filled.  Background touching the border is glass around
    the tissue, never a hole, whatever its size.

    Parameters
    ----------
    slide
        An open :class:`Slide`, or an RGB thumbnail ``(h, w, 3)`` uint8 already
        read at ``downsample``.
    downsample
        Of the mask relative to level 0; coarse (16-64) is enough and fast
        (:func:`tissue_downsample` picks one).

    Returns
    -------
    np.ndarray
        bool, ``(ceil(H0 / d), ceil(W0 / d))`` for a slide, the thumbnail's
        ``(h, w)`` otherwise.

    Examples
    --------
    >>> glass = np.full((32, 32, 3), 235, dtype=np.uint8)
    >>> glass[8:24, 8:24] = (200, 80, 160)  # a pink square of stained tissue
    >>> int(tissue_mask(glass, downsample=16).sum())
    256
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
        threshold = max(threshold, float(threshold_otsu(saturation, nbins=256)))
    mask = saturation > threshold
    if min_object_px > 1 and mask.any():
        mask = remove_small_objects(mask, max_size=min_object_px - 1, connectivity=2)
    if max_hole_px > 0 and mask.any():
        # A glass frame wider than any hole joins all border-touching background
        # into one region too large to fill.
        pad = math.isqrt(max_hole_px) + 1
        framed = np.pad(mask, pad, constant_values=False)
        mask = remove_small_holes(framed, max_size=max_hole_px, connectivity=1)[pad:-pad, pad:-pad]
    return np.asarray(mask)


def tissue_downsample(slide: Slide, *, heatmap_downsample: float) -> float:
    """The downsample of the tissue mask that inference at ``heatmap_downsample`` uses.

    The heatmap downsample times the smallest power of two that keeps the
    thumbnail within ``TISSUE_MAX_SIDE`` pixels and at least
    ``TISSUE_MIN_DOWNSAMPLE`` times coarser than level 0, where Otsu sees
    tissue rather than single nuclei.

    >>> tissue_downsample(Slide(Path("s.tiff"), None, 100_000, 60_000, None), heatmap_downsample=4)
    32.0
    """
    _check_downsample(heatmap_downsample)
    downsample = float(heatmap_downsample)
    while downsample < defaults.TISSUE_MIN_DOWNSAMPLE or max(slide.width, slide.height) / downsample > (
        defaults.TISSUE_MAX_SIDE
    ):
        downsample *= 2
    return downsample


def tissue_fraction(slide: Slide, *, heatmap_downsample: float) -> float:
    """Fraction of the slide that is tissue, by the mask inference at ``heatmap_downsample`` uses.

    What the cohort page shows as "Tissue %": the mean of :func:`tissue_mask`
    at :func:`tissue_downsample`, so that it is the tissue inference runs on.
    """
    mask = tissue_mask(slide, downsample=tissue_downsample(slide, heatmap_downsample=heatmap_downsample))
    return float(mask.mean()) if mask.size else 0.0
