"""Tests of analysis.metrics: F-beta, calibration, Dice, FNCR, FROC, ROC-AUC, bootstrap (SPEC §6)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import defaults
from analysis.metrics import (
    AggregateChoice,
    SlideFROC,
    Summary,
    bootstrap_count,
    bootstrap_f_beta,
    bootstrap_fn_conversion_rate,
    bootstrap_froc,
    bootstrap_indices,
    bootstrap_mean,
    bootstrap_roc_auc,
    calibrate_threshold,
    choose_aggregate,
    confusion_counts,
    detections,
    dice,
    dice_from_counts,
    f_beta,
    f_beta_array,
    fn_conversion_rate,
    froc_curve,
    froc_score,
    isolated_tumor_cells,
    lesion_labels,
    resample_counts,
    roc_auc,
    slide_froc,
    summarise,
)

# ---------------------------------------------------------------- F-beta


def _f_by_precision_recall(tp: float, fp: float, fn: float, beta: float = 0.5) -> float:
    """SPEC §6 written literally."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    if p + r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (beta**2 * p + r)


def test_it_computes_hand_checked_f_half() -> None:
    assert defaults.BETA == 0.5
    # P = 0.75, R = 0.6: 1.25 * 0.45 / (0.1875 + 0.6)
    assert f_beta(3, 1, 2) == pytest.approx(0.5625 / 0.7875, rel=1e-15)
    assert f_beta(3, 1, 2, beta=1.0) == pytest.approx(2 * 0.75 * 0.6 / 1.35, rel=1e-15)
    assert f_beta(5, 0, 0) == 1.0


def test_it_gives_f_zero_when_precision_or_recall_is_undefined() -> None:
    assert f_beta(0, 0, 0) == 0.0
    assert f_beta(0, 4, 0) == 0.0
    assert f_beta(0, 0, 4) == 0.0
    assert f_beta(0, 3, 3) == 0.0


@settings(max_examples=100, deadline=None)
@given(
    tp=st.integers(0, 1000),
    fp=st.integers(0, 1000),
    fn=st.integers(0, 1000),
    beta=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_it_matches_the_precision_recall_formula(tp: int, fp: int, fn: int, beta: float) -> None:
    assert f_beta(tp, fp, fn, beta=beta) == pytest.approx(
        _f_by_precision_recall(tp, fp, fn, beta), rel=1e-12, abs=1e-15
    )


def test_it_computes_f_beta_over_arrays() -> None:
    tp, fp, fn = np.array([3, 0, 5]), np.array([1, 0, 0]), np.array([2, 0, 0])
    got = f_beta_array(tp, fp, fn)
    np.testing.assert_allclose(got, [f_beta(3, 1, 2), 0.0, 1.0], rtol=1e-15)


def test_it_rejects_negative_or_nan_counts() -> None:
    with pytest.raises(ValueError, match="fp must be >= 0"):
        f_beta(1, -1, 0)
    with pytest.raises(ValueError, match="tp contains NaN"):
        f_beta_array([np.nan], [0], [0])
    with pytest.raises(ValueError, match="beta"):
        f_beta(1, 1, 1, beta=0)
    with pytest.raises(ValueError, match="single number"):
        f_beta(np.array([1, 2]), 0, 0)  # type: ignore[arg-type]


def test_it_counts_tp_fp_fn() -> None:
    assert confusion_counts([True, True, False, False], [True, False, True, False]) == (1, 1, 1)


# ---------------------------------------------------------------- calibration


def _brute_force_threshold(scores: np.ndarray, positive: np.ndarray) -> float | None:
    best_f, best_t = 0.0, None  # "none" (+inf) has F = 0 and is the highest
    for t in sorted(set(scores.tolist()), reverse=True):
        flagged = scores >= t
        f = f_beta(*confusion_counts(flagged, positive))
        if f > best_f:
            best_f, best_t = f, t
    return best_t


def test_it_calibrates_to_the_best_f_half_on_a_hand_computed_case() -> None:
    scores = [0.1, 0.4, 0.35, 0.8]
    positive = [False, True, False, True]
    # t = 0.4 flags both positives and nothing else: F = 1.
    assert calibrate_threshold(scores, positive) == 0.4


def test_it_breaks_ties_toward_the_higher_threshold() -> None:
    # t = 0.9: tp 1, fp 0, fn 3 -> 1.25 / 2 = 0.625
    # t = 0.7: tp 2, fp 1, fn 2 -> 2.5 / 4 = 0.625 (tie)
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.5, 0.5, 0.05, 0.05])
    positive = np.array([True, False, True, False, False, False, True, True])
    assert f_beta(1, 0, 3) == f_beta(2, 1, 2)
    assert calibrate_threshold(scores, positive) == 0.9
    assert calibrate_threshold(scores[::-1], positive[::-1]) == 0.9


