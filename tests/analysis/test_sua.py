"""Tests of analysis.sua: NPRs, aggregation, flagging and refinement (SPEC §3-6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi
from skimage.measure import label as sk_label

from analysis import defaults
from analysis.sua import (
    SlideRegions,
    aggregate_uncertainties,
    aggregate_uncertainty,
    baseline_refine,
    candidate_pixels,
    false_negative_regions,
    find_regions,
    flag,
    negative_prediction_regions,
    parse_aggregate,
    region_areas,
    region_boxes,
    region_truth_fraction,
    sua_refine,
)

LOWER, UPPER = defaults.PAPER_RANGES[0]


def _reference(labels: np.ndarray, u: np.ndarray, how: str) -> np.ndarray:
    """Per-region definition: np.mean / np.percentile on float64 values."""
    out = []
    for i in range(1, int(labels.max(initial=0)) + 1):
        values = u[labels == i].astype(np.float64)
        if values.size == 0:
            out.append(np.nan)
        elif how == "mean":
            out.append(np.mean(values))
        else:
            out.append(np.percentile(values, float(how[1:])))
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------- candidates and NPRs


def test_it_takes_candidate_pixels_strictly_between_lower_and_upper() -> None:
    s = np.array([[0.55, 0.5500001, 0.7, 0.9499999, 0.95, 1.0, 0.0]])
    got = candidate_pixels(s, lower=0.55, upper=0.95)
    np.testing.assert_array_equal(got, [[False, True, True, True, False, False, False]])
    assert got.dtype == np.bool_


def test_it_joins_diagonal_pixels_into_one_region_with_8_connectivity() -> None:
    s = np.array(
        [
            [0.7, 0.0, 0.0, 0.0],
            [0.0, 0.7, 0.0, 0.7],
            [0.0, 0.0, 0.99, 0.0],
        ]
    )
    labels = negative_prediction_regions(s, lower=0.55, upper=0.95)
    np.testing.assert_array_equal(labels, [[1, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0]])
    assert labels.dtype == np.int32
    # With 4-connectivity the diagonal pair would be two regions.
    assert sk_label(labels > 0, connectivity=1).max() == 3


def test_it_labels_regions_in_raster_order_of_their_first_pixel() -> None:
    s = np.zeros((3, 5))
    s[2, 0] = 0.6  # first pixel of region 2 (row 2)
    s[0, 4] = 0.6  # region 1 starts in row 0
    s[1, 4] = 0.6
    s[2, 1] = 0.6
    labels = negative_prediction_regions(s, lower=0.55, upper=0.95)
    assert labels[0, 4] == labels[1, 4] == 1
    assert labels[2, 0] == labels[2, 1] == 2


@settings(max_examples=60, deadline=None)
@given(
    s=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
        elements=st.sampled_from([0.0, 0.3, 0.55, 0.6, 0.8, 0.95, 0.97, 1.0]).map(np.float32),
    ),
    bounds=st.sampled_from((*defaults.PAPER_RANGES, (0.0, 1.0), (0.2, 0.6))),
)
def test_it_labels_exactly_like_skimage_label_with_connectivity_2(s: np.ndarray, bounds: tuple[float, float]) -> None:
    lower, upper = bounds
    got = negative_prediction_regions(s, lower=lower, upper=upper)
    expected = sk_label((s > lower) & (s < upper), connectivity=2)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int32


@pytest.mark.parametrize(
    ("lower", "upper", "words"),
    [
        (0.9, 0.5, r"range 0\.9:0\.5: lower must be below upper"),
        (0.5, 0.5, r"range 0\.5:0\.5: lower must be below upper"),
        (-0.1, 0.5, r"range -0\.1:0\.5: bounds must lie in \[0, 1\]"),
        (0.5, 1.5, r"range 0\.5:1\.5: bounds must lie in \[0, 1\]"),
        (float("nan"), 0.5, "range nan:0.5: bounds must be numbers"),
    ],
)
def test_it_rejects_a_bad_range_with_a_sentence(lower: float, upper: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        candidate_pixels(np.zeros((2, 2)), lower=lower, upper=upper)


@pytest.mark.parametrize(
    ("s", "words"),
    [
        (np.array([[0.5, np.nan]]), "segmentation contains NaN"),
        (np.array([[0.5, 1.5]]), r"segmentation has values outside \[0, 1\]"),
        (np.array([[-0.5, 0.5]]), r"segmentation has values outside \[0, 1\]"),
        (np.array([0.5, 0.6]), "2-D heatmap"),
        (np.array([["x"]]), "real numbers"),
    ],
)
def test_it_rejects_a_bad_segmentation_with_a_sentence(s: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        negative_prediction_regions(s, lower=LOWER, upper=UPPER)


# ---------------------------------------------------------------- aggregation


def test_it_aggregates_hand_computed_means_and_percentiles() -> None:
    labels = np.array([[1, 1, 0, 2], [1, 0, 0, 2]])
    u = np.array([[0.2, 0.4, 0.9, 0.6], [0.9, 0.0, 0.0, 0.2]])
    np.testing.assert_allclose(aggregate_uncertainty(labels, u), [0.5, 0.4])
    # p90 of (0.2, 0.4, 0.9): index 1.8 -> 0.4 + 0.8 * 0.5 = 0.8
    np.testing.assert_allclose(aggregate_uncertainty(labels, u, how="p90"), [0.8, 0.56])
    np.testing.assert_allclose(aggregate_uncertainty(labels, u, how="p0"), [0.2, 0.2])
    np.testing.assert_allclose(aggregate_uncertainty(labels, u, how="p100"), [0.9, 0.6])
    np.testing.assert_allclose(aggregate_uncertainty(labels, u, how="p50"), [0.4, 0.4])
    assert aggregate_uncertainty(labels, u).dtype == np.float64


def test_it_interpolates_percentiles_exactly_like_numpy() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(30, 30))
    for dtype in (np.float32, np.float64):
        u = rng.random((30, 30)).astype(dtype)
        for how in ("p90", "p12.5", "p33.3", "p99.9", "p50"):
            np.testing.assert_array_equal(
                aggregate_uncertainty(labels, u, how=how), _reference(labels, u, how), err_msg=how
            )


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    q=st.floats(0, 100),
)
def test_it_aggregates_like_per_region_numpy_for_mean_p90_and_random_percentiles(
    data: st.DataObject, dtype: type, q: float
) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16))
    labels = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(0, 7)))
    u = data.draw(
        hnp.arrays(
            dtype,
            shape,
            elements=st.floats(-10, 10, allow_nan=False, width=32 if dtype is np.float32 else 64),
        )
    )
    how_q = f"p{q!r}" if "e" not in repr(q) else "p0"
    for how in ("mean", "p90", how_q):
        got = aggregate_uncertainty(labels, u, how=how)
        expected = _reference(labels, u, how)
        if how == "mean":
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(got, expected)


def test_it_sorts_negative_values_and_signed_zeros_correctly_in_float32() -> None:
    labels = np.array([[1, 1, 1, 1, 2, 2, 2]])
    u = np.array([[0.5, -0.0, -3.0, 0.0, 2.0, -1e-30, 1e-30]], dtype=np.float32)
    for how in ("p0", "p25", "p50", "p90", "p100"):
        np.testing.assert_array_equal(aggregate_uncertainty(labels, u, how=how), _reference(labels, u, how))


def test_it_handles_more_than_65536_regions_in_float64() -> None:
    # Two pixels per region, shuffled, so the radix sort needs two 16-bit digits.
    n = 70_000
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(1, n + 1, dtype=np.int32), 2)
    values = rng.random(2 * n)
    perm = rng.permutation(2 * n)
    got = aggregate_uncertainty(labels[perm].reshape(1, -1), values[perm].reshape(1, -1), how="p90")
    expected = np.percentile(values.reshape(n, 2), 90, axis=1)
    np.testing.assert_array_equal(got, expected)


def test_it_computes_several_aggregates_in_one_go() -> None:
    rng = np.random.default_rng(2)
    labels = sk_label(rng.random((40, 40)) > 0.5, connectivity=2)
    u = rng.random((40, 40)).astype(np.float32)
    mean, p90, p10 = aggregate_uncertainties(labels, u, hows=("mean", "p90", "p10"))
    np.testing.assert_array_equal(mean, aggregate_uncertainty(labels, u, how="mean"))
    np.testing.assert_array_equal(p90, aggregate_uncertainty(labels, u, how="p90"))
    np.testing.assert_array_equal(p10, aggregate_uncertainty(labels, u, how="p10"))


def test_it_gives_nan_for_a_label_without_pixels() -> None:
    labels = np.array([[1, 3]])
    u = np.array([[0.2, 0.4]])
    np.testing.assert_array_equal(aggregate_uncertainty(labels, u), [0.2, np.nan, 0.4])
    np.testing.assert_array_equal(aggregate_uncertainty(labels, u, how="p90"), [0.2, np.nan, 0.4])
    np.testing.assert_array_equal(region_areas(labels), [1, 0, 1])
    np.testing.assert_array_equal(region_boxes(labels)[1], [0, 0, 0, 0])


@pytest.mark.parametrize("how", ["p900", "p-1", "median", "p", "P90", "p90%", "p 90", "mean "])
def test_it_rejects_an_unknown_aggregate_with_a_sentence(how: str) -> None:
    with pytest.raises(ValueError, match=r"unknown aggregate .*; use 'mean' or 'pNN' with 0 <= NN <= 100"):
        aggregate_uncertainty(np.ones((2, 2), int), np.zeros((2, 2)), how=how)


def test_it_parses_aggregates() -> None:
    assert parse_aggregate("mean") is None
    assert parse_aggregate("p90") == 90.0
    assert parse_aggregate("p97.5") == 97.5
    assert parse_aggregate("p0") == 0.0
    assert parse_aggregate("p100") == 100.0


def test_it_rejects_uncertainty_of_another_shape_or_with_nan() -> None:
    with pytest.raises(ValueError, match=r"uncertainty shape \(2, 3\) differs from labels shape \(2, 2\)"):
        aggregate_uncertainty(np.ones((2, 2), int), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="uncertainty contains NaN"):
        aggregate_uncertainty(np.ones((2, 2), int), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="labels must be an integer array"):
        aggregate_uncertainty(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="labels must be >= 0"):
        aggregate_uncertainty(-np.ones((2, 2), int), np.zeros((2, 2)))


# ---------------------------------------------------------------- empty NPR set


def test_it_returns_empty_arrays_when_there_is_no_npr() -> None:
    s = np.array([[0.1, 0.99], [0.2, 0.3]])
    u = np.full((2, 2), 0.5)
    labels = negative_prediction_regions(s, lower=LOWER, upper=UPPER)
    assert labels.max() == 0
    for how in ("mean", "p90"):
        scores = aggregate_uncertainty(labels, u, how=how)
        assert scores.shape == (0,) and scores.dtype == np.float64
    assert region_areas(labels).shape == (0,)
    assert region_boxes(labels).shape == (0, 4)
    assert region_truth_fraction(labels, np.ones((2, 2), bool)).shape == (0,)
    assert false_negative_regions(np.zeros(0)).shape == (0,)
    assert flag(np.zeros(0), 0.1).shape == (0,)
    refined = sua_refine(s, labels, np.zeros(0, bool), upper=UPPER)
    np.testing.assert_array_equal(refined, s >= UPPER)
    regions = find_regions(s, u, lower=LOWER, upper=UPPER, truth=np.zeros((2, 2), bool))
    assert regions.n_regions == 0
    assert regions.scores.shape == (0,)
    assert regions.areas.shape == (0,)
    assert regions.boxes.shape == (0, 4)
    assert regions.truth_fraction is not None and regions.truth_fraction.shape == (0,)
    assert regions.is_false_negative is not None and regions.is_false_negative.shape == (0,)


def test_it_handles_an_empty_image() -> None:
    labels = negative_prediction_regions(np.zeros((0, 5)), lower=LOWER, upper=UPPER)
    assert labels.shape == (0, 5)
    assert aggregate_uncertainty(labels, np.zeros((0, 5))).shape == (0,)


# ---------------------------------------------------------------- geometry and truth


def test_it_measures_hand_computed_areas_and_boxes() -> None:
    labels = np.array(
        [
            [1, 1, 0, 0],
            [0, 1, 0, 2],
            [0, 0, 0, 2],
        ]
    )
    np.testing.assert_array_equal(region_areas(labels), [3, 2])
    assert region_areas(labels).dtype == np.int64
    boxes = region_boxes(labels)
    np.testing.assert_array_equal(boxes, [[0, 0, 2, 2], [1, 3, 3, 4]])
    assert boxes.dtype == np.int64
    for (r0, c0, r1, c1), found in zip(boxes, ndi.find_objects(labels), strict=True):
        assert found == (slice(r0, r1), slice(c0, c1))


def test_it_measures_the_fraction_of_each_npr_inside_tumor() -> None:
    labels = np.array([[1, 1, 1, 1, 0, 2, 2]])
    truth = np.array([[1, 1, 1, 0, 1, 0, 0]], dtype=bool)
    fraction = region_truth_fraction(labels, truth)
    np.testing.assert_allclose(fraction, [0.75, 0.0])
    with pytest.raises(ValueError, match=r"truth shape \(1, 6\) differs from labels shape \(1, 7\)"):
        region_truth_fraction(labels, truth[:, :6])


def test_it_calls_an_npr_false_negative_from_90_percent_tumor_inclusive() -> None:
    assert defaults.FN_FRACTION == 0.9
    fraction = np.array([1.0, 0.9, 0.8999, 0.0])
    np.testing.assert_array_equal(false_negative_regions(fraction), [True, True, False, False])
    np.testing.assert_array_equal(false_negative_regions(fraction, fn_fraction=0.5), [True, True, True, False])
    with pytest.raises(ValueError, match=r"fn_fraction \(0.0\) must be in \(0, 1\]"):
        false_negative_regions(fraction, fn_fraction=0.0)


# ---------------------------------------------------------------- flag and refine


def test_it_flags_scores_at_or_above_the_threshold() -> None:
    scores = np.array([0.1, 0.3, 0.30000001, 0.5, np.inf])
    np.testing.assert_array_equal(flag(scores, 0.3), [False, True, True, True, True])


def test_it_flags_nothing_when_the_threshold_is_none_or_infinite() -> None:
    scores = np.array([0.1, 1e300, np.inf])
    assert not flag(scores, None).any()
    assert not flag(scores, float("inf")).any()
    with pytest.raises(ValueError, match="threshold is NaN"):
        flag(scores, float("nan"))


def test_it_refines_with_every_pixel_of_flagged_nprs() -> None:
    s = np.array(
        [
            [0.99, 0.70, 0.00, 0.60],
            [0.96, 0.80, 0.00, 0.60],
            [0.00, 0.00, 0.00, 0.10],
        ]
    )
    labels = negative_prediction_regions(s, lower=LOWER, upper=UPPER)
    np.testing.assert_array_equal(labels, [[0, 1, 0, 2], [0, 1, 0, 2], [0, 0, 0, 0]])
    refined = sua_refine(s, labels, np.array([False, True]), upper=UPPER)
    np.testing.assert_array_equal(
        refined,
        [[True, False, False, True], [True, False, False, True], [False, False, False, False]],
    )
    with pytest.raises(ValueError, match="flagged_regions has shape"):
        sua_refine(s, labels, np.array([True]), upper=UPPER)
    with pytest.raises(ValueError, match="must be boolean"):
        sua_refine(s, labels, np.array([0, 1]), upper=UPPER)


def test_it_refines_the_baseline_pixel_by_pixel() -> None:
    s = np.array([[0.99, 0.70, 0.70, 0.10, 0.55, 0.96]])
    u = np.array([[0.05, 0.60, 0.20, 0.90, 0.90, 0.00]])
    refined = baseline_refine(s, u, lower=LOWER, upper=UPPER, threshold=0.5)
    # positives, the uncertain candidate; not the certain candidate, not
    # uncertain non-candidates (s = 0.1, and s = 0.55 which is not > lower).
    np.testing.assert_array_equal(refined, [[True, True, False, False, False, True]])
    none = baseline_refine(s, u, lower=LOWER, upper=UPPER, threshold=None)
    np.testing.assert_array_equal(none, s >= UPPER)
    with pytest.raises(ValueError, match=r"uncertainty shape \(1, 5\) differs from segmentation shape \(1, 6\)"):
        baseline_refine(s, u[:, :5], lower=LOWER, upper=UPPER, threshold=0.5)


# ---------------------------------------------------------------- find_regions


def test_it_finds_the_regions_of_a_slide_in_one_go() -> None:
    s = np.array(
        [
            [0.70, 0.00, 0.00, 0.60, 0.60],
            [0.00, 0.80, 0.00, 0.00, 0.00],
            [0.00, 0.00, 0.99, 0.00, 0.00],
        ]
    )
    u = np.array(
        [
            [0.6, 0.0, 0.0, 0.1, 0.3],
            [0.0, 0.4, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    truth = np.zeros((3, 5), bool)
    truth[:2, :2] = True
    regions = find_regions(s, u, lower=LOWER, upper=UPPER, truth=truth)
    assert isinstance(regions, SlideRegions)
    np.testing.assert_array_equal(regions.labels, [[1, 0, 0, 2, 2], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_allclose(regions.scores, [0.5, 0.2])
    np.testing.assert_array_equal(regions.areas, [2, 2])
    np.testing.assert_array_equal(regions.boxes, [[0, 0, 2, 2], [0, 3, 1, 5]])
    assert regions.truth_fraction is not None and regions.is_false_negative is not None
    np.testing.assert_allclose(regions.truth_fraction, [1.0, 0.0])
    np.testing.assert_array_equal(regions.is_false_negative, [True, False])
    p90 = find_regions(s, u, lower=LOWER, upper=UPPER, how="p90")
    np.testing.assert_allclose(p90.scores, [0.58, 0.28])
    assert p90.truth_fraction is None and p90.is_false_negative is None


def test_it_validates_everything_before_finding_regions() -> None:
    s = np.full((10, 11), 0.7)
    with pytest.raises(ValueError, match=r"uncertainty shape \(10, 12\) differs from segmentation shape \(10, 11\)"):
        find_regions(s, np.zeros((10, 12)), lower=LOWER, upper=UPPER)
    with pytest.raises(ValueError, match="uncertainty contains NaN"):
        find_regions(s, np.full((10, 11), np.nan), lower=LOWER, upper=UPPER)
    with pytest.raises(ValueError, match="uncertainty contains infinite values"):
        find_regions(s, np.full((10, 11), np.inf), lower=LOWER, upper=UPPER)
    with pytest.raises(ValueError, match=r"truth shape \(10, 10\) differs from segmentation shape \(10, 11\)"):
        find_regions(s, np.zeros((10, 11)), lower=LOWER, upper=UPPER, truth=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="unknown aggregate 'p900'"):
        find_regions(s, np.zeros((10, 11)), lower=LOWER, upper=UPPER, how="p900")
    with pytest.raises(ValueError, match=r"segmentation has values outside \[0, 1\]"):
        find_regions(s * 2, np.zeros((10, 11)), lower=LOWER, upper=UPPER)
    with pytest.raises(ValueError, match=r"range 0\.9:0\.5: lower must be below upper"):
        find_regions(s, np.zeros((10, 11)), lower=0.9, upper=0.5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["mean", "p90", "p25"]))
def test_it_agrees_with_the_step_by_step_functions(seed: int, how: str) -> None:
    rng = np.random.default_rng(seed)
    s = ndi.gaussian_filter(rng.random((30, 40)), 1.5)
    s = (s - s.min()) / (np.ptp(s) + 1e-12)
    u = rng.random((30, 40)).astype(np.float32)
    truth = rng.random((30, 40)) < 0.5
    regions = find_regions(s, u, lower=0.3, upper=0.8, how=how, truth=truth, fn_fraction=0.6)
    labels = negative_prediction_regions(s, lower=0.3, upper=0.8)
    np.testing.assert_array_equal(regions.labels, labels)
    np.testing.assert_array_equal(regions.scores, aggregate_uncertainty(labels, u, how=how))
    np.testing.assert_array_equal(regions.areas, region_areas(labels))
    np.testing.assert_array_equal(regions.boxes, region_boxes(labels))
    fraction = region_truth_fraction(labels, truth)
    np.testing.assert_array_equal(regions.truth_fraction, fraction)
    np.testing.assert_array_equal(regions.is_false_negative, false_negative_regions(fraction, fn_fraction=0.6))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int32, np.int64])
def test_it_accepts_labels_of_any_integer_dtype(dtype: type) -> None:
    labels: np.ndarray = np.array([[1, 1, 0, 2]], dtype=dtype)
    u = np.array([[0.2, 0.4, 0.9, 0.6]], dtype=np.float32)
    np.testing.assert_array_equal(aggregate_uncertainty(labels, u, how="p90"), _reference(labels, u, "p90"))
    np.testing.assert_array_equal(region_areas(labels), [2, 1])
    np.testing.assert_array_equal(region_boxes(labels), [[0, 0, 1, 2], [0, 3, 1, 4]])
    np.testing.assert_array_equal(region_truth_fraction(labels, u > 0.3), [0.5, 1.0])


def test_it_flags_the_calibrated_score_itself_even_for_float32_scores() -> None:
    from analysis.metrics import calibrate_threshold

    scores = np.array([0.1, 0.30000001, 0.7], dtype=np.float32)
    threshold = calibrate_threshold(scores, [False, True, True])
    assert threshold is not None
    np.testing.assert_array_equal(flag(scores, threshold), [False, True, True])
