"""Tests of analysis.polygons: NPR outlines in level-0 coordinates, exact on the heatmap grid."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.measure import find_contours
from skimage.measure import label as skimage_label

from analysis import polygons
from analysis.annotations import rasterize
from analysis.polygons import MAX_EXACT_TOLERANCE, region_polygons
from analysis.sua import negative_prediction_regions


def _assert_exact(labels: np.ndarray, polygons: np.ndarray, downsample: float) -> None:
    """Every outline is valid and rasterises (pixel centre inside) to its label's mask."""
    assert polygons.shape == (int(labels.max()) if labels.size else 0,)
    for i, polygon in enumerate(polygons):
        assert polygon.geom_type in ("Polygon", "MultiPolygon")
        assert polygon.is_valid, (i + 1, shapely.is_valid_reason(polygon))
        mask = labels == i + 1
        if polygon.is_empty:
            assert not mask.any()
            continue
        np.testing.assert_array_equal(rasterize(polygon, shape=labels.shape, downsample=downsample), mask)


def test_it_outlines_an_npr_around_a_predicted_tumor_as_a_ring_not_a_box() -> None:
    s = np.full((12, 12), 0.1)
    s[2:10, 2:10] = 0.7  # uncertain band ...
    s[4:8, 4:8] = 0.99  # ... around a predicted tumor
    labels = negative_prediction_regions(s, lower=0.55, upper=0.95)
    (ring,) = region_polygons(labels, downsample=16.0, tolerance=0.0)
    assert ring.geom_type == "Polygon" and len(ring.interiors) == 1
    hole = shapely.Polygon(ring.interiors[0])
    # The tumor's centre is not in the NPR; the hole covers the 4 x 4 tumor pixels' centres.
    assert not ring.contains(shapely.Point(6 * 16, 6 * 16))
    assert hole.contains(
        shapely.MultiPoint([((c + 0.5) * 16, (r + 0.5) * 16) for r in range(4, 8) for c in range(4, 8)])
    )
    assert ring.bounds == (2 * 16, 2 * 16, 10 * 16, 10 * 16)  # through the midpoints of the outer pixels' edges
    _assert_exact(labels, np.array([ring]), 16.0)


def test_it_keeps_several_holes_and_a_hole_touching_another_diagonally() -> None:
    labels = np.ones((9, 9), np.int32)
    labels[2, 2] = 0
    labels[2, 5:7] = 0
    labels[6, 2] = labels[5, 3] = 0  # two holes touching at a corner: 4-connected background stays apart
    (polygon,) = region_polygons(labels, downsample=1.0, tolerance=0.0)
    assert polygon.geom_type == "Polygon"
    assert len(polygon.interiors) == 4
    _assert_exact(labels, np.array([polygon]), 1.0)


def test_it_joins_pixels_touching_at_a_corner_as_one_8_connected_polygon() -> None:
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0] = labels[1, 1] = labels[2, 2] = 1
    (polygon,) = region_polygons(labels, downsample=2.0, tolerance=0.0)
    assert polygon.geom_type == "Polygon" and not polygon.interiors
    assert polygon.is_valid
    _assert_exact(labels, np.array([polygon]), 2.0)


def test_it_outlines_touching_regions_without_overlap() -> None:
    labels = np.zeros((6, 8), np.int32)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:7] = 2  # shares an edge with region 1
    labels[0, 7] = 3
    polygons = region_polygons(labels, downsample=10.0, tolerance=0.0)
    _assert_exact(labels, polygons, 10.0)
    shared = polygons[0].intersection(polygons[1])
    assert shared.area == 0 and shared.length == pytest.approx(30.0)  # the shared side, 3 midpoint steps


def test_it_outlines_regions_on_the_image_edge_and_a_label_in_several_parts() -> None:
    labels = np.zeros((5, 6), np.int32)
    labels[0, :] = 1  # the whole top row
    labels[2:5, 0] = 2  # left edge ...
    labels[4, 3:6] = 2  # ... and bottom edge: two parts of label 2
    polygons = region_polygons(labels, downsample=4.0, tolerance=0.0)
    assert polygons[0].bounds == (0.0, 0.0, 6 * 4, 1 * 4)
    assert polygons[1].geom_type == "MultiPolygon" and len(polygons[1].geoms) == 2
    _assert_exact(labels, polygons, 4.0)