def test_it_returns_none_without_positives_or_scores() -> None:
    assert calibrate_threshold([0.2, 0.9], [False, False]) is None
    assert calibrate_threshold(np.zeros(0), np.zeros(0, bool)) is None


def test_it_rejects_bad_calibration_inputs() -> None:
    with pytest.raises(ValueError, match="scores contains NaN"):
        calibrate_threshold([np.nan], [True])
    with pytest.raises(ValueError, match="is_positive has 1 entries but scores has 2"):
        calibrate_threshold([0.1, 0.2], [True])


@settings(max_examples=120, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]), st.booleans()),
        max_size=25,
    )
)
def test_it_calibrates_exactly_like_a_brute_force_search(data: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in data], dtype=np.float64)
    positive = np.array([p for _, p in data], dtype=bool)
    assert calibrate_threshold(scores, positive) == _brute_force_threshold(scores, positive)


# ---------------------------------------------------------------- Dice and FNCR


def test_it_computes_dice() -> None:
    p = np.array([[True, True, False, False]])
    t = np.array([[True, False, True, False]])
    assert dice(p, t) == 0.5
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert dice(np.ones((2, 2), bool), np.zeros((2, 2), bool)) == 0.0
    np.testing.assert_allclose(dice_from_counts([1, 0, 0], [1, 0, 2], [1, 0, 0]), [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"prediction shape \(2,\) differs from truth shape \(3,\)"):
        dice(np.zeros(2, bool), np.zeros(3, bool))


def test_it_pools_the_fn_conversion_rate_over_slides() -> None:
    assert fn_conversion_rate([9, 0, 1], [10, 2, 8]) == 0.5
    assert fn_conversion_rate(3, 4) == 0.75
    assert fn_conversion_rate([0, 0], [0, 0]) is None
    assert fn_conversion_rate(0, 0) is None
    with pytest.raises(ValueError, match="cannot exceed"):
        fn_conversion_rate([5], [4])


# ---------------------------------------------------------------- FROC


def test_it_dilates_fills_and_labels_lesions_like_the_official_script() -> None:
    truth = np.zeros((9, 12), bool)
    truth[2:7, 2:7] = True
    truth[4, 4] = False  # a hole, filled
    truth[4, 10] = True  # 3 px from the square: separate at 1.5 px
    labels = lesion_labels(truth, mpp=1.0, downsample=25.0)  # 75 / (1 * 25 * 2) = 1.5 px
    assert labels.dtype == np.int32
    assert labels.max() == 2
    assert labels[4, 4] == 1
    # distance < 1.5: the 4-neighbours (1) and diagonals (1.41) join, 2 px does not.
    assert labels[1, 1] == 1 and labels[0, 4] == 0 and labels[1, 4] == 1
    assert labels[4, 10] == 2 and labels[3, 9] == 2 and labels[4, 8] == 0
    wide = lesion_labels(truth, mpp=1.0, downsample=12.5)  # 3 px: they merge
    assert wide.max() == 1
    assert lesion_labels(np.zeros((4, 4), bool), mpp=1.0, downsample=1.0).max() == 0


def test_it_calls_regions_with_a_short_major_axis_isolated_tumor_cells() -> None:
    labels = np.zeros((30, 30), np.int32)
    labels[1:3, 1:3] = 1  # 2 x 2: major axis 4 * sqrt(1/4 + ...) ~ 2.3
    labels[5:29, 5:8] = 2  # long
    assert isolated_tumor_cells(labels, mpp=1.0, downsample=55.0) == {1}  # 5 px
    assert isolated_tumor_cells(labels, mpp=1.0, downsample=1.0) == {1, 2}  # 275 px
    assert isolated_tumor_cells(np.zeros((3, 3), np.int32), mpp=1.0, downsample=1.0) == set()


def test_it_places_one_detection_at_each_components_first_maximum() -> None:
    s = np.array(
        [
            [0.5, 0.0, 0.0, 0.0],
            [0.0, 0.8, 0.0, 0.0],  # diagonal: same component as (0, 0)
            [0.0, 0.0, 0.0, 0.7],
            [0.0, 0.0, 0.6, 0.7],  # tie at 0.7: first in row-major order is (2, 3)
        ]
    )
    found = detections(s)
    np.testing.assert_array_equal(found, [[0.8, 1, 1], [0.7, 2, 3]])
    assert found.dtype == np.float64
    assert detections(np.zeros((3, 3))).shape == (0, 3)
    np.testing.assert_array_equal(detections(s, cutoff=0.75), [[0.8, 1, 1]])


def _tumor_slide() -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 40 slide (1 px = 25 um): one big lesion and one ITC.

    Dilation 75 / (1 * 25 * 2) = 1.5 px; ITC below 275 / 25 = 11 px.
    """
    truth = np.zeros((40, 40), bool)
    truth[5:20, 5:20] = True  # 375 um wide: countable
    truth[35, 35] = True  # a single cell: ITC
    return truth, np.zeros((40, 40))


def test_it_ignores_detections_on_isolated_tumor_cells() -> None:
    truth, s = _tumor_slide()
    s[35, 35] = 0.9
    result = slide_froc(s, truth, mpp=1.0, downsample=25.0)
    assert result.fp_probabilities.size == 0
    np.testing.assert_array_equal(result.lesion_probabilities, [0.0])
    assert result.n_itc == 1 and result.n_lesions == 1


def test_it_counts_several_hits_on_one_lesion_once_with_the_highest_probability() -> None:
    truth, s = _tumor_slide()
    s[6, 6] = 0.7
    s[15, 15] = 0.9
    s[10, 18] = 0.6
    s[30, 5] = 0.8  # far from every lesion: a false positive
    result = slide_froc(s, truth, mpp=1.0, downsample=25.0)
    np.testing.assert_array_equal(result.lesion_probabilities, [0.9])
    np.testing.assert_array_equal(result.fp_probabilities, [0.8])


def test_it_counts_every_detection_on_a_tumor_free_slide_as_false_positive() -> None:
    s = np.zeros((20, 20))
    s[2, 2], s[10, 10], s[18, 3] = 0.6, 0.95, 0.5
    result = slide_froc(s, np.zeros((20, 20), bool), mpp=1.0, downsample=1.0)
    np.testing.assert_array_equal(np.sort(result.fp_probabilities), [0.5, 0.6, 0.95])
    assert result.n_lesions == 0 and result.n_itc == 0


def test_it_accepts_detections_given_by_a_run() -> None:
    truth, s = _tumor_slide()
    points = np.array([[0.9, 10, 10], [0.4, 0, 39]])
    result = slide_froc(s, truth, mpp=1.0, downsample=25.0, points=points)
    np.testing.assert_array_equal(result.lesion_probabilities, [0.9])
    np.testing.assert_array_equal(result.fp_probabilities, [0.4])
    with pytest.raises(ValueError, match="outside the heatmap"):
        slide_froc(s, truth, mpp=1.0, downsample=25.0, points=[[0.9, 40, 0]])
    with pytest.raises(ValueError, match=r"truth shape \(3, 3\) differs from segmentation shape \(40, 40\)"):
        slide_froc(s, np.zeros((3, 3), bool), mpp=1.0, downsample=25.0)
    with pytest.raises(ValueError, match=r"mpp \(0.0\) must be a positive number"):
        slide_froc(s, truth, mpp=0.0, downsample=1.0)


def test_it_gives_a_full_froc_score_when_every_lesion_is_found_before_any_false_positive() -> None:
    truth, s = _tumor_slide()
    s[10, 10] = 0.9
    tumor = slide_froc(s, truth, mpp=1.0, downsample=25.0)  # the ITC puts a 0 in the list
    clean = slide_froc(np.zeros((40, 40)), np.zeros((40, 40), bool), mpp=1.0, downsample=25.0)
    assert froc_score([tumor, clean]) == 1.0


def test_it_computes_a_hand_checked_froc_curve_and_score() -> None:
    slides = [
        SlideFROC(np.array([0.7]), np.array([0.9, 0.0]), 0),
        SlideFROC(np.array([0.6, 0.95]), np.zeros(0), 0),
    ]
    fps, sensitivity = froc_curve(slides)  # type: ignore[misc]
    # thresholds 0.6, 0.7, 0.9, 0.95 (0.0 is skipped), then (0, 0)
    np.testing.assert_allclose(fps, [1.5, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(sensitivity, [0.5, 0.5, 0.5, 0.0, 0.0])
    # at 0.25 FP/slide: halfway from (0, 0) to (0.5, 0.0)/(0.5, 0.5) -> np.interp
    expected = np.interp(defaults.FROC_FP_RATES, fps[::-1], sensitivity[::-1]).mean()
    assert froc_score(slides) == pytest.approx(expected, rel=1e-15)


def test_it_gives_no_froc_for_a_cohort_without_countable_lesions() -> None:
    clean = SlideFROC(np.array([0.7, 0.8]), np.zeros(0), 0)
    only_itc = SlideFROC(np.zeros(0), np.zeros(0), 2)
    assert froc_score([clean, only_itc]) is None
    assert froc_score([]) is None
    assert froc_curve([clean]) is None


def _official_froc_curve(slides: Sequence[SlideFROC]) -> tuple[np.ndarray, np.ndarray]:
    """``computeFROC`` of the official Camelyon16 ``Evaluation_FROC.py``, line by line.

    Its inputs as the script builds them: per slide, ``FP_probs`` a list of
    Python floats (read from the CSV with ``float``) and ``TP_probs`` a
    float32 array with one entry per evaluation-mask label (ITC labels stay
    0); the threshold set mixes the two types and numpy compares the float32
    array with a Python-float threshold in float32.

    One change: the set is sorted with ``key=float``.  Under NumPy 1, for
    which the script was written, ``np.float32(0.1) < 0.1`` compares the two
    numbers exactly; NumPy 2 compares them in float32, finds them equal and
    leaves their order (and so which one is skipped as the lowest) to the
    set's iteration order.
    """
    fp_lists = [[float(p) for p in s.fp_probabilities] for s in slides]
    tp_arrays = []
    for s in slides:
        tp_probs = np.zeros((s.n_lesions + s.n_itc,), dtype=np.float32)
        tp_probs[: s.n_lesions] = s.lesion_probabilities
        tp_arrays.append(tp_probs)
    froc_data = (list(range(len(slides))), fp_lists, tp_arrays, [s.n_lesions for s in slides])

    unlisted_fps = [item for sublist in froc_data[1] for item in sublist]
    unlisted_tps: list[object] = [item for sublist in froc_data[2] for item in sublist]
    total_fps, total_tps = [], []
    all_probs = sorted(set([*unlisted_fps, *unlisted_tps]), key=float)  # type: ignore[arg-type]
    for thresh in all_probs[1:]:
        total_fps.append((np.asarray(unlisted_fps) >= thresh).sum())
        total_tps.append((np.asarray(unlisted_tps) >= thresh).sum())
    total_fps.append(0)
    total_tps.append(0)
    fps = np.asarray(total_fps) / float(len(froc_data[0]))
    sensitivity = np.asarray(total_tps) / float(sum(froc_data[3]))
    return fps, sensitivity


def _monai_froc_score(fps: np.ndarray, sensitivity: np.ndarray, fp_rates: Sequence[float]) -> float:
    """MONAI's ``compute_froc_score``: the step the official script leaves out."""
    return float(np.mean(np.interp(fp_rates, fps[::-1], sensitivity[::-1])))


def _official_froc(slides: Sequence[SlideFROC], fp_rates: Sequence[float]) -> float:
    return _monai_froc_score(*_official_froc_curve(slides), fp_rates)


def test_it_holds_lesion_probabilities_as_float32_like_the_official_script() -> None:
    # 0.1 rounds up in float32 (0.10000000149): the lesion found with 0.1 no
    # longer ties with the false positive at 0.1 and outlives it.
    slides = [
        SlideFROC(np.zeros(0), np.array([0.1, 0.0]), 0),
        SlideFROC(np.array([0.1]), np.zeros(0), 0),
    ]
    fps, sensitivity = froc_curve(slides)  # type: ignore[misc]
    np.testing.assert_array_equal(fps, [0.5, 0.0, 0.0])  # thresholds 0.1, float32(0.1), then (0, 0)
    np.testing.assert_array_equal(sensitivity, [0.5, 0.5, 0.0])
    assert froc_score(slides) == 0.5  # a float64 curve would give (0.25 + 5 * 0.5) / 6
    official = _official_froc_curve(slides)
    np.testing.assert_array_equal(fps, official[0])
    np.testing.assert_array_equal(sensitivity, official[1])


def test_it_compares_lesions_with_a_threshold_rounded_to_float32() -> None:
    # 0.7 rounds down in float32 (0.69999999): still, at the threshold 0.7 of
    # the false positive the lesion counts, as the script compares in float32.
    slides = [
        SlideFROC(np.zeros(0), np.array([0.7, 0.0]), 0),
        SlideFROC(np.array([0.7]), np.zeros(0), 0),
    ]
    fps, sensitivity = froc_curve(slides)  # type: ignore[misc]
    np.testing.assert_array_equal(fps, [0.5, 0.5, 0.0])  # thresholds float32(0.7), 0.7
    np.testing.assert_array_equal(sensitivity, [0.5, 0.5, 0.0])
    assert froc_score(slides) == pytest.approx((0.25 + 5 * 0.5) / 6, rel=1e-15)
    assert froc_score(slides) == _official_froc(slides, defaults.FROC_FP_RATES)


def test_it_scores_float32_and_float64_heatmaps_as_the_official_script_would() -> None:
    truth, s = _tumor_slide()
    s[10, 10] = 0.55  # the lesion, found with 0.55 ...
    tumor_free = np.zeros((40, 40))
    tumor_free[20, 20] = 0.55  # ... and a false positive with 0.55 on another slide
    expected = {
        # float32(0.55) = 0.55000001 > 0.55: at that threshold the lesion is
        # found without the false positive, so sensitivity 1 at 0 FP.
        np.float64: 1.0,
        # In float32 both are the same number: the lesion comes with 0.5 FP.
        np.float32: (0.5 + 5 * 1.0) / 6,
    }
    for dtype, score in expected.items():
        slides = [
            slide_froc(s.astype(dtype), truth, mpp=1.0, downsample=25.0),
            slide_froc(tumor_free.astype(dtype), np.zeros((40, 40), bool), mpp=1.0, downsample=25.0),
        ]
        got = froc_score(slides)
        assert got == pytest.approx(score, rel=1e-15), dtype
        assert got == _official_froc(slides, defaults.FROC_FP_RATES), dtype
        assert bootstrap_froc(slides, [[0, 1]])[0] == got


# Most are not float32 numbers, so float32 lesions and float64 false
# positives tie, or nearly, as they would in the official script.
_PROBS = st.sampled_from([0.1, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, float(np.float32(0.7)), 0.7 + 1e-12])
_SLIDE = st.builds(
    lambda fps, lesions, itc: SlideFROC(np.array(fps, dtype=float), np.array(lesions, dtype=float), itc),
    st.lists(_PROBS, max_size=5),
    st.lists(st.one_of(st.just(0.0), _PROBS), max_size=3),
    st.integers(0, 2),
)


@settings(max_examples=150, deadline=None)
@given(slides=st.lists(_SLIDE, min_size=1, max_size=6))
def test_it_reproduces_the_official_froc_computation(slides: list[SlideFROC]) -> None:
    got = froc_score(slides)
    if sum(s.n_lesions for s in slides) == 0:
        assert got is None
    else:
        assert got == pytest.approx(_official_froc(slides, defaults.FROC_FP_RATES), rel=1e-12, abs=1e-15)
        fps, sensitivity = froc_curve(slides)  # type: ignore[misc]
        official_fps, official_sensitivity = _official_froc_curve(slides)
        np.testing.assert_allclose(fps, official_fps, rtol=1e-15)
        np.testing.assert_allclose(sensitivity, official_sensitivity, rtol=1e-15)


# ---------------------------------------------------------------- ROC-AUC


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins) / (pos.size * neg.size)


