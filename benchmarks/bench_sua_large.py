"""Benchmark: SUA on the heatmaps of a Camelyon-size slide, against the simple way, in the same run.

The heatmaps are those of the Camelyon-size synthetic slide (98,000 x 215,000 px at
0.243 µm/px) at downsample 16: 6,125 x 13,438 pixels.  They are synthesised
directly at that size from the slide's annotations, not predicted from its
pixels: its tissue and tumor outlines (from the JSON description ``make
benchmarks-large`` wrote, or from the slide's layout when that is missing or only
a band) are rasterised with :func:`analysis.annotations.rasterize`; the
segmentation is a smooth random field (as in ``bench_sua_aggregate.py``) whose
logit is raised inside tumor, zero on glass, so that the NPRs are thousands of
blobs in the tissue and some under-called parts of the metastases; the
uncertainty is its binary entropy (float32, as heatmaps are stored).

For each of the paper's four ranges:

- ours: :func:`analysis.sua.find_regions` (NPR labels, mean scores, areas, boxes,
  truth fraction) and the NPR outlines of :func:`analysis.polygons.region_polygons`
  (holes kept, valid, simplified);
- the simple way: ``skimage.measure.label`` + ``regionprops`` (mean uncertainty,
  area, box and truth fraction per region) and ``skimage.measure.find_contours``
  on each region's box (outer ring only).

Printed: times, speed ratios, the peak traced memory of each way on the widest
range against the bytes of the inputs (target: under 3x), and a run over 100
such slides projected from the measurement.

Run::

    .venv/bin/python benchmarks/bench_sua_large.py [--slide var/large/....json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage as ndi
from shapely.geometry import Polygon
from skimage.measure import find_contours, label, regionprops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_sua_aggregate import realistic_pair  # this folder, first on sys.path

from analysis import defaults
from analysis.annotations import rasterize
from analysis.polygons import region_polygons
from analysis.sua import find_regions
from analysis.synthetic import camelyon_spec
from analysis.synthetic.large import LargeSlide
from analysis.uncertainty import binary_entropy

#: Level-0 pixels per heatmap pixel.
DOWNSAMPLE = 16
#: How much a metastasis raises the model's evidence (logit): most of it is called, some parts are NPRs.
TUMOR_LOGIT = 9.6


def slide_outlines(description: Path | None, seed: int) -> tuple[list[Polygon], list[Polygon], tuple[int, int]]:
    """Tumor and tissue outlines (level-0 px) of the whole slide and its (width, height)."""
    if description is not None and description.exists():
        d = json.loads(description.read_text())
        if not d.get("rows"):
            return (
                [shapely.from_wkt(w) for w in d["tumor_wkt"]],
                [shapely.from_wkt(w) for w in d["tissue_wkt"]],
                (d["width"], d["height"]),
            )
    spec = camelyon_spec(seed)
    slide = LargeSlide(spec)
    return [les.polygon for les in slide.lesions], list(slide.tissue), (spec.width, spec.height)


def slide_heatmaps(tumor: np.ndarray, tissue: np.ndarray, *, seed: int, blob_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation and uncertainty (H, W) float32: a random field's logit, raised in tumor, 0 on glass."""
    s, entropy = realistic_pair(*tumor.shape, seed=seed, blob_px=blob_px)
    del entropy
    np.clip(s, 1e-6, 1 - 1e-6, out=s)
    logit = np.log(s)
    logit -= np.log1p(-s)
    logit[tumor] += TUMOR_LOGIT
    np.negative(logit, out=logit)
    np.exp(logit, out=logit)
    logit += 1.0
    np.reciprocal(logit, out=s)
    del logit
    s[~tissue] = 0.0
    return s, binary_entropy(s)


def contours_per_region(labels: np.ndarray) -> list[Polygon]:
    """The simple way's outlines: one per region, ``find_contours`` on its box (level-0 px; holes left out)."""
    out = []
    for i, box in enumerate(ndi.find_objects(labels)):
        if box is None:
            out.append(Polygon())
            continue
        crop = np.pad(labels[box] == i + 1, 1)
        ring = max(find_contours(crop.astype(np.float32), 0.5), key=len)
        rows, cols = box
        xy = np.column_stack((ring[:, 1] - 1 + cols.start + 0.5, ring[:, 0] - 1 + rows.start + 0.5)) * DOWNSAMPLE
        out.append(Polygon(xy))
    return out


