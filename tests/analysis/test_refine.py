"""Tests of analysis.refine: SUA- and baseline-refined masks and their pyramidal TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from analysis.io import read_truth_mask
from analysis.refine import read_mask_tiff, refined_masks, write_mask_tiff


def test_it_refines_by_flagged_regions_and_by_flagged_pixels() -> None:
    s = np.array(
        [
            [0.99, 0.70, 0.10, 0.80, 0.80],
            [0.10, 0.60, 0.10, 0.80, 0.10],
        ]
    )
    u = np.array(
        [
            [0.05, 0.60, 0.90, 0.30, 0.10],
            [0.90, 0.50, 0.90, 0.20, 0.90],
        ]
    )
    # NPR 1 = (0,1), (1,1): mean 0.55; NPR 2 = (0,3), (0,4), (1,3): mean 0.2.
    masks = refined_masks(s, u, lower=0.55, upper=0.95, threshold=0.5, baseline_threshold=0.3)
    np.testing.assert_array_equal(masks.flagged_regions, [True, False])
    np.testing.assert_array_equal(masks.original, s >= 0.95)
    np.testing.assert_array_equal(masks.sua, [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0]])
    # Baseline: candidate pixels with u >= 0.3, each on its own.
    np.testing.assert_array_equal(masks.baseline, [[1, 1, 0, 1, 0], [0, 1, 0, 0, 0]])
    nothing = refined_masks(s, u, lower=0.55, upper=0.95, threshold=None, baseline_threshold=None)
    np.testing.assert_array_equal(nothing.sua, nothing.original)
    np.testing.assert_array_equal(nothing.baseline, nothing.original)
    p90 = refined_masks(s, u, lower=0.55, upper=0.95, threshold=0.59, baseline_threshold=None, how="p90")
    np.testing.assert_array_equal(p90.flagged_regions, [True, False])  # p90 of (0.6, 0.5) = 0.59


def test_it_round_trips_a_mask_through_a_tiled_compressed_pyramidal_tiff(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((700, 333)) < 0.01
    mask[5, 7] = True
    path = write_mask_tiff(mask, tmp_path / "sua.tif", downsample=16.0, tile=128, extra={"range": [0.55, 0.95]})
    back, downsample = read_mask_tiff(path)
    np.testing.assert_array_equal(back, mask)
    assert back.dtype == np.bool_ and downsample == 16.0
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (128, 128)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        shapes = [level.shape for level in tif.series[0].levels]
    assert shapes == [(700, 333), (350, 167), (175, 84), (88, 42)]  # until a level fits in one tile
    # A lone pixel stays visible at every level ("any" of each 2 x 2 block).
    for k in range(1, 4):
        level, _ = read_mask_tiff(path, level=k)
        assert level[5 >> k, 7 >> k]
        assert level.sum() <= mask.sum()
    # The file is also a truth mask that the heatmap reader accepts.
    np.testing.assert_array_equal(read_truth_mask(path, shape=mask.shape, downsample=16.0), mask)


def test_it_writes_an_empty_and_a_tiny_mask(tmp_path: Path) -> None:
    empty = np.zeros((20, 30), bool)
    back, _ = read_mask_tiff(write_mask_tiff(empty, tmp_path / "e.tif", downsample=2.0))
    np.testing.assert_array_equal(back, empty)
    one = np.ones((1, 1), np.uint8)
    back, _ = read_mask_tiff(write_mask_tiff(one, tmp_path / "o.tif", downsample=2.0))
    np.testing.assert_array_equal(back, [[True]])


def test_it_rejects_bad_masks_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2-D"):
        write_mask_tiff(np.zeros(5, bool), tmp_path / "a.tif", downsample=1.0)
    with pytest.raises(ValueError, match="boolean"):
        write_mask_tiff(np.full((2, 2), 0.5), tmp_path / "a.tif", downsample=1.0)
    with pytest.raises(ValueError, match="downsample"):
        write_mask_tiff(np.zeros((2, 2), bool), tmp_path / "a.tif", downsample=-1.0)
    with pytest.raises(ValueError, match="multiple of 16"):
        write_mask_tiff(np.zeros((2, 2), bool), tmp_path / "a.tif", downsample=1.0, tile=100)
    assert not (tmp_path / "a.tif").exists()
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="not a SUA mask TIFF"):
        read_mask_tiff(tmp_path / "plain.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="cannot read the mask"):
        read_mask_tiff(tmp_path / "junk.tif")
    path = write_mask_tiff(np.zeros((4, 4), bool), tmp_path / "m.tif", downsample=1.0)
    with pytest.raises(ValueError, match="no level 3"):
        read_mask_tiff(path, level=3)
