"""Metastases: isolated tumor cells, micro- and macro-metastases inside a node, and their fields.

Micro- and macro-metastases are cohesive nests separated by fibrous stroma, with
necrosis in the middle of the largest; isolated tumor cells sit among the
lymphocytes and get no stroma.  A faint micro-metastasis is micro-sized but gets
no nests or stroma either: a sparse spread of paler tumor cells among the
lymphocytes (its weight field tells the cell placement where).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import shapely
from shapely.geometry import Polygon

from analysis.synthetic.grid import FieldGrid
from analysis.synthetic.node import FAR_OUTSIDE
from analysis.synthetic.noise import smoothstep
from analysis.synthetic.shapes import Blob, as_polygon, major_axis, random_blob
from analysis.synthetic.spec import F32, F64, ITC_MAX_UM, LesionKind, LesionPlan, SlideSpec

_LESION_DIAMETER_UM: dict[str, tuple[float, float]] = {
    "itc": (22.0, 150.0),
    "micro": (320.0, 1700.0),
    "macro": (2200.0, 3600.0),
    "faint": (350.0, 1100.0),
}
#: Where a metastasis's centre sits, as a fraction of the node radius along a random ray.
_LESION_DEPTH: dict[str, tuple[float, float]] = {
    "itc": (0.55, 0.9),
    "micro": (0.2, 0.85),
    "macro": (0.0, 0.5),
}
#: Size of a benign look-alike (an aggregate of reactive histiocytes): that of a faint micro-metastasis.
_MIMIC_DIAMETER_UM = (250.0, 800.0)
#: Where a faint micro-metastasis sits and how it is shaped: as a micro-metastasis.
_DRAWN_AS = {"faint": "micro"}
#: Larger lesions are placed first: they need the most room.
_PLACING_ORDER = {"macro": 0, "micro": 1, "faint": 1, "itc": 2}


@dataclass(frozen=True)
class Metastases:
    """The metastases of a slide and their fields on the layout grid, (ny, nx) each.

    Attributes:
        lesions: outline (level-0 px) and the blobs it is the union of, per lesion.
        faint_lesions: per lesion, whether it is a faint micro-metastasis.
        sdf: pseudo signed distance to the nearest lesion (px, float64), > 0 inside.
        tumor: weight of micro- and macro-metastases (float32), within the node.
        nests, stroma, necrosis: their cohesive nests, fibrous stroma and necrotic centres (float32).
        faint: weight of the faint micro-metastases (float32), within the node.
    """

    lesions: list[tuple[Polygon, list[Blob]]]
    faint_lesions: list[bool]
    sdf: F64
    tumor: F32
    nests: F32
    stroma: F32
    necrosis: F32
    faint: F32


def lesion_plan(spec: SlideSpec, rng: np.random.Generator) -> list[LesionPlan]:
    """Size classes of the metastases to draw: the spec's, or one to three chosen by the seed."""
    if not spec.tumor:
        return []
    if spec.lesions is not None:
        return list(spec.lesions)
    n_les = int(rng.integers(1, 4))
    kinds: tuple[LesionKind, ...] = ("itc", "micro", "macro")
    return [kinds[int(rng.choice(3, p=[0.35, 0.4, 0.25]))] for _ in range(n_les)]


