"""Benchmark: vectorised NPR aggregation vs the scikit-image ``regionprops`` way.

On a realistic slide-sized pair (smooth random segmentation field, so that the
negative prediction regions are blobs, thousands of them; uncertainty = entropy
of the segmentation, float32 as the heatmaps are stored), compute the NPR
labels and their mean and 90th-percentile uncertainty

- our way: ``negative_prediction_regions`` + ``aggregate_uncertainties``;
- the scikit-image way: ``skimage.measure.label`` + ``regionprops`` with an
  intensity image, then ``np.mean`` / ``np.percentile`` per region (on float64
  values, the definition ``aggregate_uncertainty`` documents);

check that both agree (labels identical, scores ``allclose`` with
``rtol=1e-12``), and print times, the speed ratio and the peak traced memory
(``tracemalloc``) of our way relative to the bytes of the two input arrays.

Run::

    .venv/bin/python benchmarks/bench_sua_aggregate.py --size 4000 6000
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import defaults
from analysis.sua import aggregate_uncertainties, negative_prediction_regions
from analysis.uncertainty import binary_entropy


def realistic_pair(height: int, width: int, *, seed: int, blob_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random segmentation heatmap and its entropy, both float32.

    White noise on a grid ``blob_px`` times coarser, smoothed and upsampled
    bilinearly, then squashed by a logistic so that most of the slide is
    confidently negative, a few percent positive and the rest in between.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((-(-height // blob_px), -(-width // blob_px))).astype(np.float32)
    coarse = ndi.gaussian_filter(coarse, 2.0)
    field = ndi.zoom(coarse, blob_px, order=1)[:height, :width]
    field /= field.std()
    segmentation = (1.0 / (1.0 + np.exp(-3.0 * (field - 1.0)))).astype(np.float32)
    return segmentation, binary_entropy(segmentation)


def ours(
    segmentation: np.ndarray, uncertainty: np.ndarray, lower: float, upper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = negative_prediction_regions(segmentation, lower=lower, upper=upper)
    mean, p90 = aggregate_uncertainties(labels, uncertainty, hows=("mean", "p90"))
    return labels, mean, p90


def skimage_way(
    segmentation: np.ndarray, uncertainty: np.ndarray, lower: float, upper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = label((segmentation > lower) & (segmentation < upper), connectivity=2)
    means = []
    p90s = []
    for region in regionprops(labels, intensity_image=uncertainty):
        values = region.image_intensity[region.image].astype(np.float64)
        means.append(np.mean(values))
        p90s.append(np.percentile(values, 90))
    return labels, np.array(means), np.array(p90s)


def best_time(fn, repeat: int):  # type: ignore[no-untyped-def]
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", nargs=2, type=int, default=(4000, 6000), metavar=("H", "W"), help="heatmap size (default 4000 6000)"
    )
    parser.add_argument("--lower", type=float, default=defaults.PAPER_RANGES[0][0])
    parser.add_argument("--upper", type=float, default=defaults.PAPER_RANGES[0][1])
    parser.add_argument(
        "--blob-px", type=int, default=6, help="coarse grid step of the random field (smaller = more NPRs)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    args = parser.parse_args(argv)

    height, width = args.size
    segmentation, uncertainty = realistic_pair(height, width, seed=args.seed, blob_px=args.blob_px)
    input_bytes = segmentation.nbytes + uncertainty.nbytes

    t_ours, (labels, mean, p90) = best_time(
        lambda: ours(segmentation, uncertainty, args.lower, args.upper), args.repeat
    )
    t_ref, (ref_labels, ref_mean, ref_p90) = best_time(
        lambda: skimage_way(segmentation, uncertainty, args.lower, args.upper),
        args.repeat,
    )
    assert np.array_equal(labels, ref_labels), "labels differ from skimage's"
    assert np.allclose(mean, ref_mean, rtol=1e-12, atol=0), "means differ"
    assert np.allclose(p90, ref_p90, rtol=1e-12, atol=0), "p90 differ"

    tracemalloc.start()
    ours(segmentation, uncertainty, args.lower, args.upper)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    n = int(labels.max())
    fraction = float(np.count_nonzero(labels)) / labels.size
    print(
        f"heatmaps {height}x{width} ({height * width / 1e6:.1f} MP), "
        f"range ({args.lower}, {args.upper}): {n} NPRs covering {fraction:.1%}"
    )
    print(f"ours (label + mean + p90):        {t_ours * 1e3:8.1f} ms")
    print(f"skimage regionprops (same work):  {t_ref * 1e3:8.1f} ms")
    print(f"speed-up:                          {t_ref / t_ours:8.2f} x  (target >= 1.5)")
    print(
        f"peak traced memory (ours):        {peak / 2**20:8.1f} MiB = "
        f"{peak / input_bytes:.2f} x the two inputs ({input_bytes / 2**20:.0f} MiB; "
        "target <= 3)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
