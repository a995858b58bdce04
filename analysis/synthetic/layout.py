"""The layout of a slide: nodes, fat, regions of the node and metastases as low-resolution fields.

Each region of the tissue is a :class:`Compartment`, described as data: its base
hematoxylin and eosin, how fibrous it is and how densely each cell type fills it.
The compartments are painted one over the other with their weights, in the order
of :func:`_paint_compartments`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Polygon

from analysis.synthetic.cells import PLACED_TYPES
from analysis.synthetic.grid import FieldGrid
from analysis.synthetic.metastases import Metastases, lesion_plan, metastases, mimics
from analysis.synthetic.node import NodeRegions, fat_distance, node_regions, node_shape, place_nodes, vessels
from analysis.synthetic.noise import smooth_noise
from analysis.synthetic.shapes import Blob, as_polygon
from analysis.synthetic.spec import F32, F64, SlideSpec

FIELD_H, FIELD_E, FIELD_EFIB, FIELD_TISSUE, FIELD_FAT = range(5)


@dataclass
class Layout:
    """Geometry and low-resolution fields of a slide.

    The field grids sample level-0 coordinates ``(i * f, j * f)``; shapes (ny, nx).
    ``fields`` stacks (5, ny, nx): hematoxylin and eosin base concentrations, the eosin
    that follows the collagen texture, tissue pseudo-SDF (px) and fat weight; ``fibrous``
    (ny, nx) is the fibrous-tissue weight.  ``density`` maps cell type ->
    keep-probability of its jittered grid.
    """

    f: int
    fields: F32
    fibrous: F32
    density: dict[str, F32]
    tumor_sdf: F32  # pseudo-SDF of all lesions (px), > 0 inside
    faint: F32  # weight of the faint micro-metastases (0..1)
    angle: F32  # orientation of the node outline (radians, tangent), for capsule fibroblasts
    nodes: list[Polygon]
    tissue: list[Polygon]
    lesions: list[tuple[Polygon, list[Blob]]]
    faint_lesions: list[bool]  # per lesion: drawn faint
    node_centres: list[tuple[float, float]]


@dataclass(frozen=True)
class Compartment:
    """What a region of tissue looks like at low resolution.

    Attributes:
        hematoxylin, eosin: base stain concentrations between the cells.
        fibrous: share of the eosin that follows the collagen texture.
        cells: keep-probability of each cell type's lattice (absent types: none).
    """

    hematoxylin: float
    eosin: float
    fibrous: float = 0.0
    cells: Mapping[str, float] = field(default_factory=dict)


PARACORTEX = Compartment(0.12, 0.26, cells={"lymph": 0.74})
MEDULLARY_CORDS = Compartment(0.11, 0.32, 0.15, cells={"lymph": 0.55, "histiocyte": 0.1})
MEDULLARY_SINUS = Compartment(0.04, 0.2, 0.3, cells={"lymph": 0.14, "histiocyte": 0.3, "fibro": 0.04})
MANTLE_ZONE = Compartment(0.17, 0.18, cells={"lymph": 1.0})
GERMINAL_CENTRE = Compartment(0.1, 0.28, cells={"lymph": 0.22, "centroblast": 0.55, "tbm": 0.4})
SUBCAPSULAR_SINUS = Compartment(0.03, 0.12, 0.2, cells={"lymph": 0.06, "histiocyte": 0.32})
CAPSULE = Compartment(0.04, 0.62, 1.0, cells={"fibro": 0.3})
VESSEL_WALL = Compartment(0.05, 0.7, 1.0, cells={"fibro": 0.45})
VESSEL_LUMEN = Compartment(0.0, 0.22, 0.0, cells={"rbc": 0.8})
TUMOR_NESTS = Compartment(0.05, 0.3, cells={"tumor": 0.93})
TUMOR_STROMA = Compartment(0.04, 0.58, 1.0, cells={"fibro": 0.25, "lymph": 0.08})
NECROSIS = Compartment(0.14, 0.7, 0.0)
#: Reactive histiocytes gathered in the node: large pale cells among fewer lymphocytes (a benign look-alike).
HISTIOCYTE_AGGREGATE = Compartment(0.08, 0.3, 0.1, cells={"histiocyte": 0.75, "lymph": 0.3})


@dataclass(frozen=True)
class _Canvas:
    """The painted fields, (ny, nx) float32 each: stains, fibrous share, cell densities."""

    hematoxylin: F32
    eosin: F32
    fibrous: F32
    density: dict[str, F32]

    @classmethod
    def blank(cls, shape: tuple[int, int]) -> _Canvas:
        def zeros() -> F32:
            return np.zeros(shape, np.float32)

        return cls(zeros(), zeros(), zeros(), {t: zeros() for t in PLACED_TYPES})

    def paint(self, weight: F32, compartment: Compartment) -> None:
        _paint(self.hematoxylin, weight, compartment.hematoxylin)
        _paint(self.eosin, weight, compartment.eosin)
        _paint(self.fibrous, weight, compartment.fibrous)
        for t in PLACED_TYPES:
            _paint(self.density[t], weight, compartment.cells.get(t, 0.0))


def _paint(base: F32, weight: F32, value: float | F32) -> None:
    """``base`` becomes ``value`` where ``weight`` is 1, in place (a blend elsewhere)."""
    base *= 1.0 - weight
    base += weight * value


def build_layout(spec: SlideSpec, rng: np.random.Generator) -> Layout:
    """Nodes, fat, the regions of each node and the metastases of ``spec`` on the field grid."""
    grid = FieldGrid.of(spec)
    kinds = lesion_plan(spec, rng)
    nodes, fats = place_nodes(spec, kinds, rng)
    shape = node_shape(grid, nodes)
    fat_sdf = fat_distance(grid, fats, rng)
    tissue_sdf = np.maximum(shape.sdf, fat_sdf)
    noise = tuple(smooth_noise(rng, grid.shape, scale_um / grid.sample_um) for scale_um in (250, 120, 60))
    n1, n2, n3 = noise
    regions = node_regions(grid, nodes, shape, (n1, n2, n3), rng)
    mets = metastases(grid, spec, kinds, nodes, regions.node, (n2, n3), rng)
    fat_w = (np.clip(fat_sdf / grid.f + 0.5, 0, 1) * (1 - regions.node)).astype(np.float32)
    # blood vessels around the hilum, in the medulla and the hilar fat
    wall_w, lumen_w = vessels(grid, nodes, [p for p, _ in mets.lesions], tissue_sdf, rng)
    wall_w *= 1 - mets.tumor
    lumen_w *= 1 - mets.tumor
    fat_w *= 1 - np.maximum(wall_w, lumen_w)
    mimic_w = mimics(grid, spec, nodes, [p for p, _ in mets.lesions], regions.node)
    mimic_w *= 1 - np.maximum(wall_w, lumen_w)
    canvas = _paint_compartments(grid, regions, mets, (wall_w, lumen_w), (n2, n3), mimic_w)
    _paint(canvas.fibrous, fat_w, 0.0)
    # uneven staining across the slide
    stain_var = smooth_noise(rng, grid.shape, 900 / grid.sample_um)
    canvas.hematoxylin[...] *= (1 + 0.07 * stain_var).astype(np.float32)
    canvas.eosin[...] *= (1 + 0.1 * smooth_noise(rng, grid.shape, 900 / grid.sample_um)).astype(np.float32)
    return _layout(grid, canvas, tissue_sdf, fat_w, shape.tangent, nodes, fats, mets)


def _paint_compartments(
    grid: FieldGrid,
    regions: NodeRegions,
    mets: Metastases,
    vessel: tuple[F32, F32],
    noise: tuple[F32, F32],
    mimic_w: F32,
) -> _Canvas:
    """Paint the compartments in order, each over the ones before; ``vessel`` = (wall, lumen) weights,
    ``mimic_w`` the weight of the histiocyte aggregates."""
    n2, n3 = noise
    canvas = _Canvas.blank(grid.shape)
    canvas.paint(regions.node, PARACORTEX)
    # patchy paracortex: more and fewer lymphocytes
    para_mod = (0.1 * n2 + 0.05 * n3).astype(np.float32)
    _paint(canvas.density["lymph"], regions.node, np.clip(PARACORTEX.cells["lymph"] + para_mod, 0, 1))
    wall_w, lumen_w = vessel
    for weight, compartment in (
        (regions.medulla * (1 - regions.medullary_sinus), MEDULLARY_CORDS),
        (regions.medullary_sinus, MEDULLARY_SINUS),
        (regions.mantle * (1 - regions.germinal_centre), MANTLE_ZONE),
        (regions.germinal_centre, GERMINAL_CENTRE),
        (regions.subcapsular_sinus * (1 - regions.capsule), SUBCAPSULAR_SINUS),
        (regions.capsule, CAPSULE),
        (wall_w, VESSEL_WALL),
        (lumen_w, VESSEL_LUMEN),
        (mimic_w, HISTIOCYTE_AGGREGATE),
        (mets.nests, TUMOR_NESTS),
        (mets.stroma, TUMOR_STROMA),
        (mets.necrosis, NECROSIS),
    ):
        canvas.paint(weight, compartment)
    return canvas


def _layout(
    grid: FieldGrid,
    canvas: _Canvas,
    tissue_sdf: F64,
    fat_w: F32,
    tangent: F64,
    nodes: list[Blob],
    fats: list[Blob],
    mets: Metastases,
) -> Layout:
    f = grid.f
    fields = np.stack(
        [
            canvas.hematoxylin,
            canvas.eosin * (1 - canvas.fibrous),
            canvas.eosin * canvas.fibrous,
            np.clip(tissue_sdf, -8 * f, 8 * f).astype(np.float32),
            fat_w,
        ]
    ).astype(np.float32)
    tissue_polys = []
    for node, fat in zip(nodes, fats, strict=True):
        tissue_polys.append(as_polygon(Polygon(node.polygon(360)).union(Polygon(fat.polygon(360)))))
    return Layout(
        f=f,
        fields=fields,
        fibrous=canvas.fibrous,
        density=canvas.density,
        tumor_sdf=np.clip(mets.sdf, -1e6, 1e6).astype(np.float32),
        faint=mets.faint,
        angle=(tangent % math.pi).astype(np.float32),
        nodes=[as_polygon(Polygon(node.polygon(360))) for node in nodes],
        tissue=tissue_polys,
        lesions=mets.lesions,
        faint_lesions=mets.faint_lesions,
        node_centres=[(n.cx, n.cy) for n in nodes],
    )
