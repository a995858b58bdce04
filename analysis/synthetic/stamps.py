"""Drawing one cell stamp: a small (S, S) grid, wobbly outlines, chromatin, nucleoli.

The parts of a cell are described as data (:class:`Outline`, :class:`Spindle`,
:class:`Chromatin`); each draws its random parts from the generator it is given,
in a fixed order (radius, elongation, orientation, wobble), so that the same seed
always gives the same stamp.  Lengths in the data are micrometres; ``um`` (pixels
per micrometre) turns them into pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis.synthetic.noise import smooth_noise
from analysis.synthetic.spec import F32

#: float32 stamps; float64 where a part is placed by a float64 offset (kept so: it is what the slides were made with).
Floats = npt.NDArray[np.floating[Any]]

#: Range of a harmonic's phase when it is drawn per stamp (radians; a little over 2 pi).
_PHASE = (0.0, 6.3)
#: Anti-aliasing width of a nucleus edge (pixels).
_NUCLEUS_SOFT_PX = 0.7
#: Anti-aliasing width of a small spot: nucleolus, apoptotic body (pixels).
_SPOT_SOFT_PX = 0.6


@dataclass(frozen=True)
class StampGrid:
    """Pixel-centre offsets from the centre of a stamp, ``yy`` and ``xx`` (S, S) float32."""

    yy: F32
    xx: F32

    @classmethod
    def of_size(cls, size: int) -> StampGrid:
        c = (size - 1) / 2.0
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        return cls(yy - c, xx - c)

    @property
    def size(self) -> int:
        return int(self.yy.shape[0])


def stamp_size(half_size_um: float, um: float) -> int:
    """Odd stamp edge (pixels, at least 3) that holds a cell reaching ``half_size_um`` from its centre."""
    n = max(3, math.ceil(2 * half_size_um * um + 3))
    return n + 1 - n % 2


@dataclass(frozen=True)
class Harmonic:
    """One harmonic of an outline's radius: ``1 + amplitude * cos(order * theta + phase)``.

    A range ``(lo, hi)`` of ``amplitude`` is drawn uniformly per stamp, and so is a
    ``phase`` of None.
    """

    order: int
    amplitude: float | tuple[float, float]
    phase: float | None = None

    def draw(self, rng: np.random.Generator) -> tuple[int, float, float]:
        amplitude = self.amplitude if isinstance(self.amplitude, float) else rng.uniform(*self.amplitude)
        phase = rng.uniform(*_PHASE) if self.phase is None else self.phase
        return self.order, amplitude, phase


@dataclass(frozen=True)
class Outline:
    """A wobbly ellipse: a nucleus, a cytoplasm or a whole red cell.

    Attributes:
        radius_um: range of the mean radius (µm), drawn uniformly per stamp.
        elongation: long / short axis ratio, a range drawn per stamp or one value.
        wobble: harmonics that make the outline irregular.
        soft_um: width of the anti-aliased edge (µm); None is a crisp nuclear edge.
    """

    radius_um: tuple[float, float]
    elongation: float | tuple[float, float]
    wobble: tuple[Harmonic, ...] = ()
    soft_um: float | None = None

    def draw_radius(self, rng: np.random.Generator, um: float) -> float:
        """A mean radius in pixels."""
        return rng.uniform(*self.radius_um) * um

    def distance(
        self,
        rng: np.random.Generator,
        yy: F32,
        xx: F32,
        r: float,
        wobble: Sequence[tuple[int, float, float]] | None = None,
    ) -> F32:
        """Normalised radial coordinate (1 on the outline) of a drawn outline of radius ``r`` px, (S, S).

        Draws the elongation, the orientation and (unless ``wobble`` is given) the wobble.
        """
        ratio = self.elongation if isinstance(self.elongation, float) else rng.uniform(*self.elongation)
        angle = rng.uniform(0, math.pi)
        if wobble is None:
            wobble = [harmonic.draw(rng) for harmonic in self.wobble]
        return shape_distance(yy, xx, r, ratio, angle, wobble)

    def draw(self, rng: np.random.Generator, grid: StampGrid, um: float) -> tuple[F32, float]:
        """A centred outline: its normalised radial coordinate (S, S) and its radius in pixels."""
        r = self.draw_radius(rng, um)
        return self.distance(rng, grid.yy, grid.xx, r), r

    def inside(self, d: F32, r: float, um: float) -> F32:
        """Anti-aliased inside indicator (S, S) of an outline drawn by :meth:`distance`."""
        if self.soft_um is None:
            return edge(d, r)
        return edge(d, r, self.soft_um * um)


@dataclass(frozen=True)
class Spindle:
    """A spindle-shaped (fibroblast, endothelial) nucleus: half-length and half-width ranges (µm)."""

    half_length_um: tuple[float, float]
    half_width_um: tuple[float, float]

    def inside(self, rng: np.random.Generator, grid: StampGrid, um: float, angle: float) -> F32:
        """Anti-aliased inside indicator (S, S) of a spindle along ``angle`` (radians)."""
        half_len = rng.uniform(*self.half_length_um) * um
        half_w = rng.uniform(*self.half_width_um) * um
        ca, sa = math.cos(angle), math.sin(angle)
        u = (grid.xx * ca + grid.yy * sa) / half_len
        w = (-grid.xx * sa + grid.yy * ca) / half_w
        taper = np.sqrt(np.clip(1 - u * u, 0, 1))
        d = (np.abs(w) / np.maximum(taper, 1e-3)).astype(np.float32)
        return np.asarray(np.clip((1 - d) * half_w / _SPOT_SOFT_PX + 0.5, 0, 1) * (np.abs(u) < 1))


@dataclass(frozen=True)
class Chromatin:
    """Chromatin texture: ``level + contrast * noise``, the noise smoothed over ``grain_um``.

    ``min_grain_px`` keeps the grain from vanishing at low resolution.
    """

    level: float
    contrast: float
    grain_um: float
    min_grain_px: float = 0.0

    def draw(self, rng: np.random.Generator, size: int, um: float, level: float | None = None) -> F32:
        """A (size, size) texture; ``level`` replaces the usual level (a hyperchromatic nucleus)."""
        noise = smooth_noise(rng, (size, size), max(self.min_grain_px, self.grain_um * um))
        return (self.level if level is None else level) + self.contrast * noise


def shape_distance(
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


def edge(d: F32, r_px: float, soft_px: float = _NUCLEUS_SOFT_PX) -> F32:
    """Anti-aliased inside indicator of ``d < 1`` where ``d`` is normalised to radius ``r_px``."""
    return np.clip((1.0 - d) * r_px / soft_px + 0.5, 0.0, 1.0).astype(np.float32)


def halo(d: F32, r: float, width_px: float) -> F32:
    """Inside indicator of the outline ``d`` (radius ``r`` px) grown by ``width_px``, (S, S)."""
    grown = r + width_px
    return edge(d * r / grown, grown)


def spot(grid: StampGrid, cy: float, cx: float, radius_px: float) -> Floats:
    """Anti-aliased disc of ``radius_px`` centred ``(cy, cx)`` px from the stamp centre, (S, S)."""
    return np.asarray(np.clip((radius_px - np.hypot(grid.yy - cy, grid.xx - cx)) / _SPOT_SOFT_PX + 0.5, 0, 1))
