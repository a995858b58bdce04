"""Readers of heatmaps, ensemble members and truth masks, on small generated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from analysis.annotations import write_asap_xml, write_geojson
from analysis.io import InputError, check_unit_interval, read_heatmap, read_members, read_truth_mask

BOXES = Path("/work/shared/testdata/openslide-python/boxes.tiff")


@pytest.fixture
def heat() -> np.ndarray:
    return np.random.default_rng(0).random((64, 96)).astype(np.float32)


def test_it_reads_npy_as_float32(tmp_path: Path, heat: np.ndarray) -> None:
    np.save(tmp_path / "s.npy", heat.astype(np.float64))
    out = read_heatmap(tmp_path / "s.npy")
    assert out.dtype == np.float32 and out.shape == (64, 96)
    np.testing.assert_array_equal(out, heat)


def test_it_reads_npz_single_array_or_named_key(tmp_path: Path, heat: np.ndarray) -> None:
    np.savez(tmp_path / "one.npz", heat)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "one.npz"), heat)
    np.savez(tmp_path / "two.npz", seg=heat, unc=heat / 2)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "two.npz", key="unc"), heat / 2)
    with pytest.raises(InputError, match=r"two\.npz: holds 2 arrays"):
        read_heatmap(tmp_path / "two.npz")
    with pytest.raises(InputError, match="no array named 'x'"):
        read_heatmap(tmp_path / "two.npz", key="x")


def test_it_scales_8_and_16_bit_png(tmp_path: Path) -> None:
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g8.png")
    np.testing.assert_allclose(read_heatmap(tmp_path / "g8.png"), [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    deep = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_heatmap(tmp_path / "g16.png"), [[0.0, 32768 / 65535, 1.0]], rtol=1e-6)


def test_it_accepts_grey_saved_as_rgb_but_not_colour(tmp_path: Path) -> None:
    grey = np.array([[0, 51, 255]], dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_heatmap(tmp_path / "rgb.png"), [[0.0, 0.2, 1.0]], rtol=1e-6)
    colour = np.stack([grey, grey[:, ::-1], grey], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="single-channel"):
        read_heatmap(tmp_path / "colour.png")


def _levels(heat: np.ndarray) -> list[np.ndarray]:
    return [heat, heat[::2, ::2], heat[::4, ::4]]


def test_it_picks_the_pyramid_level_of_subifds(tmp_path: Path, heat: np.ndarray) -> None:
    levels = _levels(heat)
    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        tif.write(levels[0], subifds=2, tile=(16, 16))
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(16, 16))
    for downsample, level in zip((1, 2, 4), levels, strict=True):
        np.testing.assert_array_equal(read_heatmap(tmp_path / "p.tif", downsample=downsample), level)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "p.tif"), levels[0])
    with pytest.raises(InputError, match=r"no pyramid level at downsample 3 \(levels at downsamples 1, 2, 4\)"):
        read_heatmap(tmp_path / "p.tif", downsample=3)


def test_it_picks_the_pyramid_level_of_series(tmp_path: Path) -> None:
    # Odd sizes: writers round the halved size either way.
    heat = np.random.default_rng(1).random((65, 97)).astype(np.float32)
    levels = [heat, heat[::2, ::2], heat[1::4, 1::4]]  # 33 x 49, then 16 x 24
    with tifffile.TiffWriter(tmp_path / "s.tif") as tif:
        for level in levels:
            tif.write(level)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "s.tif", downsample=2), levels[1])
    np.testing.assert_array_equal(read_heatmap(tmp_path / "s.tif", downsample=4), levels[2])


def test_a_single_level_tiff_is_taken_at_the_analysis_level(tmp_path: Path, heat: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "h.tif", heat)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "h.tif", downsample=32), heat)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[0.5, np.nan]]), "contains NaN"),
        (np.array([[0.5, 1.0 + 1e-12]]), r"values outside \[0, 1\] \(min 0.5, max 1\)"),
        (np.array([[-0.1, 0.5]]), r"values outside \[0, 1\]"),
        (np.array([[0.5, np.inf]]), r"values outside \[0, 1\]"),
        (np.zeros((2, 2, 2)), r"expected a 2-D heatmap \(H, W\), got shape \(2, 2, 2\)"),
        (np.array([[1, 2]], dtype=np.int64), "unsupported heatmap data type int64"),
    ],
)
def test_it_rejects_bad_heatmaps_naming_the_file(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=rf"bad\.npy: {message}"):
        read_heatmap(tmp_path / "bad.npy")


def test_it_names_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.npy: file not found"):
        read_heatmap(tmp_path / "nope.npy")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match=r"junk\.tif: cannot read"):
        read_heatmap(tmp_path / "junk.tif")


def test_check_unit_interval_reads_memmaps_in_slabs(tmp_path: Path) -> None:
    big = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=(3, 4, 5))
    big[:] = 0.25
    big[2, 3, 4] = 1.5
    with pytest.raises(InputError, match=r"max 1.5"):
        check_unit_interval(big, what="m")


def test_members_are_memory_mapped_and_checked(tmp_path: Path) -> None:
    members = np.random.default_rng(2).random((5, 8, 9)).astype(np.float32)
    np.save(tmp_path / "m.npy", members)
    out = read_members(tmp_path / "m.npy")
    assert isinstance(out, np.memmap) and out.shape == (5, 8, 9)
    np.save(tmp_path / "flat.npy", members[0])
    with pytest.raises(InputError, match=r"flat\.npy: expected members of shape \(K, H, W\), got \(8, 9\)"):
        read_members(tmp_path / "flat.npy")
    members[3, 2, 1] = np.nan
    np.save(tmp_path / "nan.npy", members)
    with pytest.raises(InputError, match=r"nan\.npy: contains NaN"):
        read_members(tmp_path / "nan.npy")


# --------------------------------------------------------------------------- truth masks


def test_a_mask_of_the_heatmap_shape_is_used_as_is(tmp_path: Path) -> None:
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1, 2] = 255
    mask[3, 4] = 1
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_truth_mask(tmp_path / "m.png", shape=(4, 5), downsample=16), mask != 0)


def test_a_level0_mask_is_sampled_at_pixel_centres(tmp_path: Path) -> None:
    # Level 0 is 9 x 10 (not a multiple of d = 4): the grid is 3 x 3 (ceil), and its
    # centres fall on level-0 pixels (2, 6, 10) -> rows 2, 6 and none (10 >= 9).
    level0 = np.zeros((9, 10), dtype=np.uint8)
    level0[2, 2] = 1  # under centre (0, 0)
    level0[6, 6] = 7  # under centre (1, 1)
    level0[3, 3] = 1  # between centres: not sampled
    level0[8, 9] = 1  # row 8 is not under any centre
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    np.save(tmp_path / "m.npy", level0)
    np.testing.assert_array_equal(read_truth_mask(tmp_path / "m.npy", shape=(3, 3), downsample=4), expected)
    Image.fromarray(level0 * 30).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_truth_mask(tmp_path / "m.png", shape=(3, 3), downsample=4), expected)


def test_a_tiled_level0_tiff_mask_is_sampled_tile_by_tile(tmp_path: Path) -> None:
    level0 = (np.random.default_rng(3).random((150, 200)) > 0.6).astype(np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", level0, tile=(32, 48), compression="zlib")
    tifffile.imwrite(tmp_path / "s.tif", level0, rowsperstrip=7)
    rows = np.floor((np.arange(50) + 0.5) * 3).astype(int)
    cols = np.floor((np.arange(67) + 0.5) * 3).astype(int)
    expected = np.zeros((50, 67), dtype=bool)
    expected[:, :66] = level0[np.ix_(rows, cols[:66])] != 0  # centre 199.5 -> col 199 is inside
    expected[:, 66] = level0[rows, 199] != 0
    for name in ("t.tif", "s.tif"):
        np.testing.assert_array_equal(read_truth_mask(tmp_path / name, shape=(50, 67), downsample=3), expected)


def test_a_real_pyramidal_rgb_tiff_mask_is_read_from_level0() -> None:
    level0 = tifffile.imread(BOXES)  # 250 x 300 x 3, 4 levels
    out = read_truth_mask(BOXES, shape=(125, 150), downsample=2)
    np.testing.assert_array_equal(out, (level0[1::2, 1::2] != 0).any(axis=-1))


def test_it_rejects_a_mask_of_another_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.zeros((30, 30), dtype=bool))
    with pytest.raises(InputError, match=r"m\.npy: mask shape \(30, 30\) matches neither the heatmap shape \(4, 4\)"):
        read_truth_mask(tmp_path / "m.npy", shape=(4, 4), downsample=4)


def test_polygon_files_are_rasterised(tmp_path: Path) -> None:
    from shapely.geometry import box

    write_asap_xml([box(0, 0, 64, 32)], tmp_path / "a.xml")
    write_geojson([box(0, 0, 64, 32)], tmp_path / "a.geojson")
    expected = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    for name in ("a.xml", "a.geojson"):
        np.testing.assert_array_equal(read_truth_mask(tmp_path / name, shape=(2, 3), downsample=32), expected)
    with pytest.raises(InputError, match=r"none\.xml: file not found"):
        read_truth_mask(tmp_path / "none.xml", shape=(2, 3), downsample=32)
