"""Tests of analysis.uncertainty: ensemble heatmaps (SPEC §2)."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import defaults
from analysis.uncertainty import (
    UNCERTAINTY_METHODS,
    EnsembleHeatmaps,
    binary_entropy,
    ensemble_heatmaps,
    uncertainty_map,
)

LN2 = math.log(2.0)


def _h(p: float) -> float:
    """Binary entropy written out by hand (nats)."""
    return -sum(x * math.log(x) for x in (p, 1.0 - p) if x > 0)


# ---------------------------------------------------------------- entropy


def test_it_computes_binary_entropy_in_nats_with_0_ln_0_as_0() -> None:
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    expected = [0.0, _h(0.2), LN2, _h(0.9), 0.0]
    np.testing.assert_allclose(binary_entropy(p), expected, rtol=1e-15, atol=0)


def test_it_keeps_float32_as_float32_and_float64_as_float64() -> None:
    assert binary_entropy(np.array([0.3], dtype=np.float32)).dtype == np.float32
    assert binary_entropy(np.array([0.3], dtype=np.float64)).dtype == np.float64
    assert binary_entropy(np.array([0, 1], dtype=np.uint8)).dtype == np.float64


def test_it_bounds_entropy_by_ln_2_and_keeps_the_shape() -> None:
    p = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 101)
    h = binary_entropy(p)
    assert h.shape == (1, 101)
    assert h.min() == 0.0
    assert h.max() <= np.float32(LN2)
    assert not np.isnan(h).any()


@pytest.mark.parametrize(
    ("p", "words"),
    [
        (np.array([0.2, np.nan]), "contains NaN"),
        (np.array([0.2, 1.5]), "outside [0, 1]"),
        (np.array([-0.1]), "outside [0, 1]"),
        (np.array(["a"]), "real numbers"),
    ],
)
def test_it_rejects_bad_probabilities_with_a_sentence(p: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        binary_entropy(p)


# ---------------------------------------------------------------- ensemble


def test_it_computes_hand_checked_heatmaps_for_two_members() -> None:
    members = np.array([[[0.2, 1.0, 0.0]], [[0.8, 1.0, 0.5]]])
    maps = ensemble_heatmaps(members)
    assert isinstance(maps, EnsembleHeatmaps)
    for field in (maps.mean, maps.entropy, maps.mutual_information, maps.variance):
        assert field.shape == (1, 3)
        assert field.dtype == np.float32
    np.testing.assert_allclose(maps.mean, [[0.5, 1.0, 0.25]], rtol=1e-7)
    np.testing.assert_allclose(maps.entropy, [[LN2, 0.0, _h(0.25)]], rtol=1e-6)
    mi = [LN2 - _h(0.2), 0.0, _h(0.25) - (0.0 + LN2) / 2]
    np.testing.assert_allclose(maps.mutual_information, [mi], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(maps.variance, [[0.09, 0.0, 0.0625]], rtol=1e-6)


def test_it_uses_the_population_variance_over_members() -> None:
    rng = np.random.default_rng(1)
    members = rng.random((5, 6, 7))
    maps = ensemble_heatmaps(members)
    np.testing.assert_allclose(maps.variance, members.var(axis=0, ddof=0), rtol=1e-6, atol=1e-8)


def test_it_gives_zero_mutual_information_when_members_agree() -> None:
    one = np.random.default_rng(2).random((1, 8, 9))
    maps = ensemble_heatmaps(np.repeat(one, 4, axis=0))
    assert maps.mutual_information.min() >= 0.0
    np.testing.assert_allclose(maps.mutual_information, 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.variance, 0.0, atol=1e-12)


def test_it_stores_an_entropy_consistent_with_the_stored_mean() -> None:
    members = np.random.default_rng(3).random((3, 20, 20)).astype(np.float32)
    maps = ensemble_heatmaps(members)
    again = binary_entropy(maps.mean.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(maps.entropy, again)


def test_it_gives_the_same_heatmaps_in_chunks_as_in_one_piece() -> None:
    members = np.random.default_rng(4).random((5, 37, 23)).astype(np.float32)
    whole = ensemble_heatmaps(members, chunk_rows=1000)
    for rows in (1, 3, 36, 37):
        part = ensemble_heatmaps(members, chunk_rows=rows)
        for name in ("mean", "entropy", "mutual_information", "variance"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name), err_msg=name)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    rows=st.integers(1, 13),
    seed=st.integers(0, 2**32 - 1),
)
def test_it_never_depends_on_the_chunk_size(k: int, h: int, w: int, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    members = rng.random((k, h, w))
    members[rng.random((k, h, w)) < 0.2] = 0.0
    members[rng.random((k, h, w)) < 0.2] = 1.0
    a = ensemble_heatmaps(members, chunk_rows=rows)
    b = ensemble_heatmaps(members, chunk_rows=h)
    for name in ("mean", "entropy", "mutual_information", "variance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_allclose(a.mean, members.mean(axis=0), rtol=1e-6)


def test_it_never_writes_to_the_members() -> None:
    members = np.random.default_rng(5).random((3, 4, 5))
    before = members.copy()
    ensemble_heatmaps(members)
    uncertainty_map(members, method="variance")
    np.testing.assert_array_equal(members, before)


def test_it_reads_members_from_a_memmap(tmp_path: Path) -> None:
    data = np.random.default_rng(6).random((3, 30, 10)).astype(np.float32)
    path = tmp_path / "members.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape)
    from_disk = ensemble_heatmaps(ro, chunk_rows=7)
    in_memory = ensemble_heatmaps(data, chunk_rows=7)
    np.testing.assert_array_equal(from_disk.entropy, in_memory.entropy)
    np.testing.assert_array_equal(from_disk.variance, in_memory.variance)


def test_it_keeps_peak_memory_well_below_a_float64_copy_of_the_members() -> None:
    k, h, w = 16, 256, 256
    members = np.random.default_rng(7).random((k, h, w), dtype=np.float32)
    float64_copy = k * h * w * 8
    tracemalloc.start()
    try:
        ensemble_heatmaps(members, chunk_rows=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Four float32 (H, W) outputs are 1/8 of the copy; chunk buffers are small.
    assert peak < 0.25 * float64_copy, f"peak {peak} bytes vs float64 copy {float64_copy}"


# ---------------------------------------------------------------- uncertainty_map


def test_it_offers_entropy_mi_and_variance_with_entropy_by_default() -> None:
    assert UNCERTAINTY_METHODS == ("entropy", "mi", "variance")
    assert defaults.UNCERTAINTY == "entropy"
    members = np.random.default_rng(8).random((4, 9, 11))
    maps = ensemble_heatmaps(members)
    fields = {"entropy": maps.entropy, "mi": maps.mutual_information, "variance": maps.variance}
    for method in UNCERTAINTY_METHODS:
        s, u = uncertainty_map(members, method=method, chunk_rows=4)
        np.testing.assert_array_equal(s, maps.mean)
        np.testing.assert_array_equal(u, fields[method])
    s, u = uncertainty_map(members)
    np.testing.assert_array_equal(u, maps.entropy)


def test_it_rejects_an_unknown_uncertainty_method() -> None:
    with pytest.raises(ValueError, match="unknown uncertainty method 'std'"):
        uncertainty_map(np.zeros((1, 2, 2)), method="std")


@pytest.mark.parametrize(
    ("members", "kwargs", "words"),
    [
        (np.zeros((2, 2)), {}, r"shape \(K, H, W\)"),
        (np.zeros((0, 2, 2)), {}, "no members"),
        (np.full((2, 2, 2), np.nan), {}, "contains NaN"),
        (np.full((2, 2, 2), 1.2), {}, r"outside \[0, 1\]"),
        (np.zeros((2, 2, 2)), {"chunk_rows": 0}, "chunk_rows must be a positive integer"),
    ],
)
def test_it_rejects_bad_members_with_a_sentence(members: np.ndarray, kwargs: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ensemble_heatmaps(members, **kwargs)
