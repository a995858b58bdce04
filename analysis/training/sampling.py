"""Training patches: sampled once from annotated slides into memory (tumor-centred and healthy tissue)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry.base import BaseGeometry

from analysis import defaults
from analysis.slide_io import Slide, level_shape, open_slide, read_region, tissue_mask

# --------------------------------------------------------------------------- patches


@dataclass(frozen=True)
class TrainingSlide:
    """An annotated slide to sample patches from.

    Attributes
    ----------
    path : str or Path
        Any slide large-image opens.
    tumor : shapely geometry, bool ndarray, or None
        Tumor area: polygons in level-0 pixels (as
        :func:`analysis.annotations.load_tumor_geometry` returns), or a mask
        (non-zero = tumor) at ``mask_downsample``; None or empty = tumor-free.
    mask_downsample : float or None
        Downsample of an ndarray ``tumor`` (required with one).
    """

    path: str | os.PathLike[str]
    tumor: BaseGeometry | np.ndarray | None = None
    mask_downsample: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tumor, np.ndarray):
            if self.tumor.ndim != 2:
                raise ValueError(f"{self.path}: a tumor mask must be 2-D, got shape {self.tumor.shape}")
            if self.mask_downsample is None or self.mask_downsample <= 0:
                raise ValueError(f"{self.path}: a tumor mask needs its mask_downsample")


@dataclass(frozen=True)
class PatchSet:
    """Patches in memory.

    Attributes
    ----------
    images : (N, P, P, 3) uint8
    labels : (N, P, P) uint8, 1 = tumor
    from_tumor : (N,) bool
        Sampled as a tumor patch (centred in tumor) rather than a healthy one.
    """

    images: np.ndarray
    labels: np.ndarray
    from_tumor: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, P, P, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != self.images.shape[:3]:
            raise ValueError(f"labels must be (N, P, P) like the images, got {self.labels.shape}")
        if self.from_tumor.shape != (n,):
            raise ValueError("from_tumor must hold one flag per patch")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def tumor_fraction(self) -> float:
        """Fraction of tumor pixels."""
        return float(self.labels.mean()) if self.labels.size else 0.0


@dataclass
class _SlideSampler:
    """One slide's candidate centres on a coarse sampling grid."""

    slide: Slide
    source: TrainingSlide
    scale: int  # sampling-grid pixel = scale analysis pixels
    tumor_cells: np.ndarray  # (n, 2) row, col on the sampling grid
    healthy_cells: np.ndarray


