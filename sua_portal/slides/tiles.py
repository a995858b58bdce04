"""Reading slides with large-image: the slide check, DeepZoom tiles, thumbnails and regions.

Nothing here knows about Django: functions take a filesystem path (see
``services.local_path``) and raise :class:`SlideReadError` or
:class:`TileOutOfRange`, which the views turn into HTTP answers.

Opened tile sources are kept per process (:func:`open_source`); large-image
caches sources and encoded tiles as well, so a hot tile costs a dictionary
lookup.  Interior DeepZoom tiles are large-image's own ``getTile`` bytes: for a
JPEG-tiled TIFF with shared JPEG tables these are the file's own JPEG data
(passed through without decoding); where every tile is a complete JPEG of its
own (as tifffile writes them, the synthetic slides among them) large-image
decodes and encodes the tile again, which is most of a cold tile's cost.  Edge
tiles and the small levels above the pyramid are decoded and encoded here.
"""

from __future__ import annotations

import io
import math
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import large_image
import numpy as np
from large_image.constants import TILE_FORMAT_NUMPY
from PIL import Image
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

__all__ = [
    "JPEG_QUALITY",
    "DeepZoom",
    "SlideInfo",
    "SlideReadError",
    "TileOutOfRange",
    "check_tiff_structure",
    "deep_zoom",
    "inspect_slide",
    "open_source",
    "region",
    "slide_size",
    "thumbnail",
    "tissue_fraction",
]

#: Quality of the JPEG tiles large-image encodes (raw JPEG tiles pass through unchanged).
JPEG_QUALITY = 90
#: Kept in every tile ETag: bump it when the way tiles are made changes.
TILES_VERSION = "1"
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
            _sources.popitem(last=False)
    return source


def forget_source(path: Path | str) -> None:
    """Drop a cached source (the file was deleted or replaced)."""
    with _sources_lock:
        _sources.pop(str(path), None)


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


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 13: ("I", 4), 16: ("Q", 8), 18: ("Q", 8)}
_STRIP_OFFSETS, _STRIP_COUNTS, _TILE_OFFSETS, _TILE_COUNTS, _SUBIFDS = 273, 279, 324, 325, 330


