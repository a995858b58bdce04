"""Benchmark: whole-slide ensemble inference, our pipeline vs the naive way.

On a synthetic H&E slide (``analysis.synthetic``, a lymph node with
metastases on glass), with a K-member tiny FC-DenseNet ensemble (random He
weights by default, or trained checkpoints from ``--members-dir``):

- ours: :func:`analysis.inference.run_ensemble`: tissue mask first, only
  tissue tiles, each tile read once (by a reader thread, overlapped with
  compute) and run through all K members, channels_last, with ``--workers``
  (member, tile) passes side by side, one thread each (default: every core);
- naive: each member separately over every tile of the slide (no tissue
  mask), batch 1, NCHW, reading each tile again for every member, with
  ``--threads`` torch threads (default 1: on a small shared CPU, intra-op
  threads make these few-millisecond convolutions slower, up to several
  times when other processes load the cores, so 1 is the naive way at its best).

Ours is also timed with one worker (``ours 1 core``: the naive way's budget),
so the gain of the pipeline and the gain of the second core read apart.

Both cut the same tiles with the same overlap and stitch the same way, so
their per-member heatmaps must agree on tissue (``allclose``, atol 1e-5);
the script checks that, then prints both throughputs and the speed ratio.
Throughput is in slide tiles per second: the tiles that cover the whole
slide divided by the wall time, i.e. how fast a slide gets done, whatever
was skipped.

Run::

    .venv/bin/python benchmarks/bench_inference.py                  # 8192 x 6144 slide, level 4
    .venv/bin/python benchmarks/bench_inference.py --workers 1 --size 4096 4096   # one core each
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.inference import InferenceOptions, plan_tiles, run_ensemble
from analysis.models import build_network, load_member, tumor_probability
from analysis.slide_io import level_shape, open_slide, read_region


def naive(
    slide_path: Path,
    members: list[nn.Module],
    *,
    level: float,
    heatmap: float,
    tile: int,
    overlap: int,
    channels_last: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Each member on every tile, one tile at a time: (K, H', W') float32.

    PyTorch's default NCHW layout unless ``channels_last`` (for the breakdown);
    the members must be on ``device`` already, each tile goes there and back.
    """
    slide = open_slide(slide_path)
    grid_shape = level_shape(slide, level)
    factor = round(heatmap / level)
    grid = plan_tiles(grid_shape, factor=factor, tile_size=tile, overlap=overlap)
    core = grid.core
    out = np.zeros((len(members), *grid.heatmap_shape), dtype=np.float32)
    for k, model in enumerate(members):
        model.eval()
        for top, left in grid.cores:
            image = read_region(
                slide, level_downsample=level, left=int(left) - overlap, top=int(top) - overlap, width=tile, height=tile
            )
            x = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None].to(device).float() / 255.0
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                p = tumor_probability(model, x)[0, overlap : overlap + core, overlap : overlap + core].cpu().numpy()
            valid_h, valid_w = min(core, grid_shape[0] - int(top)), min(core, grid_shape[1] - int(left))
            p = p[:valid_h, :valid_w].astype(np.float64)
            # Block means over the heatmap grid, partial blocks at the edge averaging what they hold.
            rows, cols = np.arange(0, valid_h, factor), np.arange(0, valid_w, factor)
            sums = np.add.reduceat(np.add.reduceat(p, rows, axis=0), cols, axis=1)
            counts = np.outer(np.diff(np.append(rows, valid_h)), np.diff(np.append(cols, valid_w)))
            r0, c0 = int(top) // factor, int(left) // factor
            out[k, r0 : r0 + sums.shape[0], c0 : c0 + sums.shape[1]] = sums / counts
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", type=Path, help="an existing slide (default: generate a synthetic one)")
    parser.add_argument("--size", type=int, nargs=2, default=(8192, 6144), metavar=("W", "H"))
    parser.add_argument("--mpp", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--members-dir", type=Path, help="load member-*.pt checkpoints instead of random weights")
    parser.add_argument("--level", type=float, default=4.0, help="level_downsample")
    parser.add_argument("--heatmap", type=float, default=16.0, help="heatmap_downsample")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (naive; ours per pass)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="ours: forward passes side by side, one thread each (default: every core)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--bf16", action="store_true", help="also time ours with bf16 autocast on the CPU (not bit-exact)"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the naive way with channels_last (what layout alone gives)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        slide_path = args.slide
        if slide_path is None:
            from analysis.synthetic import SlideSpec, generate_slide

            t0 = time.perf_counter()
            made = generate_slide(
                SlideSpec(seed=args.seed, width=args.size[0], height=args.size[1], mpp=args.mpp, tumor=True),
                Path(tmp) / "slide.tiff",
            )
            slide_path = made.path
            print(
                f"synthetic slide {args.size[0]} x {args.size[1]} at {args.mpp} um/px "
                f"({time.perf_counter() - t0:.1f} s to render)"
            )
        if args.members_dir is not None:
            paths = sorted(args.members_dir.glob("member-*.pt"))[: args.members]
            members = [load_member(p)[0] for p in paths]
        else:
            members = [build_network("tiny", seed=s) for s in range(args.members)]
        # Our pipeline converts its models to channels_last in place: the naive way gets pristine copies.
        pristine = [copy.deepcopy(m).eval() for m in members]
        params = sum(p.numel() for p in members[0].parameters())
        print(
            f"{len(members)} members, {params} parameters each; level downsample {args.level:g}, heatmap "
            f"{args.heatmap:g}, tile {args.tile}, overlap {args.overlap}, batch {args.batch}, "
            f"{args.threads} thread(s), ours {args.workers} worker(s), device {args.device}"
        )

        # Warm-up (first-call allocations, oneDNN kernel selection) so neither side pays it.
        with torch.no_grad():
            for model in members:
                model.eval()(torch.rand(1, 3, args.tile, args.tile))

        options = InferenceOptions(
            level_downsample=args.level,
            heatmap_downsample=args.heatmap,
            tile_size=args.tile,
            overlap=args.overlap,
            batch_size=args.batch,
            device=args.device,
            workers=args.workers,
        )
        t0 = time.perf_counter()
        fast = run_ensemble(slide_path, members, options)
        t_fast = time.perf_counter() - t0

        t_one, one = None, None
        if args.workers > 1:
            t0 = time.perf_counter()
            one = run_ensemble(slide_path, members, replace(options, workers=1))
            t_one = time.perf_counter() - t0

        t_bf16, half = None, None
        if args.bf16:
            t0 = time.perf_counter()
            half = run_ensemble(slide_path, members, replace(options, autocast=True))
            t_bf16 = time.perf_counter() - t0

        t0 = time.perf_counter()
        slow = naive(slide_path, pristine, level=args.level, heatmap=args.heatmap, tile=args.tile, overlap=args.overlap)
        t_slow = time.perf_counter() - t0

        t_layout = None
        if args.breakdown:
            nhwc = [copy.deepcopy(m).to(memory_format=torch.channels_last) for m in pristine]  # type: ignore[call-overload]
            t0 = time.perf_counter()
            naive(
                slide_path,
                nhwc,
                level=args.level,
                heatmap=args.heatmap,
                tile=args.tile,
                overlap=args.overlap,
                channels_last=True,
            )
            t_layout = time.perf_counter() - t0

    tissue = fast.tissue
    np.testing.assert_allclose(fast.members[:, tissue], slow[:, tissue], rtol=0, atol=1e-5)
    if one is not None:
        np.testing.assert_allclose(one.members[:, tissue], slow[:, tissue], rtol=0, atol=1e-5)
    total = fast.tiles_total
    k = len(members)
    print(
        f"tiles covering the slide: {total}; with tissue: {fast.tiles_processed} "
        f"({100 * fast.tiles_processed / total:.0f} %); heatmap {fast.mean.shape[1]} x {fast.mean.shape[0]}"
    )
    print(f"{'':8s}{'time s':>10s}{'slide tiles/s':>16s}{'member-tiles/s':>17s}")
    print(f"{'naive':8s}{t_slow:10.2f}{total / t_slow:16.2f}{k * total / t_slow:17.2f}")
    if t_layout is not None:
        print(f"{'naive+cl':8s}{t_layout:10.2f}{total / t_layout:16.2f}{k * total / t_layout:17.2f}")
    if t_one is not None:
        print(f"{'ours 1 core':12s}{t_one:6.2f}{total / t_one:16.2f}{k * fast.tiles_processed / t_one:17.2f}")
    print(f"{'ours':8s}{t_fast:10.2f}{total / t_fast:16.2f}{k * fast.tiles_processed / t_fast:17.2f}")
    if t_bf16 is not None and half is not None:
        diff = float(np.abs(half.members[:, tissue] - fast.members[:, tissue]).max())
        rate = k * fast.tiles_processed / t_bf16
        print(f"{'ours bf16':8s}{t_bf16:10.2f}{total / t_bf16:16.2f}{rate:17.2f}")
        print(f"bf16 speed-up over naive: {t_slow / t_bf16:.1f}x (max |diff| to float32 on tissue: {diff:.3f})")
    if t_one is not None:
        print(f"speed-up on one core (1 worker): {t_slow / t_one:.1f}x")
    ratio = t_slow / t_fast
    print(
        f"speed-up: {ratio:.1f}x (outputs equal on tissue: max |diff| "
        f"{float(np.abs(fast.members[:, tissue] - slow[:, tissue]).max()):.1e})"
    )
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
