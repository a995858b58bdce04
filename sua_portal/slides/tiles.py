"""Reading slides with large-image: the slide check, DeepZoom tiles, thumbnails and regions.

Nothing here knows about Django: functions take a filesystem path (see
``services.local_path``) and raise :class:`SlideReadError` or
:class:`TileOutOfRange`, which the views turn into HTTP answers.

Opened tile sources are kept per process (:func:`open_source`); large-image
caches sources and encoded tiles as well, so a hot tile costs a dictionary
lookup.  Interior DeepZoom tiles are the file's own JPEG data wherever it has
them: for a JPEG-tiled TIFF with shared JPEG tables large-image's ``getTile``
passes them through; where every tile is a complete YCbCr JPEG of its own (as
tifffile writes them, the synthetic slides among them), which large-image would
decode and encode again (most of a cold tile's cost), :class:`RawJPEGTiles`
reads them from the file itself.  Other tiles are large-image's ``getTile``
bytes; edge tiles and the small levels above the pyramid are decoded and
encoded here.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import large_image
import numpy as np
import tifffile
from large_image.constants import TILE_FORMAT_NUMPY
from PIL import Image

from analysis import slide_io

__all__ = [
    "JPEG_QUALITY",
    "DeepZoom",
    "SlideInfo",
    "SlideReadError",
    "TileOutOfRange",
    "deep_zoom",
    "inspect_slide",
    "open_source",
    "region",
    "slide_size",
    "thumbnail",
]

#: Quality of the JPEG tiles large-image encodes (raw JPEG tiles pass through unchanged).
JPEG_QUALITY = 90
#: Kept in every tile ETag: bump it when the way tiles are made changes.
TILES_VERSION = "2"  # 2: complete JPEG tiles of a TIFF passed through
_SOURCE_CACHE_SIZE = 64
# Thumbnails and regions are made in memory: keep one answer to a few megapixels.
MAX_OUTPUT_SIDE = 4096


class SlideReadError(Exception):
    """The file is not a slide large-image can read, or a part of it does not decode.

    The message is meant for a person: it says what is wrong without file-system paths.
    """


class TileOutOfRange(LookupError):
    """A tile or region outside the slide's pyramid."""


@dataclass(frozen=True)
class SlideInfo:
    """What the slide check learns about a file."""

    width: int
    height: int
    levels: int
    mpp: float | None
    magnification: float | None
    source: str
    tile_width: int
    tile_height: int
    tissue_fraction: float | None = None


# --------------------------------------------------------------------------- sources


_sources: OrderedDict[str, Any] = OrderedDict()
#: The DeepZoom view of each cached source (its stored-tile tables among it), by path.
_zooms: dict[str, DeepZoom] = {}
_sources_lock = threading.Lock()


def open_source(path: Path | str) -> Any:
    """The large-image tile source of ``path``, opened once per process (LRU of 64).

    The encoding is fixed when a source is opened (``getTile(encoding=...)``
    is ignored), so every source here serves JPEG.
    """
    key = str(path)
    with _sources_lock:
        source = _sources.get(key)
        if source is not None:
            _sources.move_to_end(key)
            return source
    try:
        source = large_image.open(key, encoding="JPEG", jpegQuality=JPEG_QUALITY)
    except Exception as exc:  # large-image raises many kinds; all mean "cannot read"
        raise SlideReadError(f"large-image cannot open the slide ({_short(exc)})") from exc
    with _sources_lock:
        _sources[key] = source
        while len(_sources) > _SOURCE_CACHE_SIZE:
            gone, _ = _sources.popitem(last=False)
            _zooms.pop(gone, None)
    return source


def forget_source(path: Path | str) -> None:
    """Drop a cached source and its DeepZoom view (the file was deleted or replaced)."""
    with _sources_lock:
        _sources.pop(str(path), None)
        _zooms.pop(str(path), None)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # Object reprs ("<_io.BytesIO object at 0x7f...>") mean nothing to a person.
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip() or type(exc).__name__
    # Messages from the readers name the (temporary) path: keep only the file name.
    for word in text.split():
        if "/" in word:
            text = text.replace(word, Path(word.strip("'\"(),:")).name)
    return text[:300]


# --------------------------------------------------------------------------- the slide check


def _level_tiles(source: Any, z: int) -> tuple[int, int]:
    scale = 2 ** (source.levels - 1 - z)
    return (
        max(1, math.ceil(source.sizeX / (source.tileWidth * scale))),
        max(1, math.ceil(source.sizeY / (source.tileHeight * scale))),
    )


