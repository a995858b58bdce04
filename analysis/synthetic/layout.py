"""The layout of a slide: nodes, fat, regions of the node and metastases as low-resolution fields."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from shapely.geometry import Polygon

from analysis.synthetic.cells import PLACED_TYPES
from analysis.synthetic.metastases import place_lesion
from analysis.synthetic.node import vessels
from analysis.synthetic.noise import smooth_noise, smoothstep
from analysis.synthetic.shapes import Blob, as_polygon, major_axis, random_blob
from analysis.synthetic.spec import F32, ITC_MAX_UM, LesionKind, SlideSpec

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
    angle: F32  # orientation of the node outline (radians, tangent), for capsule fibroblasts
    nodes: list[Polygon]
    tissue: list[Polygon]
    lesions: list[tuple[Polygon, list[Blob]]]
    node_centres: list[tuple[float, float]]


def _paint(base: F32, weight: F32, value: float | F32) -> None:
    base *= 1.0 - weight
    base += weight * value


def build_layout(spec: SlideSpec, rng: np.random.Generator) -> Layout:
    um = 1.0 / spec.mpp  # pixels per micrometre
    f = max(1, round(8.0 * um))  # one field sample per ~8 µm
    W, H = spec.width, spec.height
    ny, nx = H // f + 2, W // f + 2
    ys = (np.arange(ny, dtype=np.float64) * f)[:, None] * np.ones((1, nx))
    xs = (np.arange(nx, dtype=np.float64) * f)[None, :] * np.ones((ny, 1))
    lr_um = f / um  # micrometres per field sample

    kinds: list[LesionKind] = []
    if spec.tumor:
        if spec.lesions is not None:
            kinds = list(spec.lesions)
        else:
            n_les = int(rng.integers(1, 4))
            kinds = [["itc", "micro", "macro"][int(rng.choice(3, p=[0.35, 0.4, 0.25]))] for _ in range(n_les)]  # type: ignore[misc]

    # --- lymph nodes ------------------------------------------------------------------
    two = rng.random() < 0.35 and min(W, H) * spec.mpp > 3000 and "macro" not in kinds
    n_nodes = 2 if two else 1
    nodes: list[Blob] = []
    fat_blobs: list[Blob] = []
    margin = 0.04 * min(W, H)
    long_axis_x = W >= H
    for n in range(n_nodes):
        if n_nodes == 1:
            cx, cy = W / 2 + rng.uniform(-0.05, 0.05) * W, H / 2 + rng.uniform(-0.05, 0.05) * H
            room_x, room_y = W / 2 - margin, H / 2 - margin
        else:
            frac = 0.3 if n == 0 else 0.7
            if long_axis_x:
                cx, cy = W * (frac + rng.uniform(-0.02, 0.02)), H / 2 + rng.uniform(-0.06, 0.06) * H
                room_x, room_y = W * 0.2 - margin / 2, H / 2 - margin
            else:
                cx, cy = W / 2 + rng.uniform(-0.06, 0.06) * W, H * (frac + rng.uniform(-0.02, 0.02))
                room_x, room_y = W / 2 - margin, H * 0.2 - margin / 2
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
        fat_blobs.append(fat)

    node_sdf = np.full((ny, nx), -1e9)
    u_norm = np.ones((ny, nx))  # distance from centre / node radius along the ray
    tangent = np.zeros((ny, nx))
    for node in nodes:
        dx, dy = xs - node.cx, ys - node.cy
        theta = np.arctan2(dy, dx)
        r = node.radius(theta)
        rho = np.hypot(dx, dy)
        sdf = r - rho
        better = sdf > node_sdf
        node_sdf = np.where(better, sdf, node_sdf)
        u_norm = np.where(better, rho / r, u_norm)
        tangent = np.where(better, theta + math.pi / 2, tangent)
    fat_sdf = np.full((ny, nx), -1e9)
    for fat in fat_blobs:
        fat_sdf = np.maximum(fat_sdf, fat.sdf(xs, ys))
    # lobulated, irregular fat: carve bays out of it with noise
    fat_sdf = fat_sdf - np.maximum(0, smooth_noise(rng, (ny, nx), 250 / lr_um) - 0.6) * 250 * um
    tissue_sdf = np.maximum(node_sdf, fat_sdf)

    node_w = np.clip(node_sdf / f + 0.5, 0, 1).astype(np.float32)
    fat_w = (np.clip(fat_sdf / f + 0.5, 0, 1) * (1 - node_w)).astype(np.float32)
    depth_um = (node_sdf / um).astype(np.float32)

    # --- regions of the node -------------------------------------------------------------
    n1 = smooth_noise(rng, (ny, nx), 250 / lr_um)
    n2 = smooth_noise(rng, (ny, nx), 120 / lr_um)
    n3 = smooth_noise(rng, (ny, nx), 60 / lr_um)
    cap_t = (rng.uniform(28, 55) * (1 + 0.3 * n1)).astype(np.float32)
    capsule_w = node_w * smoothstep(3.0, -3.0, depth_um - cap_t)
    ss_w = node_w * smoothstep(-4.0, 4.0, depth_um - cap_t) * smoothstep(6.0, -2.0, depth_um - cap_t - 22.0)
    # medulla: the inner node, reaching out to the hilum (the dent of the outline)
    medulla_w = np.zeros((ny, nx), np.float32)
    for node in nodes:
        assert node.dent is not None
        ang = node.dent[0]
        rr = float(node.radius(np.array([ang]))[0])
        hx, hy = node.cx + rr * math.cos(ang), node.cy + rr * math.sin(ang)
        d_h = np.hypot(xs - hx, ys - hy) / (0.5 * (node.a + node.b))
        m = np.maximum(
            smoothstep(0.85, 0.45, (d_h + 0.12 * n1).astype(np.float32)),
            smoothstep(0.42, 0.25, (u_norm + 0.08 * n1).astype(np.float32)),
        )
        medulla_w = np.maximum(medulla_w, m)
    medulla_w *= node_w * smoothstep(90.0, 200.0, depth_um)
    ridge = (1.0 - np.abs(n2)).astype(np.float32)
    med_sinus_w = medulla_w * smoothstep(0.55, 0.8, ridge)

    # follicles in the outer cortex
    mantle_w = np.zeros((ny, nx), np.float32)
    gc_w = np.zeros((ny, nx), np.float32)
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
            rr = float(node.radius(np.array([phi]))[0])
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
    for fx, fy, R, ni in centres:
        i0, i1 = max(0, int((fy - 1.5 * R) / f)), min(ny, int((fy + 1.5 * R) / f) + 2)
        j0, j1 = max(0, int((fx - 1.5 * R) / f)), min(nx, int((fx + 1.5 * R) / f) + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        sx, sy = xs[i0:i1, j0:j1], ys[i0:i1, j0:j1]
        wob = 1 + 0.12 * n2[i0:i1, j0:j1] + 0.06 * n3[i0:i1, j0:j1]
        d = np.hypot(sx - fx, sy - fy) / (R * wob)
        mantle_w[i0:i1, j0:j1] = np.maximum(mantle_w[i0:i1, j0:j1], smoothstep(1.05, 0.88, d.astype(np.float32)))
        if rng.random() < 0.75:  # secondary follicle with a germinal centre
            ang = math.atan2(nodes[ni].cy - fy, nodes[ni].cx - fx)
            gx, gy = fx + 0.18 * R * math.cos(ang), fy + 0.18 * R * math.sin(ang)
            dg = np.hypot(sx - gx, sy - gy) / (R * rng.uniform(0.55, 0.72) * wob)
            gc_w[i0:i1, j0:j1] = np.maximum(gc_w[i0:i1, j0:j1], smoothstep(1.0, 0.8, dg.astype(np.float32)))
    inner = node_w * (1 - capsule_w)
    mantle_w *= inner
    gc_w *= inner

    # --- metastases ------------------------------------------------------------------------
    lesions: list[tuple[Polygon, list[Blob]]] = []
    inner_polys = [Polygon(node.polygon(256)).buffer(-(80 * um)) for node in nodes]
    tumor_sdf = np.full((ny, nx), -1e9)
    region_sdf = np.full((ny, nx), -1e9)  # micro/macro lesions: nests and stroma
    plan: list[str] = sorted(kinds, key=lambda k: {"macro": 0, "micro": 1, "itc": 2}[k])
    while plan:
        kind = plan.pop(0)
        outline = place_lesion(rng, kind, nodes, inner_polys, [p for p, _ in lesions], um)
        if outline is None:
            if spec.tumor and not lesions and not plan:
                if kind != "itc":  # a tumor slide keeps at least one lesion: try a small one
                    plan.append("itc")
                    continue
                raise ValueError(f"no room for a metastasis in a {W}x{H} slide at {spec.mpp} um/px; make it larger")
            continue
        poly, blobs = outline
        lesions.append((poly, blobs))
        bx0, by0, bx1, by1 = poly.bounds
        pad = 400 * um
        i0, i1 = max(0, int((by0 - pad) / f)), min(ny, int((by1 + pad) / f) + 2)
        j0, j1 = max(0, int((bx0 - pad) / f)), min(nx, int((bx1 + pad) / f) + 2)
        win = (slice(i0, i1), slice(j0, j1))
        for blob in blobs:
            sd = blob.sdf(xs[win], ys[win])
            tumor_sdf[win] = np.maximum(tumor_sdf[win], sd)
            if major_axis(poly) / um >= ITC_MAX_UM:
                region_sdf[win] = np.maximum(region_sdf[win], sd)
    tumor_w = np.clip(region_sdf / f + 0.5, 0, 1).astype(np.float32) * node_w
    nest = smoothstep(-0.95, -0.55, n3 + 0.4 * n2)
    # keep the outer rim of a metastasis cellular
    nest = np.maximum(nest, smoothstep(30.0, 5.0, (region_sdf / um).astype(np.float32)))
    nest_w = tumor_w * nest
    tstroma_w = tumor_w * (1 - nest)
    necrosis_w = np.zeros((ny, nx), np.float32)
    if region_sdf.max() > 700 * um:
        necrosis_w = tumor_w * smoothstep(450.0, 700.0, (region_sdf / um + 150 * n2).astype(np.float32))

    # --- paint the stain bases and cell densities ------------------------------------------
    Hb = np.zeros((ny, nx), np.float32)
    Eb = np.zeros((ny, nx), np.float32)
    fib = np.zeros((ny, nx), np.float32)
    dens = {t: np.zeros((ny, nx), np.float32) for t in PLACED_TYPES}

    def paint(w: F32, h: float, e: float, fibrous: float = 0.0, **d: float) -> None:
        _paint(Hb, w, h)
        _paint(Eb, w, e)
        _paint(fib, w, fibrous)
        for t in PLACED_TYPES:
            _paint(dens[t], w, d.get(t, 0.0))

    para_mod = (0.1 * n2 + 0.05 * n3).astype(np.float32)
    paint(node_w, 0.12, 0.26, lymph=0.74)  # paracortex
    _paint(dens["lymph"], node_w, np.clip(0.74 + para_mod, 0, 1))
    paint(medulla_w * (1 - med_sinus_w), 0.11, 0.32, 0.15, lymph=0.55, histiocyte=0.1)
    paint(med_sinus_w, 0.04, 0.2, 0.3, lymph=0.14, histiocyte=0.3, fibro=0.04)
    paint(mantle_w * (1 - gc_w), 0.17, 0.18, lymph=1.0)
    paint(gc_w, 0.1, 0.28, lymph=0.22, centroblast=0.55, tbm=0.4)
    paint(ss_w * (1 - capsule_w), 0.03, 0.12, 0.2, lymph=0.06, histiocyte=0.32)
    paint(capsule_w, 0.04, 0.62, 1.0, fibro=0.3)
    # blood vessels around the hilum, in the medulla and the hilar fat
    wall_w, lumen_w = vessels(rng, nodes, [p for p, _ in lesions], xs, ys, tissue_sdf, um)
    wall_w *= 1 - tumor_w
    lumen_w *= 1 - tumor_w
    vessel_w = np.maximum(wall_w, lumen_w)
    fat_w *= 1 - vessel_w
    paint(wall_w, 0.05, 0.7, 1.0, fibro=0.45)
    paint(lumen_w, 0.0, 0.22, 0.0, rbc=0.8)
    paint(nest_w, 0.05, 0.3, tumor=0.93)
    paint(tstroma_w, 0.04, 0.58, 1.0, fibro=0.25, lymph=0.08)
    paint(necrosis_w, 0.14, 0.7, 0.0)
    _paint(fib, fat_w, 0.0)
    # uneven staining across the slide
    stain_var = smooth_noise(rng, (ny, nx), 900 / lr_um)
    Hb *= (1 + 0.07 * stain_var).astype(np.float32)
    Eb *= (1 + 0.1 * smooth_noise(rng, (ny, nx), 900 / lr_um)).astype(np.float32)

    fields = np.stack(
        [
            Hb,
            Eb * (1 - fib),
            Eb * fib,
            np.clip(tissue_sdf, -8 * f, 8 * f).astype(np.float32),
            fat_w,
        ]
    ).astype(np.float32)
    tissue_polys = []
    for node, fat in zip(nodes, fat_blobs, strict=True):
        tissue_polys.append(as_polygon(Polygon(node.polygon(360)).union(Polygon(fat.polygon(360)))))
    return Layout(
        f=f,
        fields=fields,
        fibrous=fib,
        density=dens,
        tumor_sdf=np.clip(tumor_sdf, -1e6, 1e6).astype(np.float32),
        angle=(tangent % math.pi).astype(np.float32),
        nodes=[as_polygon(Polygon(node.polygon(360))) for node in nodes],
        tissue=tissue_polys,
        lesions=lesions,
        node_centres=[(n.cx, n.cy) for n in nodes],
    )