def our_outlines(labels: np.ndarray) -> npt.NDArray[np.object_]:
    return region_polygons(labels, downsample=DOWNSAMPLE)


def simple_regions(s: np.ndarray, u: np.ndarray, truth: np.ndarray, lower: float, upper: float) -> Any:
    """NPR labels and, region by region, mean uncertainty, area, box and truth fraction."""
    labels = label((s > lower) & (s < upper), connectivity=2)
    means, areas, boxes, fractions = [], [], [], []
    for region in regionprops(labels, intensity_image=u):
        inside = region.image
        means.append(np.mean(region.image_intensity[inside].astype(np.float64)))
        areas.append(region.area)
        boxes.append(region.bbox)
        fractions.append(np.mean(truth[region.slice][inside]))
    return labels, np.array(means)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def traced_peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=None, help="JSON description of the large slide written")
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument("--blob-px", type=int, default=8, help="coarse grid step of the random field (heatmap px)")
    parser.add_argument("--slides", type=int, default=100, help="slides of the projected run")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    tumor_outlines, tissue_outlines, (width, height) = slide_outlines(args.slide, args.seed)
    shape = (-(-height // DOWNSAMPLE), -(-width // DOWNSAMPLE))
    truth = rasterize(shapely.union_all(tumor_outlines), shape=shape, downsample=DOWNSAMPLE)
    tissue = rasterize(shapely.union_all(tissue_outlines), shape=shape, downsample=DOWNSAMPLE)
    s, u = slide_heatmaps(truth, tissue, seed=args.seed, blob_px=args.blob_px)
    del tissue
    input_bytes = s.nbytes + u.nbytes + truth.nbytes
    print(
        f"heatmaps {shape[1]}x{shape[0]} ({s.size / 1e6:.0f} MP) at downsample {DOWNSAMPLE} of a {width}x{height} "
        f"slide, synthesised from its annotations in {time.perf_counter() - t0:.0f} s; tumor {truth.mean():.2%}; "
        f"inputs {input_bytes / 2**20:.0f} MiB"
    )

    total_ours = total_simple = 0.0
    for lower, upper in defaults.PAPER_RANGES:
        t_regions, regions = timed(partial(find_regions, s, u, lower=lower, upper=upper, how="mean", truth=truth))
        t_outlines, polys = timed(partial(our_outlines, regions.labels))
        t_simple, (labels, means) = timed(partial(simple_regions, s, u, truth, lower, upper))
        t_loop = timed(partial(contours_per_region, labels))[0]
        assert np.array_equal(regions.labels, labels), "labels differ from skimage's"
        assert np.allclose(regions.scores, means, rtol=1e-9, atol=0), "mean scores differ"
        assert len(polys) == regions.n_regions
        total_ours += t_regions + t_outlines
        total_simple += t_simple + t_loop
        fn = int(np.count_nonzero(regions.is_false_negative)) if regions.is_false_negative is not None else 0
        print(
            f"range ({lower}, {upper}): {regions.n_regions:6d} NPRs ({fn:3d} false negatives): ours regions "
            f"{t_regions:5.1f} s + outlines {t_outlines:5.1f} s; simple way regionprops {t_simple:5.1f} s "
            f"({t_simple / t_regions:4.1f} x) + outlines {t_loop:5.1f} s"
        )
    lower, upper = defaults.PAPER_RANGES[0]

    def our_way() -> None:
        our_outlines(find_regions(s, u, lower=lower, upper=upper, how="mean", truth=truth).labels)

    def the_simple_way() -> None:
        contours_per_region(simple_regions(s, u, truth, lower, upper)[0])

    peak_ours = traced_peak(our_way)
    peak_simple = traced_peak(the_simple_way)
    print(f"four ranges: ours {total_ours:.1f} s, simple way {total_simple:.1f} s ({total_simple / total_ours:.2f} x)")
    print(
        f"peak traced memory, widest range: ours {peak_ours / 2**20:.0f} MiB = {peak_ours / input_bytes:.2f} x the "
        f"inputs (target < 3), simple way {peak_simple / 2**20:.0f} MiB = {peak_simple / input_bytes:.2f} x"
    )
    print(
        f"projected run over {args.slides} such slides (four ranges each, one core, heatmaps in memory): ours "
        f"{args.slides * total_ours / 60:.0f} min, simple way {args.slides * total_simple / 60:.0f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