def test_it_computes_roc_auc_with_ties_counting_one_half() -> None:
    assert roc_auc([0.9, 0.4, 0.4, 0.1], [True, True, False, False]) == 0.875
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0


def test_it_gives_no_roc_auc_when_a_class_is_absent() -> None:
    assert roc_auc([0.1, 0.9], [False, False]) is None
    assert roc_auc([0.1, 0.9], [True, True]) is None
    assert roc_auc([], []) is None
    with pytest.raises(ValueError, match="labels has 1 entries but scores has 2"):
        roc_auc([0.1, 0.9], [True])


@settings(max_examples=80, deadline=None)
@given(data=st.lists(st.tuples(st.sampled_from([0.1, 0.3, 0.5, 0.9]), st.booleans()), min_size=2, max_size=20))
def test_it_matches_pairwise_counting(data: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in data])
    labels = np.array([y for _, y in data])
    got = roc_auc(scores, labels)
    if labels.all() or not labels.any():
        assert got is None
    else:
        assert got == pytest.approx(_pairwise_auc(scores, labels), rel=1e-12)


# ---------------------------------------------------------------- bootstrap


def test_it_draws_seeded_bootstrap_indices() -> None:
    assert defaults.BOOTSTRAP == 1000 and defaults.SEED == 0
    idx = bootstrap_indices(7)
    assert idx.shape == (1000, 7) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, bootstrap_indices(7, resamples=1000, seed=0))
    expected = np.random.default_rng(0).integers(0, 7, size=(1000, 7))
    np.testing.assert_array_equal(idx, expected)
    assert not np.array_equal(idx, bootstrap_indices(7, seed=1))
    assert bootstrap_indices(0, resamples=3).shape == (3, 0)
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        bootstrap_indices(3, resamples=0)


