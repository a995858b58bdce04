"""Ground truth of a slide from its annotations: one geometry, and its mask on a heatmap grid."""

from __future__ import annotations

from typing import Any

import numpy as np
from shapely.geometry import shape
from shapely.ops import unary_union

from analysis.annotations import rasterize
from sua_portal.slides.models import Annotation, Slide


def tumor_geometry(slide: Slide) -> Any | None:
    """The union of the slide's ground-truth tumor polygons (level-0 pixels), or None if it has none.

    A slide known to be tumor-free (``has_tumor is False``) gets an empty geometry, not None.
    """
    geometries = [
        shape(a.geometry)
        for a in slide.annotations.filter(source=Annotation.Source.GROUND_TRUTH)
    ]
    if not geometries:
        return None if slide.has_tumor is None else unary_union([])
    return unary_union(geometries)


def truth_mask(slide: Slide, *, shape: tuple[int, ...], downsample: float) -> np.ndarray | None:
    """(H, W) bool tumor mask by the pixel-centre rule, or None when the slide has no ground truth."""
    geometry = tumor_geometry(slide)
    if geometry is None:
        return None
    if geometry.is_empty:
        return np.zeros(shape[:2], dtype=bool)
    return np.asarray(rasterize(geometry, shape=(int(shape[0]), int(shape[1])), downsample=downsample), dtype=bool)