def metastases(
    grid: FieldGrid,
    spec: SlideSpec,
    kinds: list[LesionPlan],
    nodes: list[Blob],
    node_w: F32,
    noise: tuple[F32, F32],
    rng: np.random.Generator,
) -> Metastases:
    """Place the planned metastases in the nodes and draw their fields; ``noise`` = (n2, n3) of ~120 and ~60 µm.

    A tumor slide keeps at least one lesion: when none fits, a small one (ITC) is
    tried, and when that does not fit either the slide is refused with a ValueError.
    """
    um = grid.um
    lesions: list[tuple[Polygon, list[Blob]]] = []
    faint_lesions: list[bool] = []
    inner_polys = [Polygon(node.polygon(256)).buffer(-(80 * um)) for node in nodes]
    tumor_sdf = np.full(grid.shape, FAR_OUTSIDE)
    region_sdf = np.full(grid.shape, FAR_OUTSIDE)  # micro/macro lesions: nests and stroma
    faint_sdf = np.full(grid.shape, FAR_OUTSIDE)  # faint micro-metastases: tumor cells among lymphocytes
    plan: list[str] = sorted(kinds, key=lambda k: _PLACING_ORDER[k])
    while plan:
        kind = plan.pop(0)
        outline = place_lesion(rng, kind, nodes, inner_polys, [p for p, _ in lesions], um)
        if outline is None:
            if spec.tumor and not lesions and not plan:
                if kind != "itc":  # a tumor slide keeps at least one lesion: try a small one
                    plan.append("itc")
                    continue
                raise ValueError(
                    f"no room for a metastasis in a {spec.width}x{spec.height} slide at {spec.mpp} um/px; "
                    "make it larger"
                )
            continue
        poly, blobs = outline
        lesions.append((poly, blobs))
        faint_lesions.append(kind == "faint")
        bx0, by0, bx1, by1 = poly.bounds
        pad = 400 * um
        win = grid.window(by0 - pad, by1 + pad, bx0 - pad, bx1 + pad)
        for blob in blobs:
            sd = blob.sdf(grid.xs[win], grid.ys[win])
            tumor_sdf[win] = np.maximum(tumor_sdf[win], sd)
            if kind == "faint":
                faint_sdf[win] = np.maximum(faint_sdf[win], sd)
            elif major_axis(poly) / um >= ITC_MAX_UM:
                region_sdf[win] = np.maximum(region_sdf[win], sd)
    mets = _with_fields(grid, lesions, tumor_sdf, region_sdf, node_w, noise)
    faint = (np.clip(faint_sdf / grid.f + 0.5, 0, 1) * node_w).astype(np.float32)
    return replace(mets, faint_lesions=faint_lesions, faint=faint)


def _with_fields(
    grid: FieldGrid,
    lesions: list[tuple[Polygon, list[Blob]]],
    tumor_sdf: F64,
    region_sdf: F64,
    node_w: F32,
    noise: tuple[F32, F32],
) -> Metastases:
    """Nests, stroma and necrosis of the micro- and macro-metastases from their distance ``region_sdf``
    (no faint lesion: :func:`metastases` adds those)."""
    um = grid.um
    n2, n3 = noise
    tumor_w = np.clip(region_sdf / grid.f + 0.5, 0, 1).astype(np.float32) * node_w
    nest = smoothstep(-0.95, -0.55, n3 + 0.4 * n2)
    # keep the outer rim of a metastasis cellular
    nest = np.maximum(nest, smoothstep(30.0, 5.0, (region_sdf / um).astype(np.float32)))
    necrosis_w = np.zeros(grid.shape, np.float32)
    if region_sdf.max() > 700 * um:
        necrosis_w = tumor_w * smoothstep(450.0, 700.0, (region_sdf / um + 150 * n2).astype(np.float32))
    return Metastases(
        lesions=lesions,
        faint_lesions=[False] * len(lesions),
        sdf=tumor_sdf,
        tumor=tumor_w,
        nests=tumor_w * nest,
        stroma=tumor_w * (1 - nest),
        necrosis=necrosis_w,
        faint=np.zeros(grid.shape, np.float32),
    )