def test_it_counts_how_often_each_slide_is_drawn() -> None:
    np.testing.assert_array_equal(resample_counts([[0, 0, 2], [1, 1, 1]], 3), [[2, 0, 1], [0, 3, 0]])
    with pytest.raises(ValueError, match=r"indices must lie in 0 \.\. 2"):
        resample_counts([[0, 3]], 3)


def _cohort(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tumor = rng.random(n) < 0.5
    turned = rng.integers(0, 50, n) * (rng.random(n) < 0.7)
    return {
        "tp": rng.integers(0, 5, n),
        "fp": rng.integers(0, 5, n),
        "fn": rng.integers(0, 5, n),
        "dice": rng.random(n),
        "tumor": tumor,
        "turned": turned,
        "turned_tumor": (turned * rng.random(n)).astype(int),
        "changed": rng.random(n) < 0.3,
        "max_s": np.round(rng.random(n), 1),
    }


def test_it_bootstraps_every_metric_vectorised_exactly_as_a_loop_would() -> None:
    c = _cohort(25, seed=3)
    idx = bootstrap_indices(25, resamples=200, seed=5)
    slides = [
        SlideFROC(np.round(np.random.default_rng(i).random(i % 3), 2), np.array([0.9, 0.0][: i % 3]), i % 2)
        for i in range(25)
    ]
    got_f = bootstrap_f_beta(c["tp"], c["fp"], c["fn"], idx)
    got_fncr = bootstrap_fn_conversion_rate(c["turned_tumor"], c["turned"], idx)
    got_dice = bootstrap_mean(c["dice"], idx)
    got_dice_tumor = bootstrap_mean(c["dice"], idx, where=c["tumor"])
    got_count = bootstrap_count(~c["tumor"] & c["changed"], idx)
    got_auc = bootstrap_roc_auc(c["max_s"], c["tumor"], idx)
    got_froc = bootstrap_froc(slides, idx)
    for b, draw in enumerate(idx):
        assert got_f[b] == pytest.approx(f_beta(c["tp"][draw].sum(), c["fp"][draw].sum(), c["fn"][draw].sum()))
        fncr = fn_conversion_rate(c["turned_tumor"][draw], c["turned"][draw])
        assert (math.isnan(got_fncr[b]) and fncr is None) or got_fncr[b] == pytest.approx(fncr)
        assert got_dice[b] == pytest.approx(c["dice"][draw].mean())
        tumor_draw = draw[c["tumor"][draw]]
        if tumor_draw.size:
            assert got_dice_tumor[b] == pytest.approx(c["dice"][tumor_draw].mean())
        else:
            assert math.isnan(got_dice_tumor[b])
        assert got_count[b] == (~c["tumor"][draw] & c["changed"][draw]).sum()
        auc = roc_auc(c["max_s"][draw], c["tumor"][draw])
        assert (math.isnan(got_auc[b]) and auc is None) or got_auc[b] == pytest.approx(auc)
        froc = froc_score([slides[i] for i in draw])
        assert (math.isnan(got_froc[b]) and froc is None) or got_froc[b] == pytest.approx(froc)


def test_it_rejects_per_slide_statistics_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="fp has 2 entries but the other statistics have 3"):
        bootstrap_f_beta([1, 2, 3], [1, 2], [1, 2, 3], [[0, 1, 2]])


