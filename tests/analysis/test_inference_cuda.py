"""Whole-slide inference on a CUDA GPU: the pinned-memory, copy-stream, bf16 path against the CPU's.

Skipped where torch sees no GPU (CI has none).  Self-contained, so that on a GPU
machine without the web stack it runs as
``python -m pytest -c /dev/null --noconftest -p no:cacheprovider tests/analysis/test_inference_cuda.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.inference import InferenceCancelled, InferenceOptions, run_ensemble
from analysis.models import build_network
from tests.analysis.test_inference import write_slide

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def tissue_like_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 x 1,100 px: smooth pink tissue with purple nuclei on white glass (no side a tile multiple)."""
    rng = np.random.default_rng(5)
    h, w = 1100, 1500
    image = np.full((h, w, 3), 240, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    tissue = ((yy - 550) / 450) ** 2 + ((xx - 700) / 600) ** 2 < 1
    image[tissue] = (220, 140, 190)
    nuclei = tissue & (rng.random((h, w)) < 0.08)
    image[nuclei] = (90, 40, 140)
    return write_slide(tmp_path_factory.mktemp("cuda") / "tissue.tiff", image, tile=128)


def options(device: str, **changes: object) -> InferenceOptions:
    base: dict[str, object] = {
        "level_downsample": 2,
        "heatmap_downsample": 8,
        "tile_size": 128,
        "overlap": 16,
        "batch_size": 7,  # the last batch is partial
        "device": device,
        "workers": 1,
    }
    base.update(changes)
    return InferenceOptions(**base)  # type: ignore[arg-type]


def members() -> list[torch.nn.Module]:
    return [build_network("tiny", seed=s) for s in range(3)]


def test_the_gpu_gives_the_cpus_heatmaps_in_float32_and_within_bf16_rounding_under_autocast(
    tissue_like_slide: Path,
) -> None:
    cpu = run_ensemble(tissue_like_slide, members(), options("cpu"))
    exact = run_ensemble(tissue_like_slide, members(), options("cuda", autocast=False))
    mixed = run_ensemble(tissue_like_slide, members(), options("cuda"))  # bf16 autocast, the GPU default
    assert cpu.tiles_processed == exact.tiles_processed == mixed.tiles_processed > 7
    assert cpu.tiles_processed % 7  # a partial last batch: the GPU pads it, the heatmaps must not show it
    assert (cpu.tissue == exact.tissue).all() and (cpu.tissue == mixed.tissue).all()
    tissue = cpu.tissue
    # float32 on both (cuDNN may use TF32 for convolutions: 10-bit mantissas)
    np.testing.assert_allclose(exact.members[:, tissue], cpu.members[:, tissue], rtol=0, atol=5e-3)
    # bf16 activations: 8-bit mantissas through every layer of the network
    diff = np.abs(mixed.members[:, tissue] - cpu.members[:, tissue])
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())
    np.testing.assert_allclose(mixed.mean[tissue], cpu.mean[tissue], rtol=0, atol=0.05)
    # nothing outside tissue, on any device
    assert not mixed.members[:, ~tissue].any()


def test_progress_reaches_one_and_a_cancel_on_the_gpu_stops_the_reader(tissue_like_slide: Path) -> None:
    seen: list[float] = []
    run_ensemble(tissue_like_slide, members(), options("cuda"), progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and (np.diff(seen) > 0).all()

    asked: list[float] = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return len(asked) > 2

    with pytest.raises(InferenceCancelled):
        run_ensemble(tissue_like_slide, members(), options("cuda", batch_size=2), should_stop=stop)
    assert time.monotonic() - asked[-1] < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith(("tile-reader", "tile-decoder"))]


def test_compiled_members_on_the_gpu_give_the_eager_heatmaps(tissue_like_slide: Path) -> None:
    eager = run_ensemble(tissue_like_slide, members()[:1], options("cuda"))
    compiled = run_ensemble(tissue_like_slide, members()[:1], options("cuda", compile=True))
    tissue = eager.tissue
    assert compiled.tiles_processed == eager.tiles_processed > 7
    np.testing.assert_allclose(compiled.members[:, tissue], eager.members[:, tissue], rtol=0, atol=0.02)
