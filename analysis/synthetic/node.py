"""The lymph node on the field grid: nodes in their fat, capsule, sinuses, medulla, follicles, vessels.

Every function draws from the generator it is given; :func:`analysis.synthetic.layout.build_layout`
calls them in a fixed order, so that the same seed always gives the same node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import shapely
from shapely.geometry import Polygon

from analysis.synthetic.grid import FieldGrid
from analysis.synthetic.noise import smooth_noise, smoothstep
from analysis.synthetic.shapes import Blob, random_blob
from analysis.synthetic.spec import F32, F64, LesionPlan, SlideSpec

#: Pseudo signed distance of samples that lie in no outline (px).
FAR_OUTSIDE = -1e9


@dataclass(frozen=True)
class NodeShape:
    """Where each field sample lies with respect to the nearest node, (ny, nx) float64 each.

    Attributes:
        sdf: pseudo signed distance to the node outline (px), > 0 inside.
        u_norm: distance from the node's centre over its radius along the same ray.
        tangent: direction of the outline's tangent on that ray (radians).
    """

    sdf: F64
    u_norm: F64
    tangent: F64


@dataclass(frozen=True)
class NodeRegions:
    """Weights in [0, 1] of the regions of the node, (ny, nx) float32 each."""

    node: F32
    capsule: F32
    subcapsular_sinus: F32
    medulla: F32
    medullary_sinus: F32
    mantle: F32
    germinal_centre: F32


def place_nodes(spec: SlideSpec, kinds: list[LesionPlan], rng: np.random.Generator) -> tuple[list[Blob], list[Blob]]:
    """Outlines of one or two lymph nodes and of the fat around each, all inside the slide.

    Two nodes only on a slide over 3 mm wide and high and without a macro-metastasis.
    """
    W, H = spec.width, spec.height
    two = rng.random() < 0.35 and min(W, H) * spec.mpp > 3000 and "macro" not in kinds
    n_nodes = 2 if two else 1
    margin = 0.04 * min(W, H)
    nodes: list[Blob] = []
    fats: list[Blob] = []
    for n in range(n_nodes):
        cx, cy, room_x, room_y = _node_centre(rng, W, H, n, n_nodes, margin)
        radius = min(room_x, room_y) * rng.uniform(0.72, 0.86)
        node = random_blob(rng, cx, cy, radius, aspect=(0.55, 0.9), roughness=0.035, orders=(2, 5))
        node = replace(node, dent=(float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(0.08, 0.2)), 0.35))
        fat_h = tuple((k, float(rng.uniform(0.04, 0.1)), float(rng.uniform(0, 6.3))) for k in (1, 2, 3, 5))
        grow = rng.uniform(1.2, 1.38)
        fat = replace(node, harmonics=node.harmonics + fat_h, a=node.a * grow, b=node.b * grow)
        # shrink until the fat fits in the slide
        for _ in range(40):
            x0, y0, x1, y1 = fat.bbox()
            if x0 >= margin / 2 and y0 >= margin / 2 and x1 <= W - margin / 2 and y1 <= H - margin / 2:
                break
            node, fat = node.scaled(0.95), fat.scaled(0.95)
        nodes.append(node)
        fats.append(fat)
    return nodes, fats


def _node_centre(
    rng: np.random.Generator, W: int, H: int, n: int, n_nodes: int, margin: float
) -> tuple[float, float, float, float]:
    """Centre of node ``n`` and the room around it (half-widths, px): one in the middle, two side by side."""
    if n_nodes == 1:
        cx, cy = W / 2 + rng.uniform(-0.05, 0.05) * W, H / 2 + rng.uniform(-0.05, 0.05) * H
        return cx, cy, W / 2 - margin, H / 2 - margin
    frac = 0.3 if n == 0 else 0.7
    if W >= H:  # along the long axis
        cx, cy = W * (frac + rng.uniform(-0.02, 0.02)), H / 2 + rng.uniform(-0.06, 0.06) * H
        return cx, cy, W * 0.2 - margin / 2, H / 2 - margin
    cx, cy = W / 2 + rng.uniform(-0.06, 0.06) * W, H * (frac + rng.uniform(-0.02, 0.02))
    return cx, cy, W / 2 - margin, H * 0.2 - margin / 2


def node_shape(grid: FieldGrid, nodes: list[Blob]) -> NodeShape:
    """Distance to, relative depth in and tangent of the nearest node at every sample."""
    node_sdf = np.full(grid.shape, FAR_OUTSIDE)
    u_norm = np.ones(grid.shape)
    tangent = np.zeros(grid.shape)
    for node in nodes:
        dx, dy = grid.xs - node.cx, grid.ys - node.cy
        theta = np.arctan2(dy, dx)
        r = node.radius(theta)
        rho = np.hypot(dx, dy)
        sdf = r - rho
        better = sdf > node_sdf
        node_sdf = np.where(better, sdf, node_sdf)
        u_norm = np.where(better, rho / r, u_norm)
        tangent = np.where(better, theta + math.pi / 2, tangent)
    return NodeShape(node_sdf, u_norm, tangent)


def fat_distance(grid: FieldGrid, fats: list[Blob], rng: np.random.Generator) -> F64:
    """Pseudo signed distance (px) to the perinodal fat, (ny, nx): lobulated, bays carved by noise."""
    fat_sdf = np.full(grid.shape, FAR_OUTSIDE)
    for fat in fats:
        fat_sdf = np.maximum(fat_sdf, fat.sdf(grid.xs, grid.ys))
    bays = np.maximum(0, smooth_noise(rng, grid.shape, 250 / grid.sample_um) - 0.6) * 250 * grid.um
    return np.asarray(fat_sdf - bays, dtype=np.float64)


def node_regions(
    grid: FieldGrid,
    nodes: list[Blob],
    shape: NodeShape,
    noise: tuple[F32, F32, F32],
    rng: np.random.Generator,
) -> NodeRegions:
    """Capsule, subcapsular sinus, medulla with its sinuses and the follicles of the cortex.

    ``noise`` holds three smooth noise fields (ny, nx) of about 250, 120 and 60 µm.
    """
    n1, n2, n3 = noise
    node_w = np.clip(shape.sdf / grid.f + 0.5, 0, 1).astype(np.float32)
    depth_um = (shape.sdf / grid.um).astype(np.float32)
    cap_t = (rng.uniform(28, 55) * (1 + 0.3 * n1)).astype(np.float32)
    capsule_w = node_w * smoothstep(3.0, -3.0, depth_um - cap_t)
    ss_w = node_w * smoothstep(-4.0, 4.0, depth_um - cap_t) * smoothstep(6.0, -2.0, depth_um - cap_t - 22.0)
    medulla_w = _medulla(grid, nodes, shape, n1) * (node_w * smoothstep(90.0, 200.0, depth_um))
    ridge = (1.0 - np.abs(n2)).astype(np.float32)
    mantle_w, gc_w = _follicles(grid, nodes, _follicle_centres(grid, nodes, rng), n2, n3, rng)
    inner = node_w * (1 - capsule_w)
    mantle_w *= inner
    gc_w *= inner
    return NodeRegions(
        node=node_w,
        capsule=capsule_w,
        subcapsular_sinus=ss_w,
        medulla=medulla_w,
        medullary_sinus=medulla_w * smoothstep(0.55, 0.8, ridge),
        mantle=mantle_w,
        germinal_centre=gc_w,
    )


def _medulla(grid: FieldGrid, nodes: list[Blob], shape: NodeShape, n1: F32) -> F32:
    """The inner node reaching out to the hilum (the dent of the outline), (ny, nx) before clipping to the node."""
    medulla_w = np.zeros(grid.shape, np.float32)
    for node in nodes:
        hx, hy = node.hilum()
        d_h = np.hypot(grid.xs - hx, grid.ys - hy) / (0.5 * (node.a + node.b))
        m = np.maximum(
            smoothstep(0.85, 0.45, (d_h + 0.12 * n1).astype(np.float32)),
            smoothstep(0.42, 0.25, (shape.u_norm + 0.08 * n1).astype(np.float32)),
        )
        medulla_w = np.maximum(medulla_w, m)
    return medulla_w


def _follicle_centres(
    grid: FieldGrid, nodes: list[Blob], rng: np.random.Generator
) -> list[tuple[float, float, float, int]]:
    """Follicles in the outer cortex, clear of each other: (x, y, radius px, node index) each."""
    um = grid.um
    centres: list[tuple[float, float, float, int]] = []
    for ni, node in enumerate(nodes):
        perim = Polygon(node.polygon(128)).length
        r_mean = rng.uniform(190, 300) * um
        target = int(perim / (3.2 * r_mean))
        placed = 0
        for _ in range(target * 8):
            if placed >= target:
                break
            phi = rng.uniform(-math.pi, math.pi)
            rr = node.radius_at(phi)
            R = r_mean * rng.uniform(0.6, 1.35)
            depth = 50 * um + R * rng.uniform(0.95, 1.3)
            if rr - depth < 0.45 * rr:
                continue
            fx = node.cx + (rr - depth) * math.cos(phi)
            fy = node.cy + (rr - depth) * math.sin(phi)
            if any(math.hypot(fx - c[0], fy - c[1]) < 0.85 * (R + c[2]) for c in centres):
                continue
            centres.append((fx, fy, R, ni))
            placed += 1
    return centres


def _follicles(
    grid: FieldGrid,
    nodes: list[Blob],
    centres: list[tuple[float, float, float, int]],
    n2: F32,
    n3: F32,
    rng: np.random.Generator,
) -> tuple[F32, F32]:
    """Mantle and germinal-centre weights (ny, nx); three in four follicles are secondary (with a centre)."""
    mantle_w = np.zeros(grid.shape, np.float32)
    gc_w = np.zeros(grid.shape, np.float32)
    for fx, fy, R, ni in centres:
        win = grid.window(fy - 1.5 * R, fy + 1.5 * R, fx - 1.5 * R, fx + 1.5 * R)
        if win[0].start >= win[0].stop or win[1].start >= win[1].stop:
            continue
        sx, sy = grid.xs[win], grid.ys[win]
        wob = 1 + 0.12 * n2[win] + 0.06 * n3[win]
        d = np.hypot(sx - fx, sy - fy) / (R * wob)
        mantle_w[win] = np.maximum(mantle_w[win], smoothstep(1.05, 0.88, d.astype(np.float32)))
        if rng.random() < 0.75:  # secondary follicle with a germinal centre, shifted towards the node's centre
            ang = math.atan2(nodes[ni].cy - fy, nodes[ni].cx - fx)
            gx, gy = fx + 0.18 * R * math.cos(ang), fy + 0.18 * R * math.sin(ang)
            dg = np.hypot(sx - gx, sy - gy) / (R * rng.uniform(0.55, 0.72) * wob)
            gc_w[win] = np.maximum(gc_w[win], smoothstep(1.0, 0.8, dg.astype(np.float32)))
    return mantle_w, gc_w


def vessels(
    grid: FieldGrid,
    nodes: list[Blob],
    lesions: list[Polygon],
    tissue_sdf: F64,
    rng: np.random.Generator,
) -> tuple[F32, F32]:
    """Wall and lumen weights (ny, nx) of a few blood vessels near each hilum, clear of the metastases."""
    um = grid.um
    wall = np.zeros(grid.shape, np.float32)
    lumen = np.zeros(grid.shape, np.float32)
    f = float(grid.f)
    avoid = shapely.union_all(lesions).buffer(60 * um) if lesions else None
    for node in nodes:
        hx, hy = node.hilum()
        reach = 0.45 * min(node.a, node.b)
        for _ in range(int(rng.integers(5, 12))):
            r = rng.uniform(12, 55) * um
            a = rng.uniform(0, 2 * math.pi)
            d = reach * math.sqrt(rng.random())
            cx, cy = hx + d * math.cos(a), hy + d * math.sin(a)
            j, i = round(cx / f), round(cy / f)
            if not (0 <= i < grid.shape[0] and 0 <= j < grid.shape[1]) or tissue_sdf[i, j] < 2.5 * r:
                continue
            if avoid is not None and avoid.contains(shapely.Point(cx, cy)):
                continue
            ratio, rot = rng.uniform(1.0, 2.2), rng.uniform(0, math.pi)
            win = grid.window(cy - 3 * r, cy + 3 * r, cx - 3 * r, cx + 3 * r)
            dx, dy = grid.xs[win] - cx, grid.ys[win] - cy
            u = (dx * math.cos(rot) + dy * math.sin(rot)) / math.sqrt(ratio)
            v = (-dx * math.sin(rot) + dy * math.cos(rot)) * math.sqrt(ratio)
            rho = np.hypot(u, v).astype(np.float32)
            t = max(4 * um, 0.3 * r)  # wall thickness
            inner = smoothstep(r + 0.5 * f, r - 0.5 * f, rho)
            outer = smoothstep(r + t + 0.5 * f, r + t - 0.5 * f, rho)
            lumen[win] = np.maximum(lumen[win], inner)
            wall[win] = np.maximum(wall[win], outer * (1 - inner))
    return wall, lumen
