"""Reading heatmaps, ensemble members and ground-truth masks from disk; writing heatmap TIFFs.

Every reader validates what it returns and raises :class:`InputError` (a
``ValueError``) whose message names the file and the problem in one line, so
that the command-line tool and the web upload can show it as is.

Containers and value conventions
--------------------------------
* ``.npy`` (memory-mapped), ``.npz`` (the only array, or the one named by
  ``key``), TIFF (tifffile; pyramids as sub-IFDs or as one series per level),
  PNG / JPEG / BMP and other Pillow formats.
* Heatmap values: floating point arrays are taken as they are; ``uint8`` is
  scaled by 1/255 and ``uint16`` by 1/65535 (images saved by other tools);
  ``bool`` is 0/1.  Values must be finite and lie in [0, 1].
* Masks: non-zero is tumor (for colour images: non-zero in any colour
  channel; alpha is ignored).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image

from analysis.errors import InputError

__all__ = [
    "ANNOTATION_SUFFIXES",
    "HEATMAP_RANGES",
    "InputError",
    "check_unit_interval",
    "halve_mean",
    "heatmap_rgba",
    "read_heatmap",
    "read_heatmap_tiff",
    "read_members",
    "read_truth_mask",
    "write_heatmap_tiff",
]

#: Files read as vector annotations (dispatched to :mod:`analysis.annotations`).
ANNOTATION_SUFFIXES: tuple[str, ...] = (".xml", ".geojson", ".json")
_TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".ome.tif")
# Pillow is only used for plain raster images; it decodes lazily, so the size
# check below happens before pixels are read.
Image.MAX_IMAGE_PIXELS = None


# --------------------------------------------------------------------------- checks


def check_unit_interval(values: npt.ArrayLike, *, what: str) -> None:
    """Raise :class:`InputError` unless every value is finite and in [0, 1].

    ``values`` may be a memory-mapped array of any shape; it is checked in
    slabs along its first axis so that no full-size temporary is made.

    >>> check_unit_interval(np.array([0.0, 0.5, 1.0]), what="x.npy")
    >>> check_unit_interval(np.array([0.0, np.nan]), what="x.npy")
    Traceback (most recent call last):
    ...
    analysis.errors.InputError: x.npy: contains NaN
    """
    array = np.asarray(values)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.unsignedinteger):
        return
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what}: unsupported data type {array.dtype}")
    # Slabs of about 16 M values bound the temporaries on large heatmaps.
    step = max(1, (1 << 24) // max(1, array[0].size if array.ndim > 1 else 1))
    low, high = np.inf, -np.inf
    for start in range(0, max(1, array.shape[0] if array.ndim else 1), step):
        slab = array[start : start + step] if array.ndim else array
        if slab.size == 0:
            continue
        if np.issubdtype(slab.dtype, np.floating) and np.isnan(slab).any():
            raise InputError(f"{what}: contains NaN")
        low = min(low, float(slab.min()))
        high = max(high, float(slab.max()))
    if array.size and (low < 0.0 or high > 1.0):
        raise InputError(f"{what}: values outside [0, 1] (min {low:g}, max {high:g})")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")


def _is_tiff(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(_TIFF_SUFFIXES)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a decoder's own exception into one :class:`InputError` line."""
    try:
        yield
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path}: cannot read ({message})") from exc


# --------------------------------------------------------------------------- raw arrays


def _tiff_levels(tif: tifffile.TiffFile) -> list[tifffile.TiffPageSeries]:
    """The resolution levels of a TIFF, finest first.

    tifffile reports a sub-IFD or OME/SVS pyramid as ``series[0].levels``; a
    plain multi-page file whose pages halve in size comes out as one series
    per page, which we accept as levels when each is smaller than the first.
    """
    series = tif.series
    if not series:
        raise InputError(f"{tif.filehandle.path}: no image in the TIFF")
    levels = list(series[0].levels)
    if len(levels) == 1 and len(series) > 1:
        first = series[0]
        for other in series[1:]:
            if (
                other.axes == first.axes
                and len(other.shape) == len(first.shape)
                and all(o <= f for o, f in zip(other.shape[:2], first.shape[:2], strict=True))
                and other.shape[:2] != first.shape[:2]
            ):
                levels.append(other)
    return levels


