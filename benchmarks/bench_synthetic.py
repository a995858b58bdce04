"""Benchmark: synthetic H&E slide generation (per slide, per megapixel, and a whole cohort).

Renders one in-domain and one shifted slide of the demo size (8192 x 6144 at
1 um/px by default) and reports wall time, megapixels per second and file size;
with ``--cohort`` it also writes the demo cohort (18 slides, the budget is two
minutes on two cores) and reports its wall time.

Run::

    .venv/bin/python benchmarks/bench_synthetic.py --width 8192 --height 6144 [--cohort]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.synthetic import SlideSpec, generate_cohort, generate_slide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--height", type=int, default=6144)
    parser.add_argument("--mpp", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cohort", action="store_true", help="also time the demo cohort")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for domain in ("in-domain", "shifted"):
            spec = SlideSpec(
                seed=args.seed,
                width=args.width,
                height=args.height,
                mpp=args.mpp,
                domain=domain,
                lesions=("macro", "itc"),
            )
            path = Path(tmp) / f"{domain}.tiff"
            t0 = time.perf_counter()
            slide = generate_slide(spec, path)
            dt = time.perf_counter() - t0
            mp = args.width * args.height / 1e6
            print(
                f"{domain:9s} {args.width}x{args.height} ({mp:.0f} MP, {slide.spec.n_levels} levels): {dt:.2f} s, "
                f"{mp / dt:.1f} MP/s, {path.stat().st_size / 2**20:.1f} MiB, lesions "
                f"{[(les.kind, round(les.major_axis_um)) for les in slide.lesions]}"
            )
        if args.cohort:
            t0 = time.perf_counter()
            entries = generate_cohort(Path(tmp) / "demo", preset="demo", seed=args.seed, workers=args.workers)
            dt = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in (Path(tmp) / "demo").rglob("*") if p.is_file())
            print(f"demo cohort: {len(entries)} slides in {dt:.1f} s, {size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
