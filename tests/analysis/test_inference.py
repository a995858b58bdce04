"""Whole-slide inference: exact stitching, tissue masking, uncertainty sources, heatmap files."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from analysis.inference import (
    EnsemblePredictor,
    InferenceCancelled,
    InferenceOptions,
    MCDropoutPredictor,
    Predictor,
    TTAPredictor,
    plan_tiles,
    run_ensemble,
)
from analysis.io import read_heatmap, read_heatmap_tiff, write_heatmap_tiff
from analysis.models import NetworkConfig, build_network
from analysis.slide_io import level_shape, open_slide, read_region, tissue_mask
from analysis.uncertainty import binary_entropy

# One torch thread (tests/analysis/conftest.py): the two cores are shared with other work.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_slide(path: Path, image: np.ndarray, *, tile: int = 64) -> Path:
    """A pyramidal tiled RGB TIFF (levels as sub-IFDs, each half the previous), like a scanner's."""
    levels = [image]
    while max(levels[-1].shape[:2]) > tile:
        previous = levels[-1]
        levels.append(previous[::2, ::2].copy())
    with tifffile.TiffWriter(path) as tw:
        tw.write(image, tile=(tile, tile), subifds=len(levels) - 1, compression="zlib", photometric="rgb")
        for level in levels[1:]:
            tw.write(level, tile=(tile, tile), subfiletype=1, compression="zlib", photometric="rgb")
    return path


@pytest.fixture(scope="module")
def noise_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random colours, 700 x 530: no side a multiple of any tile size used below."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (530, 700, 3), dtype=np.uint8)
    return write_slide(tmp_path_factory.mktemp("slides") / "noise.tiff", image)


@pytest.fixture(scope="module")
def tissue_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pink-purple disc of textured 'tissue' on near-white glass, 640 x 512."""
    rng = np.random.default_rng(1)
    height, width = 512, 640
    image = np.full((height, width, 3), 242, dtype=np.uint8)
    image += rng.integers(0, 6, image.shape, dtype=np.uint8)
    rows, cols = np.mgrid[:height, :width]
    disc = (rows - 240) ** 2 + (cols - 300) ** 2 < 170**2
    # Eosin-pink with hematoxylin-purple specks and per-pixel noise (texture for the models).
    n = int(disc.sum())
    purple = rng.random(n) < 0.3
    stain = np.where(purple[:, None], [110, 60, 160], [220, 120, 190]) + rng.integers(-30, 31, (n, 3))
    image[disc] = np.clip(stain, 0, 255).astype(np.uint8)
    return write_slide(tmp_path_factory.mktemp("slides") / "tissue.tiff", image)


class RedChannel(nn.Module):
    """Tumor logit = 8 (red - 0.5): an element-wise function of the input, exact on any tiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = (x[:, :1] - 0.5) * 8.0
        return torch.cat([torch.zeros_like(logit), logit], 1)