def _level_matches(level_shape: tuple[int, ...], base_shape: tuple[int, ...], downsample: float) -> bool:
    """A level is at ``downsample`` when each side is within a pixel of base/d.

    Writers round, floor or ceil the divided size, so "within one pixel" is
    the exact statement of "this level is the base divided by d".
    """
    return all(abs(base / downsample - size) < 1.0 for size, base in zip(level_shape[:2], base_shape[:2], strict=True))


def _read_tiff(path: Path, downsample: float | None) -> tuple[np.ndarray, str]:
    with tifffile.TiffFile(path) as tif:
        levels = _tiff_levels(tif)
        chosen = levels[0]
        if downsample is not None and len(levels) > 1:
            base = tuple(levels[0].shape)
            matching = [lvl for lvl in levels if _level_matches(tuple(lvl.shape), base, downsample)]
            if not matching:
                found = ", ".join(f"{base[1] / lvl.shape[1]:g}" for lvl in levels)
                raise InputError(
                    f"{path}: no pyramid level at downsample {downsample:g} (levels at downsamples {found})"
                )
            chosen = matching[0]
        return np.asarray(chosen.asarray()), chosen.axes


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    with Image.open(path) as image:
        mode = image.mode
        if mode == "P":
            # Palette images: the index is the value (label masks are saved so).
            return np.asarray(image), "YX"
        if mode in ("I", "I;16", "I;16B", "I;16L", "F", "L", "1"):
            array = np.asarray(image)
            if mode.startswith("I;16"):
                array = array.astype(np.uint16, copy=False)
            return array, "YX"
        if mode in ("LA", "RGB", "RGBA", "CMYK", "YCbCr", "La", "RGBa"):
            return np.asarray(image), "YXS"
        raise InputError(f"{path}: unsupported image mode {mode}")


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                raise InputError(f"{path}: holds {len(names)} arrays ({', '.join(names)}); name one with a key")
            key = names[0]
        if key not in names:
            raise InputError(f"{path}: no array named {key!r} (has {', '.join(names)})")
        return np.asarray(archive[key])


def _read_raw(path: Path, *, downsample: float | None = None, key: str | None = None) -> tuple[np.ndarray, str]:
    """Read an array and say which axes it has ("YX" or "YXS", S = samples)."""
    _require_file(path)
    suffix = path.suffix.lower()
    with _reading(path):
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return array, "YX" if array.ndim == 2 else "?"
        if suffix == ".npz":
            array = _read_npz(path, key)
            return array, "YX" if array.ndim == 2 else "?"
        if _is_tiff(path):
            array, axes = _read_tiff(path, downsample)
            return array, "YXS" if axes.endswith("S") and array.ndim == 3 else ("YX" if array.ndim == 2 else axes)
        return _read_pillow(path)