def place_lesion(
    rng: np.random.Generator,
    kind: str,
    nodes: list[Blob],
    inner_polys: list[Polygon],
    taken: list[Polygon],
    um: float,
) -> tuple[Polygon, list[Blob]] | None:
    """A lesion outline inside a node (clear of the capsule and of other lesions)."""
    lo, hi = _LESION_DIAMETER_UM[kind]
    diameter = rng.uniform(lo, hi) * um
    for attempt in range(120):
        if attempt and attempt % 20 == 0:
            diameter *= 0.8
        ni = int(rng.integers(len(nodes)))
        node, inner = nodes[ni], inner_polys[ni]
        if inner.is_empty:
            return None
        # metastases tend to start under the capsule: bias towards the outer cortex
        theta = rng.uniform(-math.pi, math.pi)
        rr = node.radius_at(theta)
        # a depth is drawn for every size class, the one of this kind is used (the generator's draw order)
        u = {k: rng.uniform(*depth) for k, depth in _LESION_DEPTH.items()}[_DRAWN_AS.get(kind, kind)]
        cx, cy = node.cx + u * rr * math.cos(theta), node.cy + u * rr * math.sin(theta)
        rad = diameter / 2
        if kind == "itc":
            blobs = [random_blob(rng, cx, cy, rad, aspect=(0.6, 1.0), roughness=0.05, orders=(2, 4))]
        else:
            n_lobes = 1 if _DRAWN_AS.get(kind, kind) == "micro" and rng.random() < 0.5 else int(rng.integers(2, 4))
            blobs = [random_blob(rng, cx, cy, rad * 0.85, aspect=(0.5, 0.95), roughness=0.09)]
            for _ in range(n_lobes - 1):
                a = rng.uniform(-math.pi, math.pi)
                off = rad * rng.uniform(0.3, 0.55)
                blobs.append(
                    random_blob(
                        rng, cx + off * math.cos(a), cy + off * math.sin(a), rad * rng.uniform(0.4, 0.6), roughness=0.1
                    )
                )
        geom = shapely.union_all([Polygon(b.polygon(256 if kind != "itc" else 96)) for b in blobs])
        if not isinstance(geom, Polygon):
            continue
        poly = as_polygon(geom)
        if not poly.within(inner):
            continue
        if any(poly.distance(t) < 150 * um for t in taken):
            continue
        return poly, blobs
    return None



def mimics(grid: FieldGrid, spec: SlideSpec, nodes: list[Blob], lesions: list[Polygon], node_w: F32) -> F32:
    """Weight (ny, nx) of ``spec.mimics`` aggregates of reactive histiocytes inside the nodes, clear of the
    metastases: benign look-alikes of a faint micro-metastasis.  They come from a random stream of their
    own, so that the rest of the slide is the same with or without them; one that finds no room is left out.
    """
    out = np.zeros(grid.shape, np.float32)
    if spec.mimics == 0 or not nodes:
        return out
    rng = np.random.default_rng([spec.seed, 0x3A1C])
    um = grid.um
    inner = [Polygon(node.polygon(256)).buffer(-(120 * um)) for node in nodes]
    taken = list(lesions)
    sdf = np.full(grid.shape, FAR_OUTSIDE)
    for _ in range(spec.mimics):
        for _attempt in range(60):
            ni = int(rng.integers(len(nodes)))
            node = nodes[ni]
            theta = rng.uniform(-math.pi, math.pi)
            rr = node.radius_at(theta) * rng.uniform(0.15, 0.85)
            radius = rng.uniform(*_MIMIC_DIAMETER_UM) * um / 2
            blob = random_blob(rng, node.cx + rr * math.cos(theta), node.cy + rr * math.sin(theta), radius,
                               aspect=(0.5, 0.95), roughness=0.09)
            poly = Polygon(blob.polygon(128))
            if not poly.is_valid or not poly.within(inner[ni]) or any(poly.distance(t) < 150 * um for t in taken):
                continue
            taken.append(poly)
            bx0, by0, bx1, by1 = poly.bounds
            win = grid.window(by0 - 100 * um, by1 + 100 * um, bx0 - 100 * um, bx1 + 100 * um)
            sdf[win] = np.maximum(sdf[win], blob.sdf(grid.xs[win], grid.ys[win]))
            break
    out[...] = np.clip(sdf / grid.f + 0.5, 0, 1) * node_w
    return out
