"""Metastases: outlines of isolated tumor cells, micro- and macro-metastases inside a node."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon

from analysis.synthetic.shapes import Blob, as_polygon, random_blob

_LESION_DIAMETER_UM: dict[str, tuple[float, float]] = {
    "itc": (22.0, 150.0),
    "micro": (320.0, 1700.0),
    "macro": (2200.0, 3600.0),
}


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
        rr = float(node.radius(np.array([theta]))[0])
        u = {"itc": rng.uniform(0.55, 0.9), "micro": rng.uniform(0.2, 0.85), "macro": rng.uniform(0.0, 0.5)}[kind]
        cx, cy = node.cx + u * rr * math.cos(theta), node.cy + u * rr * math.sin(theta)
        rad = diameter / 2
        if kind == "itc":
            blobs = [random_blob(rng, cx, cy, rad, aspect=(0.6, 1.0), roughness=0.05, orders=(2, 4))]
        else:
            n_lobes = 1 if kind == "micro" and rng.random() < 0.5 else int(rng.integers(2, 4))
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