def _tumor_on_grid(source: TrainingSlide, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """Tumor by the pixel-centre rule on a grid of ``shape`` at ``downsample``."""
    tumor = source.tumor
    if tumor is None:
        return np.zeros(shape, dtype=bool)
    if isinstance(tumor, np.ndarray):
        assert source.mask_downsample is not None
        rows = np.floor((np.arange(shape[0]) + 0.5) * downsample / source.mask_downsample).astype(np.int64)
        cols = np.floor((np.arange(shape[1]) + 0.5) * downsample / source.mask_downsample).astype(np.int64)
        out = np.zeros(shape, dtype=bool)
        keep_r = rows < tumor.shape[0]
        keep_c = cols < tumor.shape[1]
        out[np.ix_(keep_r, keep_c)] = tumor[np.ix_(rows[keep_r], cols[keep_c])] != 0
        return out
    if tumor.is_empty:
        return np.zeros(shape, dtype=bool)
    from analysis.annotations import rasterize

    return rasterize(tumor, shape=shape, downsample=downsample)


def _prepare_slide(source: TrainingSlide, level_downsample: float, patch_size: int) -> _SlideSampler:
    slide = open_slide(source.path)
    height, width = level_shape(slide, level_downsample)
    # Sampling grid: a power-of-two multiple of the analysis grid, coarse
    # enough to be cheap (<= 1024 on the long side), no coarser than a patch.
    scale = 1
    while max(height, width) / scale > 1024 and scale * 2 <= max(1, patch_size // 2):
        scale *= 2
    shape = (math.ceil(height / scale), math.ceil(width / scale))
    downsample = level_downsample * scale
    tumor = _tumor_on_grid(source, shape, downsample)
    tissue = tissue_mask(slide, downsample=downsample)
    tissue_grid = np.zeros(shape, dtype=bool)
    h, w = min(shape[0], tissue.shape[0]), min(shape[1], tissue.shape[1])
    tissue_grid[:h, :w] = tissue[:h, :w]
    healthy = tissue_grid & ~tumor
    return _SlideSampler(
        slide=slide,
        source=source,
        scale=scale,
        tumor_cells=np.argwhere(tumor),
        healthy_cells=np.argwhere(healthy),
    )


def _patch_labels(source: TrainingSlide, *, left: int, top: int, size: int, level_downsample: float) -> np.ndarray:
    """(size, size) uint8 tumor labels of a patch (pixel-centre rule at the analysis level)."""
    tumor = source.tumor
    if tumor is None or (isinstance(tumor, BaseGeometry) and tumor.is_empty):
        return np.zeros((size, size), dtype=np.uint8)
    d = level_downsample
    if isinstance(tumor, np.ndarray):
        assert source.mask_downsample is not None
        centres = (np.arange(size) + 0.5) * d
        rows = np.floor((top * d + centres) / source.mask_downsample).astype(np.int64)
        cols = np.floor((left * d + centres) / source.mask_downsample).astype(np.int64)
        out = np.zeros((size, size), dtype=np.uint8)
        keep_r = (rows >= 0) & (rows < tumor.shape[0])
        keep_c = (cols >= 0) & (cols < tumor.shape[1])
        out[np.ix_(keep_r, keep_c)] = tumor[np.ix_(rows[keep_r], cols[keep_c])] != 0
        return out
    import shapely
    from shapely import affinity

    from analysis.annotations import rasterize

    x0, y0 = left * d, top * d
    # Clip first: rasterising a whole-slide geometry per patch would cost its full vertex count.
    local = shapely.clip_by_rect(tumor, x0 - d, y0 - d, x0 + (size + 1) * d, y0 + (size + 1) * d)
    if local.is_empty:
        return np.zeros((size, size), dtype=np.uint8)
    local = affinity.translate(local, xoff=-x0, yoff=-y0)
    return rasterize(local, shape=(size, size), downsample=d).astype(np.uint8)


def sample_patches(
    slides: Sequence[TrainingSlide],
    *,
    tumor_patches: int,
    healthy_per_tumor: float = defaults.HEALTHY_PER_TUMOR_PATCH,
    patch_size: int,
    level_downsample: float,
    seed: int,
) -> PatchSet:
    """Sample tumor and healthy patches from annotated slides into memory.

    Tumor patches: a slide with tumor is drawn uniformly, then a tumor pixel of
    a coarse sampling grid, then a centre uniformly inside that grid cell.
    Healthy patches (``round(tumor_patches * healthy_per_tumor)``): the same on
    tissue (:func:`analysis.slide_io.tissue_mask`) outside the tumor, over all
    slides.  Labels are the annotation rasterised at the analysis level by the
    pixel-centre rule.  When no slide has tumor, only healthy patches are
    drawn (as many as ``tumor_patches * (1 + healthy_per_tumor)``).

    Returns
    -------
    PatchSet
        Tumor patches first, then healthy ones.

    Raises
    ------
    ValueError
        If no slide has any tissue to sample from.
    """
    if not slides:
        raise ValueError("no slides to sample patches from")
    rng = np.random.default_rng([seed, 0x5A3])
    samplers = [_prepare_slide(s, level_downsample, patch_size) for s in slides]
    with_tumor = [s for s in samplers if len(s.tumor_cells)]
    with_healthy = [s for s in samplers if len(s.healthy_cells)]
    n_healthy = round(tumor_patches * healthy_per_tumor)
    n_tumor = tumor_patches
    if not with_tumor:
        n_healthy += n_tumor
        n_tumor = 0
    if n_healthy and not with_healthy:
        raise ValueError("no tissue outside tumor found on the training slides")
    size = patch_size
    total = n_tumor + n_healthy
    images = np.empty((total, size, size, 3), dtype=np.uint8)
    labels = np.empty((total, size, size), dtype=np.uint8)
    from_tumor = np.zeros(total, dtype=bool)
    plan = [(True, with_tumor)] * n_tumor + [(False, with_healthy)] * n_healthy
    for i, (is_tumor, pool) in enumerate(plan):
        sampler = pool[int(rng.integers(len(pool)))]
        cells = sampler.tumor_cells if is_tumor else sampler.healthy_cells
        row, col = cells[int(rng.integers(len(cells)))]
        cy = int(row) * sampler.scale + int(rng.integers(sampler.scale))
        cx = int(col) * sampler.scale + int(rng.integers(sampler.scale))
        top, left = cy - size // 2, cx - size // 2
        images[i] = read_region(
            sampler.slide, level_downsample=level_downsample, left=left, top=top, width=size, height=size
        )
        labels[i] = _patch_labels(sampler.source, left=left, top=top, size=size, level_downsample=level_downsample)
        from_tumor[i] = is_tumor
    return PatchSet(images=images, labels=labels, from_tumor=from_tumor)
