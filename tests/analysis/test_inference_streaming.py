"""Whole-slide inference at scale: streamed tiles, bounded memory, prompt progress and cancel."""

from __future__ import annotations

import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.inference import InferenceCancelled, InferenceOptions, run_ensemble
from analysis.models import build_network
from tests.analysis.test_inference import RedChannel, write_slide

# One torch thread (tests/analysis/conftest.py): the two cores are shared with other work.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

PIPELINE_THREADS = ("tile-reader", "tile-decoder", "ensemble-member")


class SlowRed(RedChannel):
    """:class:`RedChannel` that takes ``seconds`` per forward pass (a model busy on its tiles)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return super().forward(x)


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PIPELINE_THREADS)]


@pytest.fixture(scope="module")
def noise_slides(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Random-colour slides of 768 and 3072 pixels square (16 x the area)."""
    rng = np.random.default_rng(2)
    folder = tmp_path_factory.mktemp("noise")
    return {
        n: write_slide(folder / f"noise-{n}.tiff", rng.integers(0, 256, (n, n, 3), dtype=np.uint8), tile=256)
        for n in (768, 3072)
    }


def test_parallel_prefetched_decoding_gives_the_sequential_heatmaps(noise_slides: dict[int, Path]) -> None:
    members = [build_network("tiny", seed=s) for s in range(2)]
    sequential = InferenceOptions(
        level_downsample=2,
        heatmap_downsample=8,
        tile_size=96,
        overlap=16,
        batch_size=3,
        use_tissue_mask=False,
        prefetch=1,
        decode_threads=1,
        workers=1,
    )
    one = run_ensemble(noise_slides[768], members, sequential)
    streamed = run_ensemble(noise_slides[768], members, replace(sequential, prefetch=4, decode_threads=4, workers=2))
    assert one.tiles_processed == streamed.tiles_processed == 36
    # Same tiles, same passes: only oneDNN's float rounding may differ between thread counts.
    np.testing.assert_allclose(streamed.members, one.members, rtol=0, atol=1e-6)
    np.testing.assert_allclose(streamed.entropy, one.entropy, rtol=0, atol=1e-5)
    assert not pipeline_threads()


def test_memory_in_flight_does_not_grow_with_the_slide(noise_slides: dict[int, Path]) -> None:
    """The tiles in flight are bounded by the queue, whatever the slide's size.

    tracemalloc's peak during a run over what is still allocated after it:
    what the run held only while it ran (batches decoded ahead, tiles being
    read), not the results nor large-image's tile cache (bounded by
    large-image, kept after the run).  A model slower than the reader fills
    the queue, so an unbounded queue would hold a good part of the big
    slide's 576 tiles (44 MB) at once.
    """
    options = InferenceOptions(
        level_downsample=1, heatmap_downsample=16, tile_size=160, overlap=16, batch_size=4, use_tissue_mask=False
    )
    in_flight = {}
    tracemalloc.start()
    try:
        for n, path in noise_slides.items():
            tracemalloc.reset_peak()
            result = run_ensemble(path, [SlowRed(0.006)], options)
            current, peak = tracemalloc.get_traced_memory()
            in_flight[n] = (peak - current) / 2**20
            assert result.tiles_processed == (n // 128) ** 2
    finally:
        tracemalloc.stop()
    level_image_mb = 3072**2 * 3 / 2**20  # 27 MB: the big slide's level image, uint8
    assert in_flight[3072] < level_image_mb / 4, in_flight
    assert in_flight[3072] < in_flight[768] + 2, in_flight


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_is_answered_within_a_second_while_a_batch_is_in_the_model(
    noise_slides: dict[int, Path], workers: int
) -> None:
    # One batch of 36 tiles, 2 members at 0.1 s a pass: 7 s of work that a cancel must cut short.
    options = InferenceOptions(
        level_downsample=1,
        heatmap_downsample=8,
        tile_size=160,
        overlap=16,
        batch_size=36,
        use_tissue_mask=False,
        workers=workers,
    )
    asked: list[float] = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return len(asked) > 1 and asked[-1] - asked[0] > 0.5

    # Three threads, not the module's one: a count that side-by-side passes (one thread each) could not
    # leave behind by chance when cancelled.
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with pytest.raises(InferenceCancelled, match="stopped after 0 of 36 tiles"):
            run_ensemble(noise_slides[768], [SlowRed(0.1), SlowRed(0.1)], options, should_stop=stop)
        answered = time.monotonic()
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert answered - asked[-1] < 1.0
    gaps = np.diff(asked)
    assert gaps.max() < 1.0, gaps
    assert not pipeline_threads()
    assert threads_after == 3


def test_progress_is_reported_at_least_every_second_within_a_batch(noise_slides: dict[int, Path]) -> None:
    options = InferenceOptions(
        level_downsample=1, heatmap_downsample=8, tile_size=160, overlap=16, batch_size=12, use_tissue_mask=False
    )
    seen: list[tuple[float, float]] = []
    run_ensemble(noise_slides[768], [SlowRed(0.05)], options, progress=lambda f: seen.append((time.monotonic(), f)))
    times, fractions = np.array(seen).T
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert (np.diff(fractions) > 0).all()
    # 3 batches of 0.6 s: fractions between whole batches show progress inside them.
    assert set(np.round(fractions * 3, 6)) - {0.0, 1.0, 2.0, 3.0}
    assert np.diff(times).max() < 1.0


def test_bad_streaming_options_are_refused_before_any_slide_is_opened() -> None:
    for bad in ({"decode_threads": 0}, {"prefetch": 0}, {"batch_size": 0}, {"poll_s": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            InferenceOptions(level_downsample=1, heatmap_downsample=1, **bad)  # type: ignore[arg-type]
