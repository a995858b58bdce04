"""Cell types and their stamps: small (K, S, S) hematoxylin and eosin images splatted onto the slide."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.synthetic.noise import smooth_noise
from analysis.synthetic.spec import F32

CELL_SPACING_UM = {
    "lymph": 8.0,
    "centroblast": 12.5,
    "tbm": 42.0,
    "histiocyte": 20.0,
    "fibro": 22.0,
    "tumor": 21.0,
    "rbc": 6.5,
}


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


def _stamp_grid(size: int) -> tuple[F32, F32]:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy - c, xx - c


def _shape_distance(
    yy: F32, xx: F32, r: float, ratio: float, angle: float, wobble: Sequence[tuple[int, float, float]]
) -> F32:
    """Normalised radial coordinate of a wobbly ellipse: 1 on the outline, (S, S)."""
    ca, sa = math.cos(angle), math.sin(angle)
    u = (xx * ca + yy * sa) / (r * math.sqrt(ratio))
    v = (-xx * sa + yy * ca) / (r / math.sqrt(ratio))
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    mod = np.ones_like(rho)
    for k, amp, ph in wobble:
        mod += amp * np.cos(k * theta + ph)
    return (rho / mod).astype(np.float32)


def _edge(d: F32, r_px: float, soft_px: float = 0.7) -> F32:
    """Anti-aliased inside indicator of ``d < 1`` where ``d`` is normalised to radius ``r_px``."""
    return np.clip((1.0 - d) * r_px / soft_px + 0.5, 0.0, 1.0).astype(np.float32)


def _chromatin(rng: np.random.Generator, size: int, sigma_px: float) -> F32:
    return smooth_noise(rng, (size, size), sigma_px)


def make_banks(rng: np.random.Generator, um: float) -> dict[str, StampBank]:
    """Render the stamp banks for a scale of ``um`` pixels per micrometre."""
    banks: dict[str, StampBank] = {}

    def odd(x: float) -> int:
        n = max(3, math.ceil(x))
        return n + 1 - n % 2

    # Lymphocytes: round, 6-8 µm, dense coarse chromatin, a rim of scant cytoplasm.
    k = 32
    s = odd(2 * 4.6 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        r = rng.uniform(2.9, 3.9) * um
        d = _shape_distance(
            yy, xx, r, rng.uniform(1.0, 1.18), rng.uniform(0, math.pi), [(3, rng.uniform(0, 0.05), rng.uniform(0, 6.3))]
        )
        inside = _edge(d, r)
        chrom = 1.0 + 0.22 * _chromatin(rng, s, max(0.5, 0.7 * um))
        h[i] = inside * chrom * (0.85 + 0.15 * np.clip(d, 0, 1))
        e[i] = _edge(d * r / (r + 0.9 * um), r + 0.9 * um) * (1 - inside) * 0.25 + inside * 0.08
    banks["lymph"] = StampBank(h * 2.05, e)

    # Centroblasts (germinal centre): 9-12 µm, vesicular, nucleoli at the membrane.
    k = 24
    s = odd(2 * 6.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        r = rng.uniform(4.0, 5.2) * um
        d = _shape_distance(
            yy, xx, r, rng.uniform(1.0, 1.25), rng.uniform(0, math.pi), [(2, rng.uniform(0, 0.05), rng.uniform(0, 6.3))]
        )
        inside = _edge(d, r)
        rim = np.exp(-(((d - 0.9) / 0.12) ** 2)).astype(np.float32)
        body = 0.75 + 0.2 * _chromatin(rng, s, max(0.5, 0.6 * um))
        img = inside * (body + 0.45 * rim)
        for _ in range(int(rng.integers(1, 3))):
            a = rng.uniform(0, 2 * math.pi)
            rr = 0.7 * r
            dn = np.hypot(yy - rr * math.sin(a), xx - rr * math.cos(a))
            img += inside * 0.9 * np.clip((0.9 * um - dn) / 0.6 + 0.5, 0, 1)
        h[i] = img
        e[i] = _edge(d * r / (r + 1.5 * um), r + 1.5 * um) * (1 - inside) * 0.18
    banks["centroblast"] = StampBank(h * 1.55, e)

    # Tingible-body macrophages: pale cytoplasm, a pale nucleus, dark apoptotic debris.
    k = 12
    s = odd(2 * 12.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        rc = rng.uniform(9.0, 12.0) * um
        dc = _shape_distance(
            yy, xx, rc, rng.uniform(1.0, 1.3), rng.uniform(0, math.pi), [(3, 0.06, rng.uniform(0, 6.3))]
        )
        cyto = _edge(dc, rc, 1.2 * um)
        rn = rng.uniform(3.5, 4.5) * um
        ox, oy = rng.uniform(-0.4, 0.4, 2) * rc
        dn = _shape_distance(yy - oy, xx - ox, rn, 1.4, rng.uniform(0, math.pi), [])
        img = _edge(dn, rn) * (0.75 + 0.1 * _chromatin(rng, s, um))
        for _ in range(int(rng.integers(2, 6))):
            px, py = rng.uniform(-0.55, 0.55, 2) * rc
            rb = rng.uniform(0.8, 1.8) * um
            db = np.hypot(yy - py, xx - px)
            img += 2.4 * np.clip((rb - db) / 0.6 + 0.5, 0, 1) * cyto
        h[i] = img + cyto * 0.03
        e[i] = cyto * 0.16
    banks["tbm"] = StampBank(h, e)

    # Sinus histiocytes: oval / bean nucleus with fine chromatin, ample pale-pink cytoplasm.
    k = 16
    s = odd(2 * 11.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        rc = rng.uniform(7.5, 10.5) * um
        dc = _shape_distance(
            yy, xx, rc, rng.uniform(1.0, 1.4), rng.uniform(0, math.pi), [(3, 0.07, rng.uniform(0, 6.3))]
        )
        cyto = _edge(dc, rc, 2.5 * um)
        rn = rng.uniform(3.8, 5.2) * um
        dn = _shape_distance(yy, xx, rn, rng.uniform(1.3, 1.8), rng.uniform(0, math.pi), [(2, 0.12, 0.0)])
        nuc = _edge(dn, rn)
        h[i] = nuc * (1.05 + 0.2 * _chromatin(rng, s, 0.5 * um)) + cyto * 0.04
        e[i] = cyto * (1 - nuc) * 0.17
    banks["histiocyte"] = StampBank(h, e)

    # Fibroblasts / endothelium: spindle nuclei, 16 orientations x 3 variants (index = angle * 3 + v).
    n_ang, n_var = 16, 3
    s = odd(2 * 10.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((n_ang * n_var, s, s), np.float32)
    e = np.zeros_like(h)
    for a in range(n_ang):
        for v in range(n_var):
            half_len = rng.uniform(6.0, 9.5) * um
            half_w = rng.uniform(1.5, 2.2) * um
            ang = a * math.pi / n_ang
            ca, sa = math.cos(ang), math.sin(ang)
            u = (xx * ca + yy * sa) / half_len
            w = (-xx * sa + yy * ca) / half_w
            taper = np.sqrt(np.clip(1 - u * u, 0, 1))
            d = (np.abs(w) / np.maximum(taper, 1e-3)).astype(np.float32)
            inside = np.clip((1 - d) * half_w / 0.6 + 0.5, 0, 1) * (np.abs(u) < 1)
            h[a * n_var + v] = inside * (1.15 + 0.2 * _chromatin(rng, s, 0.6 * um))
    banks["fibro"] = StampBank(h, e)

    # Carcinoma cells: nuclei 12-20 µm, pleomorphic, vesicular (dark membrane, pale
    # clumped chromatin), one or two large nucleoli; abundant eosinophilic cytoplasm.
    k = 48
    s = odd(2 * 16.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        r = rng.uniform(6.5, 10.0) * um if rng.random() > 0.06 else rng.uniform(10.0, 12.0) * um
        wob = [(kk, rng.uniform(0, 0.12 / kk * 2), rng.uniform(0, 6.3)) for kk in (2, 3, 4, 5)]
        d = _shape_distance(yy, xx, r, rng.uniform(1.0, 1.7), rng.uniform(0, math.pi), wob)
        inside = _edge(d, r)
        hyper = rng.random() < 0.15
        base = (0.8 if hyper else 0.3) + 0.2 * _chromatin(rng, s, max(0.6, 0.9 * um))
        rim = np.exp(-(((d - 0.93) / 0.09) ** 2)).astype(np.float32)
        img = inside * (np.clip(base, 0.1, None) + 0.6 * rim)
        enuc = np.zeros((s, s), np.float32)
        for _ in range(int(rng.integers(1, 3))):
            ox, oy = rng.uniform(-0.35, 0.35, 2) * r
            rn = rng.uniform(0.9, 1.7) * um
            dn = np.hypot(yy - oy, xx - ox)
            nuc = np.clip((rn - dn) / 0.6 + 0.5, 0, 1).astype(np.float32)
            img += 0.8 * nuc
            enuc += 0.7 * nuc
        rc = r + rng.uniform(4.0, 7.0) * um
        dc = _shape_distance(
            yy, xx, rc, rng.uniform(1.0, 1.3), rng.uniform(0, math.pi), [(4, 0.05, rng.uniform(0, 6.3))]
        )
        cyto = _edge(dc, rc, 1.8 * um)
        h[i] = img + cyto * 0.03
        e[i] = cyto * 0.2 * (1 - 0.5 * inside) + enuc
    banks["tumor"] = StampBank(h * 1.35, e)

    # Mitotic figures: dark ragged chromosome plates.
    k = 6
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        r = rng.uniform(4.0, 6.0) * um
        d = _shape_distance(yy, xx, r, rng.uniform(3.0, 5.0), rng.uniform(0, math.pi), [(5, 0.15, 0.0), (7, 0.1, 1.0)])
        img = _edge(d, r) * (2.6 + 0.6 * _chromatin(rng, s, 0.5 * um))
        rc = 11 * um
        dc = (np.hypot(yy, xx) / rc).astype(np.float32)
        h[i] = np.clip(img, 0, None)
        e[i] = _edge(dc, rc, 1.5 * um) * 0.5
    banks["mitosis"] = StampBank(h, e)

    # Red blood cells: eosinophilic biconcave discs (paler centre), no chromatin.
    k = 8
    s = odd(2 * 4.5 * um + 3)
    yy, xx = _stamp_grid(s)
    h = np.zeros((k, s, s), np.float32)
    e = np.zeros((k, s, s), np.float32)
    for i in range(k):
        r = rng.uniform(3.2, 3.9) * um
        d = _shape_distance(yy, xx, r, rng.uniform(1.0, 1.25), rng.uniform(0, math.pi), [])
        e[i] = _edge(d, r) * (0.75 - 0.3 * np.exp(-((d / 0.45) ** 2)))
    banks["rbc"] = StampBank(h, e)
    return banks