def slide_size(path: Path | str) -> tuple[int, int]:
    """Level-0 width and height, from the header only (nothing decoded, nothing cached)."""
    try:
        source = large_image.open(str(path), noCache=True)
    except Exception as exc:
        raise SlideReadError("it is not a whole-slide image that large-image can open") from exc
    return int(source.sizeX), int(source.sizeY)


def inspect_slide(path: Path | str, *, heatmap_downsample: float | None = None) -> SlideInfo:
    """Open a slide and prove it decodes: thumbnail, first and last tile of every level.

    With ``heatmap_downsample``, also its tissue fraction: the share of the
    tissue mask that inference at that heatmap downsample runs on
    (:func:`analysis.slide_io.tissue_fraction`).

    Raises :class:`SlideReadError` with a reason a person understands: empty,
    truncated, not a slide, or a level whose tiles cannot be decoded.  Opened
    with ``noCache`` so that checking a temporary file leaves nothing open.
    """
    path = Path(path)
    if not path.is_file():
        raise SlideReadError("the slide file is missing from storage")
    if path.stat().st_size == 0:
        raise SlideReadError("the file is empty")
    try:
        slide_io.check_tiff_complete(path)
    except slide_io.SlideError as exc:
        raise SlideReadError(str(exc)) from None
    try:
        source = large_image.open(str(path), encoding="JPEG", noCache=True)
    except Exception as exc:
        raise SlideReadError("it is not a whole-slide image that large-image can open") from exc
    try:
        width, height = int(source.sizeX), int(source.sizeY)
        if width < 1 or height < 1:
            raise SlideReadError(f"the slide has no pixels ({width} x {height})")
        try:
            source.getThumbnail(width=256, height=256, format=TILE_FORMAT_NUMPY)
        except SlideReadError:
            raise
        except Exception as exc:
            raise SlideReadError(f"its thumbnail cannot be decoded ({_short(exc)})") from exc
        for z in range(source.levels):
            cols, rows = _level_tiles(source, z)
            for x, y in {(0, 0), (cols - 1, rows - 1)}:
                try:
                    source.getTile(x, y, z, format=TILE_FORMAT_NUMPY, numpyAllowed="always")
                except Exception as exc:
                    raise SlideReadError(
                        f"tile ({x}, {y}) of pyramid level {z} of {source.levels} cannot be decoded ({_short(exc)})"
                    ) from exc
        metadata = source.getMetadata()
        mm_x = metadata.get("mm_x")
        native_levels = sum(1 for level in source._nonemptyLevelsList() if level is not None)
        fraction = None
        if heatmap_downsample is not None:
            try:
                fraction = slide_io.tissue_fraction(
                    slide_io.slide_from_source(path, source), heatmap_downsample=heatmap_downsample
                )
            except Exception as exc:
                raise SlideReadError(f"its low-resolution image cannot be read ({_short(exc)})") from exc
        return SlideInfo(
            width=width,
            height=height,
            levels=max(1, native_levels),
            mpp=float(mm_x) * 1000.0 if mm_x else None,
            magnification=float(metadata["magnification"]) if metadata.get("magnification") else None,
            source=str(getattr(source, "name", type(source).__name__)),
            tile_width=int(source.tileWidth),
            tile_height=int(source.tileHeight),
            tissue_fraction=fraction,
        )
    finally:
        del source


# --------------------------------------------------------------------------- DeepZoom


def _encode(array: np.ndarray, fmt: str) -> bytes:
    image = Image.fromarray(slide_io.to_rgb8(array))
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, format="PNG", compress_level=2)
    else:
        # Same settings as large-image's own JPEG encoder (full chroma).
        image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


#: Every JPEG starts with SOI and ends with EOI; a stored tile that does not is left to large-image.
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


