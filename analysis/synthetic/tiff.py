"""The pyramidal tiled JPEG TIFF: level 0 streamed in bands, each level half the one above."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from analysis.synthetic.render import Renderer
from analysis.synthetic.spec import GENERATOR, U8, SlideSpec


def _downsample2(a: U8) -> U8:
    """Halve an RGB image by 2x2 box averaging (odd edges repeated), (h, w, 3) -> (ceil(h/2), ceil(w/2), 3)."""
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    s = a[0::2, 0::2].astype(np.uint16)
    s += a[1::2, 0::2]
    s += a[0::2, 1::2]
    s += a[1::2, 1::2]
    s += 2
    s >>= 2
    return s.astype(np.uint8)


def _tiles_of(a: U8, tile: int) -> Iterator[U8]:
    """Tiles of an image in row-major order, edge tiles padded with white, each (tile, tile, 3)."""
    h, w = a.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = a[y : y + tile, x : x + tile]
            if t.shape[0] != tile or t.shape[1] != tile:
                full = np.full((tile, tile, 3), 255, np.uint8)
                full[: t.shape[0], : t.shape[1]] = t
                t = full
            yield np.ascontiguousarray(t)


def _description(spec: SlideSpec, level: int) -> str:
    """ImageDescription of a level: Aperio-style ``key = value`` fields that viewers read (MPP, AppMag)."""
    w, h = spec.level_sizes()[level]
    return (
        f"SUA Portal synthetic H&E lymph node {w}x{h} ({spec.tile_size}x{spec.tile_size}) JPEG/RGB "
        f"Q={spec.jpeg_quality}|MPP = {spec.mpp * 2**level:g}|AppMag = {10.0 / (spec.mpp * 2**level):g}"
        f"|Level = {level}|Seed = {spec.seed}|Domain = {spec.domain}|Tumor = {int(spec.tumor)}"
        f"|Generator = {GENERATOR}"
    )


def page_options(spec: SlideSpec) -> dict[str, Any]:
    """tifffile ``write`` options shared by every page of a synthetic slide: RGB JPEG tiles of
    ``spec.tile_size``, resolution in centimetres, and the generator's name."""
    ts = spec.tile_size
    return {
        "dtype": np.uint8,
        "tile": (ts, ts),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": spec.jpeg_quality},
        "resolutionunit": "CENTIMETER",
        "metadata": None,
        "software": GENERATOR,
    }


def write_tiff(spec: SlideSpec, renderer: Renderer, path: Path) -> None:
    """Write the pyramid; level 1 is collected while level 0 streams out, the rest follow from it."""
    w, h = spec.width, spec.height
    w1, h1 = (w + 1) // 2, (h + 1) // 2
    with contextlib.ExitStack() as stack:
        if w1 * h1 * 3 > 512 * 2**20:  # a big level 1 goes to a temporary file, not to memory
            tmp = stack.enter_context(tempfile.TemporaryFile(dir=path.parent))
            level1: U8 = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(h1, w1, 3))
        else:
            level1 = np.empty((h1, w1, 3), np.uint8)
        _write_levels(spec, renderer, path, level1)


def _write_levels(spec: SlideSpec, renderer: Renderer, path: Path, level1: U8) -> None:
    """Stream level 0 band by band (filling ``level1``, (ceil(h/2), ceil(w/2), 3)), then halve level 1 onwards."""
    ts = spec.tile_size
    sizes = spec.level_sizes()
    W, H = sizes[0]

    def level0_tiles() -> Iterator[U8]:
        for y0 in range(0, H, ts):
            y1 = min(H, y0 + ts)
            band = renderer.render(y0, y1)
            small = _downsample2(band)
            level1[y0 // 2 : y0 // 2 + small.shape[0]] = small
            yield from _tiles_of(band, ts)

    total = sum(w * h * 3 for w, h in sizes)
    common = page_options(spec)
    with tifffile.TiffWriter(path, bigtiff=total > 2**31) as tw:
        res = 1e4 / spec.mpp
        tw.write(
            level0_tiles(),
            shape=(H, W, 3),
            resolution=(res, res),
            description=_description(spec, 0),
            subfiletype=0,
            **common,
        )
        current: U8 = level1
        for level in range(1, len(sizes)):
            w, h = sizes[level]
            if level > 1:
                current = _downsample2(current)
            assert current.shape[:2] == (h, w)
            res = 1e4 / (spec.mpp * 2**level)
            tw.write(
                _tiles_of(current, ts),
                shape=(h, w, 3),
                resolution=(res, res),
                description=_description(spec, level),
                subfiletype=1,
                **common,
            )

