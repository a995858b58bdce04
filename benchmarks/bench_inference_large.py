"""Benchmark: whole-slide inference at Camelyon16 scale, the streamed pipeline vs the naive way.

A Camelyon16 slide is about 98,000 x 215,000 pixels at 0.243 um/px (40x).
On a mid-size synthetic slide at that resolution (``analysis.synthetic``, a
lymph node with metastases on glass), with a K-member FC-DenseNet ensemble
(random He weights: the speed does not depend on them):

- ours: :func:`analysis.inference.run_ensemble`: tissue tiles only, decoded
  by ``--decode-threads`` threads into a bounded queue while the members run
  (CPU: ``--workers`` (member, tile) passes side by side, float32; CUDA:
  page-locked batches copied on their own stream, bf16 autocast,
  channels_last, results copied back one batch behind);
- naive: each member alone over every tile of the slide (no tissue mask),
  batch 1, NCHW, float32, each tile read again for every member
  (``benchmarks/bench_inference.py``'s ``naive``, on ``--device`` too).

Printed: slide tiles per second of each (the tiles covering the whole slide
over the wall time: how fast a slide gets done), the speed-up, ours' peak
RSS, and both projected to a Camelyon16-size slide (98,000 x 215,000 px,
with the fraction of tiles touching tissue measured on this slide): minutes
per slide for the K members and the peak RSS (the mid-size run's overhead
plus the heatmap-grid arrays, the only ones that grow with the slide).  On
the CPU both ways must agree on tissue (float32, atol 1e-5); under bf16 on
a GPU the largest difference is printed.  TIAToolbox's whole-slide
segmentation is reported at 30-50 minutes per slide for one model on a V100;
the target here is under 2 minutes for 5 members on a GPU.

Run::

    .venv/bin/python benchmarks/bench_inference_large.py                      # CPU: 8192 x 8192, tiny members
    .venv/bin/python benchmarks/bench_inference_large.py --size 16384 16384   # a bigger slide
    .venv/bin/python benchmarks/bench_inference_large.py --device cuda        # the one-command GPU benchmark

``--device cuda`` defaults to a 16384 x 16384 slide, the paper's network
(``--network paper``) and batches of 64 tiles.

Measured on the CPU here (2 cores shared with other work, load ~4; 5 tiny
members, 8192 x 8192, 43 % of tiles touching tissue): naive 0.39 slide
tiles/s, ours 1.68 (4.3x), ours' peak RSS 738 MB; projected to a
Camelyon16-size slide: naive 1525 min, ours 355 min, peak RSS ~1.4 GB.

Measured on a CUDA GPU (2026-12-04: one NVIDIA H200, 16 CPU cores; that
machine's torch 2.11 + CUDA 13.0, cuDNN 9.19, not the project's pinned 2.13), ``--device cuda --size 24576 24576
--breakdown``: 5 'paper' members (FC-DenseNet, 9.3 M parameters, 52 GFLOP a
256 px tile), 1,024 tiles covering the slide, 367 touching tissue (36 %):
naive 77.6 s (13.2 slide tiles/s), ours 2.98 s (344 slide tiles/s, 123
tissue tiles/s through all 5 members): 26x; max |diff| of the member maps
3.0e-3 (bf16).  Ours' first run took 8.6 s (cuDNN tuning the last batch's
size once), hence ``--repeat``.  Breakdown: the 5 members alone on a batch
already on the GPU 140 tiles/s (36.6 TFLOP/s of bf16; the GPU's SMs busy
throughout: a DenseNet's batch norms and concatenations are memory-bound),
the reader alone 2,761 tiles/s with 4 decode threads: the pipeline runs at
88 % of the model alone, which the reader never holds up.  Projected to a
Camelyon16-size slide (12,845 of 35,840 tiles touching tissue): naive 45.3
min, ours **1.7 min per slide for 5 members** (target under 2), peak RSS
~2.4 GB, GPU memory 8.6 GB.  Batches of 128 tiles and 12 decode threads
changed nothing (122 tiles/s, 1.8 min; GPU memory 18 GB).

On the same GPU, the 5 members alone on a batch of 64 on the GPU, other
ways: ``torch.compile``'d (``--compile``; the option ``compile`` of
:class:`~analysis.inference.EnsemblePredictor`) **246 tiles/s (64.2
TFLOP/s), 1.76x**, after 54-61 s compiling the 5 members; the lean
FC-DenseNet path under bf16 122 tiles/s (slower: it stays off on GPUs);
float32 with TF32 convolutions 89 tiles/s.  At the pipeline's 88-91 % of
the members alone, compiled members would make a Camelyon16-size slide
about 1.0 minute: a projection, not a measurement (the one ``--compile`` run
timed out compiling a second time, its warm-up having run outside
inference mode, which compiled code is guarded on: fixed since, not re-run,
the session's GPU time being spent).  Since then the GPU's last batch is
padded to the others' size, so neither cuDNN nor compiled members meet a new
shape mid-slide (likely most of the first run's extra 5 s above: not re-measured).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_inference import naive  # the same naive way as the small benchmark (a sibling script)

from analysis import defaults
from analysis.inference import (
    EnsemblePredictor,
    InferenceOptions,
    _batches,
    check_tiling,
    plan_tiles,
    run_ensemble,
)
from analysis.models import build_network
from analysis.slide_io import level_shape, open_slide

#: A Camelyon16 slide at 40x, level-0 pixels (width, height), and its resolution.
CAMELYON_SIZE: tuple[int, int] = (98_000, 215_000)
CAMELYON_MPP: float = 0.243


def reset_peak_rss() -> bool:
    """Make the peak RSS (VmHWM) the current RSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident memory of this process (since :func:`reset_peak_rss` on Linux), MiB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"VmHWM:\s+(\d+)", status)
    if found:
        return int(found.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heatmap_mb(shape: tuple[int, int], k: int) -> float:
    """The arrays on the heatmap grid: K float32 samples, 4 float32 maps, the bool tissue mask."""
    return shape[0] * shape[1] * (4 * k + 4 * 4 + 1) / 2**20


def tile_gflop(model: nn.Module, tile: int, device: str) -> float:
    """Forward-pass GFLOP of one member on one tile (torch's FLOP counter: convolutions and matmuls)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.rand(1, 3, tile, tile, device=device))
    return counter.get_total_flops() / 1e9


def model_only_rate(predictor: EnsemblePredictor, batch: int, tile: int, seconds: float = 3.0) -> float:
    """Tiles per second through all K members, a batch already on the device: no decoding, no copies."""
    x = torch.rand(batch, 3, tile, tile, device=predictor.device).contiguous(memory_format=torch.channels_last)
    cuda = predictor.device.type == "cuda"
    with torch.inference_mode():  # as run_ensemble runs it (compiled members are guarded on the mode)
        predictor.predict(x)
        if cuda:
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            predictor.predict(x)
            n += batch
    if cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def decode_only_rate(slide_path: Path, options: InferenceOptions, tissue: np.ndarray) -> float:
    """Tissue tiles per second from the pipeline's own reader with nothing consuming them."""
    slide = open_slide(slide_path)
    grid = plan_tiles(
        level_shape(slide, options.level_downsample),
        factor=check_tiling(
            tile_size=options.tile_size,
            overlap=options.overlap,
            level_downsample=options.level_downsample,
            heatmap_downsample=options.heatmap_downsample,
        ),
        tile_size=options.tile_size,
        overlap=options.overlap,
        tissue=tissue,
    )
    pin = torch.device(options.device).type == "cuda"
    n, t0 = 0, time.perf_counter()
    for cores, _tiles in _batches(
        slide,
        grid,
        options.level_downsample,
        options.batch_size,
        options.prefetch,
        pin=pin,
        decode_threads=options.decode_threads,
    ):
        n += len(cores)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", type=Path, help="an existing slide (default: generate a synthetic one)")
    parser.add_argument(
        "--save-slide", type=Path, help="keep the generated slide at this path (for another run's --slide)"
    )
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="default 8192 8192 (cuda 16384 16384)")
    parser.add_argument("--mpp", type=float, default=CAMELYON_MPP)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--members", type=int, default=defaults.ENSEMBLE_MEMBERS)
    parser.add_argument("--network", choices=("tiny", "paper"), help="default tiny (cuda: paper)")
    parser.add_argument("--level", type=float, default=4.0, help="level_downsample (4: ~1 um/px at 40x)")
    parser.add_argument("--heatmap", type=float, default=32.0, help="heatmap_downsample")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, help="tiles per batch (default 16, cuda 64)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="ours on the CPU: passes side by side")
    parser.add_argument("--decode-threads", type=int, default=defaults.INFERENCE_DECODE_THREADS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs of ours, the fastest reported (default 1, cuda 2: the first tunes cuDNN for the last batch's size)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="ours with torch.compile'd members (compiled in the warm-up)"
    )
    parser.add_argument("--skip-naive", action="store_true", help="ours only (a second run on a kept slide)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also the model alone (a batch already on the device) and the reader alone (decoding, nothing consuming)",
    )
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    size = tuple(args.size) if args.size else ((16384, 16384) if cuda else (8192, 8192))
    network = args.network or ("paper" if cuda else "tiny")
    batch = args.batch or (64 if cuda else 16)
    repeat = args.repeat or (2 if cuda else 1)
    # The naive way at its best on a small shared CPU is one torch thread (see bench_inference.py).
    torch.set_num_threads(1)
    if cuda:
        torch.backends.cudnn.benchmark = True  # one tile size: let cuDNN pick its fastest kernels once

    with tempfile.TemporaryDirectory(prefix="bench-inference-large-") as tmp:
        slide_path = args.slide
        if slide_path is None:
            from analysis.synthetic import SlideSpec, generate_slide

            t0 = time.perf_counter()
            made = generate_slide(
                SlideSpec(seed=args.seed, width=size[0], height=size[1], mpp=args.mpp, tumor=True),
                args.save_slide or Path(tmp) / "slide.tiff",
            )
            slide_path = made.path
            print(
                f"synthetic slide {size[0]} x {size[1]} at {args.mpp} um/px ({time.perf_counter() - t0:.1f} s to render)",
                flush=True,
            )
        members = [build_network(network, seed=s) for s in range(args.members)]
        pristine: list[nn.Module] = [copy.deepcopy(m).eval().to(args.device) for m in members]
        params = sum(p.numel() for p in members[0].parameters())
        print(
            f"{len(members)} '{network}' members, {params} parameters each; level downsample {args.level:g}, "
            f"heatmap {args.heatmap:g}, tile {args.tile}, overlap {args.overlap}, batch {batch}, "
            f"device {args.device}, ours {args.workers if not cuda else 1} worker(s), {args.decode_threads} decode threads",
            flush=True,
        )
        options = InferenceOptions(
            level_downsample=args.level,
            heatmap_downsample=args.heatmap,
            tile_size=args.tile,
            overlap=args.overlap,
            batch_size=batch,
            device=args.device,
            workers=args.workers,
            decode_threads=args.decode_threads,
            compile=args.compile,
        )
        # Warm-up (allocations, kernel selection: one batch shape each) so neither side pays it.
        with torch.inference_mode():
            for model in pristine:
                model(torch.rand(1, 3, args.tile, args.tile, device=args.device))
        # Ours runs this predictor: with --compile its members compile here, before the clock starts.
        # Under inference mode, as run_ensemble calls it: compiled code is guarded on the grad mode, and
        # a warm-up under no_grad alone would leave the timed run to compile again.
        predictor = EnsemblePredictor(members, device=args.device, workers=args.workers, compile=args.compile)
        t0 = time.perf_counter()
        with torch.inference_mode():
            predictor.predict(
                torch.rand(batch, 3, args.tile, args.tile, device=args.device).contiguous(
                    memory_format=torch.channels_last
                )
            )
        if args.compile:
            print(f"compiling the members: {time.perf_counter() - t0:.0f} s", flush=True)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

        exact_peak = reset_peak_rss()
        times: list[float] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ours = run_ensemble(slide_path, predictor, options)
            times.append(time.perf_counter() - t0)
        t_ours = min(times)
        rss = peak_rss_mb()
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        if repeat > 1:
            print("ours, each run: " + ", ".join(f"{t:.2f} s" for t in times), flush=True)

        slow: np.ndarray | None = None
        t_naive = math.nan
        if not args.skip_naive:
            t0 = time.perf_counter()
            slow = naive(
                slide_path,
                pristine,
                level=args.level,
                heatmap=args.heatmap,
                tile=args.tile,
                overlap=args.overlap,
                device=args.device,
            )
            t_naive = time.perf_counter() - t0

        k, total, processed = len(members), ours.tiles_total, ours.tiles_processed
        if args.breakdown:
            gflop = tile_gflop(pristine[0], args.tile, args.device)
            model_rate = model_only_rate(predictor, batch, args.tile)
            decode_rate = decode_only_rate(slide_path, options, ours.tissue)
            pipeline = processed / t_ours
            print(
                f"breakdown: {gflop:.1f} GFLOP a tile a member; the {k} members alone {model_rate:.1f} tiles/s "
                f"({model_rate * k * gflop / 1e3:.1f} TFLOP/s); the reader alone ({args.decode_threads} threads) "
                f"{decode_rate:.1f} tiles/s; the pipeline {pipeline:.1f} tiles/s "
                f"({100 * pipeline / min(model_rate, decode_rate):.0f} % of the slower of the two)",
                flush=True,
            )

    tissue = ours.tissue
    diff = math.nan
    if slow is not None:
        diff = float(np.abs(ours.members[:, tissue] - slow[:, tissue]).max()) if tissue.any() else 0.0
        if not cuda:
            np.testing.assert_allclose(ours.members[:, tissue], slow[:, tissue], rtol=0, atol=1e-5)
    print(
        f"tiles covering the slide: {total}; touching tissue: {processed} ({100 * processed / total:.0f} %); "
        f"tissue mask {100 * (ours.tissue_fraction or 0):.0f} % of the slide; heatmap {tissue.shape[1]} x {tissue.shape[0]}"
    )
    print(f"{'':8s}{'time s':>10s}{'slide tiles/s':>16s}{'tissue tiles/s':>16s}")
    if slow is not None:
        print(f"{'naive':8s}{t_naive:10.2f}{total / t_naive:16.2f}{'':>16s}")
    print(f"{'ours':8s}{t_ours:10.2f}{total / t_ours:16.2f}{processed / t_ours:16.2f}")
    if slow is not None:
        print(f"speed-up: {t_naive / t_ours:.1f}x (max |diff| of the member maps on tissue: {diff:.1e})")
    own_mb = heatmap_mb(tissue.shape, k)
    peak = "peak RSS" if exact_peak else "peak RSS of the whole process (no /proc reset here)"
    gpu = f", GPU memory {gpu_mb:.0f} MB" if gpu_mb is not None else ""
    print(f"ours: {peak} {rss:.0f} MB, of which heatmap-grid arrays {own_mb:.1f} MB{gpu}")

    # Camelyon16-size slide: the same tiling, the tissue share of tiles measured here.
    factor = round(args.heatmap / args.level)
    level_w, level_h = (math.ceil(side / args.level) for side in CAMELYON_SIZE)
    grid = plan_tiles((level_h, level_w), factor=factor, tile_size=args.tile, overlap=args.overlap)
    cam_total = grid.n_total
    cam_tissue = cam_total * processed / total
    ours_min = t_ours / max(processed, 1) * cam_tissue / 60
    cam_rss = rss - own_mb + heatmap_mb(grid.heatmap_shape, k)
    print(
        f"Camelyon16-size slide {CAMELYON_SIZE[0]} x {CAMELYON_SIZE[1]} px: {cam_total} tiles, "
        f"~{cam_tissue:.0f} touching tissue; {k} members:"
    )
    if slow is not None:
        print(f"  naive {t_naive / total * cam_total / 60:8.1f} min per slide")
    print(f"  ours  {ours_min:8.1f} min per slide, peak RSS ~{cam_rss / 1024:.2f} GB (target < 3 GB)")
    if cuda:
        print(f"  GPU target under 2 min per slide: {'met' if ours_min < 2 else 'NOT met'}")
    return 0 if math.isfinite(t_ours) and (slow is None or math.isfinite(t_naive / t_ours)) else 1


if __name__ == "__main__":
    sys.exit(main())