def test_it_gives_empty_polygons_for_missing_labels_and_none_for_no_region() -> None:
    labels = np.zeros((3, 3), np.int32)
    assert region_polygons(labels, downsample=1.0).shape == (0,)
    labels[1, 1] = 3
    polygons = region_polygons(labels, downsample=1.0)
    assert polygons[0].is_empty and polygons[1].is_empty and polygons[2].area == 0.5  # a diamond


def test_it_simplifies_within_the_tolerance_that_keeps_the_grid_exact() -> None:
    yy, xx = np.mgrid[:80, :80]
    disc = ((yy - 40.0) ** 2 + (xx - 37.5) ** 2 < 30.0**2).astype(np.int32)
    exact = region_polygons(disc, downsample=16.0, tolerance=0.0)
    simple = region_polygons(disc, downsample=16.0)
    assert shapely.get_num_coordinates(simple[0]) < 0.8 * shapely.get_num_coordinates(exact[0])
    _assert_exact(disc, simple, 16.0)
    assert shapely.hausdorff_distance(exact[0], simple[0]) <= MAX_EXACT_TOLERANCE * 16.0


def test_it_rejects_bad_input_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="integer array"):
        region_polygons(np.zeros((2, 2)), downsample=1.0)
    with pytest.raises(ValueError, match="2-D"):
        region_polygons(np.zeros(4, np.int32), downsample=1.0)
    with pytest.raises(ValueError, match=r"labels must lie in 0"):
        region_polygons(-np.ones((2, 2), np.int32), downsample=1.0)
    with pytest.raises(ValueError, match=r"downsample \(0.0\) must be a positive number"):
        region_polygons(np.ones((2, 2), np.int32), downsample=0.0)
    with pytest.raises(ValueError, match="can move the outline across a pixel centre"):
        region_polygons(np.ones((2, 2), np.int32), downsample=1.0, tolerance=0.5)


def _find_contours_polygon(mask: np.ndarray, downsample: float) -> shapely.Polygon:
    """One 8-connected region the per-region way: skimage's contours, shell and holes."""
    shells: list[shapely.LinearRing] = []
    holes: list[shapely.LinearRing] = []
    for contour in find_contours(np.pad(mask, 1).astype(float), 0.5, fully_connected="high"):
        ring = shapely.LinearRing((contour[:, ::-1] - 0.5) * downsample)
        (shells if ring.is_ccw else holes).append(ring)
    assert len(shells) == 1
    return shapely.Polygon(shells[0], holes)


@settings(max_examples=120, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 14), st.integers(1, 14))), many=st.booleans())
def test_it_draws_what_find_contours_draws_and_rasterises_back_exactly(mask: np.ndarray, many: bool) -> None:
    labels = skimage_label(mask, connectivity=2).astype(np.int32)
    if many:  # arbitrary labels that touch each other and come in several parts
        labels = (np.arange(mask.size).reshape(mask.shape) % 3 + 1) * mask
    for tolerance in (0.0, 0.35):
        polygons = region_polygons(labels, downsample=2.5, tolerance=tolerance)
        _assert_exact(labels, polygons, 2.5)
    if not many:
        exact = region_polygons(labels, downsample=2.5, tolerance=0.0)
        for i, polygon in enumerate(exact):
            reference = _find_contours_polygon(labels == i + 1, 2.5)
            assert polygon.area == pytest.approx(reference.area, rel=1e-12)
            assert polygon.symmetric_difference(reference).area < 1e-9


@settings(max_examples=80, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 20), st.integers(1, 20))), many=st.booleans())
def test_boundaries_found_at_the_region_pixels_or_over_the_whole_image_give_the_same_outlines(
    mask: np.ndarray, many: bool
) -> None:
    # Sparse labels (NPRs on most slides) are scanned at their own pixels, others by passes over the image.
    labels = skimage_label(mask, connectivity=2).astype(np.int32)
    if many:
        labels = (np.arange(mask.size).reshape(mask.shape) % 3 + 1) * mask
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(polygons, "_SPARSE_BELOW", 1)  # every image with a background pixel counts as sparse
        at_pixels = region_polygons(labels, downsample=2.5)
        patch.setattr(polygons, "_SPARSE_BELOW", 2**62)  # none does
        over_image = region_polygons(labels, downsample=2.5)
    _assert_exact(labels, at_pixels, 2.5)
    assert list(shapely.to_wkb(at_pixels)) == list(shapely.to_wkb(over_image))