class SmallConv(nn.Module):
    """A fixed random k x k convolution (receptive radius k // 2), zero-padded."""

    def __init__(self, k: int, seed: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, k, padding=k // 2, bias=False)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) / k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def whole_image_probability(model: nn.Module, slide_path: Path, *, level: float, margin: int) -> np.ndarray:
    """The model on the whole level image at once (white beyond the edge), (H, W) float32."""
    slide = open_slide(slide_path)
    height, width = level_shape(slide, level)
    full = read_region(
        slide, level_downsample=level, left=-margin, top=-margin, width=width + 2 * margin, height=height + 2 * margin
    )
    x = torch.from_numpy(full).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        logits = model.eval()(x)
    p = torch.sigmoid(logits[:, 1] - logits[:, 0])[0]
    return p[margin : margin + height, margin : margin + width].numpy()


def pool(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks; the last (partial) blocks average what they have."""
    height, width = array.shape
    out_h, out_w = -(-height // factor), -(-width // factor)
    padded = np.full((out_h * factor, out_w * factor), np.nan)
    padded[:height, :width] = array
    return np.nanmean(padded.reshape(out_h, factor, out_w, factor), axis=(1, 3))


# --------------------------------------------------------------------------- stitching


@pytest.mark.parametrize(
    ("level", "heatmap", "tile", "overlap"),
    [(1, 1, 64, 0), (1, 1, 100, 7), (2, 2, 48, 8), (1, 4, 64, 8), (2, 6, 60, 6), (4, 8, 40, 4)],
)
def test_stitching_reproduces_the_whole_image_function_exactly(
    noise_slide: Path, level: int, heatmap: int, tile: int, overlap: int
) -> None:
    result = run_ensemble(
        noise_slide,
        [RedChannel()],
        InferenceOptions(
            level_downsample=level,
            heatmap_downsample=heatmap,
            tile_size=tile,
            overlap=overlap,
            batch_size=3,
            use_tissue_mask=False,
        ),
    )
    expected = whole_image_probability(RedChannel(), noise_slide, level=level, margin=0)
    factor = heatmap // level
    # On random colours a pixel off by one is off by ~0.3; what remains are last-bit
    # differences of float32 arithmetic (vectorised vs scalar loop tails, pooling order).
    np.testing.assert_allclose(result.members[0], pool(expected, factor), rtol=0, atol=1e-7 if factor == 1 else 1e-6)
    assert result.mean.shape == (
        -(-level_shape(open_slide(noise_slide), level)[0] // factor),
        -(-level_shape(open_slide(noise_slide), level)[1] // factor),
    )
    assert result.tiles_processed == result.tiles_total


@pytest.mark.parametrize(("k", "overlap", "tile"), [(3, 1, 32), (5, 2, 50), (9, 4, 64), (9, 8, 40)])
def test_stitching_is_seamless_for_receptive_fields_within_the_overlap(
    noise_slide: Path, k: int, overlap: int, tile: int
) -> None:
    model = SmallConv(k)
    result = run_ensemble(
        noise_slide,
        [model],
        InferenceOptions(
            level_downsample=1,
            heatmap_downsample=1,
            tile_size=tile,
            overlap=overlap,
            batch_size=4,
            use_tissue_mask=False,
        ),
    )
    expected = whole_image_probability(model, noise_slide, level=1, margin=overlap)
    np.testing.assert_allclose(result.members[0], expected, rtol=0, atol=2e-6)


def test_too_little_overlap_leaves_seams(noise_slide: Path) -> None:
    model = SmallConv(9)
    result = run_ensemble(
        noise_slide,
        [model],
        InferenceOptions(
            level_downsample=1,
            heatmap_downsample=1,
            tile_size=40,
            overlap=1,
            batch_size=4,
            use_tissue_mask=False,
        ),
    )
    expected = whole_image_probability(model, noise_slide, level=1, margin=1)
    assert np.abs(result.members[0] - expected).max() > 1e-3


def test_tile_geometry_is_checked() -> None:
    with pytest.raises(ValueError, match="positive multiple of the heatmap/level factor 4"):
        plan_tiles((100, 100), factor=4, tile_size=64, overlap=7)
    with pytest.raises(ValueError, match="must be a positive multiple"):
        plan_tiles((100, 100), factor=1, tile_size=16, overlap=8)


def test_heatmap_downsample_must_be_a_multiple_of_the_level(noise_slide: Path) -> None:
    with pytest.raises(ValueError, match="integer multiple"):
        run_ensemble(
            noise_slide,
            [RedChannel()],
            InferenceOptions(level_downsample=2, heatmap_downsample=3, tile_size=32, overlap=0),
        )


# --------------------------------------------------------------------------- tissue


def test_tissue_mask_finds_the_disc(tissue_slide: Path) -> None:
    slide = open_slide(tissue_slide)
    mask = tissue_mask(slide, downsample=8)
    assert mask.shape == (64, 80)
    rows, cols = np.mgrid[:64, :80]
    disc = ((rows + 0.5) * 8 - 240) ** 2 + ((cols + 0.5) * 8 - 300) ** 2 < 160**2
    outside = ((rows + 0.5) * 8 - 240) ** 2 + ((cols + 0.5) * 8 - 300) ** 2 > 180**2
    assert mask[disc].all()
    assert not mask[outside].any()


def test_only_tissue_is_processed_and_the_rest_is_zero(tissue_slide: Path) -> None:
    options = InferenceOptions(level_downsample=1, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)
    masked = run_ensemble(tissue_slide, [RedChannel(), SmallConv(3)], options)
    everything = run_ensemble(tissue_slide, [RedChannel(), SmallConv(3)], replace(options, use_tissue_mask=False))
    assert masked.tiles_processed < masked.tiles_total == everything.tiles_processed
    tissue = masked.tissue
    assert 0.2 < tissue.mean() < 0.8
    for name in ("mean", "entropy", "mutual_information", "variance"):
        assert not getattr(masked, name)[~tissue].any(), name
    np.testing.assert_allclose(masked.members[:, tissue], everything.members[:, tissue], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- uncertainty sources


def test_heatmaps_summarise_the_members(tissue_slide: Path) -> None:
    members = [build_network("tiny", seed=s) for s in (0, 1, 2)]
    result = run_ensemble(
        tissue_slide,
        members,
        InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4),
    )
    assert result.members.shape == (3, *result.mean.shape)
    np.testing.assert_allclose(result.mean, result.members.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(result.entropy, binary_entropy(result.mean), atol=1e-6)
    np.testing.assert_allclose(result.variance, result.members.var(axis=0), atol=1e-6)
    assert result.downsample == 4.0 and result.level_downsample == 2.0


def test_same_seeds_give_the_same_heatmaps(tissue_slide: Path) -> None:
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)

    def run(seeds: tuple[int, ...]) -> np.ndarray:
        return run_ensemble(
            tissue_slide,
            [build_network("tiny", seed=s) for s in seeds],
            options,
        ).members  # type: ignore[arg-type]

    first, second, other = run((3, 4)), run((3, 4)), run((3, 5))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_mc_dropout_is_repeatable_by_seed_and_varies_between_passes(tissue_slide: Path) -> None:
    net = build_network("tiny", seed=0)
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)

    def run(seed: int) -> np.ndarray:
        predictor = MCDropoutPredictor(net, n_samples=3, seed=seed)
        assert isinstance(predictor, Predictor)
        return run_ensemble(tissue_slide, predictor, options).members  # type: ignore[arg-type]

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    tissue = a.sum(axis=0) > 0
    assert np.abs(a[0] - a[1])[tissue].max() > 0  # dropout is on


def test_mc_dropout_needs_dropout_layers() -> None:
    with pytest.raises(ValueError, match="dropout layers"):
        MCDropoutPredictor(RedChannel(), n_samples=2)


def test_tta_maps_every_augmentation_back() -> None:
    # An element-wise model is invariant to flips and rotations: all 8 samples agree exactly.
    predictor = TTAPredictor(RedChannel())
    x = torch.rand(2, 3, 16, 12)
    samples = predictor.predict(x)
    assert samples.shape == (8, 2, 16, 12)
    assert torch.equal(samples, samples[:1].expand_as(samples))
    # A convolution is not: the samples differ, but each is aligned with the input.
    conv = TTAPredictor(SmallConv(3), transforms=[(0, False), (1, True)]).predict(x)
    assert conv.shape == (2, 2, 16, 12) and not torch.equal(conv[0], conv[1])


def test_ensemble_predictor_runs_each_member_on_the_same_batch() -> None:
    predictor = EnsemblePredictor([RedChannel(), SmallConv(3)])
    x = torch.rand(3, 3, 8, 8)
    out = predictor.predict(x)
    assert out.shape == (2, 3, 8, 8) and predictor.n_samples == 2 and out.dtype == torch.float32


def test_side_by_side_workers_give_the_same_samples_and_restore_the_thread_count() -> None:
    members = [build_network("tiny", seed=s) for s in (0, 1, 2)]
    x = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    serial = EnsemblePredictor(members, workers=1).predict(x)
    side = EnsemblePredictor(members, workers=2)
    assert side.workers == 2
    # Three threads, not the module's (or the suite's) one: a count the passes' one thread each could
    # not leave behind by chance.
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        parallel = side.predict(x)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert parallel.shape == serial.shape == (3, 3, 48, 40) and parallel.dtype == torch.float32
    torch.testing.assert_close(parallel, serial, rtol=0, atol=1e-6)
    # A whole batch per pass (micro_batch) makes fewer tasks than workers: the same up to rounding
    # (oneDNN blocks a batch of 3 differently from single tiles).
    whole = EnsemblePredictor(members, workers=4, micro_batch=3).predict(x)
    torch.testing.assert_close(whole, serial, rtol=0, atol=1e-5)


def test_side_by_side_workers_keep_autocast_which_is_thread_local() -> None:
    members = [build_network("tiny", seed=s) for s in (0, 1)]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    exact = EnsemblePredictor(members, workers=2).predict(x)
    half_serial = EnsemblePredictor(members, workers=1, autocast=True).predict(x)
    half = EnsemblePredictor(members, workers=2, autocast=True).predict(x)
    torch.testing.assert_close(half, half_serial, rtol=0, atol=1e-6)
    assert float((half - exact).abs().max()) > 0  # bf16 did run in the worker threads


def test_lean_path_is_taken_by_eval_fcdensenets_only_and_gives_the_same_heatmaps(
    tissue_slide: Path, tmp_path: Path
) -> None:
    from analysis.models import export_torchscript, load_member

    nets = [build_network("tiny", seed=s) for s in (7, 8)]
    export_torchscript(nets[1], None, tmp_path / "m.pt")
    scripted, _ = load_member(tmp_path / "m.pt")
    assert EnsemblePredictor([nets[0], scripted, RedChannel()]).lean == [True, False, False]
    assert EnsemblePredictor(nets, lean=False).lean == [False, False]
    assert EnsemblePredictor(nets, autocast=True).lean == [False, False]  # bf16 runs the module
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)
    module_path = run_ensemble(tissue_slide, EnsemblePredictor(nets, lean=False, workers=1), options)
    lean = run_ensemble(tissue_slide, nets, replace(options, workers=1))
    np.testing.assert_allclose(lean.members, module_path.members, rtol=0, atol=1e-5)
    for name in ("mean", "entropy", "mutual_information", "variance"):
        np.testing.assert_allclose(getattr(lean, name), getattr(module_path, name), rtol=0, atol=1e-5)


def test_compiled_members_give_the_eager_heatmaps(tissue_slide: Path) -> None:
    # One small FC-DenseNet (one pooling, a layer a block), compiled by TorchInductor for the CPU (a C++
    # compiler): the compiled forward is the module's, fused, so equal up to float rounding. The "tiny"
    # preset took 35 CPU-seconds to compile with a cold cache, this one a few.
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4, workers=1)
    net = build_network(NetworkConfig(initial_features=8, growth_rate=4, down_blocks=(1,), bottleneck_layers=1), seed=4)
    compiled = EnsemblePredictor([net], workers=1, compile=True)
    assert compiled.lean == [False]  # a compiled member runs its module's forward
    eager = run_ensemble(tissue_slide, EnsemblePredictor([net], workers=1, lean=False), options)
    fused = run_ensemble(tissue_slide, compiled, options)
    assert fused.tiles_processed == eager.tiles_processed > options.batch_size
    np.testing.assert_allclose(fused.members, eager.members, rtol=0, atol=1e-4)


def test_workers_are_checked_and_default_to_the_thread_budget() -> None:
    with pytest.raises(ValueError, match="workers"):
        EnsemblePredictor([RedChannel()], workers=0)
    assert EnsemblePredictor([RedChannel()]).workers == torch.get_num_threads()


def test_side_by_side_workers_give_the_same_heatmaps_for_eager_and_torchscript_members(
    tissue_slide: Path, tmp_path: Path
) -> None:
    from analysis.models import export_torchscript, load_member

    nets = [build_network("tiny", seed=s) for s in (5, 6)]
    export_torchscript(nets[1], None, tmp_path / "m.pt")
    scripted, _ = load_member(tmp_path / "m.pt")
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)
    serial = run_ensemble(tissue_slide, nets, replace(options, workers=1))
    mixed = run_ensemble(tissue_slide, [nets[0], scripted], replace(options, workers=2))
    np.testing.assert_allclose(mixed.members, serial.members, rtol=0, atol=1e-6)
    for name in ("mean", "entropy", "mutual_information", "variance"):
        np.testing.assert_allclose(getattr(mixed, name), getattr(serial, name), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- progress, cancellation


def test_progress_rises_to_one(tissue_slide: Path) -> None:
    seen: list[float] = []
    run_ensemble(
        tissue_slide,
        [RedChannel()],
        InferenceOptions(level_downsample=1, heatmap_downsample=2, tile_size=48, overlap=4, batch_size=2),
        progress=seen.append,
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


def test_should_stop_cancels_and_stops_the_reader(tissue_slide: Path) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(InferenceCancelled):
        run_ensemble(
            tissue_slide,
            [RedChannel()],
            InferenceOptions(
                level_downsample=1,
                heatmap_downsample=1,
                tile_size=32,
                overlap=0,
                batch_size=1,
                prefetch=1,
            ),
            should_stop=stop,
        )
    assert not [t for t in threading.enumerate() if t.name == "tile-reader"]


def test_reader_errors_reach_the_caller(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such slide file"):
        run_ensemble(
            tmp_path / "missing.tiff",
            [RedChannel()],
            InferenceOptions(level_downsample=1, heatmap_downsample=1, tile_size=32, overlap=0),
        )


def test_members_can_live_in_a_memory_mapped_file(tissue_slide: Path, tmp_path: Path) -> None:
    result = run_ensemble(
        tissue_slide,
        [RedChannel()],
        InferenceOptions(
            level_downsample=2,
            heatmap_downsample=4,
            tile_size=32,
            overlap=4,
            members_path=tmp_path / "m.npy",
            members_dtype=np.float16,
        ),
    )
    stored = np.load(tmp_path / "m.npy")
    assert stored.dtype == np.float16 and stored.shape == result.members.shape
    np.testing.assert_allclose(result.mean, stored[0].astype(np.float32), atol=1e-6)


# --------------------------------------------------------------------------- heatmap files


def test_heatmap_tiff_round_trip_float32_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.random((600, 333), dtype=np.float32)
    path = write_heatmap_tiff(array, tmp_path / "s.tiff", downsample=16)
    again, downsample = read_heatmap_tiff(path)
    assert downsample == 16.0
    np.testing.assert_array_equal(again, array)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert len(tif.series[0].levels) == 3  # 600 -> 300 -> 150 rows
        assert json.loads(page.description)["downsample"] == 16.0
    # The project's general heatmap reader sees the same level 0.
    np.testing.assert_array_equal(read_heatmap(path), array)


def test_heatmap_tiff_uint16_and_zstd(tmp_path: Path) -> None:
    array = np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(50, 40)
    path = write_heatmap_tiff(array, tmp_path / "s.tiff", downsample=8, dtype="uint16", compression="zstd")
    again, downsample = read_heatmap_tiff(path)
    assert downsample == 8.0 and again.dtype == np.float32
    np.testing.assert_allclose(again, array, atol=0.5 / 65535 + 1e-7)


def test_heatmap_tiff_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2-D"):
        write_heatmap_tiff(np.zeros((2, 2, 2)), tmp_path / "x.tiff", downsample=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_heatmap_tiff(np.full((2, 2), 2.0), tmp_path / "x.tiff", downsample=1)
    tifffile.imwrite(tmp_path / "plain.tiff", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="not a SUA heatmap"):
        read_heatmap_tiff(tmp_path / "plain.tiff")


def test_torchscript_members_give_the_same_heatmaps_as_eager_ones(tissue_slide: Path, tmp_path: Path) -> None:
    from analysis.models import export_torchscript, load_member

    net = build_network("tiny", seed=4)
    export_torchscript(net, None, tmp_path / "m.pt")
    scripted, _ = load_member(tmp_path / "m.pt")
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)
    eager = run_ensemble(tissue_slide, [net], options)
    script = run_ensemble(tissue_slide, [scripted], options)
    np.testing.assert_allclose(script.mean, eager.mean, atol=1e-6)
    # MC dropout finds the dropout layers of a scripted model too.
    samples = MCDropoutPredictor(scripted, n_samples=2, seed=0).predict(torch.rand(1, 3, 32, 32))
    assert not torch.equal(samples[0], samples[1])


def test_bf16_on_the_cpu_is_opt_in_and_close_to_float32(tissue_slide: Path) -> None:
    members = [build_network("tiny", seed=s) for s in (0, 1)]
    options = InferenceOptions(level_downsample=2, heatmap_downsample=4, tile_size=64, overlap=8, batch_size=4)
    exact = run_ensemble(tissue_slide, members, options)
    half = run_ensemble(tissue_slide, members, replace(options, autocast=True))
    assert exact.members.dtype == half.members.dtype == np.float32
    np.testing.assert_allclose(half.members, exact.members, atol=0.05)


# --------------------------------------------------------------------------- slide reading

def test_read_region_is_white_outside_and_consistent_inside(noise_slide: Path) -> None:
    slide = open_slide(noise_slide)
    assert (slide.width, slide.height) == (700, 530)
    assert level_shape(slide, 4) == (132, 175)
    whole = read_region(slide, level_downsample=2, left=0, top=0, width=350, height=265)
    part = read_region(slide, level_downsample=2, left=-5, top=250, width=30, height=30)
    assert part.shape == (30, 30, 3) and part.dtype == np.uint8
    assert (part[:, :5] == 255).all() and (part[15:] == 255).all()
    np.testing.assert_array_equal(part[:15, 5:], whole[250:265, 0:25])


def test_read_region_reads_native_levels_exactly(tmp_path: Path) -> None:
    image = np.random.default_rng(5).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    slide = open_slide(write_slide(tmp_path / "s.tiff", image))
    np.testing.assert_array_equal(read_region(slide, level_downsample=1, left=0, top=0, width=320, height=256), image)
    np.testing.assert_array_equal(
        read_region(slide, level_downsample=2, left=10, top=20, width=40, height=30), image[::2, ::2][20:50, 10:50]
    )


def test_rgb_conversion_handles_grey_alpha_and_16_bit() -> None:
    from analysis.slide_io import to_rgb8

    grey = np.full((2, 2), 7, np.uint8)
    assert to_rgb8(grey).shape == (2, 2, 3) and (to_rgb8(grey) == 7).all()
    rgba = np.zeros((1, 1, 4), np.uint8)  # fully transparent: glass
    assert to_rgb8(rgba).tolist() == [[[255, 255, 255]]]
    assert to_rgb8(np.full((1, 1, 3), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]


def test_slides_that_do_not_decode_raise_a_slide_error(testdata: Path) -> None:
    from analysis.slide_io import SlideError

    for name in ("unreadable.svs", "unopenable.tiff"):
        slide = open_slide(testdata / name)
        with pytest.raises(SlideError, match="cannot read region"):
            read_region(slide, level_downsample=1, left=0, top=0, width=8, height=8)
    assert open_slide(testdata / "small.svs").mpp == pytest.approx(0.499)


@pytest.mark.parametrize("name", ["boxes.tiff", "small.svs"])
def test_a_tiff_cut_anywhere_is_refused_as_truncated_and_the_whole_file_passes(
    name: str, tmp_path: Path, testdata: Path
) -> None:
    from analysis.slide_io import SlideError, check_tiff_complete

    data = (testdata / name).read_bytes()
    check_tiff_complete(testdata / name)
    cut = tmp_path / name
    for size in range(8, len(data), 41):
        cut.write_bytes(data[:size])
        with pytest.raises(SlideError, match="the file is truncated"):
            check_tiff_complete(cut)


def test_files_that_are_not_tiff_are_left_to_the_decode_checks(tmp_path: Path) -> None:
    from analysis.slide_io import SlideError, check_tiff_complete

    notes = tmp_path / "notes.svs"
    notes.write_bytes(b"These are my notes, not a slide.\n")
    check_tiff_complete(notes)  # not a TIFF: nothing to say about its structure
    # ... and opening it is what refuses it, naming the problem.
    with pytest.raises(SlideError, match="cannot open the slide"):
        open_slide(notes)
