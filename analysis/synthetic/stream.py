"""The pyramid written as level 0 is rendered: memory bounded by one band, whatever the slide's size.

:func:`analysis.synthetic.tiff.write_tiff` keeps all of level 1 (a quarter of the
slide: 16 GB on a Camelyon-size slide, in a temporary memory map) to halve it
after level 0 is written.  Here every reduced level is made on the fly: each
level-0 band is halved into level 1, each full tile row of level ``k`` into level
``k + 1``, and the reduced tile rows leave at once as JPEG tiles in a temporary
file per level, written into the TIFF after level 0.  Memory: one level-0 band and
less than one tile row per reduced level; disk: the reduced levels' JPEG tiles.

The tiles are encoded with the call tifffile makes itself (JPEG, 2x2 chroma
subsampling, YCbCr), so that the file is byte for byte the one
:func:`~analysis.synthetic.tiff.write_tiff` writes from the same pixels.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import tifffile

from analysis.synthetic.spec import U8, SlideSpec
from analysis.synthetic.tiff import _description, _downsample2, _tiles_of, page_options

#: Level-0 rows of the bands asked for, in tiles (one tile row at a time).
BAND_TILE_ROWS = 1
#: Raw bytes tifffile may gather from the tile iterator before encoding them (bounds its read-ahead).
_ENCODE_BUFFER_BYTES = 64 * 2**20

#: Level-0 RGB rows ``[y0, y1)`` of a slide, (y1 - y0, width, 3) uint8.
BandRenderer = Callable[[int, int], U8]
#: Called after each level-0 band with (rows written, rows in all).
Progress = Callable[[int, int], None]


def _jpeg_args(spec: SlideSpec) -> dict[str, Any]:
    """Arguments of tifffile's JPEG encoder for an RGB tile, as tifffile completes them (2x2 YCbCr)."""
    return {"level": spec.jpeg_quality, "subsampling": (2, 2), "colorspace": "RGB", "outcolorspace": "YCBCR"}


class _ReducedLevel:
    """One reduced level on its way to the file: rows come in, full tile rows leave as JPEG tiles.

    A tile row is encoded to the temporary file ``spool`` and halved into the next
    level as soon as it is complete; the rows of an unfinished tile row are all
    that stays in memory, ``(< tile, width, 3)``.
    """

    def __init__(self, spec: SlideSpec, level: int, spool: IO[bytes], below: _ReducedLevel | None) -> None:
        self.width, self.height = spec.level_sizes()[level]
        self.tile = spec.tile_size
        self.spool = spool
        self.below = below
        self.lengths: list[int] = []
        self.rows_in = 0
        self._pending: list[U8] = []
        self._encode = tifffile.TIFF.COMPRESSORS[7]
        self._args = _jpeg_args(spec)

    def add(self, rows: U8) -> None:
        """Append rows ``(h, width, 3)`` of this level, top to bottom."""
        if rows.shape[1] != self.width:
            raise ValueError(f"rows of width {rows.shape[1]} added to a level {self.width} wide")
        self._pending.append(rows)
        self.rows_in += rows.shape[0]
        while sum(r.shape[0] for r in self._pending) >= self.tile:
            block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending = [block[self.tile :]] if block.shape[0] > self.tile else []
            self._tile_row(block[: self.tile])

    def finish(self) -> None:
        """Write the last, partial tile row (edge tiles padded with white, as the in-memory writer does)."""
        if self.rows_in != self.height:
            raise ValueError(f"level {self.width}x{self.height} got {self.rows_in} rows")
        if self._pending:
            self._tile_row(np.concatenate(self._pending))
            self._pending = []
        if self.below is not None:
            self.below.finish()

    def _tile_row(self, block: U8) -> None:
        for tile in _tiles_of(block, self.tile):
            data = self._encode(tile, **self._args)
            self.spool.write(data)
            self.lengths.append(len(data))
        if self.below is not None:
            # an odd last block repeats its last row, as halving the whole level does
            self.below.add(_downsample2(block))

    def tiles(self) -> Iterator[bytes]:
        """The encoded tiles, in the order they were written (row-major)."""
        self.spool.flush()
        self.spool.seek(0)
        for n in self.lengths:
            yield self.spool.read(n)


def write_tiff_streamed(
    spec: SlideSpec,
    render: BandRenderer,
    path: str | Path,
    *,
    band_tile_rows: int = BAND_TILE_ROWS,
    progress: Progress | None = None,
) -> None:
    """Write the pyramidal tiled JPEG TIFF of ``spec`` from level-0 bands ``render(y0, y1)``.

    The bands are asked for top to bottom, ``band_tile_rows`` tile rows each; the
    file equals :func:`~analysis.synthetic.tiff.write_tiff`'s for the same pixels
    (same tags, tiles and levels).  The reduced levels wait as JPEG tiles in
    temporary files beside ``path``.
    """
    out = Path(path)
    if band_tile_rows < 1:
        raise ValueError(f"band_tile_rows must be >= 1, got {band_tile_rows}")
    sizes = spec.level_sizes()
    W, H = sizes[0]
    ts = spec.tile_size
    band = ts * band_tile_rows
    with contextlib.ExitStack() as stack:
        levels: list[_ReducedLevel] = []
        below: _ReducedLevel | None = None
        for level in range(len(sizes) - 1, 0, -1):
            spool = stack.enter_context(tempfile.TemporaryFile(dir=out.parent))
            below = _ReducedLevel(spec, level, spool, below)
            levels.insert(0, below)

        def level0_tiles() -> Iterator[U8]:
            for y0 in range(0, H, band):
                y1 = min(H, y0 + band)
                rows = render(y0, y1)
                if rows.shape != (y1 - y0, W, 3) or rows.dtype != np.uint8:
                    raise ValueError(f"band [{y0}, {y1}) came back {rows.dtype} {rows.shape}, not ({y1 - y0}, {W}, 3)")
                if levels:
                    levels[0].add(_downsample2(rows))
                if progress is not None:
                    progress(y1, H)
                yield from _tiles_of(rows, ts)

        common = page_options(spec)
        total = sum(w * h * 3 for w, h in sizes)
        with tifffile.TiffWriter(out, bigtiff=total > 2**31) as tw:
            for level, (w, h) in enumerate(sizes):
                res = 1e4 / (spec.mpp * 2**level)
                tw.write(
                    level0_tiles() if level == 0 else levels[level - 1].tiles(),
                    shape=(h, w, 3),
                    resolution=(res, res),
                    description=_description(spec, level),
                    subfiletype=0 if level == 0 else 1,
                    buffersize=_ENCODE_BUFFER_BYTES,
                    **common,
                )
                if level == 0 and levels:
                    # tifffile takes exactly the tiles it needs: the generator never runs past the last one
                    levels[0].finish()