class RawJPEGTiles:
    """The stored JPEG tiles of a TIFF whose every tile is a complete JPEG, by large-image level.

    A level qualifies when its page is tiled with ``tile_size`` square tiles,
    JPEG-compressed as YCbCr (what a browser decodes without being told the
    colour space), 8-bit, 3 samples, with no shared JPEG tables (with them,
    large-image passes the tiles through already).  Such a tile is served as
    stored: no decoding and encoding again (a cold tile 0.85 -> 0.015 ms), no
    second generation of JPEG loss, and fewer bytes than large-image's quality-90
    copy.  Reads use ``os.pread`` on a descriptor opened per read, so threads
    share nothing and no descriptor outlives a tile.
    """

    def __init__(self, path: Path | str, levels: dict[int, tuple[int, np.ndarray, np.ndarray]]) -> None:
        self.path = str(path)
        #: large-image level -> (tiles across, offsets, byte counts), one entry per tile, row-major
        self.levels = levels

    @classmethod
    def of(cls, path: Path | str, level_of: dict[tuple[int, int], int], tile_size: int) -> RawJPEGTiles | None:
        """The qualifying levels of the slide at ``path`` (None: none qualifies, or not a TIFF).

        ``level_of``: large-image's level of each (width, height) its pyramid has.
        """
        try:
            with tifffile.TiffFile(str(path)) as tif:
                pages = [level.pages[0] for level in tif.series[0].levels] if tif.series else []
                levels: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
                for page in pages:
                    if not isinstance(page, tifffile.TiffPage) or not _complete_jpeg_tiles(page, tile_size):
                        continue
                    height, width = int(page.imagelength), int(page.imagewidth)
                    z = level_of.get((width, height))
                    if z is not None:
                        across = math.ceil(width / tile_size)
                        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
                        counts = np.asarray(page.databytecounts, dtype=np.int64)
                        if len(offsets) == across * math.ceil(height / tile_size):
                            levels[z] = (across, offsets, counts)
        except Exception:  # not a TIFF tifffile reads: large-image serves every tile
            return None
        return cls(path, levels) if levels else None

    def tile(self, z: int, col: int, row: int) -> bytes | None:
        """The stored JPEG of tile (col, row) of large-image level ``z``; None where there is none."""
        level = self.levels.get(z)
        if level is None:
            return None
        across, offsets, counts = level
        index = row * across + col
        if not 0 <= index < len(offsets) or counts[index] < 4:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None  # gone from this machine's slide cache: large-image's open file still reads it
        try:
            data = os.pread(fd, int(counts[index]), int(offsets[index]))
        finally:
            os.close(fd)
        return data if data[:2] == _SOI and data[-2:] == _EOI else None


def _complete_jpeg_tiles(page: Any, tile_size: int) -> bool:
    """Whether a tifffile page stores square ``tile_size`` tiles, each a complete 8-bit YCbCr JPEG."""
    return bool(
        page.is_tiled
        and page.tilewidth == page.tilelength == tile_size
        and page.tiledepth == 1
        and int(page.compression) == 7  # JPEG ("new-style")
        and int(page.photometric) == 6  # YCbCr
        and page.samplesperpixel == 3
        and page.bitspersample == 8
        and int(page.planarconfig) == 1  # contiguous
        and not page.jpegtables
    )


