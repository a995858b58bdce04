"""The cell types of a lymph node with metastases, as data, and their stamp banks.

Each :class:`CellType` says how big its cells are, what their nucleus,
chromatin and cytoplasm look like, how densely they sit (the spacing of their
jittered lattice) and whom they push aside; its ``look`` composes those parts
into one stamp.  :func:`make_banks` renders ``stamps`` variants of every type,
(K, S, S) hematoxylin and eosin each, which the renderer splats onto the slide.

The table's order is the order the stamps are drawn from the seed: changing it
changes every slide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.synthetic.spec import F32
from analysis.synthetic.stamps import (
    Chromatin,
    Harmonic,
    Outline,
    Spindle,
    StampGrid,
    edge,
    halo,
    spot,
    stamp_size,
)

#: One stamp of a cell type: (type, generator, grid, pixels per µm, stamp index) -> (hematoxylin, eosin), (S, S) each.
Look = Callable[["CellType", np.random.Generator, StampGrid, float, int], tuple[F32, F32]]


@dataclass(frozen=True)
class CellType:
    """One kind of cell on the slide.

    Attributes:
        name: key of its stamp bank and density field.
        look: composes the parts below into one stamp.
        stamps: variants in its bank (orientations x variants for oriented cells).
        half_size_um: how far the cell reaches from its centre (µm): sets the stamp size.
        nucleus: outline of the nucleus (for red cells: of the whole disc).
        chromatin: texture of the nucleus, None for cells without one.
        cytoplasm: outline of the cytoplasm, None where it is drawn as a rim or not at all.
        hematoxylin_gain: factor on the hematoxylin of the finished bank.
        spacing_um: spacing of the jittered lattice its cells are thinned from; None for
            cells not placed on their own (mitoses replace tumor cells).
        clears_um: cells that yield and are placed after this one keep this far from its centres.
        yields: whether bigger cells placed before it push it aside.
        among_tumor: share of its density kept where tumor cells are.
        orientations: stamp orientations of an oriented cell (index = orientation * variants + variant).
    """

    name: str
    look: Look
    stamps: int
    half_size_um: float
    nucleus: Outline | Spindle
    chromatin: Chromatin | None = None
    cytoplasm: Outline | None = None
    hematoxylin_gain: float = 1.0
    spacing_um: float | None = None
    clears_um: float | None = None
    yields: bool = False
    among_tumor: float = 0.0
    orientations: int = 1

    @property
    def variants(self) -> int:
        """Stamps per orientation."""
        return self.stamps // self.orientations


@dataclass
class StampBank:
    """Stamps of one cell type: hematoxylin and eosin concentration, (K, S, S) each.

    ``nucleus`` (K, S, S) in [0, 1] marks chromatin, which takes up little eosin.
    """

    h: F32
    e: F32

    @property
    def nucleus(self) -> F32:
        return np.clip((self.h - 0.08) / 0.2, 0.0, 1.0).astype(np.float32)

    @property
    def size(self) -> int:
        return int(self.h.shape[1])

    @property
    def count(self) -> int:
        return int(self.h.shape[0])


# ------------------------------------------------------------------------------------------
# Looks: how the parts of each type make one stamp
# ------------------------------------------------------------------------------------------


def _outline(part: Outline | Spindle | None) -> Outline:
    """The part as an outline (all parts a look asks for but the fibroblast's nucleus are)."""
    assert isinstance(part, Outline), part
    return part


def _texture(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float) -> F32:
    assert cell.chromatin is not None, cell.name
    return cell.chromatin.draw(rng, grid.size, um)


def _lymphocyte(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """Dense chromatin, darker towards the membrane, and a thin rim of cytoplasm."""
    d, r = _outline(cell.nucleus).draw(rng, grid, um)
    inside = edge(d, r)
    h = inside * _texture(cell, rng, grid, um) * (0.85 + 0.15 * np.clip(d, 0, 1))
    e = halo(d, r, 0.9 * um) * (1 - inside) * 0.25 + inside * 0.08
    return h, e


def _centroblast(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """Vesicular nucleus with a dark membrane and one or two nucleoli against it."""
    d, r = _outline(cell.nucleus).draw(rng, grid, um)
    inside = edge(d, r)
    rim = np.exp(-(((d - 0.9) / 0.12) ** 2)).astype(np.float32)
    img = inside * (_texture(cell, rng, grid, um) + 0.45 * rim)
    for _ in range(int(rng.integers(1, 3))):
        a = rng.uniform(0, 2 * math.pi)
        rr = 0.7 * r
        img += inside * 0.9 * spot(grid, rr * math.sin(a), rr * math.cos(a), 0.9 * um)
    return img, halo(d, r, 1.5 * um) * (1 - inside) * 0.18


def _tingible_body_macrophage(
    cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int
) -> tuple[F32, F32]:
    """Pale cytoplasm, an off-centre pale nucleus and two to five dark apoptotic bodies."""
    cytoplasm = _outline(cell.cytoplasm)
    dc, rc = cytoplasm.draw(rng, grid, um)
    cyto = cytoplasm.inside(dc, rc, um)
    nucleus = _outline(cell.nucleus)
    rn = nucleus.draw_radius(rng, um)
    ox, oy = rng.uniform(-0.4, 0.4, 2) * rc
    dn = nucleus.distance(rng, grid.yy - oy, grid.xx - ox, rn)
    img = edge(dn, rn) * _texture(cell, rng, grid, um)
    for _ in range(int(rng.integers(2, 6))):
        px, py = rng.uniform(-0.55, 0.55, 2) * rc
        rb = rng.uniform(0.8, 1.8) * um
        img += 2.4 * spot(grid, py, px, rb) * cyto
    return img + cyto * 0.03, cyto * 0.16


def _histiocyte(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """Oval or bean-shaped nucleus with fine chromatin in ample pale-pink cytoplasm."""
    cytoplasm = _outline(cell.cytoplasm)
    dc, rc = cytoplasm.draw(rng, grid, um)
    cyto = cytoplasm.inside(dc, rc, um)
    dn, rn = _outline(cell.nucleus).draw(rng, grid, um)
    nuc = edge(dn, rn)
    return nuc * _texture(cell, rng, grid, um) + cyto * 0.04, cyto * (1 - nuc) * 0.17


def _fibroblast(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """Spindle nucleus along orientation ``index // variants`` of ``orientations`` over pi; no eosin."""
    assert isinstance(cell.nucleus, Spindle), cell.nucleus
    angle = index // cell.variants * math.pi / cell.orientations
    inside = cell.nucleus.inside(rng, grid, um, angle)
    return inside * _texture(cell, rng, grid, um), np.zeros_like(grid.yy)


def _carcinoma(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """Large pleomorphic vesicular nucleus (a few hyperchromatic or giant), one or two large
    nucleoli and abundant eosinophilic cytoplasm.
    """
    nucleus = _outline(cell.nucleus)
    # 6 % giant nuclei; the draw order (the giant check first, the wobble before the elongation) is the
    # generator's since its first version: the same seed keeps giving the same slides
    r = nucleus.draw_radius(rng, um) if rng.random() > 0.06 else rng.uniform(10.0, 12.0) * um
    wobble = [harmonic.draw(rng) for harmonic in nucleus.wobble]
    d = nucleus.distance(rng, grid.yy, grid.xx, r, wobble)
    inside = edge(d, r)
    hyper = rng.random() < 0.15
    assert cell.chromatin is not None
    base = cell.chromatin.draw(rng, grid.size, um, level=0.8 if hyper else None)
    rim = np.exp(-(((d - 0.93) / 0.09) ** 2)).astype(np.float32)
    img = inside * (np.clip(base, 0.1, None) + 0.6 * rim)
    e_nucleoli = np.zeros_like(grid.yy)
    for _ in range(int(rng.integers(1, 3))):
        ox, oy = rng.uniform(-0.35, 0.35, 2) * r
        nucleolus = spot(grid, oy, ox, rng.uniform(0.9, 1.7) * um).astype(np.float32)
        img += 0.8 * nucleolus
        e_nucleoli += 0.7 * nucleolus
    cytoplasm = _outline(cell.cytoplasm)
    rc = r + cytoplasm.draw_radius(rng, um)  # the cytoplasm's radius is drawn beyond the nucleus
    cyto = cytoplasm.inside(cytoplasm.distance(rng, grid.yy, grid.xx, rc), rc, um)
    return img + cyto * 0.03, cyto * 0.2 * (1 - 0.5 * inside) + e_nucleoli


def _mitosis(cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int) -> tuple[F32, F32]:
    """A dark ragged chromosome plate in a round eosinophilic cell of 11 µm radius."""
    d, r = _outline(cell.nucleus).draw(rng, grid, um)
    img = edge(d, r) * _texture(cell, rng, grid, um)
    rc = 11 * um
    dc = (np.hypot(grid.yy, grid.xx) / rc).astype(np.float32)
    return np.clip(img, 0, None), edge(dc, rc, 1.5 * um) * 0.5


def _red_blood_cell(
    cell: CellType, rng: np.random.Generator, grid: StampGrid, um: float, index: int
) -> tuple[F32, F32]:
    """Eosinophilic biconcave disc (paler centre), no chromatin."""
    d, r = _outline(cell.nucleus).draw(rng, grid, um)
    return np.zeros_like(grid.yy), edge(d, r) * (0.75 - 0.3 * np.exp(-((d / 0.45) ** 2)))


# ------------------------------------------------------------------------------------------
# The cell types
# ------------------------------------------------------------------------------------------

CELL_TYPES: tuple[CellType, ...] = (
    # small (6-8 µm), round, dense coarse chromatin, scant cytoplasm
    CellType(
        "lymph", _lymphocyte, stamps=32, half_size_um=4.6, hematoxylin_gain=2.05,
        nucleus=Outline((2.9, 3.9), (1.0, 1.18), (Harmonic(3, (0.0, 0.05)),)),
        chromatin=Chromatin(1.0, 0.22, 0.7, min_grain_px=0.5),
        spacing_um=8.0, yields=True, among_tumor=0.04,  # isolated tumor cells sit among lymphocytes
    ),
    # germinal-centre blasts: 9-12 µm, vesicular, nucleoli at the membrane
    CellType(
        "centroblast", _centroblast, stamps=24, half_size_um=6.5, hematoxylin_gain=1.55,
        nucleus=Outline((4.0, 5.2), (1.0, 1.25), (Harmonic(2, (0.0, 0.05)),)),
        chromatin=Chromatin(0.75, 0.2, 0.6, min_grain_px=0.5),
        spacing_um=12.5, clears_um=6.0, yields=True,
    ),
    # tingible-body macrophages of the germinal centre
    CellType(
        "tbm", _tingible_body_macrophage, stamps=12, half_size_um=12.5,
        nucleus=Outline((3.5, 4.5), 1.4), chromatin=Chromatin(0.75, 0.1, 1.0),
        cytoplasm=Outline((9.0, 12.0), (1.0, 1.3), (Harmonic(3, 0.06),), soft_um=1.2),
        spacing_um=42.0, clears_um=9.5,
    ),
    # sinus histiocytes
    CellType(
        "histiocyte", _histiocyte, stamps=16, half_size_um=11.5,
        nucleus=Outline((3.8, 5.2), (1.3, 1.8), (Harmonic(2, 0.12, 0.0),)), chromatin=Chromatin(1.05, 0.2, 0.5),
        cytoplasm=Outline((7.5, 10.5), (1.0, 1.4), (Harmonic(3, 0.07),), soft_um=2.5),
        spacing_um=20.0, clears_um=7.0, yields=True,
    ),
    # fibroblasts and endothelium: 16 orientations x 3 variants
    CellType(
        "fibro", _fibroblast, stamps=48, half_size_um=10.5, orientations=16,
        nucleus=Spindle(half_length_um=(6.0, 9.5), half_width_um=(1.5, 2.2)), chromatin=Chromatin(1.15, 0.2, 0.6),
        spacing_um=22.0,
    ),
    # carcinoma: nuclei 12-20 µm (radius 6.5-10, giants 10-12), cytoplasm 4-7 µm beyond the nucleus
    CellType(
        "tumor", _carcinoma, stamps=48, half_size_um=16.5, hematoxylin_gain=1.35,
        nucleus=Outline((6.5, 10.0), (1.0, 1.7), tuple(Harmonic(k, (0.0, 0.24 / k)) for k in (2, 3, 4, 5))),
        chromatin=Chromatin(0.3, 0.2, 0.9, min_grain_px=0.6),
        cytoplasm=Outline((4.0, 7.0), (1.0, 1.3), (Harmonic(4, 0.05),), soft_um=1.8),
        spacing_um=21.0, clears_um=11.0,
    ),
    # mitotic figures among the carcinoma cells (not placed on their own lattice)
    CellType(
        "mitosis", _mitosis, stamps=6, half_size_um=16.5,
        nucleus=Outline((4.0, 6.0), (3.0, 5.0), (Harmonic(5, 0.15, 0.0), Harmonic(7, 0.1, 1.0))),
        chromatin=Chromatin(2.6, 0.6, 0.5),
    ),
    # red blood cells in vessel lumens: a disc, no nucleus
    CellType(
        "rbc", _red_blood_cell, stamps=8, half_size_um=4.5, nucleus=Outline((3.2, 3.9), (1.0, 1.25)), spacing_um=6.5
    ),
)

#: Cell types by name.
CELL_TYPE: dict[str, CellType] = {cell.name: cell for cell in CELL_TYPES}
#: The cell types placed on their own lattice (all but mitoses), in table order.
PLACED_TYPES: tuple[str, ...] = tuple(cell.name for cell in CELL_TYPES if cell.spacing_um is not None)


def make_banks(rng: np.random.Generator, um: float) -> dict[str, StampBank]:
    """Stamp banks of every cell type, in table order, for ``um`` pixels per micrometre."""
    banks: dict[str, StampBank] = {}
    for cell in CELL_TYPES:
        grid = StampGrid.of_size(stamp_size(cell.half_size_um, um))
        h = np.zeros((cell.stamps, grid.size, grid.size), np.float32)
        e = np.zeros_like(h)
        for i in range(cell.stamps):
            h[i], e[i] = cell.look(cell, rng, grid, um, i)
        banks[cell.name] = StampBank(h * cell.hematoxylin_gain, e)
    return banks
