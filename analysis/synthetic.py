"""Synthetic H&E lymph-node whole-slide images for the demo and the tests.

A slide is rendered from a seed: one or two lymph nodes (capsule, subcapsular
sinus, cortex with follicles and pale germinal centres, paracortex, medulla with
sinuses) in perinodal fat on glass, and, on tumor slides, carcinoma metastases
of every size class used by the Camelyon / pN staging rules:

* isolated tumor cells (ITC): major axis < 200 µm,
* micro-metastases: 200 µm - 2 mm,
* macro-metastases: > 2 mm.

Metastases are cohesive nests of large (12-20 µm), pale, vesicular,
pleomorphic nuclei with prominent nucleoli and eosinophilic cytoplasm,
separated by fibrous stroma; lymphocytes are small (6-8 µm), round, dark and
densely packed.  Colour follows the Beer-Lambert law: per-pixel hematoxylin and
eosin concentrations times their optical-density vectors give the absorbance,
``I = I0 * exp(-OD)``.  The "shifted" domain uses other stain vectors and
strengths, another white point, a slightly blurred optical path, more sensor
noise and a saturation change: a visibly different but plausible scanner/lab.

Output is a pyramidal tiled TIFF (JPEG tiles, each level half the size of the
one above, resolution tags in pixels per centimetre) that large-image and
OpenSlide open; level 0 is rendered in bands of one tile row, so memory grows
with the width and a quarter of the area (the level-1 buffer), never with the
full level-0 image.  Ground truth comes with it: tumor polygons in level-0
pixel coordinates (shapely) and ASAP XML / QuPath GeoJSON files.

Example::

    >>> from analysis.synthetic import SlideSpec, generate_slide
    >>> slide = generate_slide(SlideSpec(seed=1, width=1024, height=1024, mpp=2.0), "/tmp/s.tiff")
    >>> [lesion.kind for lesion in slide.lesions]  # doctest: +SKIP
    ['micro', 'itc']

Command line: ``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import shapely
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely.geometry import MultiPolygon, Polygon

from analysis.annotations import write_asap_xml, write_geojson

__all__ = [
    "ITC_MAX_UM",
    "MACRO_MIN_UM",
    "SPLITS",
    "CohortEntry",
    "Lesion",
    "SlideSpec",
    "SyntheticSlide",
    "generate_cohort",
    "generate_slide",
    "lesion_kind",
    "main",
]

Domain = Literal["in-domain", "shifted"]
LesionKind = Literal["itc", "micro", "macro"]
Preset = Literal["demo", "test"]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

#: Lesions whose major axis is below this are isolated tumor cells (pN0(i+)).
ITC_MAX_UM: float = 200.0
#: Lesions whose major axis is above this are macro-metastases (pN1).
MACRO_MIN_UM: float = 2000.0

_GENERATOR = "sua-portal analysis.synthetic 1"


def lesion_kind(major_axis_um: float) -> LesionKind:
    """Size class of a metastasis from its major axis in micrometres."""
    if major_axis_um < ITC_MAX_UM:
        return "itc"
    if major_axis_um <= MACRO_MIN_UM:
        return "micro"
    return "macro"


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideSpec:
    """Everything that determines a synthetic slide; the same spec gives the same pixels.

    Attributes:
        seed: seed of every random choice (layout, cells, noise).
        width, height: level-0 size in pixels.
        mpp: micrometres per level-0 pixel (1.0 ~ a 10x scan; 0.25 ~ 40x).
        tumor: whether the slide holds metastases.
        domain: ``"in-domain"`` or ``"shifted"`` (other stain, scanner and optics).
        tile_size: TIFF tile edge in pixels (multiple of 16).
        jpeg_quality: JPEG quality of the tiles (1-100).
        levels: pyramid levels including level 0 (each half the previous size);
            ``None`` = enough for the smallest to fit one tile, and at least 5.
        lesions: size classes of the metastases to draw (``"itc"``, ``"micro"``,
            ``"macro"``) on a tumor slide; ``None`` = one to three chosen by the seed.
            A lesion too large for the node is drawn as large as fits and reported
            with the class of its actual size.
    """

    seed: int = 0
    width: int = 8192
    height: int = 8192
    mpp: float = 1.0
    tumor: bool = True
    domain: Domain = "in-domain"
    tile_size: int = 256
    jpeg_quality: int = 85
    levels: int | None = None
    lesions: tuple[LesionKind, ...] | None = None

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"slide must be at least 64x64 pixels, got {self.width}x{self.height}")
        if not (0.05 <= self.mpp <= 16.0):
            raise ValueError(f"mpp must be in [0.05, 16] micrometres per pixel, got {self.mpp}")
        if self.domain not in ("in-domain", "shifted"):
            raise ValueError(f"domain must be 'in-domain' or 'shifted', got {self.domain!r}")
        if self.tile_size < 16 or self.tile_size % 16:
            raise ValueError(f"tile_size must be a positive multiple of 16, got {self.tile_size}")
        if not (1 <= self.jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.levels is not None and self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.lesions is not None:
            bad = [k for k in self.lesions if k not in ("itc", "micro", "macro")]
            if bad:
                raise ValueError(f"unknown lesion kinds {bad}; use 'itc', 'micro' or 'macro'")
            if self.tumor and not self.lesions:
                raise ValueError("a tumor slide needs at least one lesion (or lesions=None)")

    @property
    def n_levels(self) -> int:
        """Number of pyramid levels written (level 0 included)."""
        if self.levels is not None:
            return self.levels
        longest = max(self.width, self.height)
        return max(5, math.ceil(math.log2(max(longest / self.tile_size, 1.0))) + 1)

    def level_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of every level, level 0 first; each is ceil(half) of the previous."""
        sizes = [(self.width, self.height)]
        for _ in range(1, self.n_levels):
            w, h = sizes[-1]
            sizes.append(((w + 1) // 2, (h + 1) // 2))
        return sizes


@dataclass(frozen=True)
class Lesion:
    """One metastasis: its outline (level-0 pixels), size class and size."""

    polygon: Polygon
    kind: LesionKind
    major_axis_um: float
    area_mm2: float
    n_cells: int

    def to_json(self) -> dict[str, Any]:
        """Summary without the outline (which lives in the annotation files)."""
        return {
            "kind": self.kind,
            "major_axis_um": round(self.major_axis_um, 1),
            "area_mm2": round(self.area_mm2, 5),
            "n_cells": self.n_cells,
        }


@dataclass(frozen=True)
class SyntheticSlide:
    """What :func:`generate_slide` wrote and the truth behind it.

    Attributes:
        path: the pyramidal TIFF.
        spec: the spec it was made from.
        lesions: metastases (empty on tumor-free slides), outlines in level-0 pixels.
        tissue: outlines of the tissue (lymph nodes with their fat), level-0 pixels.
        nodes: outlines of the lymph nodes themselves (capsule included).
        level_sizes: (width, height) of each pyramid level.
        elapsed_s: wall time of the generation.
    """

    path: Path
    spec: SlideSpec
    lesions: tuple[Lesion, ...]
    tissue: tuple[Polygon, ...]
    nodes: tuple[Polygon, ...]
    level_sizes: tuple[tuple[int, int], ...]
    elapsed_s: float

    @property
    def polygons(self) -> list[Polygon]:
        """Tumor outlines (level-0 pixel coordinates, x right, y down)."""
        return [lesion.polygon for lesion in self.lesions]

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the slide (no outlines)."""
        return {
            "generator": _GENERATOR,
            "seed": self.spec.seed,
            "width": self.spec.width,
            "height": self.spec.height,
            "mpp": self.spec.mpp,
            "tumor": self.spec.tumor,
            "domain": self.spec.domain,
            "tile_size": self.spec.tile_size,
            "levels": len(self.level_sizes),
            "level_sizes": [list(s) for s in self.level_sizes],
            "lesions": [lesion.to_json() for lesion in self.lesions],
        }


# --------------------------------------------------------------------------------------------
# Annotation writers (ASAP XML as Camelyon ships it, GeoJSON as QuPath exports it)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------------


def _smoothstep(edge0: float, edge1: float, x: F32) -> F32:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (edges may be reversed)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Gaussian-filtered white noise, zero mean and unit standard deviation, shape ``shape``.

    Filtered in the Fourier domain (cost independent of ``sigma``); it wraps around the edges.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (math.pi * max(sigma, 0.3)) ** 2 * (ky**2 + kx**2))
    a = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    a -= a.mean()
    return (a / (a.std() + 1e-8)).astype(np.float32)


def _periodic_noise(rng: np.random.Generator, n: int, sigma: float) -> F32:
    """Periodic (tileable) Gaussian-filtered noise, (n, n), zero mean and unit std."""
    white = rng.standard_normal((n, n))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spec = np.fft.fft2(white) * np.exp(-2.0 * (math.pi * sigma) ** 2 * k2)
    a = np.fft.ifft2(spec).real
    a -= a.mean()
    return (a / (a.std() + 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """A star-shaped outline: an ellipse whose radius is modulated by a few harmonics.

    ``sdf`` is a pseudo signed distance in pixels (radius minus distance from the
    centre along the ray: > 0 inside); its zero level set is exactly ``polygon``.
    """

    cx: float
    cy: float
    a: float
    b: float
    phi: float
    harmonics: tuple[tuple[int, float, float], ...] = ()
    dent: tuple[float, float, float] | None = None  # (angle, depth fraction, width rad)

    def radius(self, theta: F64) -> F64:
        t = theta - self.phi
        r = self.a * self.b / np.sqrt((self.b * np.cos(t)) ** 2 + (self.a * np.sin(t)) ** 2)
        mod = np.ones_like(theta)
        for k, amp, ph in self.harmonics:
            mod = mod + amp * np.cos(k * theta + ph)
        if self.dent is not None:
            ang, depth, width = self.dent
            d = np.angle(np.exp(1j * (theta - ang)))
            mod = mod - depth * np.exp(-((d / width) ** 2))
        return np.asarray(r * np.maximum(mod, 0.2), dtype=np.float64)

    def sdf(self, x: F64, y: F64) -> F64:
        dx = x - self.cx
        dy = y - self.cy
        return self.radius(np.arctan2(dy, dx)) - np.hypot(dx, dy)

    def polygon(self, n: int = 256) -> Polygon:
        theta = np.linspace(-math.pi, math.pi, n, endpoint=False)
        r = self.radius(theta)
        xs = np.round(self.cx + r * np.cos(theta), 2)
        ys = np.round(self.cy + r * np.sin(theta), 2)
        return Polygon(np.column_stack([xs, ys]))

    def scaled(self, s: float) -> _Blob:
        return replace(self, a=self.a * s, b=self.b * s)

    def bbox(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.polygon(128).bounds
        return x0, y0, x1, y1


def _random_blob(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius: float,
    *,
    aspect: tuple[float, float] = (0.6, 1.0),
    roughness: float = 0.06,
    orders: tuple[int, int] = (2, 7),
) -> _Blob:
    ratio = float(rng.uniform(*aspect))
    a = radius / math.sqrt(ratio)
    b = radius * math.sqrt(ratio)
    harmonics = tuple(
        (k, float(rng.uniform(0.3, 1.0) * roughness * 2.0 / k), float(rng.uniform(0, 2 * math.pi)))
        for k in range(orders[0], orders[1] + 1)
    )
    return _Blob(cx, cy, a, b, float(rng.uniform(0, math.pi)), harmonics)


def _major_axis(polygon: Polygon) -> float:
    """Largest distance between two points of the polygon (pixels)."""
    hull = np.asarray(polygon.convex_hull.exterior.coords)
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def _as_polygon(geom: Any) -> Polygon:
    """The largest polygon of a (multi)polygon, without holes, vertices rounded to 0.01 px."""
    if isinstance(geom, MultiPolygon):
        geom = max(geom.geoms, key=lambda g: g.area)
    if not isinstance(geom, Polygon):
        raise TypeError(f"expected a polygon, got {geom.geom_type}")
    ring = np.round(np.asarray(geom.exterior.coords), 2)
    poly = Polygon(ring)
    if not poly.is_valid:
        poly = _as_polygon(shapely.make_valid(poly))
    return poly


# --------------------------------------------------------------------------------------------
# Stain model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StainModel:
    """Beer-Lambert colour model: RGB = white * exp(-(h * H + e * E)), optical densities natural-log."""

    h_vec: tuple[float, float, float]
    e_vec: tuple[float, float, float]
    h_scale: float
    e_scale: float
    white: tuple[float, float, float]
    noise_sigma: float
    blur_passes: int  # passes of a [1, 2, 1] / 4 blur: Gaussian sigma = sqrt(passes / 2) px
    saturation: float
    gamma: float


_IN_DOMAIN = _StainModel(
    h_vec=(0.5626, 0.7201, 0.4062),  # Macenko et al. reference H&E vectors
    e_vec=(0.2159, 0.8012, 0.5581),
    h_scale=1.0,
    e_scale=1.0,
    white=(243.0, 241.0, 245.0),
    noise_sigma=1.6,
    blur_passes=0,
    saturation=1.0,
    gamma=1.0,
)

_SHIFTED = _StainModel(
    h_vec=(0.70, 0.66, 0.27),  # bluer haematoxylin
    e_vec=(0.09, 0.86, 0.50),  # redder, more magenta eosin
    h_scale=1.12,
    e_scale=0.85,
    white=(236.0, 230.0, 214.0),  # warmer, dimmer illumination
    noise_sigma=3.5,
    blur_passes=2,
    saturation=0.78,
    gamma=1.12,
)


def _unit(v: tuple[float, float, float]) -> F32:
    a = np.asarray(v, dtype=np.float32)
    return (a / np.linalg.norm(a)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Nucleus stamps
# --------------------------------------------------------------------------------------------


@dataclass
class _Bank:
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
    return _smooth_noise(rng, (size, size), sigma_px)


def _make_banks(rng: np.random.Generator, um: float) -> dict[str, _Bank]:
    """Render the stamp banks for a scale of ``um`` pixels per micrometre."""
    banks: dict[str, _Bank] = {}

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
    banks["lymph"] = _Bank(h * 2.05, e)

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
    banks["centroblast"] = _Bank(h * 1.55, e)

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
    banks["tbm"] = _Bank(h, e)

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
    banks["histiocyte"] = _Bank(h, e)

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
    banks["fibro"] = _Bank(h, e)

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
    banks["tumor"] = _Bank(h * 1.35, e)

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
    banks["mitosis"] = _Bank(h, e)

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
    banks["rbc"] = _Bank(h, e)
    return banks


# --------------------------------------------------------------------------------------------
# Layout: geometry and low-resolution fields
# --------------------------------------------------------------------------------------------

_FIELD_H, _FIELD_E, _FIELD_EFIB, _FIELD_TISSUE, _FIELD_FAT = range(5)
_DENSITY_TYPES = ("lymph", "centroblast", "tbm", "histiocyte", "fibro", "tumor", "rbc")


@dataclass
class _Layout:
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
    lesions: list[tuple[Polygon, list[_Blob]]]
    node_centres: list[tuple[float, float]]


def _paint(base: F32, weight: F32, value: float | F32) -> None:
    base *= 1.0 - weight
    base += weight * value


def _build_layout(spec: SlideSpec, rng: np.random.Generator) -> _Layout:
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
    nodes: list[_Blob] = []
    fat_blobs: list[_Blob] = []
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
        node = _random_blob(rng, cx, cy, radius, aspect=(0.55, 0.9), roughness=0.035, orders=(2, 5))
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
    fat_sdf = fat_sdf - np.maximum(0, _smooth_noise(rng, (ny, nx), 250 / lr_um) - 0.6) * 250 * um
    tissue_sdf = np.maximum(node_sdf, fat_sdf)

    node_w = np.clip(node_sdf / f + 0.5, 0, 1).astype(np.float32)
    fat_w = (np.clip(fat_sdf / f + 0.5, 0, 1) * (1 - node_w)).astype(np.float32)
    depth_um = (node_sdf / um).astype(np.float32)

    # --- regions of the node -------------------------------------------------------------
    n1 = _smooth_noise(rng, (ny, nx), 250 / lr_um)
    n2 = _smooth_noise(rng, (ny, nx), 120 / lr_um)
    n3 = _smooth_noise(rng, (ny, nx), 60 / lr_um)
    cap_t = (rng.uniform(28, 55) * (1 + 0.3 * n1)).astype(np.float32)
    capsule_w = node_w * _smoothstep(3.0, -3.0, depth_um - cap_t)
    ss_w = node_w * _smoothstep(-4.0, 4.0, depth_um - cap_t) * _smoothstep(6.0, -2.0, depth_um - cap_t - 22.0)
    # medulla: the inner node, reaching out to the hilum (the dent of the outline)
    medulla_w = np.zeros((ny, nx), np.float32)
    for node in nodes:
        assert node.dent is not None
        ang = node.dent[0]
        rr = float(node.radius(np.array([ang]))[0])
        hx, hy = node.cx + rr * math.cos(ang), node.cy + rr * math.sin(ang)
        d_h = np.hypot(xs - hx, ys - hy) / (0.5 * (node.a + node.b))
        m = np.maximum(
            _smoothstep(0.85, 0.45, (d_h + 0.12 * n1).astype(np.float32)),
            _smoothstep(0.42, 0.25, (u_norm + 0.08 * n1).astype(np.float32)),
        )
        medulla_w = np.maximum(medulla_w, m)
    medulla_w *= node_w * _smoothstep(90.0, 200.0, depth_um)
    ridge = (1.0 - np.abs(n2)).astype(np.float32)
    med_sinus_w = medulla_w * _smoothstep(0.55, 0.8, ridge)

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
        mantle_w[i0:i1, j0:j1] = np.maximum(mantle_w[i0:i1, j0:j1], _smoothstep(1.05, 0.88, d.astype(np.float32)))
        if rng.random() < 0.75:  # secondary follicle with a germinal centre
            ang = math.atan2(nodes[ni].cy - fy, nodes[ni].cx - fx)
            gx, gy = fx + 0.18 * R * math.cos(ang), fy + 0.18 * R * math.sin(ang)
            dg = np.hypot(sx - gx, sy - gy) / (R * rng.uniform(0.55, 0.72) * wob)
            gc_w[i0:i1, j0:j1] = np.maximum(gc_w[i0:i1, j0:j1], _smoothstep(1.0, 0.8, dg.astype(np.float32)))
    inner = node_w * (1 - capsule_w)
    mantle_w *= inner
    gc_w *= inner

    # --- metastases ------------------------------------------------------------------------
    lesions: list[tuple[Polygon, list[_Blob]]] = []
    inner_polys = [Polygon(node.polygon(256)).buffer(-(80 * um)) for node in nodes]
    tumor_sdf = np.full((ny, nx), -1e9)
    region_sdf = np.full((ny, nx), -1e9)  # micro/macro lesions: nests and stroma
    plan: list[str] = sorted(kinds, key=lambda k: {"macro": 0, "micro": 1, "itc": 2}[k])
    while plan:
        kind = plan.pop(0)
        outline = _place_lesion(rng, kind, nodes, inner_polys, [p for p, _ in lesions], um)
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
            if _major_axis(poly) / um >= ITC_MAX_UM:
                region_sdf[win] = np.maximum(region_sdf[win], sd)
    tumor_w = np.clip(region_sdf / f + 0.5, 0, 1).astype(np.float32) * node_w
    nest = _smoothstep(-0.95, -0.55, n3 + 0.4 * n2)
    # keep the outer rim of a metastasis cellular
    nest = np.maximum(nest, _smoothstep(30.0, 5.0, (region_sdf / um).astype(np.float32)))
    nest_w = tumor_w * nest
    tstroma_w = tumor_w * (1 - nest)
    necrosis_w = np.zeros((ny, nx), np.float32)
    if region_sdf.max() > 700 * um:
        necrosis_w = tumor_w * _smoothstep(450.0, 700.0, (region_sdf / um + 150 * n2).astype(np.float32))

    # --- paint the stain bases and cell densities ------------------------------------------
    Hb = np.zeros((ny, nx), np.float32)
    Eb = np.zeros((ny, nx), np.float32)
    fib = np.zeros((ny, nx), np.float32)
    dens = {t: np.zeros((ny, nx), np.float32) for t in _DENSITY_TYPES}

    def paint(w: F32, h: float, e: float, fibrous: float = 0.0, **d: float) -> None:
        _paint(Hb, w, h)
        _paint(Eb, w, e)
        _paint(fib, w, fibrous)
        for t in _DENSITY_TYPES:
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
    wall_w, lumen_w = _vessels(rng, nodes, [p for p, _ in lesions], xs, ys, tissue_sdf, um)
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
    stain_var = _smooth_noise(rng, (ny, nx), 900 / lr_um)
    Hb *= (1 + 0.07 * stain_var).astype(np.float32)
    Eb *= (1 + 0.1 * _smooth_noise(rng, (ny, nx), 900 / lr_um)).astype(np.float32)

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
        tissue_polys.append(_as_polygon(Polygon(node.polygon(360)).union(Polygon(fat.polygon(360)))))
    return _Layout(
        f=f,
        fields=fields,
        fibrous=fib,
        density=dens,
        tumor_sdf=np.clip(tumor_sdf, -1e6, 1e6).astype(np.float32),
        angle=(tangent % math.pi).astype(np.float32),
        nodes=[_as_polygon(Polygon(node.polygon(360))) for node in nodes],
        tissue=tissue_polys,
        lesions=lesions,
        node_centres=[(n.cx, n.cy) for n in nodes],
    )


def _vessels(
    rng: np.random.Generator,
    nodes: list[_Blob],
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
            inner = _smoothstep(r + 0.5 * f, r - 0.5 * f, rho)
            outer = _smoothstep(r + t + 0.5 * f, r + t - 0.5 * f, rho)
            lumen[i0:i1, j0:j1] = np.maximum(lumen[i0:i1, j0:j1], inner)
            wall[i0:i1, j0:j1] = np.maximum(wall[i0:i1, j0:j1], outer * (1 - inner))
    return wall, lumen


_LESION_DIAMETER_UM: dict[str, tuple[float, float]] = {
    "itc": (22.0, 150.0),
    "micro": (320.0, 1700.0),
    "macro": (2200.0, 3600.0),
}


def _place_lesion(
    rng: np.random.Generator,
    kind: str,
    nodes: list[_Blob],
    inner_polys: list[Polygon],
    taken: list[Polygon],
    um: float,
) -> tuple[Polygon, list[_Blob]] | None:
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
            blobs = [_random_blob(rng, cx, cy, rad, aspect=(0.6, 1.0), roughness=0.05, orders=(2, 4))]
        else:
            n_lobes = 1 if kind == "micro" and rng.random() < 0.5 else int(rng.integers(2, 4))
            blobs = [_random_blob(rng, cx, cy, rad * 0.85, aspect=(0.5, 0.95), roughness=0.09)]
            for _ in range(n_lobes - 1):
                a = rng.uniform(-math.pi, math.pi)
                off = rad * rng.uniform(0.3, 0.55)
                blobs.append(
                    _random_blob(
                        rng, cx + off * math.cos(a), cy + off * math.sin(a), rad * rng.uniform(0.4, 0.6), roughness=0.1
                    )
                )
        geom = shapely.union_all([Polygon(b.polygon(256 if kind != "itc" else 96)) for b in blobs])
        if not isinstance(geom, Polygon):
            continue
        poly = _as_polygon(geom)
        if not poly.within(inner):
            continue
        if any(poly.distance(t) < 150 * um for t in taken):
            continue
        return poly, blobs
    return None


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


@dataclass
class _Cells:
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


#: Slides up to this width get textures pre-widened to their width (faster, ~(512 x width) floats each).
_WIDEN_MAX = 16384

_CELL_SPACING_UM = {
    "lymph": 8.0,
    "centroblast": 12.5,
    "tbm": 42.0,
    "histiocyte": 20.0,
    "fibro": 22.0,
    "tumor": 21.0,
    "rbc": 6.5,
}


def _build_cells(spec: SlideSpec, layout: _Layout, banks: dict[str, _Bank], rng: np.random.Generator) -> _Cells:
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
        x, y = _hex_grid(rng, spec.width, spec.height, _CELL_SPACING_UM[kind] * um, 0.28)
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
    return _Cells(
        y=np.floor(y_all[order]).astype(np.int64),
        x=np.floor(x_all[order]).astype(np.int64),
        bank=(np.concatenate(out_b) if out_b else np.zeros(0, np.int8))[order],
        index=(np.concatenate(out_i) if out_i else np.zeros(0, np.int64))[order],
        amp=(np.concatenate(out_a) if out_a else np.zeros(0, np.float32))[order],
        bank_names=names,
    )


# --------------------------------------------------------------------------------------------
# Band renderer
# --------------------------------------------------------------------------------------------


class _Renderer:
    """Renders level-0 RGB rows ``[y0, y1)`` of a slide, (y1 - y0, width, 3) uint8."""

    def __init__(self, spec: SlideSpec, seed_seq: np.random.SeedSequence) -> None:
        self.spec = spec
        s_layout, s_banks, s_cells, s_tex = seed_seq.spawn(4)
        self.um = 1.0 / spec.mpp
        self.layout = _build_layout(spec, np.random.default_rng(s_layout))
        self.banks = _make_banks(np.random.default_rng(s_banks), self.um)
        self.cells = _build_cells(spec, self.layout, self.banks, np.random.default_rng(s_cells))
        self.stain = _SHIFTED if spec.domain == "shifted" else _IN_DOMAIN
        self.pad = max(b.size for b in self.banks.values()) // 2 + 1
        self.margin = self.stain.blur_passes
        self._make_textures(np.random.default_rng(s_tex))
        st = self.stain
        self._hv = _unit(st.h_vec) * st.h_scale
        self._ev = _unit(st.e_vec) * st.e_scale
        # flattened stamp banks and their pixel offsets for the splatter
        self._cols = np.arange(spec.width, dtype=np.int64)
        w_cols = spec.width + 2 * self.pad
        self._bank_h: list[F32] = []
        self._bank_e: list[F32] = []
        self._bank_n: list[F32] = []
        self._bank_off: list[I64] = []
        for name in self.cells.bank_names:
            bank = self.banks[name]
            size = bank.size
            off = np.arange(size, dtype=np.int64) - size // 2
            self._bank_off.append((off[:, None] * w_cols + off[None, :]).ravel())
            self._bank_h.append(bank.h.reshape(bank.count, -1))
            self._bank_e.append(bank.e.reshape(bank.count, -1))
            self._bank_n.append(bank.nucleus.reshape(bank.count, -1))

    def _make_textures(self, rng: np.random.Generator) -> None:
        """Periodic textures, (period, width) each: pre-widened to the slide width up to
        ``_WIDEN_MAX`` pixels (a row gather per band), narrower tiles beyond (a column gather too).
        """
        um = self.um
        n = 512
        W = self.spec.width

        def widen(t: F32) -> F32:
            if W > _WIDEN_MAX:
                return t
            return np.ascontiguousarray(np.tile(t, (1, -(-W // t.shape[1])))[:, :W]).astype(np.float32)

        # collagen: thin wavy ridges of band-passed noise
        a = _periodic_noise(rng, n, max(0.8, 2.2 * um))
        b = _periodic_noise(rng, n, max(0.8, 2.2 * um))
        c = _periodic_noise(rng, n, max(1.0, 5.0 * um))
        ridges = np.exp(-((a / 0.5) ** 2)) + 0.5 * np.exp(-((b / 0.4) ** 2)) + 0.5 + 0.3 * c
        fib = ridges / ridges.mean()
        grain = _periodic_noise(rng, n, max(0.5, 0.8 * um))
        # eosin of plain and of fibrous tissue, hematoxylin background granularity
        self.tex_e = widen((1.0 + 0.12 * grain).astype(np.float32))
        self.tex_efib = widen((1.0 + 0.5 * (fib - 1.0) + 0.12 * grain).astype(np.float32))
        self.tex_h = widen((1.0 + 0.15 * grain).astype(np.float32))
        # adipocytes: membranes of a periodic Voronoi tessellation (computed at half resolution)
        step = 2 if um >= 0.75 else 1
        fat_um = step / um
        nt = 512
        cell_um = rng.uniform(55, 80)
        n_seeds = int((nt * fat_um / cell_um) ** 2 * 1.15)
        seeds = rng.uniform(0, nt, (n_seeds, 2))
        tree = cKDTree(seeds, boxsize=nt)
        gy, gx = np.mgrid[0:nt, 0:nt].astype(np.float64) + 0.5
        warp = 5.0 / fat_um  # wavy membranes: query a warped grid
        gy = (gy + warp * _periodic_noise(rng, nt, 6.0)) % nt
        gx = (gx + warp * _periodic_noise(rng, nt, 6.0)) % nt
        d, nearest = tree.query(np.column_stack([gy.ravel(), gx.ravel()]), k=2)
        # distance to the bisector of the two nearest seeds: (d2^2 - d1^2) / (2 |s1 - s2|), periodic
        sep = seeds[nearest[:, 1]] - seeds[nearest[:, 0]]
        sep -= nt * np.round(sep / nt)
        to_edge = (d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * np.hypot(sep[:, 0], sep[:, 1]) + 1e-9)
        to_edge_um = to_edge.reshape(nt, nt) * fat_um
        mem = np.exp(-((to_edge_um / 1.3) ** 2)).astype(np.float32)
        if step > 1:  # bilinear to full resolution, still periodic
            mem = ndimage.zoom(mem, step, order=1, mode="grid-wrap", grid_mode=True)
        self.tex_fat = widen(mem)
        # sensor noise, a strip of a prime number of rows (no visible period)
        self.noise = rng.standard_normal((3, 127, min(W, _WIDEN_MAX)), dtype=np.float32)
        self.noise *= self.stain.noise_sigma
        self.noise += 0.5  # rounding to nearest when cast to uint8

    def _tex(self, tex: F32, rows: I64) -> F32:
        """Rows ``rows`` of a periodic texture over the slide width, (len(rows), width)."""
        block = tex[rows % tex.shape[0]]
        if block.shape[1] == self.spec.width:
            return block
        return np.take(block, self._cols % tex.shape[1], axis=1)

    # -- fields ---------------------------------------------------------------------------
    def _fields(self, y0: int, y1: int) -> F32:
        """Bilinearly upsampled fields for rows [y0, y1), (5, y1 - y0, width)."""
        L = self.layout.fields
        f = self.layout.f
        t = (np.arange(y0, y1) + 0.5) / f
        i0 = np.clip(np.floor(t).astype(np.int64), 0, L.shape[1] - 2)
        wy = np.clip(t - i0, 0, 1).astype(np.float32)[None, :, None]
        rows = L[:, i0] * (1 - wy) + L[:, i0 + 1] * wy  # (F, h, nx)
        # pixel x = j * f + k sits between samples j and j + 1 at weight (k + 0.5) / f
        wx = ((np.arange(f, dtype=np.float32) + 0.5) / f)[None, None, None, :]
        left = rows[:, :, :-1, None]
        right = rows[:, :, 1:, None]
        up = left + (right - left) * wx  # (F, h, nx - 1, f)
        n_f, h = up.shape[:2]
        return up.reshape(n_f, h, -1)[:, :, : self.spec.width].astype(np.float32, copy=False)

    def _splat(self, y0: int, y1: int) -> tuple[F32, F32, F32]:
        """Hematoxylin, eosin and nuclear cover of the cells for rows [y0, y1), each (y1 - y0, width)."""
        pad = self.pad
        W = self.spec.width
        h_rows = y1 - y0 + 4 * pad  # cells up to ``pad`` outside, stamps up to ``pad`` around them
        w_cols = W + 2 * pad
        cells = self.cells
        lo = int(np.searchsorted(cells.y, y0 - pad, side="left"))
        hi = int(np.searchsorted(cells.y, y1 + pad, side="left"))
        size = h_rows * w_cols
        if hi <= lo:
            z = np.zeros((y1 - y0, W), np.float32)
            return z, z.copy(), z.copy()
        cy = cells.y[lo:hi] - y0 + 2 * pad
        cx = cells.x[lo:hi] + pad
        bank = cells.bank[lo:hi]
        idx = cells.index[lo:hi]
        amp = cells.amp[lo:hi]
        lins: list[I64] = []
        whs: list[F32] = []
        lins_e: list[I64] = []
        wes: list[F32] = []
        wns: list[F32] = []
        for b in np.unique(bank):
            m = bank == b
            base = cy[m] * w_cols + cx[m]
            lin = (base[:, None] + self._bank_off[b][None, :]).ravel()
            a = amp[m][:, None]
            lins.append(lin)
            whs.append((self._bank_h[b][idx[m]] * a).ravel())
            wns.append(self._bank_n[b][idx[m]].ravel())
            be = self._bank_e[b]
            if be.any():
                lins_e.append(lin)
                wes.append((be[idx[m]] * a).ravel())
        lin_all = np.concatenate(lins)
        # weighted bincount: a scatter-add of every stamp pixel onto the band (float64)
        canvas_h = np.asarray(np.bincount(lin_all, np.concatenate(whs), minlength=size), np.float64)
        canvas_n = np.asarray(np.bincount(lin_all, np.concatenate(wns), minlength=size), np.float64)
        if lins_e:
            canvas_e = np.asarray(np.bincount(np.concatenate(lins_e), np.concatenate(wes), minlength=size), np.float64)
        else:
            canvas_e = np.zeros(size, np.float64)
        ch = canvas_h.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        ce = canvas_e.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        cn = canvas_n.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        return ch, ce, cn

    def concentrations(self, y0: int, y1: int) -> tuple[F32, F32]:
        """Hematoxylin and eosin concentration (natural-log OD units) of rows [y0, y1), (h, width) each."""
        fl = self._fields(y0, y1)
        ch, ce, cn = self._splat(y0, y1)
        rows = np.arange(y0, y1, dtype=np.int64)
        # E = Eb * plain texture + Ef * collagen texture + cells + fat membranes
        E = fl[_FIELD_E] * self._tex(self.tex_e, rows)
        E += fl[_FIELD_EFIB] * self._tex(self.tex_efib, rows)
        E += ce
        # chromatin takes up little eosin: nuclei stay blue-purple
        np.minimum(cn, 1.0, out=cn)
        cn *= -0.6
        cn += 1.0
        E *= cn
        H = fl[_FIELD_H] * self._tex(self.tex_h, rows)
        H += ch
        fm = fl[_FIELD_FAT] * self._tex(self.tex_fat, rows)
        H += 0.06 * fm
        fm *= 0.5
        E += fm
        # crisp tissue edge from the upsampled signed distance
        tissue = fl[_FIELD_TISSUE]
        tissue *= 1.0 / 1.2
        tissue += 0.5
        np.clip(tissue, 0.0, 1.0, out=tissue)
        H *= tissue
        E *= tissue
        return H, E

    def render(self, y0: int, y1: int) -> U8:
        """RGB rows [y0, y1) of level 0, (y1 - y0, width, 3) uint8."""
        m = self.margin
        st = self.stain
        H, E = self.concentrations(y0 - m, y1 + m)
        if m:
            H = _binomial_blur(H, m)[m:-m]
            E = _binomial_blur(E, m)[m:-m]
        h = y1 - y0
        rows = np.arange(y0, y1)
        # 255 * (I / 255) ** gamma with I = white * exp(-OD): a gamma scales the optical density
        g = st.gamma
        chans: list[F32] = []
        for c in range(3):
            od = H * (self._hv[c] * g)
            od += E * (self._ev[c] * g)
            od += 0.012 * g  # glass
            np.negative(od, out=od)
            np.exp(od, out=od)
            od *= 255.0 * (st.white[c] / 255.0) ** g
            chans.append(od)
        if st.saturation != 1.0:
            grey = chans[0] + chans[1]
            grey += chans[2]
            grey *= (1.0 - st.saturation) / 3.0
            for ch in chans:
                ch *= st.saturation
                ch += grey
        out = np.empty((h, self.spec.width, 3), np.uint8)
        for c, ch in enumerate(chans):
            ch += self._tex(self.noise[c], rows)
            np.clip(ch, 0, 255, out=ch)
            out[..., c] = ch
        return out


def _binomial_blur(a: F32, passes: int) -> F32:
    """Separable [1, 2, 1] / 4 blur applied ``passes`` times (Gaussian sigma ~ sqrt(passes / 2) px).

    The outermost row and column on each side keep their values.  (h, w) -> (h, w).
    """
    out = a.copy()
    tmp = np.empty_like(a)
    for _ in range(passes):
        tmp[:] = out
        out[1:-1] = tmp[1:-1] * 0.5
        out[1:-1] += tmp[:-2] * 0.25
        out[1:-1] += tmp[2:] * 0.25
        tmp[:] = out
        out[:, 1:-1] = tmp[:, 1:-1] * 0.5
        out[:, 1:-1] += tmp[:, :-2] * 0.25
        out[:, 1:-1] += tmp[:, 2:] * 0.25
    return out


# --------------------------------------------------------------------------------------------
# TIFF writing
# --------------------------------------------------------------------------------------------


def _downsample2(a: U8) -> U8:
    """Halve an RGB image by 2x2 box averaging (odd edges repeated), (h, w, 3) -> (ceil(h/2), ceil(w/2), 3)."""
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    s = a[0::2, 0::2].astype(np.uint16)
    s += a[1::2, 0::2]
    s += a[0::2, 1::2]
    s += a[1::2, 1::2]
    s += 2
    s >>= 2
    return s.astype(np.uint8)


def _tiles_of(a: U8, tile: int) -> Iterator[U8]:
    """Tiles of an image in row-major order, edge tiles padded with white, each (tile, tile, 3)."""
    h, w = a.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = a[y : y + tile, x : x + tile]
            if t.shape[0] != tile or t.shape[1] != tile:
                full = np.full((tile, tile, 3), 255, np.uint8)
                full[: t.shape[0], : t.shape[1]] = t
                t = full
            yield np.ascontiguousarray(t)


def _description(spec: SlideSpec, level: int) -> str:
    w, h = spec.level_sizes()[level]
    return (
        f"SUA Portal synthetic H&E lymph node {w}x{h} ({spec.tile_size}x{spec.tile_size}) JPEG/RGB "
        f"Q={spec.jpeg_quality}|MPP = {spec.mpp * 2**level:g}|AppMag = {10.0 / (spec.mpp * 2**level):g}"
        f"|Level = {level}|Seed = {spec.seed}|Domain = {spec.domain}|Tumor = {int(spec.tumor)}"
        f"|Generator = {_GENERATOR}"
    )


def _write_tiff(spec: SlideSpec, renderer: _Renderer, path: Path) -> None:
    """Write the pyramid; level 1 is collected while level 0 streams out, the rest follow from it."""
    w, h = spec.width, spec.height
    w1, h1 = (w + 1) // 2, (h + 1) // 2
    with contextlib.ExitStack() as stack:
        if w1 * h1 * 3 > 512 * 2**20:  # a big level 1 goes to a temporary file, not to memory
            tmp = stack.enter_context(tempfile.TemporaryFile(dir=path.parent))
            level1: U8 = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(h1, w1, 3))
        else:
            level1 = np.empty((h1, w1, 3), np.uint8)
        _write_levels(spec, renderer, path, level1)


def _write_levels(spec: SlideSpec, renderer: _Renderer, path: Path, level1: U8) -> None:
    ts = spec.tile_size
    sizes = spec.level_sizes()
    W, H = sizes[0]

    def level0_tiles() -> Iterator[U8]:
        for y0 in range(0, H, ts):
            y1 = min(H, y0 + ts)
            band = renderer.render(y0, y1)
            small = _downsample2(band)
            level1[y0 // 2 : y0 // 2 + small.shape[0]] = small
            yield from _tiles_of(band, ts)

    total = sum(w * h * 3 for w, h in sizes)
    common: dict[str, Any] = {
        "dtype": np.uint8,
        "tile": (ts, ts),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": spec.jpeg_quality},
        "resolutionunit": "CENTIMETER",
        "metadata": None,
        "software": _GENERATOR,
    }
    with tifffile.TiffWriter(path, bigtiff=total > 2**31) as tw:
        res = 1e4 / spec.mpp
        tw.write(
            level0_tiles(),
            shape=(H, W, 3),
            resolution=(res, res),
            description=_description(spec, 0),
            subfiletype=0,
            **common,
        )
        current: U8 = level1
        for level in range(1, len(sizes)):
            w, h = sizes[level]
            if level > 1:
                current = _downsample2(current)
            assert current.shape[:2] == (h, w)
            res = 1e4 / (spec.mpp * 2**level)
            tw.write(
                _tiles_of(current, ts),
                shape=(h, w, 3),
                resolution=(res, res),
                description=_description(spec, level),
                subfiletype=1,
                **common,
            )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_slide(spec: SlideSpec, path: str | os.PathLike[str]) -> SyntheticSlide:
    """Render the slide ``spec`` to a pyramidal tiled JPEG TIFF at ``path``.

    Level 0 is ``spec.width x spec.height`` RGB (uint8); level ``k`` is about
    ``1 / 2**k`` of it.  Resolution tags hold ``1e4 / (mpp * 2**k)`` pixels per
    centimetre.  Returns the lesions (tumor outlines in level-0 pixels), tissue
    outlines and sizes; the same spec always gives the same pixels.
    """
    t0 = time.perf_counter()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the seed fixes the tissue; the domain only changes staining and scanner
    seq = np.random.SeedSequence([spec.seed, 0x5A5A])
    renderer = _Renderer(spec, seq)
    _write_tiff(spec, renderer, out)
    um = 1.0 / spec.mpp
    lesions = []
    cx, cy = renderer.cells.x, renderer.cells.y
    tumor_bank = np.isin(renderer.cells.bank, [renderer.cells.bank_names.index(n) for n in ("tumor", "mitosis")])
    for poly, _ in renderer.layout.lesions:
        major = _major_axis(poly) / um
        n_cells = int(shapely.contains_xy(poly, cx[tumor_bank] + 0.5, cy[tumor_bank] + 0.5).sum())
        lesions.append(
            Lesion(
                polygon=poly,
                kind=lesion_kind(major),
                major_axis_um=major,
                area_mm2=poly.area * spec.mpp**2 / 1e6,
                n_cells=n_cells,
            )
        )
    return SyntheticSlide(
        path=out,
        spec=spec,
        lesions=tuple(lesions),
        tissue=tuple(renderer.layout.tissue),
        nodes=tuple(renderer.layout.nodes),
        level_sizes=tuple(spec.level_sizes()),
        elapsed_s=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------------------------
# Cohorts
# --------------------------------------------------------------------------------------------

#: Splits of the default cohort, in order: (directory name, domain).
SPLITS: tuple[tuple[str, Domain], ...] = (
    ("train", "in-domain"),
    ("validation", "in-domain"),
    ("test_in_domain", "in-domain"),
    ("test_shifted", "shifted"),
)


@dataclass(frozen=True)
class CohortEntry:
    """One slide of a generated cohort; paths are absolute, ``to_json`` makes them relative."""

    slide_id: str
    split: str
    domain: Domain
    tumor: bool
    image: Path
    xml: Path | None
    geojson: Path | None
    mpp: float
    width: int
    height: int
    seed: int
    lesions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    elapsed_s: float = 0.0

    def to_json(self, root: Path) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else p.relative_to(root).as_posix()

        return {
            "id": self.slide_id,
            "split": self.split,
            "domain": self.domain,
            "tumor": self.tumor,
            "image": rel(self.image),
            "annotation_xml": rel(self.xml),
            "annotation_geojson": rel(self.geojson),
            "mpp": self.mpp,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "lesions": list(self.lesions),
        }


@dataclass(frozen=True)
class _Job:
    slide_id: str
    split: str
    spec: SlideSpec


# Lesion plans of tumor slides, cycled through a cohort so that every split gets every size class.
_LESION_PLANS: tuple[tuple[LesionKind, ...], ...] = (
    ("macro", "itc"),
    ("micro", "micro", "itc"),
    ("micro",),
    ("macro", "micro"),
    ("itc", "itc", "micro"),
    ("micro", "itc"),
)


def _cohort_jobs(preset: Preset, seed: int) -> list[_Job]:
    if preset == "demo":
        counts = {"train": (3, 3), "validation": (2, 2), "test_in_domain": (2, 2), "test_shifted": (2, 2)}
        sizes = [(8192, 6144), (6144, 8192), (7168, 7168), (8192, 7168), (7168, 6144)]
        mpp = 1.0
    elif preset == "test":
        counts = {"train": (1, 1), "validation": (1, 1), "test_in_domain": (1, 1), "test_shifted": (1, 1)}
        sizes = [(1024, 768), (768, 1024), (1024, 1024)]
        mpp = 2.0
    else:
        raise ValueError(f"unknown preset {preset!r}; use 'demo' or 'test'")
    jobs: list[_Job] = []
    n = 0
    plan_i = 0
    for split, domain in SPLITS:
        n_tumor, n_free = counts[split]
        labels = [True] * n_tumor + [False] * n_free
        # interleave so ids do not give the label away
        rng = np.random.default_rng([seed, n])
        labels = [labels[i] for i in rng.permutation(len(labels))]
        for k, tumor in enumerate(labels):
            w, h = sizes[n % len(sizes)]
            lesions: tuple[LesionKind, ...] | None = None
            if tumor:
                plan = _LESION_PLANS[plan_i % len(_LESION_PLANS)]
                plan_i += 1
                lesions = plan if preset == "demo" else tuple(k2 for k2 in plan if k2 != "macro") or ("micro",)
            spec = SlideSpec(
                seed=seed * 1000 + n,
                width=w,
                height=h,
                mpp=mpp,
                tumor=tumor,
                domain=domain,
                lesions=lesions,
            )
            jobs.append(_Job(f"{split}_{k + 1:02d}", split, spec))
            n += 1
    return jobs


def _run_job(job: _Job, out_dir: Path) -> CohortEntry:
    image = out_dir / job.split / f"{job.slide_id}.tiff"
    slide = generate_slide(job.spec, image)
    xml = geo = None
    if job.spec.tumor:
        xml = image.with_suffix(".xml")
        write_asap_xml(slide.polygons, xml)
        geo = image.with_suffix(".geojson")
        write_geojson(slide.polygons, geo, id_namespace=f"synthetic:{job.slide_id}")
    return CohortEntry(
        slide_id=job.slide_id,
        split=job.split,
        domain=job.spec.domain,
        tumor=job.spec.tumor,
        image=image,
        xml=xml,
        geojson=geo,
        mpp=job.spec.mpp,
        width=job.spec.width,
        height=job.spec.height,
        seed=job.spec.seed,
        lesions=tuple(lesion.to_json() for lesion in slide.lesions),
        elapsed_s=slide.elapsed_s,
    )


def generate_cohort(
    out_dir: str | os.PathLike[str],
    *,
    preset: Preset = "demo",
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int, CohortEntry], None] | None = None,
) -> list[CohortEntry]:
    """Write a cohort of synthetic slides and its ``manifest.json`` under ``out_dir``.

    Splits ``train``, ``validation``, ``test_in_domain`` (in-domain) and
    ``test_shifted`` (domain shift), each a mix of tumor and tumor-free slides:
    6 / 4 / 4 / 4 slides of about 6-8k pixels square at 1 µm/px for ``"demo"``,
    2 / 2 / 2 / 2 slides of 768-1024 pixels at 2 µm/px for ``"test"``.  Each slide is
    ``<split>/<id>.tiff``; tumor slides also get ``<id>.xml`` (ASAP) and
    ``<id>.geojson`` (QuPath).  ``workers`` processes render slides in parallel
    (default: up to 2).  ``progress(done, total, entry)`` is called after each slide.
    """
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    jobs = _cohort_jobs(preset, seed)
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if multiprocessing.current_process().daemon:  # e.g. a Celery prefork worker: no children allowed
        n_workers = 1
    entries: list[CohortEntry] = []
    if n_workers <= 1:
        for i, job in enumerate(jobs):
            entry = _run_job(job, root)
            entries.append(entry)
            if progress is not None:
                progress(i + 1, len(jobs), entry)
    else:
        # biggest first keeps both workers busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i].spec.width * jobs[i].spec.height)
        by_index: dict[int, CohortEntry] = {}
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures = {i: pool.submit(_run_job, jobs[i], root) for i in order}
            for done, i in enumerate(order, start=1):
                by_index[i] = futures[i].result()
                if progress is not None:
                    progress(done, len(jobs), by_index[i])
        entries = [by_index[i] for i in range(len(jobs))]
    manifest = {
        "generator": _GENERATOR,
        "preset": preset,
        "seed": seed,
        "splits": [{"name": s, "domain": d} for s, d in SPLITS],
        "slides": [e.to_json(root) for e in entries],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N] [--workers N]``."""
    parser = argparse.ArgumentParser(prog="python -m analysis.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", choices=["demo", "test"], default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: up to 2)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def report(done: int, total: int, e: CohortEntry) -> None:
        kinds = ", ".join(str(les["kind"]) for les in e.lesions) or "tumor-free"
        print(
            f"[{done:2d}/{total}] {e.split}/{e.image.name} {e.width}x{e.height} {e.domain} ({kinds}) "
            f"{e.elapsed_s:.1f} s",
            flush=True,
        )

    entries = generate_cohort(args.out_dir, preset=args.preset, seed=args.seed, workers=args.workers, progress=report)
    print(f"{len(entries)} slides, manifest {args.out_dir / 'manifest.json'}, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
