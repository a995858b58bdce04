"""The layout's field grid: one low-resolution sample per ~8 µm of the slide."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.synthetic.spec import F64, SlideSpec

#: Spacing of the field samples (µm), rounded to whole level-0 pixels.
FIELD_SPACING_UM = 8.0


@dataclass(frozen=True)
class FieldGrid:
    """Sample ``(i, j)`` of every layout field sits at level-0 pixel ``(x, y) = (j * f, i * f)``.

    Attributes:
        f: level-0 pixels between samples.
        um: level-0 pixels per micrometre.
        xs, ys: level-0 coordinates of the samples, (ny, nx) float64 each; two
            samples beyond the right and bottom edges so that bilinear upsampling
            covers every pixel.
    """

    f: int
    um: float
    xs: F64
    ys: F64

    @classmethod
    def of(cls, spec: SlideSpec) -> FieldGrid:
        um = 1.0 / spec.mpp
        f = max(1, round(FIELD_SPACING_UM * um))
        ny, nx = spec.height // f + 2, spec.width // f + 2
        ys = (np.arange(ny, dtype=np.float64) * f)[:, None] * np.ones((1, nx))
        xs = (np.arange(nx, dtype=np.float64) * f)[None, :] * np.ones((ny, 1))
        return cls(f, um, xs, ys)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        ny, nx = self.xs.shape
        return ny, nx

    @property
    def sample_um(self) -> float:
        """Micrometres between samples."""
        return self.f / self.um

    def window(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice]:
        """Rows and columns of the samples around the level-0 box ``[x0, x1] x [y0, y1]`` (clipped)."""
        ny, nx = self.shape
        return (
            slice(max(0, int(y0 / self.f)), min(ny, int(y1 / self.f) + 2)),
            slice(max(0, int(x0 / self.f)), min(nx, int(x1 / self.f) + 2)),
        )