class DeepZoom:
    """The DeepZoom (DZI) pyramid of a large-image source, for OpenSeadragon.

    DZI level ``L`` (``0 .. max_level``) is the image scaled by
    ``2 ** (L - max_level)``, ``ceil(W / 2**(max_level - L))`` pixels wide,
    cut into ``tile_size`` squares without overlap (edge tiles smaller).
    large-image level ``z`` has the same scale when ``z = L - offset`` with
    ``offset = max_level - (source.levels - 1)`` and the same tile grid when its
    tiles are square, so those tiles are large-image's own.  Levels coarser than
    large-image's coarsest (``L < offset``: one small tile each) are scaled down
    from that coarsest tile.
    """

    def __init__(self, source: Any, path: Path | str | None = None) -> None:
        self.source = source
        self.width = int(source.sizeX)
        self.height = int(source.sizeY)
        self.square = source.tileWidth == source.tileHeight
        self.tile_size = int(source.tileWidth) if self.square else 256
        self.max_level = max(0, math.ceil(math.log2(max(self.width, self.height))))
        self.offset = self.max_level - (source.levels - 1)
        # The file's own complete JPEG tiles, where it has them (read once, with the source).
        level_of = {self.level_size(z + self.offset): z for z in range(int(source.levels))}
        self.raw = RawJPEGTiles.of(path, level_of, self.tile_size) if path is not None and self.square else None

    def level_size(self, level: int) -> tuple[int, int]:
        scale = 2 ** (self.max_level - level)
        return max(1, math.ceil(self.width / scale)), max(1, math.ceil(self.height / scale))

    def tile_grid(self, level: int) -> tuple[int, int]:
        w, h = self.level_size(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def descriptor(self) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'TileSize="{self.tile_size}" Overlap="0" Format="jpeg">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )

    def tile(self, level: int, col: int, row: int) -> bytes:
        """JPEG bytes of one DZI tile; :class:`TileOutOfRange` outside the pyramid."""
        if not 0 <= level <= self.max_level:
            raise TileOutOfRange(f"level {level} is outside 0..{self.max_level}")
        cols, rows = self.tile_grid(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileOutOfRange(f"tile ({col}, {row}) is outside the {cols} x {rows} tiles of level {level}")
        level_w, level_h = self.level_size(level)
        want_w = min(self.tile_size, level_w - col * self.tile_size)
        want_h = min(self.tile_size, level_h - row * self.tile_size)
        try:
            if not self.square:
                return _encode(self._tile_from_region(level, col, row, want_w, want_h), "JPEG")
            z = level - self.offset
            if z >= 0:
                if want_w == self.tile_size and want_h == self.tile_size:
                    raw = self.raw.tile(z, col, row) if self.raw is not None else None
                    return raw if raw is not None else bytes(self.source.getTile(col, row, z))
                array = self.source.getTile(col, row, z, format=TILE_FORMAT_NUMPY, numpyAllowed="always")
                return _encode(np.asarray(array)[:want_h, :want_w], "JPEG")
            # Above large-image's pyramid: shrink its single coarsest tile.
            coarsest = np.asarray(self.source.getTile(0, 0, 0, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))
        except TileOutOfRange:
            raise
        except Exception as exc:
            raise SlideReadError(f"tile {level}/{col}_{row} cannot be read ({_short(exc)})") from exc
        top_w, top_h = self.level_size(self.offset)
        image = Image.fromarray(slide_io.to_rgb8(coarsest[:top_h, :top_w]))
        return _encode(np.asarray(image.resize((level_w, level_h), Image.Resampling.LANCZOS)), "JPEG")

    def _tile_from_region(self, level: int, col: int, row: int, want_w: int, want_h: int) -> np.ndarray:
        scale = 2 ** (self.max_level - level)
        left, top = col * self.tile_size * scale, row * self.tile_size * scale
        right = min(self.width, left + want_w * scale)
        bottom = min(self.height, top + want_h * scale)
        array, _ = self.source.getRegion(
            region={"left": left, "top": top, "right": right, "bottom": bottom, "units": "base_pixels"},
            output={"maxWidth": want_w, "maxHeight": want_h},
            format=TILE_FORMAT_NUMPY,
        )
        array = slide_io.to_rgb8(np.asarray(array))
        if array.shape[:2] != (want_h, want_w):
            array = np.asarray(Image.fromarray(array).resize((want_w, want_h), Image.Resampling.LANCZOS))
        return array


def deep_zoom(path: Path | str) -> DeepZoom:
    """The DeepZoom view of the slide at ``path``, cached with its source (and dropped with it)."""
    source = open_source(path)
    key = str(path)
    with _sources_lock:
        zoom = _zooms.get(key)
    if zoom is None or zoom.source is not source:
        zoom = DeepZoom(source, path)
        with _sources_lock:
            if _sources.get(key) is source:  # not evicted meanwhile: keep the view as long as the source
                _zooms[key] = zoom
    return zoom


# --------------------------------------------------------------------------- thumbnails and regions


def thumbnail(path: Path | str, *, width: int, height: int, fmt: str) -> bytes:
    """The whole slide scaled to fit ``width`` x ``height`` (aspect kept), PNG or JPEG."""
    source = open_source(path)
    try:
        array, _ = source.getThumbnail(width=width, height=height, format=TILE_FORMAT_NUMPY)
    except Exception as exc:
        raise SlideReadError(f"the thumbnail cannot be read ({_short(exc)})") from exc
    return _encode(np.asarray(array), fmt)


def region(
    path: Path | str, *, left: int, top: int, width: int, height: int, max_size: int, fmt: str
) -> bytes:
    """A level-0 rectangle, scaled down to fit ``max_size`` when larger, PNG or JPEG."""
    source = open_source(path)
    if width < 1 or height < 1:
        raise TileOutOfRange("the region must be at least 1 x 1 pixel")
    if left < 0 or top < 0 or left + width > source.sizeX or top + height > source.sizeY:
        raise TileOutOfRange(
            f"the region ({left}, {top}) + {width} x {height} is not inside the slide's "
            f"{source.sizeX} x {source.sizeY} pixels"
        )
    side = max(1, min(max_size, MAX_OUTPUT_SIDE))
    try:
        array, _ = source.getRegion(
            region={"left": left, "top": top, "width": width, "height": height, "units": "base_pixels"},
            # Never enlarge: a small region comes back at level-0 resolution.
            output={"maxWidth": min(side, width), "maxHeight": min(side, height)},
            format=TILE_FORMAT_NUMPY,
        )
    except Exception as exc:
        raise SlideReadError(f"the region cannot be read ({_short(exc)})") from exc
    return _encode(np.asarray(array), fmt)
