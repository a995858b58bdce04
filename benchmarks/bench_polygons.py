"""Benchmark: NPR polygons in one pass vs a per-region ``find_contours`` loop.

On a Camelyon-size heatmap (a slide of about 100 000 x 200 000 level-0 pixels
at downsample 16: 6000 x 12000 = 72 megapixels; smooth random segmentation
field as in ``bench_sua_aggregate.py``, so thousands of NPRs), outline every
NPR of the paper's widest range

- our way: :func:`analysis.polygons.region_polygons` (all regions at once);
- the loop: per region (``scipy.ndimage.find_objects`` box, padded),
  ``skimage.measure.find_contours(mask, 0.5, fully_connected="high")``, rings
  classified by orientation into shell and holes, one shapely Polygon each;

check that both draw the same outlines (unsimplified: equal areas, symmetric
difference 0 to rounding), that ours are valid, and print times, the speed
ratio and the vertex counts with and without the default simplification.

Run::

    .venv/bin/python benchmarks/bench_polygons.py --size 6000 12000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import shapely
from scipy import ndimage as ndi
from skimage.measure import find_contours

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_sua_aggregate import best_time, realistic_pair  # this folder, first on sys.path

from analysis import defaults
from analysis.polygons import region_polygons
from analysis.sua import negative_prediction_regions


def find_contours_loop(labels: np.ndarray, downsample: float) -> np.ndarray:
    """One region at a time: crop, contour, shell and holes."""
    out = np.empty(int(labels.max()), dtype=object)
    for i, box in enumerate(ndi.find_objects(labels)):
        rows, cols = box
        crop = np.pad(labels[box] == i + 1, 1).astype(np.float64)
        shells: list[shapely.LinearRing] = []
        holes: list[shapely.LinearRing] = []
        for contour in find_contours(crop, 0.5, fully_connected="high"):
            # (row, col) of pixel centres in the padded crop -> level-0 (x, y).
            x = (contour[:, 1] - 1 + cols.start + 0.5) * downsample
            y = (contour[:, 0] - 1 + rows.start + 0.5) * downsample
            ring = shapely.LinearRing(np.column_stack((x, y)))
            (shells if ring.is_ccw else holes).append(ring)
        if len(shells) != 1:
            raise AssertionError(f"region {i + 1}: {len(shells)} outer rings")
        out[i] = shapely.Polygon(shells[0], holes)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", nargs=2, type=int, default=(6000, 12000), metavar=("H", "W"), help="heatmap size (default 6000 12000)"
    )
    parser.add_argument("--downsample", type=float, default=16.0)
    parser.add_argument("--lower", type=float, default=defaults.PAPER_RANGES[0][0])
    parser.add_argument("--upper", type=float, default=defaults.PAPER_RANGES[0][1])
    parser.add_argument(
        "--blob-px", type=int, default=6, help="coarse grid step of the random field (smaller = more NPRs)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    args = parser.parse_args(argv)

    height, width = args.size
    segmentation, _ = realistic_pair(height, width, seed=args.seed, blob_px=args.blob_px)
    labels = negative_prediction_regions(segmentation, lower=args.lower, upper=args.upper)
    del segmentation
    d = args.downsample

    t_exact, exact = best_time(lambda: region_polygons(labels, downsample=d, tolerance=0.0), args.repeat)
    t_simple, simple = best_time(lambda: region_polygons(labels, downsample=d), args.repeat)
    t_loop, looped = best_time(lambda: find_contours_loop(labels, d), args.repeat)

    assert shapely.is_valid(exact).all() and shapely.is_valid(simple).all(), "invalid polygons"
    area = shapely.area(looped)
    assert np.allclose(shapely.area(exact), area, rtol=1e-9, atol=0), "areas differ"
    difference = shapely.area(shapely.symmetric_difference(exact, looped))
    worst = float((difference / area).max())
    assert worst < 1e-9, f"outlines differ (symmetric difference up to {worst:.2e} of a region's area)"
    simplified_change = float(np.abs(shapely.area(simple) - area).sum() / area.sum())

    n = labels.max()
    holes = int(shapely.get_num_interior_rings(exact).sum())
    print(
        f"heatmap {height}x{width} ({height * width / 1e6:.0f} MP) at downsample {d:g}, "
        f"range ({args.lower}, {args.upper}): {n} NPRs ({holes} holes), "
        f"{np.count_nonzero(labels) / labels.size:.1%} of the slide"
    )
    print(
        f"ours, exact (collinear vertices dropped): {t_exact:8.2f} s  {shapely.get_num_coordinates(exact).sum():>10} vertices"
    )
    print(
        f"ours, simplified (default tolerance):     {t_simple:8.2f} s  {shapely.get_num_coordinates(simple).sum():>10} vertices"
    )
    print(
        f"per-region find_contours loop:            {t_loop:8.2f} s  {shapely.get_num_coordinates(looped).sum():>10} vertices"
    )
    print(f"speed-up (exact vs loop):                 {t_loop / t_exact:8.2f} x")
    print(
        f"same outlines: max symmetric difference {worst:.1e} of a region's area; simplification moved {simplified_change:.1e} of the area"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