def check_tiff_structure(path: Path | str) -> None:
    """Raise :class:`SlideReadError` when a TIFF's directories or image data run past its end.

    A truncated pyramidal TIFF still opens (large-image makes up the missing
    levels from the ones it finds) and its first tiles decode, so only the
    structure tells: every image directory, strip and tile must lie inside the
    file.  Files that are not TIFF (DICOM, MIRAX) are left to the decode checks.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
        if head[:2] not in (b"II", b"MM") or len(head) < 8:
            return
        order = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 42:
            big, count_fmt, entry_size, offset_fmt = False, "H", 12, "I"
            first = struct.unpack(order + "I", head[4:8])[0]
            if size > 2**32:
                # Only NDPI goes past 4 GiB in classic TIFF, with offsets of its own: not checkable here.
                return
        elif magic == 43 and len(head) >= 16:
            big, count_fmt, entry_size, offset_fmt = True, "Q", 20, "Q"
            first = struct.unpack(order + "Q", head[8:16])[0]
        else:
            return
        count_size = struct.calcsize(count_fmt)
        offset_size = struct.calcsize(offset_fmt)
        inline = 8 if big else 4
        pending: list[int] = [first]
        seen: set[int] = set()

        def truncated(what: str, end: int) -> SlideReadError:
            return SlideReadError(
                f"the file is truncated: {what} reaches byte {end:,} but the file has only {size:,} bytes"
            )

        def values(type_: int, count: int, raw: bytes) -> list[int]:
            fmt, item = _TIFF_TYPES[type_]
            if count * item <= inline:
                data = raw[: count * item]
            else:
                where = struct.unpack(order + offset_fmt, raw[:offset_size])[0]
                if where + count * item > size:
                    raise truncated("a tag's value", where + count * item)
                fh.seek(where)
                data = fh.read(count * item)
            return list(struct.unpack(f"{order}{count}{fmt}", data))

        while pending:
            offset = pending.pop()
            if offset == 0 or offset in seen:
                continue
            if len(seen) > 100_000:
                raise SlideReadError("the file's image directories never end (a loop)")
            seen.add(offset)
            if offset + count_size > size:
                raise truncated("an image directory", offset + count_size)
            fh.seek(offset)
            n = struct.unpack(order + count_fmt, fh.read(count_size))[0]
            end = offset + count_size + n * entry_size + offset_size
            if end > size:
                raise truncated("an image directory", end)
            block = fh.read(n * entry_size + offset_size)
            tags: dict[int, list[int]] = {}
            for i in range(n):
                entry = block[i * entry_size : (i + 1) * entry_size]
                tag, type_ = struct.unpack(order + "HH", entry[:4])
                if tag not in (_STRIP_OFFSETS, _STRIP_COUNTS, _TILE_OFFSETS, _TILE_COUNTS, _SUBIFDS):
                    continue
                if type_ not in _TIFF_TYPES:
                    continue
                count = struct.unpack(order + offset_fmt, entry[4 : 4 + offset_size])[0]
                if count > 50_000_000:
                    raise SlideReadError("the file has an implausible tile table (damaged file)")
                tags[tag] = values(type_, count, entry[4 + offset_size :])
            pending.append(struct.unpack(order + offset_fmt, block[n * entry_size :])[0])
            pending.extend(tags.get(_SUBIFDS, []))
            for offsets_tag, counts_tag in ((_STRIP_OFFSETS, _STRIP_COUNTS), (_TILE_OFFSETS, _TILE_COUNTS)):
                offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
                if offsets and counts:
                    data_end = max(o + c for o, c in zip(offsets, counts, strict=False) if c)
                    if data_end > size:
                        raise truncated("the image data", data_end)


def _level_tiles(source: Any, z: int) -> tuple[int, int]:
    scale = 2 ** (source.levels - 1 - z)
    return (
        max(1, math.ceil(source.sizeX / (source.tileWidth * scale))),
        max(1, math.ceil(source.sizeY / (source.tileHeight * scale))),
    )


def _rgb(array: np.ndarray) -> np.ndarray:
    """uint8 RGB from whatever a source returns (grey, grey+alpha, RGBA, 16 bit)."""
    if array.dtype != np.uint8:
        top = float(array.max()) if array.size else 1.0
        scale = 255.0 / (65535.0 if array.dtype == np.uint16 else max(top, 1.0))
        array = np.clip(array.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] in (1, 2):
        array = np.repeat(array[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def tissue_fraction(source: Any, *, max_side: int = 1024) -> float:
    """Fraction of a low-resolution image that is tissue: Otsu on HSV saturation.

    Glass is bright and grey (low saturation), stained tissue is coloured.  A
    floor on the threshold keeps an empty slide at zero instead of letting Otsu
    split the noise of the glass in two.
    """
    array, _ = source.getRegion(output={"maxWidth": max_side, "maxHeight": max_side}, format=TILE_FORMAT_NUMPY)
    array = np.asarray(array)
    alpha = array[:, :, 3] > 0 if array.ndim == 3 and array.shape[2] == 4 else None
    saturation = rgb2hsv(_rgb(array))[:, :, 1]
    values = saturation[alpha] if alpha is not None else saturation.ravel()
    if values.size == 0:
        return 0.0
    threshold = threshold_otsu(values) if float(values.max()) > float(values.min()) else float(values.max())
    tissue = values > max(float(threshold), 0.07)
    return float(tissue.sum()) / float(saturation.size)


def slide_size(path: Path | str) -> tuple[int, int]:
    """Level-0 width and height, from the header only (nothing decoded, nothing cached)."""
    try:
        source = large_image.open(str(path), noCache=True)
    except Exception as exc:
        raise SlideReadError("it is not a whole-slide image that large-image can open") from exc
    return int(source.sizeX), int(source.sizeY)


def inspect_slide(path: Path | str, *, tissue: bool = True) -> SlideInfo:
    """Open a slide and prove it decodes: thumbnail, first and last tile of every level.

    Raises :class:`SlideReadError` with a reason a person understands: empty,
    truncated, not a slide, or a level whose tiles cannot be decoded.  Opened
    with ``noCache`` so that checking a temporary file leaves nothing open.
    """
    path = Path(path)
    if not path.is_file():
        raise SlideReadError("the slide file is missing from storage")
    if path.stat().st_size == 0:
        raise SlideReadError("the file is empty")
    check_tiff_structure(path)
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
        if tissue:
            try:
                fraction = tissue_fraction(source)
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
    image = Image.fromarray(_rgb(array))
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, format="PNG", compress_level=2)
    else:
        # Same settings as large-image's own JPEG encoder (full chroma).
        image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


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

    def __init__(self, source: Any) -> None:
        self.source = source
        self.width = int(source.sizeX)
        self.height = int(source.sizeY)
        self.square = source.tileWidth == source.tileHeight
        self.tile_size = int(source.tileWidth) if self.square else 256
        self.max_level = max(0, math.ceil(math.log2(max(self.width, self.height))))
        self.offset = self.max_level - (source.levels - 1)

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
                    data = self.source.getTile(col, row, z)
                    return bytes(data)
                array = self.source.getTile(col, row, z, format=TILE_FORMAT_NUMPY, numpyAllowed="always")
                return _encode(np.asarray(array)[:want_h, :want_w], "JPEG")
            # Above large-image's pyramid: shrink its single coarsest tile.
            coarsest = np.asarray(self.source.getTile(0, 0, 0, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))
        except TileOutOfRange:
            raise
        except Exception as exc:
            raise SlideReadError(f"tile {level}/{col}_{row} cannot be read ({_short(exc)})") from exc
        top_w, top_h = self.level_size(self.offset)
        image = Image.fromarray(_rgb(coarsest[:top_h, :top_w]))
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
        array = _rgb(np.asarray(array))
        if array.shape[:2] != (want_h, want_w):
            array = np.asarray(Image.fromarray(array).resize((want_w, want_h), Image.Resampling.LANCZOS))
        return array


_zooms: dict[int, DeepZoom] = {}


def deep_zoom(path: Path | str) -> DeepZoom:
    """The DeepZoom view of the slide at ``path`` (cached with its source)."""
    source = open_source(path)
    zoom = _zooms.get(id(source))
    if zoom is None or zoom.source is not source:
        zoom = DeepZoom(source)
        if len(_zooms) > 4 * _SOURCE_CACHE_SIZE:
            _zooms.clear()
        _zooms[id(source)] = zoom
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
