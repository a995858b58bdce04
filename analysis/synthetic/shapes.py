"""Outlines of nodes, fat and metastases: star-shaped blobs and the polygons made from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from analysis.synthetic.spec import F64


@dataclass(frozen=True)
class Blob:
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

    def radius_at(self, theta: float) -> float:
        """Radius (px) along one direction ``theta`` (radians)."""
        return float(self.radius(np.array([theta]))[0])

    def hilum(self) -> tuple[float, float]:
        """Level-0 position of the hilum: the outline point at the centre of the dent."""
        assert self.dent is not None, "a node outline has a dent at its hilum"
        ang = self.dent[0]
        rr = self.radius_at(ang)
        return self.cx + rr * math.cos(ang), self.cy + rr * math.sin(ang)

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

    def scaled(self, s: float) -> Blob:
        return replace(self, a=self.a * s, b=self.b * s)

    def bbox(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.polygon(128).bounds
        return x0, y0, x1, y1


def random_blob(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius: float,
    *,
    aspect: tuple[float, float] = (0.6, 1.0),
    roughness: float = 0.06,
    orders: tuple[int, int] = (2, 7),
) -> Blob:
    ratio = float(rng.uniform(*aspect))
    a = radius / math.sqrt(ratio)
    b = radius * math.sqrt(ratio)
    harmonics = tuple(
        (k, float(rng.uniform(0.3, 1.0) * roughness * 2.0 / k), float(rng.uniform(0, 2 * math.pi)))
        for k in range(orders[0], orders[1] + 1)
    )
    return Blob(cx, cy, a, b, float(rng.uniform(0, math.pi)), harmonics)


def major_axis(polygon: Polygon) -> float:
    """Largest distance between two points of the polygon (pixels)."""
    hull = np.asarray(polygon.convex_hull.exterior.coords)
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def as_polygon(geom: Any) -> Polygon:
    """The largest polygon of a (multi)polygon, without holes, vertices rounded to 0.01 px."""
    if isinstance(geom, MultiPolygon):
        geom = max(geom.geoms, key=lambda g: g.area)
    if not isinstance(geom, Polygon):
        raise TypeError(f"expected a polygon, got {geom.geom_type}")
    ring = np.round(np.asarray(geom.exterior.coords), 2)
    poly = Polygon(ring)
    if not poly.is_valid:
        poly = as_polygon(shapely.make_valid(poly))
    return poly

