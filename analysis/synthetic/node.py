"""Lymph-node anatomy drawn on the field grid: blood vessels near the hilum."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon

from analysis.synthetic.noise import smoothstep
from analysis.synthetic.shapes import Blob
from analysis.synthetic.spec import F32, F64


def vessels(
    rng: np.random.Generator,
    nodes: list[Blob],
    lesions: list[Polygon],
    xs: F64,
    ys: F64,
    tissue_sdf: F64,
    um: float,
) -> tuple[F32, F32]:
    """Wall and lumen weights (ny, nx) of a few blood vessels near each hilum."""
    wall = np.zeros(xs.shape, np.float32)
    lumen = np.zeros(xs.shape, np.float32)
    f = float(xs[0, 1] - xs[0, 0]) if xs.shape[1] > 1 else 1.0
    avoid = shapely.union_all(lesions).buffer(60 * um) if lesions else None
    for node in nodes:
        assert node.dent is not None
        ang = node.dent[0]
        rr = float(node.radius(np.array([ang]))[0])
        hx, hy = node.cx + rr * math.cos(ang), node.cy + rr * math.sin(ang)
        reach = 0.45 * min(node.a, node.b)
        for _ in range(int(rng.integers(5, 12))):
            r = rng.uniform(12, 55) * um
            a = rng.uniform(0, 2 * math.pi)
            d = reach * math.sqrt(rng.random())
            cx, cy = hx + d * math.cos(a), hy + d * math.sin(a)
            j, i = round(cx / f), round(cy / f)
            if not (0 <= i < xs.shape[0] and 0 <= j < xs.shape[1]) or tissue_sdf[i, j] < 2.5 * r:
                continue
            if avoid is not None and avoid.contains(shapely.Point(cx, cy)):
                continue
            ratio, rot = rng.uniform(1.0, 2.2), rng.uniform(0, math.pi)
            i0, i1 = max(0, int((cy - 3 * r) / f)), min(xs.shape[0], int((cy + 3 * r) / f) + 2)
            j0, j1 = max(0, int((cx - 3 * r) / f)), min(xs.shape[1], int((cx + 3 * r) / f) + 2)
            dx, dy = xs[i0:i1, j0:j1] - cx, ys[i0:i1, j0:j1] - cy
            u = (dx * math.cos(rot) + dy * math.sin(rot)) / math.sqrt(ratio)
            v = (-dx * math.sin(rot) + dy * math.cos(rot)) * math.sqrt(ratio)
            rho = np.hypot(u, v).astype(np.float32)
            t = max(4 * um, 0.3 * r)  # wall thickness
            inner = smoothstep(r + 0.5 * f, r - 0.5 * f, rho)
            outer = smoothstep(r + t + 0.5 * f, r + t - 0.5 * f, rho)
            lumen[i0:i1, j0:j1] = np.maximum(lumen[i0:i1, j0:j1], inner)
            wall[i0:i1, j0:j1] = np.maximum(wall[i0:i1, j0:j1], outer * (1 - inner))
    return wall, lumen

