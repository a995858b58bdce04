"""Where the cells go: jittered lattices thinned by the density fields, all cells sorted by row."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.synthetic.cells import CELL_SPACING_UM, StampBank
from analysis.synthetic.layout import Layout
from analysis.synthetic.spec import F32, F64, I64, SlideSpec


@dataclass
class Cells:
    """All cells of a slide sorted by row: position (level-0 px), stamp bank, stamp index, amplitude."""

    y: I64
    x: I64
    bank: npt.NDArray[np.int8]
    index: I64
    amp: F32
    bank_names: tuple[str, ...]


def _sample_field(field_: F32, f: int, x: F64, y: F64) -> F32:
    """Bilinear sample of a field grid at level-0 coordinates ``(x, y)`` (N,) -> (N,)."""
    out = ndimage.map_coordinates(field_, [y / f, x / f], order=1, mode="nearest")
    return np.asarray(out, dtype=np.float32)


def _hex_grid(rng: np.random.Generator, width: int, height: int, spacing: float, jitter: float) -> tuple[F64, F64]:
    """Jittered hexagonal lattice covering the slide, (N,) x and y in level-0 px."""
    dy = spacing * math.sqrt(3) / 2
    rows = np.arange(-1, int(height / dy) + 2)
    cols = np.arange(-1, int(width / spacing) + 2)
    yy = (rows * dy)[:, None] + np.zeros((1, cols.size))
    xx = (cols * spacing)[None, :] + (rows % 2)[:, None] * spacing / 2
    x = xx.ravel() + rng.uniform(-jitter, jitter, xx.size) * spacing
    y = yy.ravel() + rng.uniform(-jitter, jitter, yy.size) * spacing
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return x[keep], y[keep]



def place_cells(spec: SlideSpec, layout: Layout, banks: dict[str, StampBank], rng: np.random.Generator) -> Cells:
    um = 1.0 / spec.mpp
    f = layout.f
    names = tuple(banks)
    out_x: list[F64] = []
    out_y: list[F64] = []
    out_b: list[npt.NDArray[np.int8]] = []
    out_i: list[I64] = []
    out_a: list[F32] = []
    kept: dict[str, tuple[F64, F64]] = {}

    for kind in ("tumor", "tbm", "histiocyte", "fibro", "centroblast", "lymph", "rbc"):
        x, y = _hex_grid(rng, spec.width, spec.height, CELL_SPACING_UM[kind] * um, 0.28)
        p = _sample_field(layout.density[kind], f, x, y)
        if kind == "tumor":
            ts = _sample_field(layout.tumor_sdf, f, x, y)
            p = np.where(ts > 3.0 * um, np.maximum(p, 0.9), 0.0).astype(np.float32)
        else:
            # no other cell where tumor cells are (ITCs sit among lymphocytes)
            ts = _sample_field(layout.tumor_sdf, f, x, y)
            p = np.where(ts > -2.0 * um, p * (0.04 if kind == "lymph" else 0.0), p).astype(np.float32)
        keep = rng.random(x.size) < p
        x, y = x[keep], y[keep]
        # cells push lymphocytes aside: exclude small cells inside big ones
        if kind in ("lymph", "centroblast", "histiocyte") and x.size:
            for big, radius_um in (("tumor", 11.0), ("tbm", 9.5), ("histiocyte", 7.0), ("centroblast", 6.0)):
                if big == kind or big not in kept or kept[big][0].size == 0:
                    continue
                tree = cKDTree(np.column_stack(kept[big]))
                dist, _ = tree.query(np.column_stack([x, y]), distance_upper_bound=radius_um * um)
                ok = ~np.isfinite(dist)
                x, y = x[ok], y[ok]
        kept[kind] = (x, y)

    # Make sure every lesion has tumor cells (a single isolated cell at least).
    tx, ty = kept["tumor"]
    for poly, _ in layout.lesions:
        inside = shapely.contains_xy(poly, tx, ty) if tx.size else np.zeros(0, bool)
        if not inside.any():
            c = poly.representative_point()
            tx, ty = np.append(tx, c.x), np.append(ty, c.y)
    kept["tumor"] = (tx, ty)

    for kind, (x, y) in kept.items():
        n = x.size
        if n == 0:
            continue
        bank_name = kind
        idx = rng.integers(banks[kind].count, size=n)
        if kind == "fibro":
            ang = _sample_field(layout.angle, f, x, y)
            in_capsule = _sample_field(layout.fibrous, f, x, y) > 0.5
            ang = np.where(in_capsule, ang, rng.uniform(0, math.pi, n)).astype(np.float32)
            a_idx = np.round(ang / math.pi * 16).astype(np.int64) % 16
            idx = a_idx * 3 + rng.integers(3, size=n)
        amp = np.exp(rng.normal(0, 0.12, n)).astype(np.float32)
        b = np.full(n, names.index(bank_name), np.int8)
        if kind == "tumor":
            mit = rng.random(n) < 0.008
            b[mit] = names.index("mitosis")
            idx[mit] = rng.integers(banks["mitosis"].count, size=int(mit.sum()))
        out_x.append(x)
        out_y.append(y)
        out_b.append(b)
        out_i.append(idx.astype(np.int64))
        out_a.append(amp)

    x_all = np.concatenate(out_x) if out_x else np.zeros(0)
    y_all = np.concatenate(out_y) if out_y else np.zeros(0)
    order = np.argsort(y_all, kind="stable")
    return Cells(
        y=np.floor(y_all[order]).astype(np.int64),
        x=np.floor(x_all[order]).astype(np.int64),
        bank=(np.concatenate(out_b) if out_b else np.zeros(0, np.int8))[order],
        index=(np.concatenate(out_i) if out_i else np.zeros(0, np.int64))[order],
        amp=(np.concatenate(out_a) if out_a else np.zeros(0, np.float32))[order],
        bank_names=names,
    )