def _squeeze_channels(array: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """One channel from a grey image that was saved as RGB(A): channels must agree."""
    if axes != "YXS":
        return array
    colour = _colour_channels(array)
    first = colour[..., 0]
    if not all(np.array_equal(first, colour[..., i]) for i in range(1, colour.shape[-1])):
        raise InputError(f"{path}: expected a single-channel heatmap, got {array.shape[-1]} differing channels")
    return first


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """float32 in the value convention of the module docstring (validated)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: unsupported heatmap data type {array.dtype} (use float, uint8 or uint16)")
    # Check in the stored precision: a float64 1 + 1e-12 is out of range even
    # though it rounds to 1.0 in float32.
    check_unit_interval(array, what=str(path))
    return np.asarray(array, dtype=np.float32)


# --------------------------------------------------------------------------- public readers


def read_heatmap(path: str | Path, *, downsample: float | None = None, key: str | None = None) -> np.ndarray:
    """Read a segmentation or uncertainty heatmap.

    Parameters
    ----------
    path
        ``.npy``, ``.npz``, TIFF (single level or pyramidal) or a Pillow image.
    downsample
        For a pyramidal TIFF whose level 0 is the slide's level 0: read the
        level at this downsample (an error when there is none).  A single-level
        file is taken to be at the analysis level already and returned whole.
    key
        Which array of a multi-array ``.npz``.

    Returns
    -------
    np.ndarray
        float32, shape (H, W), values in [0, 1].

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.npy"); np.save(p, np.full((2, 3), 0.5))
    >>> read_heatmap(p).shape, read_heatmap(p).dtype
    ((2, 3), dtype('float32'))
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and _is_heatmap_tiff(path):
        # Our own heatmap TIFF (the portal's and `sua infer`'s): level 0 is the heatmap grid and
        # the description says its downsample, so there is no level to pick, only one to check.
        heatmap, stored = read_heatmap_tiff(path)
        if downsample is not None and not math.isclose(stored, downsample, rel_tol=1e-9):
            raise InputError(f"{path}: a heatmap at downsample {stored:g}, not {downsample:g}")
        return _to_unit_float(heatmap, path)
    array, axes = _read_raw(path, downsample=downsample, key=key)
    array = _squeeze_channels(array, axes, path)
    if array.ndim != 2:
        raise InputError(f"{path}: expected a 2-D heatmap (H, W), got shape {tuple(array.shape)}")
    with _reading(path):
        return _to_unit_float(np.asarray(array), path)


def read_members(path: str | Path) -> np.ndarray:
    """Read the K ensemble members' probability maps, shape (K, H, W).

    ``.npy`` files are memory-mapped (not loaded) so that uncertainty can be
    computed in row chunks; ``.npz`` is loaded.  Values are checked member by
    member to be finite and in [0, 1].

    Returns
    -------
    np.ndarray
        shape (K, H, W), floating point (float32 or float64 as stored).
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    with _reading(path):
        if suffix == ".npy":
            members = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            members = _read_npz(path, None)
        else:
            raise InputError(f"{path}: ensemble members must be .npy or .npz (K, H, W)")
    if members.ndim != 3 or members.shape[0] < 1:
        raise InputError(f"{path}: expected members of shape (K, H, W), got {tuple(members.shape)}")
    if not np.issubdtype(members.dtype, np.floating):
        raise InputError(f"{path}: members must be floating point probabilities, got {members.dtype}")
    with _reading(path):
        check_unit_interval(members, what=str(path))
    return members


def read_truth_mask(
    path: str | Path,
    *,
    shape: tuple[int, int],
    downsample: float,
    tumor_classes: tuple[str, ...] | None = None,
    exclude_classes: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Read a tumor ground truth onto the analysis grid.

    Parameters
    ----------
    path
        A binary mask (PNG, TIFF, ``.npy``, ``.npz``; non-zero = tumor), or
        annotations (ASAP ``.xml``, ``.geojson`` / ``.json``) which are
        rasterised by :func:`analysis.annotations.rasterize`.
    shape
        (H, W) of the analysis grid (the heatmap's shape).
    downsample
        The grid's downsample ``d`` relative to level 0.
    tumor_classes, exclude_classes
        Passed to :func:`analysis.annotations.load_tumor_geometry`.

    A mask of exactly ``shape`` is used as it is.  A mask at level 0 (each
    side within ``d`` pixels of ``shape * d``) is resampled by the pixel-centre
    rule: grid pixel (r, c) takes the mask pixel under level-0 point
    ((c + 0.5) d, (r + 0.5) d), outside the mask = no tumor.  Any other shape
    is an error.

    Returns
    -------
    np.ndarray
        bool, shape ``shape``.
    """
    path = Path(path)
    height, width = int(shape[0]), int(shape[1])
    if path.suffix.lower() in ANNOTATION_SUFFIXES:
        # Imported here: annotations (shapely) is only needed for vector files.
        from analysis import annotations

        _require_file(path)
        geometry = annotations.load_tumor_geometry(path, tumor_classes=tumor_classes, exclude_classes=exclude_classes)
        return annotations.rasterize(geometry, shape=(height, width), downsample=downsample)

    _require_file(path)
    if _is_tiff(path):
        with _reading(path), tifffile.TiffFile(path) as tif:
            level0 = _tiff_levels(tif)[0]
            mask_shape = (int(level0.shape[0]), int(level0.shape[1]))
            if mask_shape == (height, width):
                return _nonzero(np.asarray(level0.asarray()), level0.axes, path)
            _check_level0_shape(path, mask_shape, (height, width), downsample)
            return _sample_tiff_page(level0.pages[0], (height, width), downsample)

    array, axes = _read_raw(path)
    if array.ndim not in (2, 3):
        raise InputError(f"{path}: expected a 2-D mask, got shape {tuple(array.shape)}")
    mask_shape = (int(array.shape[0]), int(array.shape[1]))
    if mask_shape == (height, width):
        return _nonzero(np.asarray(array), axes, path)
    _check_level0_shape(path, mask_shape, (height, width), downsample)
    rows, cols, keep_r, keep_c = _centre_indices(mask_shape, (height, width), downsample)
    out = np.zeros((height, width), dtype=bool)
    # np.ix_ on a memory map reads only the sampled rows.
    sampled = np.asarray(array[np.ix_(rows[keep_r], cols[keep_c])])
    out[np.ix_(keep_r, keep_c)] = _nonzero(sampled, axes, path)
    return out


# --------------------------------------------------------------------------- mask helpers


def _colour_channels(array: np.ndarray) -> np.ndarray:
    """The colour samples of a (H, W, S) image: alpha (LA, RGBA) dropped."""
    samples = array.shape[-1]
    return array[..., :1] if samples == 2 else array[..., : min(samples, 3)]


def _nonzero(array: np.ndarray, axes: str, path: Path) -> np.ndarray:
    if array.ndim == 3 and axes.endswith("S"):
        return np.asarray((_colour_channels(array) != 0).any(axis=-1))
    if array.ndim != 2:
        raise InputError(f"{path}: expected a 2-D mask, got shape {tuple(array.shape)}")
    return np.asarray(array != 0)


def _check_level0_shape(path: Path, mask_shape: tuple[int, int], shape: tuple[int, int], downsample: float) -> None:
    if downsample <= 0 or not np.isfinite(downsample):
        raise InputError(f"{path}: downsample must be a positive number, got {downsample!r}")
    if not all(abs(m - s * downsample) < downsample for m, s in zip(mask_shape, shape, strict=True)):
        raise InputError(
            f"{path}: mask shape {mask_shape} matches neither the heatmap shape {shape} "
            f"nor its level-0 size at downsample {downsample:g}"
        )


def _centre_indices(
    mask_shape: tuple[int, int], shape: tuple[int, int], downsample: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Level-0 mask rows/cols under each grid pixel centre, and which are inside the mask."""
    rows = np.floor((np.arange(shape[0]) + 0.5) * downsample).astype(np.int64)
    cols = np.floor((np.arange(shape[1]) + 0.5) * downsample).astype(np.int64)
    keep_r = np.flatnonzero(rows < mask_shape[0])
    keep_c = np.flatnonzero(cols < mask_shape[1])
    return rows, cols, keep_r, keep_c


def _sample_tiff_page(page: Any, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """Pixel-centre sampling of a level-0 TIFF mask, one tile/strip at a time.

    Level-0 masks of whole slides do not fit in memory (10^10 pixels), so the
    page is decoded segment by segment and only the sampled pixels are kept.
    """
    mask_shape = (int(page.shaped[2]), int(page.shaped[3]))
    rows, cols, keep_r, keep_c = _centre_indices(mask_shape, shape, downsample)
    rows, cols = rows[keep_r], cols[keep_c]
    out = np.zeros(shape, dtype=bool)
    samples = int(page.shaped[4])
    colour_samples = 1 if samples == 2 else min(samples, 3)
    for data, index, _ in page.segments():
        if data is None:  # a missing (sparse) tile reads as zeros
            continue
        top, left, plane = int(index[2]), int(index[3]), int(index[4])
        if plane >= colour_samples:
            continue
        seg = np.asarray(data)[0]  # (h, w, samples-in-segment)
        seg_h, seg_w = seg.shape[0], seg.shape[1]
        r_sel = np.flatnonzero((rows >= top) & (rows < top + seg_h))
        c_sel = np.flatnonzero((cols >= left) & (cols < left + seg_w))
        if r_sel.size == 0 or c_sel.size == 0:
            continue
        block = seg[np.ix_(rows[r_sel] - top, cols[c_sel] - left)]
        hit = (block[..., : max(1, colour_samples - plane)] != 0).any(axis=-1)
        out[np.ix_(keep_r[r_sel], keep_c[c_sel])] |= hit
    return out


#: Largest value of each heatmap for a K-member binary ensemble: mean probability 1,
#: entropy and mutual information ln 2 (nats), variance 1/4.  Colours use these fixed
#: ranges so that the same colour means the same value on every slide.
HEATMAP_RANGES: dict[str, float] = {
    "segmentation": 1.0,
    "entropy": float(np.log(2.0)),
    "mutual_information": float(np.log(2.0)),
    "variance": 0.25,
}


def heatmap_rgba(values: npt.ArrayLike, kind: str) -> np.ndarray:
    """Colour a heatmap for display over the slide.

    Parameters
    ----------
    values : (H, W) float array
        One of the stored heatmaps (mean tumor probability, entropy, mutual
        information or variance).  Zero outside tissue.
    kind : {"segmentation", "entropy", "mutual_information", "variance"}

    Returns
    -------
    (H, W, 4) uint8 RGBA
        Segmentation: red whose opacity is the probability (certain background
        stays clear).  Uncertainty: the perceptually uniform "magma" colour map
        over ``[0, HEATMAP_RANGES[kind]]``, transparent where it is 0.
    """
    from matplotlib import colormaps

    if kind not in HEATMAP_RANGES:
        raise ValueError(f"unknown heatmap {kind!r}; use one of {', '.join(HEATMAP_RANGES)}")
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"a heatmap is 2-D, got shape {array.shape}")
    scaled = np.clip(np.nan_to_num(array) / HEATMAP_RANGES[kind], 0.0, 1.0)
    if kind == "segmentation":
        rgba = np.zeros((*array.shape, 4), dtype=np.uint8)
        rgba[..., 0] = 230
        rgba[..., 1] = 25
        rgba[..., 2] = 40
        rgba[..., 3] = np.round(scaled * 255).astype(np.uint8)
        return rgba
    rgba = colormaps["magma"](scaled, bytes=True)
    # Low uncertainty fades out so the tissue stays readable under it.
    rgba[..., 3] = np.round(np.sqrt(scaled) * 255).astype(np.uint8)
    return np.asarray(rgba, dtype=np.uint8)


# --------------------------------------------------------------------------- heatmap files

_HEATMAP_FORMAT = "sua-heatmap"


def halve_mean(array: np.ndarray) -> np.ndarray:
    """The next level of a mean pyramid: 2x2 mean (a lone last row / column averages what it has);
    ``ceil(H / 2) x ceil(W / 2)``, float64."""
    h, w = array.shape
    a = array.astype(np.float64)
    if h % 2:
        a = np.concatenate([a, a[-1:]], axis=0)
    if w % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))


def write_heatmap_tiff(
    array: np.ndarray,
    path: str | os.PathLike[str],
    *,
    downsample: float,
    dtype: str = "float32",
    compression: str = "zlib",
    tile: int = 256,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a heatmap as a pyramidal, tiled, compressed TIFF.

    Parameters
    ----------
    array
        ``(H, W)`` values in [0, 1] (probabilities, or uncertainties up to ln 2).
    path
        Output file.
    downsample
        Level-0 pixels per heatmap pixel; stored in the image description
        (JSON) with ``dtype`` and ``scale``.
    dtype
        ``"float32"`` (exact) or ``"uint16"`` (value * 65535, rounded: half
        the size, error <= 7.7e-6).
    compression
        ``"zlib"`` (any TIFF reader) or ``"zstd"``; with a predictor
        (floating-point for float32, horizontal for uint16).
    tile
        Tile edge (multiple of 16).  Reduced levels (2x2 means, as sub-IFDs)
        are added until one tile holds the whole level.
    extra
        More JSON-safe metadata for the description.

    Returns
    -------
    Path
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D (H, W), got shape {array.shape}")
    if not (downsample > 0 and math.isfinite(downsample)):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    if dtype not in ("float32", "uint16"):
        raise ValueError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
    if compression not in ("zlib", "zstd"):
        raise ValueError(f"compression must be 'zlib' or 'zstd', got {compression!r}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    values = array.astype(np.float64)
    check_unit_interval(values, what="heatmap")

    def encode(a: np.ndarray) -> np.ndarray:
        if dtype == "uint16":
            return np.round(a * 65535.0).astype(np.uint16)
        return a.astype(np.float32)

    levels = [values]
    while max(levels[-1].shape) > tile:
        levels.append(halve_mean(levels[-1]))
    description = {
        "format": _HEATMAP_FORMAT,
        "downsample": float(downsample),
        "dtype": dtype,
        "scale": 65535 if dtype == "uint16" else 1,
        "shape": list(array.shape),
        **(extra or {}),
    }
    path = Path(path)
    options: dict[str, Any] = {
        "tile": (tile, tile),
        "compression": compression,
        "predictor": True,
        "photometric": "minisblack",
    }
    with tifffile.TiffWriter(path, bigtiff=values.size * 4 > 2**31) as tw:
        tw.write(
            encode(levels[0]),
            subifds=len(levels) - 1,
            description=json.dumps(description),
            metadata=None,
            **options,
        )
        for level in levels[1:]:
            tw.write(encode(level), subfiletype=1, metadata=None, **options)
    return path


def _is_heatmap_tiff(path: Path) -> bool:
    """Whether ``path`` is a TIFF written by :func:`write_heatmap_tiff` (its description says so)."""
    try:
        with tifffile.TiffFile(path) as tif:
            meta = json.loads(tif.pages.first.description)
    except (OSError, ValueError, TypeError, tifffile.TiffFileError):
        return False
    return isinstance(meta, dict) and meta.get("format") == _HEATMAP_FORMAT


def read_heatmap_tiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read a heatmap written by :func:`write_heatmap_tiff`.

    Returns
    -------
    (array, downsample)
        ``(H, W)`` float32 (uint16 files scaled back to [0, 1]) and the
        level-0 pixels per heatmap pixel.

    Raises
    ------
    ValueError
        If the file is not such a heatmap.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            try:
                meta = json.loads(page.description)
            except (ValueError, TypeError):
                meta = None
            if not isinstance(meta, dict) or meta.get("format") != _HEATMAP_FORMAT or "downsample" not in meta:
                raise ValueError(f"{path}: not a SUA heatmap TIFF (no downsample in its description)")
            data = page.asarray()
    except (OSError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{path}: cannot read the heatmap ({' '.join(str(exc).split())})") from exc
    if data.dtype == np.uint16:
        array = data.astype(np.float32) / np.float32(65535.0)
    else:
        array = data.astype(np.float32, copy=False)
    return array, float(meta["downsample"])