def test_it_summarises_bootstrap_samples_dropping_undefined_ones() -> None:
    samples = np.array([0.1, 0.2, np.nan, 0.3, 0.4])
    summary = summarise(0.25, samples)
    valid = samples[~np.isnan(samples)]
    assert isinstance(summary, Summary)
    assert summary.value == 0.25
    assert summary.mean == pytest.approx(0.25)
    assert summary.median == pytest.approx(0.25)
    assert summary.std == pytest.approx(np.std(valid, ddof=1))
    assert summary.ci95 == pytest.approx(tuple(np.percentile(valid, [2.5, 97.5])))
    assert summary.n_samples == 4
    assert summary.to_dict()["ci95"] == list(summary.ci95)


def test_it_summarises_an_undefined_metric_with_nones() -> None:
    summary = summarise(None, np.full(5, np.nan))
    assert summary == Summary(None, None, None, None, (None, None), 0)
    assert summarise(float("nan"), [None, 0.5]).value is None
    assert summarise(0.5, [0.5]).std == 0.0


def test_it_handles_a_cohort_with_no_tumor() -> None:
    n = 6
    idx = bootstrap_indices(n, resamples=20)
    tumor = np.zeros(n, bool)
    assert calibrate_threshold(np.linspace(0, 1, n), tumor) is None
    assert roc_auc(np.linspace(0, 1, n), tumor) is None
    assert np.isnan(bootstrap_roc_auc(np.linspace(0, 1, n), tumor, idx)).all()
    clean = [SlideFROC(np.array([0.6]), np.zeros(0), 0) for _ in range(n)]
    assert froc_score(clean) is None
    assert np.isnan(bootstrap_froc(clean, idx)).all()
    assert np.isnan(bootstrap_mean(np.ones(n), idx, where=tumor)).all()
    assert summarise(None, bootstrap_froc(clean, idx)).mean is None
    np.testing.assert_array_equal(bootstrap_f_beta(np.zeros(n), np.ones(n), np.zeros(n), idx), 0.0)


