"""Where the cells go: jittered lattices thinned by the density fields, all cells sorted by row."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.synthetic.cells import CELL_TYPE, CellType, StampBank
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


#: Order in which the cell types are placed: big cells first, so that they push the small ones aside.
PLACEMENT_ORDER: tuple[str, ...] = ("tumor", "tbm", "histiocyte", "fibro", "centroblast", "lymph", "rbc")
#: Jitter of the hexagonal lattices (fraction of the spacing).
_LATTICE_JITTER = 0.28
#: Share of tumor cells drawn as mitotic figures.
_MITOSIS_SHARE = 0.008
#: In a faint micro-metastasis: the share of the tumor lattice kept (0.9 elsewhere in a lesion), the share
#: of the other cells' density kept among them (``among_tumor`` elsewhere), and how much paler its nuclei are.
_FAINT_TUMOR = 0.36
_FAINT_OTHERS = 0.6
_FAINT_PALER = 0.25


def _faint_at(layout: Layout, x: F64, y: F64) -> F32:
    """The faint-lesion weight at ``(x, y)`` (zeros on slides without one, without sampling)."""
    if not layout.faint.any():
        return np.zeros(x.size, np.float32)
    return _sample_field(layout.faint, layout.f, x, y)


def _thinned_lattice(
    cell: CellType, spec: SlideSpec, layout: Layout, rng: np.random.Generator
) -> tuple[F64, F64]:
    """Centres (N,) x and y (level-0 px) of one cell type: its lattice kept with its density."""
    um = 1.0 / spec.mpp
    assert cell.spacing_um is not None, cell.name
    x, y = _hex_grid(rng, spec.width, spec.height, cell.spacing_um * um, _LATTICE_JITTER)
    p = _sample_field(layout.density[cell.name], layout.f, x, y)
    ts = _sample_field(layout.tumor_sdf, layout.f, x, y)
    faint = _faint_at(layout, x, y)
    if cell.name == "tumor":
        dense = 0.9 + (_FAINT_TUMOR - 0.9) * faint
        p = np.where(ts > 3.0 * um, np.maximum(p, dense), 0.0).astype(np.float32)
    else:
        # no other cell where tumor cells are (ITCs sit among lymphocytes, and so do faint lesions' cells)
        share = cell.among_tumor + (max(_FAINT_OTHERS, cell.among_tumor) - cell.among_tumor) * faint
        p = np.where(ts > -2.0 * um, p * share, p).astype(np.float32)
    keep = rng.random(x.size) < p
    return x[keep], y[keep]


def _centres(spec: SlideSpec, layout: Layout, rng: np.random.Generator) -> dict[str, tuple[F64, F64]]:
    """Centres (N,) x and y (level-0 px) of every placed cell type, in :data:`PLACEMENT_ORDER`."""
    um = 1.0 / spec.mpp
    kept: dict[str, tuple[F64, F64]] = {}
    for name in PLACEMENT_ORDER:
        cell = CELL_TYPE[name]
        x, y = _thinned_lattice(cell, spec, layout, rng)
        # cells push lymphocytes aside: no small cell inside a big one placed before it
        if cell.yields and x.size:
            for big, (bx, by) in kept.items():
                radius_um = CELL_TYPE[big].clears_um
                if radius_um is None or bx.size == 0:
                    continue
                tree = cKDTree(np.column_stack([bx, by]))
                dist, _ = tree.query(np.column_stack([x, y]), distance_upper_bound=radius_um * um)
                ok = ~np.isfinite(dist)
                x, y = x[ok], y[ok]
        kept[name] = (x, y)
    # Make sure every lesion has tumor cells (a single isolated cell at least).
    tx, ty = kept["tumor"]
    for poly, _ in layout.lesions:
        inside = shapely.contains_xy(poly, tx, ty) if tx.size else np.zeros(0, bool)
        if not inside.any():
            c = poly.representative_point()
            tx, ty = np.append(tx, c.x), np.append(ty, c.y)
    kept["tumor"] = (tx, ty)
    return kept


def _stamps(
    cell: CellType, x: F64, y: F64, layout: Layout, banks: dict[str, StampBank], rng: np.random.Generator
) -> tuple[npt.NDArray[np.int8], I64, F32]:
    """Bank, stamp index and amplitude (N,) of the cells of one type centred at ``(x, y)``."""
    n = x.size
    names = tuple(banks)
    idx = rng.integers(banks[cell.name].count, size=n)
    if cell.orientations > 1:  # fibroblasts of the capsule follow its outline
        ang = _sample_field(layout.angle, layout.f, x, y)
        in_capsule = _sample_field(layout.fibrous, layout.f, x, y) > 0.5
        ang = np.where(in_capsule, ang, rng.uniform(0, math.pi, n)).astype(np.float32)
        a_idx = np.round(ang / math.pi * cell.orientations).astype(np.int64) % cell.orientations
        idx = a_idx * cell.variants + rng.integers(cell.variants, size=n)
    amp = np.exp(rng.normal(0, 0.12, n)).astype(np.float32)
    bank = np.full(n, names.index(cell.name), np.int8)
    if cell.name == "tumor":
        amp *= 1.0 - _FAINT_PALER * _faint_at(layout, x, y)
        mit = rng.random(n) < _MITOSIS_SHARE
        bank[mit] = names.index("mitosis")
        idx[mit] = rng.integers(banks["mitosis"].count, size=int(mit.sum()))
    return bank, idx.astype(np.int64), amp


def place_cells(spec: SlideSpec, layout: Layout, banks: dict[str, StampBank], rng: np.random.Generator) -> Cells:
    """Every cell of the slide: centres from the density fields, a stamp and an amplitude each, sorted by row."""
    out_x: list[F64] = []
    out_y: list[F64] = []
    out_b: list[npt.NDArray[np.int8]] = []
    out_i: list[I64] = []
    out_a: list[F32] = []
    for name, (x, y) in _centres(spec, layout, rng).items():
        if x.size == 0:
            continue
        bank, idx, amp = _stamps(CELL_TYPE[name], x, y, layout, banks, rng)
        out_x.append(x)
        out_y.append(y)
        out_b.append(bank)
        out_i.append(idx)
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
        bank_names=tuple(banks),
    )
