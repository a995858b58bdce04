"""The Camelyon-size slide's machinery on small sizes: the streamed pyramid, the windowed renderer, the command."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import shapely
import tifffile

from analysis.synthetic import SlideSpec, SyntheticSlide, camelyon_spec, generate_large_slide
from analysis.synthetic.large import CAMELYON_MPP, LargeSlide, layout_step
from analysis.synthetic.render import Renderer
from analysis.synthetic.stream import write_tiff_streamed
from analysis.synthetic.tiff import write_tiff

ROOT = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "analysis.synthetic", "large")
#: 3000 x 2000 at 1 µm/px: a node with a micro-metastasis and an ITC, four windows of 1024 columns.
SMALL = SlideSpec(seed=1, width=3000, height=2000, mpp=1.0, lesions=("micro", "itc"))


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSlide:
    return generate_large_slide(SMALL, tmp_path_factory.mktemp("large") / "small.tiff")


@pytest.mark.parametrize(
    "spec",
    [
        SlideSpec(seed=3, width=1000, height=777, mpp=2.0, lesions=("micro",)),
        SlideSpec(seed=4, width=1300, height=1100, mpp=2.0, tumor=False, domain="shifted", tile_size=128),
    ],
    ids=["odd-size", "shifted-128px-tiles"],
)
def test_streamed_pyramid_is_the_in_memory_writers_file(spec: SlideSpec, tmp_path: Path) -> None:
    renderer = Renderer(spec, np.random.SeedSequence([spec.seed, 0x5A5A]))
    write_tiff(spec, renderer, tmp_path / "memory.tiff")
    write_tiff_streamed(spec, renderer.render, tmp_path / "streamed.tiff", band_tile_rows=3)
    assert (tmp_path / "streamed.tiff").read_bytes() == (tmp_path / "memory.tiff").read_bytes()


def test_streamed_writer_refuses_a_band_of_the_wrong_shape(tmp_path: Path) -> None:
    spec = SlideSpec(seed=0, width=256, height=256, mpp=2.0, tumor=False)
    with pytest.raises(ValueError, match="band"):
        write_tiff_streamed(spec, lambda y0, y1: np.zeros((y1 - y0, 100, 3), np.uint8), tmp_path / "bad.tiff")


def test_large_slide_is_a_valid_pyramid_with_its_resolution(small_slide: SyntheticSlide) -> None:
    with tifffile.TiffFile(small_slide.path) as tif:
        pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]
        assert [(p.shape[1], p.shape[0]) for p in pages] == list(small_slide.level_sizes)
        assert all(p.is_tiled and p.compression == tifffile.COMPRESSION.JPEG for p in pages)
        for level, page in enumerate(pages):
            assert page.tags["XResolution"].value[0] / page.tags["XResolution"].value[1] == pytest.approx(
                1e4 / (SMALL.mpp * 2**level)
            )
            assert f"MPP = {SMALL.mpp * 2**level:g}" in page.description
        level0 = pages[0].asarray()
        level2 = pages[2].asarray()
    # level 2 is level 0 reduced four times (JPEG aside)
    h, w = level2.shape[:2]
    box = level0[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    assert np.abs(box - level2[: box.shape[0], : box.shape[1]]).mean() < 4.0


def test_large_slide_annotations_lie_in_tissue_and_hold_tumor(small_slide: SyntheticSlide) -> None:
    assert [les.kind for les in small_slide.lesions] == ["micro", "itc"]
    tissue = shapely.union_all(small_slide.tissue)
    for lesion in small_slide.lesions:
        assert tissue.contains(lesion.polygon)
        assert lesion.n_cells >= 1
    pixels = tifffile.imread(small_slide.path, key=0)
    micro = small_slide.lesions[0].polygon
    inside = pixels[int(micro.centroid.y) - 40 : int(micro.centroid.y) + 40, int(micro.centroid.x) - 40 :][:, :80]
    glass = pixels[:80, :80]
    # tumor is stained (darker than glass), glass is near white
    assert inside.mean() < glass.mean() - 30
    assert glass.mean() > 220


def test_band_equals_the_rows_of_the_whole_slide(small_slide: SyntheticSlide, tmp_path: Path) -> None:
    band = generate_large_slide(SMALL, tmp_path / "band.tiff", rows=(512, 1280))
    assert band.spec.height == 768 and band.level_sizes[0] == (SMALL.width, 768)
    whole = tifffile.imread(small_slide.path, key=0)
    assert np.array_equal(tifffile.imread(band.path, key=0), whole[512:1280])
    # outlines come in the band's coordinates
    assert band.lesions[0].polygon.bounds[1] == pytest.approx(small_slide.lesions[0].polygon.bounds[1] - 512)


def test_windows_and_glass_rows_do_not_change_the_pixels() -> None:
    # in-domain: rows differ only by the sensor noise, which is drawn per window width
    narrow = LargeSlide(SMALL, window_px=1024)
    wide = LargeSlide(SMALL, window_px=4096)
    a, b = narrow.render(700, 956), wide.render(700, 956)
    diff = np.abs(a.astype(np.int16) - b)
    assert diff.mean() < 2.5 and diff.max() < 16
    # glass rows are copied, not rendered: the same bytes the renderer draws
    shifted = LargeSlide(SlideSpec(seed=1, width=3000, height=2000, mpp=1.0, domain="shifted", tumor=False))
    assert any(shifted._on_glass(w, 0, 256) for w in shifted._windows)
    copied = shifted.render(0, 256)
    shifted._on_glass = lambda *_: False  # type: ignore[method-assign]
    assert np.array_equal(copied, shifted.render(0, 256))


def test_same_spec_same_pixels() -> None:
    assert np.array_equal(LargeSlide(SMALL).render(900, 1156), LargeSlide(SMALL).render(900, 1156))


def test_memory_stays_bounded_as_the_slide_grows(tmp_path: Path) -> None:
    """Four times the rows, about the same peak: no level-sized buffer (the in-memory writer's level 1 alone
    would be a quarter of level 0)."""

    def peak(height: int) -> int:
        spec = SlideSpec(seed=2, width=2048, height=height, mpp=0.5, tumor=False)
        tracemalloc.start()
        generate_large_slide(spec, tmp_path / f"{height}.tiff")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, tall = peak(2048), peak(8192)
    level1_tall = 1024 * 4096 * 3
    assert tall - short < level1_tall / 4
    assert tall < 1.1 * short


def test_camelyon_spec_and_layout_step() -> None:
    spec = camelyon_spec(seed=5)
    assert (spec.width, spec.height, spec.mpp) == (98_000, 215_000, CAMELYON_MPP)
    assert spec.lesions == ("macro", "micro", "itc")
    assert layout_step(spec) == 64  # 15.6 µm between field samples
    with pytest.raises(ValueError, match="finer than a pixel"):
        layout_step(spec, 0.1)


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_large_slide(SMALL, tmp_path / "out" / "x.tiff", rows=(1500, 2500))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="window_px"):
        LargeSlide(SMALL, window_px=1000)


def test_command_writes_slide_annotations_and_description(tmp_path: Path) -> None:
    run = subprocess.run(
        [*COMMAND, str(tmp_path), "--size", "2048", "2048", "--mpp", "1.0", "--seed", "3", "--rows", "768", "1024"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    stem = tmp_path / "camelyon_2048x2048_seed3_rows768-1024"
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert (meta["width"], meta["height"], meta["mpp"]) == (2048, 256, 1.0)
    assert meta["peak_rss_mib"] > 0 and len(meta["tissue_wkt"]) == 1
    assert stem.with_suffix(".tiff").exists() and stem.with_suffix(".xml").exists()
    assert stem.with_suffix(".geojson").exists()
    bad = subprocess.run(
        [*COMMAND, str(tmp_path), "--mpp", "40"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "mpp" in bad.stderr