# ---------------------------------------------------------------- aggregation "auto"


def test_it_picks_the_aggregate_with_the_better_calibrated_f_beta() -> None:
    is_fn = np.array([False, True, False, True, False])
    mean = np.array([0.10, 0.40, 0.45, 0.80, 0.30])  # best: flag >= 0.8, F0.5 = 0.833
    p90 = np.array([0.10, 0.50, 0.20, 0.90, 0.30])  # flag >= 0.5 catches both: F0.5 = 1
    choice = choose_aggregate({"mean": mean, "p90": p90}, is_fn)
    assert isinstance(choice, AggregateChoice)
    assert choice.aggregate == "p90" and choice.threshold == 0.5
    assert choice.f_beta == {"mean": pytest.approx(f_beta(1, 0, 1)), "p90": 1.0}
    assert choice.thresholds == {"mean": 0.8, "p90": 0.5}
    assert choice.reason.startswith("p90: calibrated F0.5 1.0000 on 5 validation NPRs beats mean 0.8333")


def test_it_keeps_the_mean_on_a_tie_whatever_the_order() -> None:
    is_fn = [True, False, True]
    scores = {"p90": [0.9, 0.1, 0.8], "mean": [0.7, 0.2, 0.6]}  # both separate perfectly
    choice = choose_aggregate(scores, is_fn)
    assert choice.aggregate == "mean" and choice.threshold == 0.6
    assert "ties with p90; ties go to mean" in choice.reason
    nothing = choose_aggregate({"mean": [0.1, 0.2], "p90": [0.3, 0.4]}, [False, False])
    assert nothing.aggregate == "mean" and nothing.threshold is None and nothing.f_beta == {"mean": 0.0, "p90": 0.0}


def test_it_names_bad_aggregate_candidates() -> None:
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        choose_aggregate({"median": [0.1]}, [True])
    with pytest.raises(ValueError, match=r"scores\['p90'\] has 1 entries but is_positive has 2"):
        choose_aggregate({"mean": [0.1, 0.2], "p90": [0.1]}, [True, False])
    with pytest.raises(ValueError, match="must map aggregate names"):
        choose_aggregate({}, [True])
