"""Benchmark: the Camelyon-size synthetic slide, streamed, against the simple way in the same run.

1. Mid-size slides at the Camelyon resolution (default 8192 and 16384 square at 0.243 µm/px),
   each made both ways, each in its own process (so that each peak RSS is its own):

   - the simple way, :func:`analysis.synthetic.generate_slide`: the layout on an
     8 µm grid, every cell of the slide at once, bands the full width of the slide,
     level 1 kept whole (in memory, or a temporary memory map over 512 MiB);
   - the streamed way, :func:`analysis.synthetic.generate_large_slide`: a 16 µm
     layout, cells per strip, windows of 8,192 columns, glass rows copied, the
     reduced levels spooled as JPEG tiles.

   Both report wall time, megapixels per second, peak RSS and the file's size.
2. The large slide (or the band of it) that ``make benchmarks-large`` wrote, from
   its JSON description: layout and pixel time, peak RSS, and the time projected
   to the whole slide (the band's time per row over the rows that hold tissue;
   glass rows are copied, nearly free).

Run::

    .venv/bin/python benchmarks/bench_large_slide.py [--size 8192 8192 ...] [--slide var/large/....json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.synthetic import SlideSpec, generate_large_slide, generate_slide
from analysis.synthetic.large import CAMELYON_MPP
from analysis.synthetic.spec import LesionKind


def child(way: str, width: int, height: int, seed: int) -> int:
    """Make one slide one way and print its figures as JSON (run in a fresh process)."""
    # a micro-metastasis needs a node of some millimetres: 8,192 px at 0.243 µm/px is 2 mm
    lesions: tuple[LesionKind, ...] = ("micro", "itc") if min(width, height) >= 8192 else ("itc",)
    spec = SlideSpec(seed=seed, width=width, height=height, mpp=CAMELYON_MPP, lesions=lesions)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{way}.tiff"
        t0 = time.perf_counter()
        slide = (generate_slide if way == "simple" else generate_large_slide)(spec, path)
        elapsed = time.perf_counter() - t0
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"elapsed_s": elapsed, "peak_rss_mib": peak, "mib": size / 2**20, "lesions": len(slide.lesions)}))
    return 0


def side_by_side(width: int, height: int, seed: int) -> None:
    mp = width * height / 1e6
    print(f"mid-size slide {width}x{height} at {CAMELYON_MPP} µm/px ({mp:.0f} MP), each way in its own process:")
    for way in ("simple", "streamed"):
        run = subprocess.run(
            [sys.executable, __file__, "--child", way, "--size", str(width), str(height), "--seed", str(seed)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"  {way:8s}: {r['elapsed_s']:7.1f} s, {mp / r['elapsed_s']:5.2f} MP/s, "
            f"peak RSS {r['peak_rss_mib']:6.0f} MiB, {r['mib']:.0f} MiB file"
        )


def large(description: Path) -> None:
    d = json.loads(description.read_text())
    rows = d.get("rows")
    band_rows = d["height"]
    whole = d.get("whole_height", band_rows)
    mp = d["width"] * band_rows / 1e6
    what = f"band of rows {rows[0]}-{rows[1]}" if rows else "whole slide"
    print(
        f"large slide {d['width']}x{whole} at {d['mpp']} µm/px, {what} ({mp:.0f} MP): layout {d['layout_s']:.0f} s, "
        f"pixels and pyramid {d['elapsed_s']:.0f} s ({mp / d['elapsed_s']:.2f} MP/s), peak RSS {d['peak_rss_mib']} MiB"
    )
    if rows:
        t0, t1 = d["tissue_rows"]
        per_row = d["elapsed_s"] / band_rows
        tissue = d["layout_s"] + per_row * (t1 - t0)
        every = d["layout_s"] + per_row * whole
        print(
            f"  projected whole slide: {tissue / 60:.0f} min (tissue in rows {t0:.0f}-{t1:.0f}, glass copied), "
            f"at most {every / 60:.0f} min (every row like the band); peak RSS the same (nothing grows with the rows)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        action="append",
        metavar=("W", "H"),
        help="mid size (repeat; default 8192 and 16384 square)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slide", type=Path, default=None, help="JSON description of the large slide written")
    parser.add_argument("--child", choices=["simple", "streamed"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.size or [(8192, 8192), (16384, 16384)]
    if args.child:
        width, height = sizes[0]
        return child(args.child, width, height, args.seed)
    for width, height in sizes:
        side_by_side(width, height, args.seed)
    if args.slide is not None and args.slide.exists():
        large(args.slide)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
