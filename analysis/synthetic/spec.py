"""What a synthetic slide is made from (:class:`SlideSpec`) and what comes back: lesions, outlines, sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from shapely.geometry import Polygon

Domain = Literal["in-domain", "shifted"]
LesionKind = Literal["itc", "micro", "macro"]
#: What a slide's plan may ask for: a size class, or "faint", a micro-metastasis drawn faint (a sparse,
#: discohesive spread of paler tumor cells among the lymphocytes, no nests or stroma: easily missed).
LesionPlan = Literal["itc", "micro", "macro", "faint"]
Preset = Literal["demo", "test"]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

#: Lesions whose major axis is below this are isolated tumor cells (pN0(i+)).
ITC_MAX_UM: float = 200.0
#: Lesions whose major axis is above this are macro-metastases (pN1).
MACRO_MIN_UM: float = 2000.0

GENERATOR = "sua-portal analysis.synthetic 1"


def lesion_kind(major_axis_um: float) -> LesionKind:
    """Size class of a metastasis from its major axis in micrometres."""
    if major_axis_um < ITC_MAX_UM:
        return "itc"
    if major_axis_um <= MACRO_MIN_UM:
        return "micro"
    return "macro"


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
            ``"macro"``, or ``"faint"``: a faint micro-metastasis) on a tumor slide;
            ``None`` = one to three chosen by the seed.  A lesion too large for the
            node is drawn as large as fits and reported with the class of its actual size.
        mimics: benign look-alikes of a faint micro-metastasis to draw in the nodes:
            aggregates of reactive histiocytes (large pale cells among the lymphocytes,
            as in sinus histiocytosis), on tumor and tumor-free slides alike.
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
    lesions: tuple[LesionPlan, ...] | None = None
    mimics: int = 0

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
        if self.mimics < 0:
            raise ValueError(f"mimics must be >= 0, got {self.mimics}")
        if self.levels is not None and self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.lesions is not None:
            bad = [k for k in self.lesions if k not in ("itc", "micro", "macro", "faint")]
            if bad:
                raise ValueError(f"unknown lesion kinds {bad}; use 'itc', 'micro', 'macro' or 'faint'")
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
    """One metastasis: its outline (level-0 pixels), size class and size; ``faint`` if drawn faint."""

    polygon: Polygon
    kind: LesionKind
    major_axis_um: float
    area_mm2: float
    n_cells: int
    faint: bool = False

    def to_json(self) -> dict[str, Any]:
        """Summary without the outline (which lives in the annotation files)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "major_axis_um": round(self.major_axis_um, 1),
            "area_mm2": round(self.area_mm2, 5),
            "n_cells": self.n_cells,
        }
        if self.faint:
            out["faint"] = True
        return out


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
            "generator": GENERATOR,
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

