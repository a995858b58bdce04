"""Whole-slide inference: tumor probability of K samples per pixel, stitched without seams.

Pipeline of :func:`run_ensemble`:

1. a tissue mask from a low-resolution thumbnail (:func:`analysis.slide_io.tissue_mask`);
2. the slide's grid at ``level_downsample`` is cut into cores of
   ``tile_size - 2 * overlap`` pixels; only cores that touch tissue are
   processed, each read once as a ``tile_size`` tile (its core plus
   ``overlap`` pixels of context on every side; outside the slide is white);
3. a reader thread has the tiles of each batch decoded by a few threads side
   by side, into a bounded queue (page-locked memory on CUDA), while the
   caller's thread runs the batch through every sample source (the K members
   of a deep ensemble, or MC dropout, or test-time augmentation: a
   :class:`Predictor`).  On CUDA batch n+1 is copied up on its own stream
   and queued before batch n's results come down, so neither the GPU waits
   for the host nor the host for the GPU;  progress and cancel requests are
   answered every ``poll_s`` seconds, also within a batch;
4. each prediction is cropped to its core (the context is only there so the
   core sees what it would see in the whole image) and average-pooled to the
   heatmap grid, where cores tile the grid exactly: no seams, no blending.
   Only heatmap-grid arrays grow with the slide (the ``(K, H', W')``
   samples, a memory map with ``members_path``), never the level image;
5. ``(K, H, W)`` samples -> mean, entropy, mutual information, variance by
   :func:`analysis.uncertainty.ensemble_heatmaps`.  Outside tissue the
   probability is 0 (and so is every uncertainty).

Stitching is exact: for a model whose receptive field reaches at most
``overlap`` pixels, the stitched map equals the model applied to the whole
(white-padded) level image, then pooled.

Grids: the analysis grid is ``level_shape(slide, level_downsample)`` (whole
blocks); the heatmap grid at ``heatmap_downsample = f * level_downsample``
(integer ``f``) is ``ceil`` of that divided by ``f``: heatmap pixel (r, c)
is the mean over analysis pixels ``[r f, (r+1) f) x [c f, (c+1) f)`` that lie
on the grid, i.e. level-0 ``[r d, (r+1) d)``, centre ``((c+.5) d, (r+.5) d)``
as the annotation rasteriser assumes.

Nothing runs torch at import time (Celery prefork workers hang when torch ran
in the parent before the fork).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from analysis import defaults
from analysis.models import FCDenseNet, fcdensenet_probability, tumor_probability
from analysis.slide_io import Slide, level_shape, open_slide, read_region, tissue_downsample, tissue_mask
from analysis.uncertainty import ensemble_heatmaps

__all__ = [
    "EnsemblePredictor",
    "InferenceCancelled",
    "InferenceOptions",
    "MCDropoutPredictor",
    "Predictor",
    "SlideHeatmaps",
    "TTAPredictor",
    "TileGrid",
    "check_tiling",
    "plan_tiles",
    "run_ensemble",
]


class InferenceCancelled(Exception):
    """``should_stop()`` returned True; nothing was returned."""


# --------------------------------------------------------------------------- predictors


@runtime_checkable
class Predictor(Protocol):
    """A source of K tumor-probability samples per pixel.

    ``predict`` takes ``(N, 3, h, w)`` float RGB in [0, 1] on ``device`` and
    returns ``(K, N, h, w)`` float32 probabilities in [0, 1].  Gradients are
    off when it is called.
    """

    @property
    def n_samples(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def predict(self, batch: torch.Tensor) -> torch.Tensor: ...


def _prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    if channels_last:
        # Convolutions on CPU (oneDNN) and on tensor cores prefer NHWC; tiles
        # already arrive in that layout, so nothing is transposed per batch.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.eval()
    return model


@contextlib.contextmanager
def _no_grad_autocast(device: torch.device, enabled: bool | None) -> Iterator[None]:
    """No autograd; mixed precision where asked.

    ``enabled=None`` (default): bf16 (fp16 on GPUs without bf16) autocast on
    CUDA, float32 on the CPU, so that CPU results are exact.  ``True`` also
    turns on bf16 autocast on the CPU: about 2x faster where the CPU has
    AVX512-BF16 or AMX, probabilities within ~0.02 of float32.  ``False``:
    float32 everywhere.
    """
    with torch.inference_mode():
        if enabled is False or (device.type != "cuda" and enabled is None):
            yield
            return
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.bfloat16
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def _micro_batch(device: torch.device, micro_batch: int | None) -> int | None:
    """Tiles per forward pass inside a batch: 1 on the CPU, the whole batch on a GPU.

    On a CPU the dense blocks' concatenations of a batch of 256-pixel tiles
    overflow the caches, and one tile at a time runs about 2.5x faster than
    sixteen (measured with the tiny network, channels_last, one thread); a GPU
    needs the whole batch to be busy.
    """
    if micro_batch is not None:
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be positive, got {micro_batch}")
        return micro_batch
    return None if device.type == "cuda" else 1


def _cpu_workers(device: torch.device, workers: int | None) -> int:
    """Forward passes to run side by side: the caller's torch thread budget on the CPU, 1 on a GPU.

    On a small CPU, one tile through one small member is too little work to
    split across cores (intra-op threads): each convolution of a dense layer
    lasts a few milliseconds and OpenMP's barriers cost more than they give,
    badly so when other processes share the cores.  Independent (member, tile)
    passes, one thread each, scale instead; ``torch.get_num_threads()`` is the
    budget, so a caller who allows one thread gets exactly one.
    """
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        return workers if device.type == "cpu" else 1
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for a while (a process-wide setting: restored on exit)."""
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _probability(model: nn.Module, batch: torch.Tensor, micro_batch: int | None, lean: bool = False) -> torch.Tensor:
    """:func:`tumor_probability` in chunks of ``micro_batch`` tiles, float32 ``(N, h, w)``.

    ``lean``: through :func:`analysis.models.fcdensenet_probability` (eval-mode
    FC-DenseNets only: see :func:`_lean`).
    """
    prob: Callable[[nn.Module, torch.Tensor], torch.Tensor] = fcdensenet_probability if lean else tumor_probability  # type: ignore[assignment]
    if micro_batch is None or micro_batch >= batch.shape[0]:
        return prob(model, batch).float()
    return torch.cat([prob(model, part).float() for part in torch.split(batch, micro_batch)])


def _lean(model: nn.Module) -> bool:
    """Whether ``model`` may take the lean path: an eager FC-DenseNet in eval mode.

    TorchScript modules and any other architecture keep the module's own
    forward; so does a model in training mode (MC dropout's), since the lean
    path always uses BatchNorm's running statistics and no dropout.
    """
    return isinstance(model, FCDenseNet) and not any(m.training for m in model.modules())


class EnsemblePredictor:
    """Deep ensemble: one sample per member (the paper's uncertainty source).

    Parameters
    ----------
    members
        K models, ``(N, 3, h, w)`` in [0, 1] -> ``(N, 2 or 1, h, w)`` logits.
    device
        Where to run; the models are moved there and set to eval mode.
    autocast
        Mixed precision: ``None`` = bf16/fp16 on CUDA, float32 on the CPU;
        ``True`` = also bf16 on the CPU (faster, not bit-exact); ``False`` = off.
    channels_last
        NHWC memory format for the models.
    micro_batch
        Tiles per forward pass (``None``: 1 on the CPU, the whole batch on a GPU).
    workers
        CPU threads that run (member, micro-batch) forward passes side by
        side, each with one intra-op thread (``None``: ``torch.get_num_threads()``
        at construction, the caller's thread budget; 1: one pass after the
        other with torch's own threading).  Ignored on a GPU.  While
        :meth:`predict` runs with more than one worker, torch's process-wide
        thread count is 1 (restored afterwards).
    lean
        Run eager FC-DenseNet members through
        :func:`analysis.models.fcdensenet_probability` (the same function with
        fewer memory passes, ~20 % faster on a CPU) when they run in float32;
        other members (TorchScript, other architectures) and mixed precision
        always run the module's own forward.  (On a GPU under bf16 it was
        slower than the module: 122 against 140 tiles/s on an H200.)
    compile
        ``torch.compile`` each member (TorchInductor fuses a DenseNet's batch
        norms, ReLUs and concatenations, which leave a GPU waiting on memory:
        246 against 140 tiles/s for 5 paper members on an H200).  The first
        batch of each shape compiles (about 60 s for 5 paper members there,
        cached on disk for later processes), so it pays on whole slides, not
        on a few tiles.  Compiled members run the module's forward, not the lean path.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        device: str | torch.device = "cpu",
        autocast: bool | None = None,
        channels_last: bool = True,
        micro_batch: int | None = None,
        workers: int | None = None,
        lean: bool = True,
        compile: bool = False,
    ) -> None:
        if len(members) == 0:
            raise ValueError("the ensemble has no members")
        self._device = torch.device(device)
        self.members = [_prepare(m, self._device, channels_last) for m in members]
        if compile:
            # One tile shape per run (the last batch is padded on a GPU): no dynamic shapes to trace.
            self.members = [cast(nn.Module, torch.compile(m, dynamic=False)) for m in self.members]
        self.autocast = autocast
        self.micro_batch = _micro_batch(self._device, micro_batch)
        self.workers = _cpu_workers(self._device, workers)
        # Decided once: members are in eval mode now and nothing here trains them.  Float32
        # only: under bf16 autocast the pieces' dtypes mix and the casts cost more than it saves.
        float32 = autocast is False or (autocast is None and self._device.type != "cuda")
        self.lean = [lean and float32 and _lean(m) for m in self.members]

    @property
    def n_samples(self) -> int:
        return len(self.members)

    @property
    def device(self) -> torch.device:
        return self._device

    def predict(self, batch: torch.Tensor, *, tick: Callable[[float], None] | None = None) -> torch.Tensor:
        """``(N, 3, h, w)`` in [0, 1] -> ``(K, N, h, w)`` float32 tumor probabilities.

        ``tick``, when given, is called on the calling thread with the fraction
        of the batch's (member, micro-batch) passes done, after every pass and
        while waiting for passes that run side by side (every ``poll_s``
        seconds at most; see :func:`_wait_ticking`).  Whatever it raises
        (:class:`InferenceCancelled`, say) stops the batch: passes not yet
        started are dropped, so a cancel is answered within one pass.
        """
        micro = self.micro_batch if self.micro_batch is not None else batch.shape[0]
        parts = list(torch.split(batch, micro)) if micro < batch.shape[0] else [batch]
        n_tasks = len(self.members) * len(parts)
        if self.workers > 1 and n_tasks > 1:
            return self._predict_side_by_side(parts, min(self.workers, n_tasks), tick)
        rows: list[torch.Tensor] = []
        with _no_grad_autocast(self._device, self.autocast):
            for m, lean in zip(self.members, self.lean, strict=True):
                row = []
                for part in parts:
                    row.append(_probability(m, part, None, lean))
                    if tick is not None:
                        tick((len(rows) * len(parts) + len(row)) / n_tasks)
                rows.append(torch.cat(row) if len(row) > 1 else row[0])
            return torch.stack(rows)

    def _predict_side_by_side(
        self, parts: list[torch.Tensor], workers: int, tick: Callable[[float], None] | None
    ) -> torch.Tensor:
        """:meth:`predict` with ``workers`` threads, one (member, micro-batch) pass per task.

        Every pass is the serial path's computation (same module, same
        micro-batch) on one intra-op thread: equal to it up to float rounding
        (oneDNN may split a reduction differently with another thread count).  Autocast and inference mode are thread-local, so each task
        enters them itself.
        """

        def one(member: nn.Module, lean: bool, part: torch.Tensor) -> torch.Tensor:
            with _no_grad_autocast(self._device, self.autocast):
                return _probability(member, part, None, lean)

        # Tasks in member-major order, so consecutive tasks reuse a member's weights in cache.
        with _intra_op_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="ensemble-member") as pool:
            futures = [
                [pool.submit(one, m, lean, part) for part in parts]
                for m, lean in zip(self.members, self.lean, strict=True)
            ]
            try:
                _wait_ticking([f for row in futures for f in row], tick)
            except BaseException:
                # Drop the passes not yet started; the running ones (one per worker) finish on their own.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            results = [[f.result() for f in row] for row in futures]
        with torch.inference_mode():
            return torch.stack([torch.cat(row) if len(row) > 1 else row[0] for row in results])


def _wait_ticking(futures: Sequence[Future[Any]], tick: Callable[[float], None] | None, poll_s: float = 0.1) -> None:
    """Wait for ``futures``, calling ``tick(fraction done)`` as they finish and every ``poll_s`` seconds.

    ``poll_s`` is short on purpose: ``tick`` itself decides how often to do
    anything (see ``_Ticker``), this only gives it the chance.
    """
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
        if tick is not None:
            tick(1.0 - len(pending) / len(futures))
    for future in futures:
        future.result()  # re-raise a pass's error here, on the caller's thread


def _dropout_modules(model: nn.Module) -> list[nn.Module]:
    found = []
    for module in model.modules():
        # TorchScript submodules keep their Python class name in original_name.
        name = getattr(module, "original_name", type(module).__name__)
        if isinstance(module, nn.modules.dropout._DropoutNd) or name in (
            "Dropout",
            "Dropout1d",
            "Dropout2d",
            "Dropout3d",
            "AlphaDropout",
            "FeatureAlphaDropout",
        ):
            found.append(module)
    return found


class MCDropoutPredictor:
    """Monte Carlo dropout: one model, dropout left on, ``n_samples`` stochastic passes.

    BatchNorm stays in eval mode (running statistics).  Sampling is seeded per
    batch (``seed`` and the batch's position), so a run is repeatable; the
    global torch RNG is left as it was.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 10,
        seed: int = 0,
        device: str | torch.device = "cpu",
        autocast: bool | None = None,
        channels_last: bool = True,
        micro_batch: int | None = None,
    ) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        self._device = torch.device(device)
        self.model = _prepare(model, self._device, channels_last)
        dropouts = _dropout_modules(self.model)
        if not dropouts:
            raise ValueError("MC dropout needs a model with dropout layers; this one has none")
        for module in dropouts:
            module.train()
        self._n = n_samples
        self.seed = seed
        self.autocast = autocast
        self.micro_batch = _micro_batch(self._device, micro_batch)
        self._calls = 0

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def device(self) -> torch.device:
        return self._device

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        devices = [self._device] if self._device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices, device_type=self._device.type),
            _no_grad_autocast(self._device, self.autocast),
        ):
            torch.manual_seed(self.seed * 1_000_003 + self._calls)
            self._calls += 1
            return torch.stack([_probability(self.model, batch, self.micro_batch) for _ in range(self._n)])


#: The eight symmetries of the square: (quarter turns, flip left-right first).
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


class TTAPredictor:
    """Test-time augmentation: each model on flipped / rotated copies, mapped back.

    K = ``len(models) * len(transforms)``; ``transforms`` are (quarter turns,
    flip) pairs, by default all eight of :data:`DIHEDRAL`.
    """

    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        *,
        transforms: Sequence[tuple[int, bool]] = DIHEDRAL,
        device: str | torch.device = "cpu",
        autocast: bool | None = None,
        channels_last: bool = True,
        micro_batch: int | None = None,
    ) -> None:
        models = [models] if isinstance(models, nn.Module) else list(models)
        if not models or not transforms:
            raise ValueError("TTA needs at least one model and one transform")
        self._device = torch.device(device)
        self.models = [_prepare(m, self._device, channels_last) for m in models]
        self.transforms = tuple((int(k) % 4, bool(f)) for k, f in transforms)
        self.autocast = autocast
        self.micro_batch = _micro_batch(self._device, micro_batch)

    @property
    def n_samples(self) -> int:
        return len(self.models) * len(self.transforms)

    @property
    def device(self) -> torch.device:
        return self._device

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        samples = []
        with _no_grad_autocast(self._device, self.autocast):
            for model in self.models:
                for k, flip in self.transforms:
                    x = torch.flip(batch, dims=(3,)) if flip else batch
                    x = torch.rot90(x, k, dims=(2, 3))
                    p = _probability(model, x.contiguous(memory_format=torch.channels_last), self.micro_batch)
                    p = torch.rot90(p, -k, dims=(1, 2))
                    samples.append(torch.flip(p, dims=(2,)) if flip else p)
        return torch.stack(samples)


# --------------------------------------------------------------------------- tiling


@dataclass(frozen=True)
class TileGrid:
    """How a slide's analysis grid is cut into tiles and mapped onto the heatmap grid.

    Attributes
    ----------
    level_shape : (H, W)
        Analysis grid at ``level_downsample`` (whole level-0 blocks).
    heatmap_shape : (H', W')
        ``ceil(level_shape / factor)``.
    factor : int
        ``heatmap_downsample / level_downsample``.
    tile_size, overlap, core : int
        ``core = tile_size - 2 * overlap``, a multiple of ``factor``.
    cores : (n, 2) int array
        (top, left) of each core to process, analysis-grid pixels, row-major.
    n_total : int
        Cores covering the whole grid (tissue or not).
    """

    level_shape: tuple[int, int]
    heatmap_shape: tuple[int, int]
    factor: int
    tile_size: int
    overlap: int
    core: int
    cores: np.ndarray
    n_total: int


def _factor(level_downsample: float, heatmap_downsample: float) -> int:
    ratio = heatmap_downsample / level_downsample
    factor = round(ratio)
    if factor < 1 or abs(factor - ratio) > 1e-6 * ratio:
        raise ValueError(
            f"heatmap_downsample ({heatmap_downsample:g}) must be an integer multiple of level_downsample "
            f"({level_downsample:g})"
        )
    return factor


def _check_core(tile_size: int, overlap: int, factor: int) -> None:
    """A tile's core (what is kept after cropping ``overlap`` from each side) must be whole heatmap pixels."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    core = tile_size - 2 * overlap
    if core < factor or core % factor:
        good = 2 * overlap + factor * max(1, round(core / factor))
        raise ValueError(
            f"tile_size - 2 * overlap = {core} must be a positive multiple of the heatmap/level factor {factor} "
            f"(tile_size {tile_size}, overlap {overlap}); use a tile size such as {good} px"
        )


def check_tiling(*, tile_size: int, overlap: int, level_downsample: float, heatmap_downsample: float) -> int:
    """Check that these tiles stitch into this heatmap before any slide is opened.

    Returns
    -------
    int
        The heatmap/level factor (heatmap pixel edge in pixels at ``level_downsample``).

    Raises
    ------
    ValueError
        When the heatmap is not a whole multiple of the level, or a tile's core is
        not whole heatmap pixels; the message names a tile size that works.
    """
    factor = _factor(level_downsample, heatmap_downsample)
    _check_core(tile_size, overlap, factor)
    return factor


def plan_tiles(
    level_grid: tuple[int, int],
    *,
    factor: int,
    tile_size: int,
    overlap: int,
    tissue: np.ndarray | None = None,
) -> TileGrid:
    """Cores to process: all of them, or those whose heatmap footprint touches ``tissue``.

    Parameters
    ----------
    level_grid
        (H, W) of the analysis grid.
    factor
        Heatmap pixel = ``factor x factor`` analysis pixels.
    tile_size, overlap
        Tile edge and context on each side; ``tile_size - 2 * overlap`` must be
        a positive multiple of ``factor``.
    tissue
        ``(H', W')`` bool on the heatmap grid, or None for every core.
    """
    _check_core(tile_size, overlap, factor)
    core = tile_size - 2 * overlap
    height, width = level_grid
    hm_shape = (math.ceil(height / factor), math.ceil(width / factor))
    tops = np.arange(0, height, core)
    lefts = np.arange(0, width, core)
    grid_t, grid_l = np.meshgrid(tops, lefts, indexing="ij")
    cores = np.stack([grid_t.ravel(), grid_l.ravel()], axis=1).astype(np.int64)
    n_total = len(cores)
    if tissue is not None and n_total:
        if tissue.shape != hm_shape:
            raise ValueError(f"tissue mask shape {tissue.shape} is not the heatmap shape {hm_shape}")
        step = core // factor
        # Any tissue pixel in each core's footprint: block-reduce the padded mask.
        rows, cols = len(tops), len(lefts)
        padded = np.zeros((rows * step, cols * step), dtype=bool)
        padded[: hm_shape[0], : hm_shape[1]] = tissue
        touched = padded.reshape(rows, step, cols, step).any(axis=(1, 3)).ravel()
        cores = cores[touched]
    return TileGrid(
        level_shape=(height, width),
        heatmap_shape=hm_shape,
        factor=factor,
        tile_size=tile_size,
        overlap=overlap,
        core=core,
        cores=cores,
        n_total=n_total,
    )


def _tissue_on_heatmap(
    slide: Slide, heatmap_shape: tuple[int, int], heatmap_downsample: float, tissue_at: float | None
) -> tuple[np.ndarray, float]:
    """Tissue mask on the heatmap grid by the pixel-centre rule, dilated one mask pixel, and the tissue fraction.

    The mask is :func:`~analysis.slide_io.tissue_mask` at ``tissue_at``
    (default: :func:`~analysis.slide_io.tissue_downsample`); the fraction is
    that mask's mean, the number the cohort page shows.  The dilation keeps
    tissue edges that a coarse mask would clip.
    """
    if tissue_at is None:
        tissue_at = tissue_downsample(slide, heatmap_downsample=heatmap_downsample)
    mask = tissue_mask(slide, downsample=tissue_at)
    fraction = float(mask.mean()) if mask.size else 0.0
    mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))
    rows = np.floor((np.arange(heatmap_shape[0]) + 0.5) * heatmap_downsample / tissue_at).astype(np.int64)
    cols = np.floor((np.arange(heatmap_shape[1]) + 0.5) * heatmap_downsample / tissue_at).astype(np.int64)
    rows = np.clip(rows, 0, mask.shape[0] - 1)
    cols = np.clip(cols, 0, mask.shape[1] - 1)
    return np.asarray(mask[np.ix_(rows, cols)]), fraction


# --------------------------------------------------------------------------- reading


_DONE = object()


def _reader(
    slide: Slide,
    grid: TileGrid,
    level_downsample: float,
    batch_size: int,
    out: queue.Queue[Any],
    stop: threading.Event,
    pin: bool,
    decode_threads: int,
) -> None:
    """Decode tiles into ``(B, T, T, 3)`` uint8 tensors and queue them (runs in a thread).

    The tiles of a batch are decoded by ``decode_threads`` threads side by side
    (large-image's decoders release the GIL), each straight into its slot of
    the batch; with ``pin`` that batch is page-locked memory, so the copy to
    the GPU is asynchronous and no extra host copy is made.  ``out`` is
    bounded, so at most its size plus one batch are ever decoded ahead.
    """

    def put(item: Any) -> bool:
        # Time out now and then, so a cancelled run does not leave this thread blocked.
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    t, o = grid.tile_size, grid.overlap

    def decode(tiles: np.ndarray, i: int, top: int, left: int) -> None:
        tiles[i] = read_region(slide, level_downsample=level_downsample, left=left - o, top=top - o, width=t, height=t)

    try:
        with ThreadPoolExecutor(decode_threads, thread_name_prefix="tile-decoder") as pool:
            for start in range(0, len(grid.cores), batch_size):
                if stop.is_set():
                    return
                cores = grid.cores[start : start + batch_size]
                shape = (len(cores), t, t, 3)
                # numpy's memory on the CPU (tracemalloc sees it), torch's page-locked memory for a GPU.
                batch = (
                    torch.empty(shape, dtype=torch.uint8, pin_memory=True)
                    if pin
                    else torch.from_numpy(np.empty(shape, np.uint8))
                )
                tiles = batch.numpy()
                decoded = [pool.submit(decode, tiles, i, int(top), int(left)) for i, (top, left) in enumerate(cores)]
                for future in decoded:
                    future.result()
                if not put((cores, batch)):
                    return
        put(_DONE)
    except BaseException as exc:  # handed to the main thread, which re-raises it
        put(exc)


def _batches(
    slide: Slide,
    grid: TileGrid,
    level_downsample: float,
    batch_size: int,
    prefetch: int,
    *,
    pin: bool = False,
    decode_threads: int = 1,
    waiting: Callable[[], None] | None = None,
    poll_s: float = 0.1,
) -> Generator[tuple[np.ndarray, torch.Tensor], None, None]:
    """Batches from a reader thread, so that decoding overlaps the forward passes.

    While no batch is ready, ``waiting()`` is called every ``poll_s`` seconds
    (so a slow disk does not delay a cancel); what it raises ends the reader.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    thread = threading.Thread(
        target=_reader,
        args=(slide, grid, level_downsample, batch_size, out, stop, pin, decode_threads),
        name="tile-reader",
        daemon=True,
    )
    thread.start()
    try:
        while True:
            try:
                item = out.get(timeout=poll_s)
            except queue.Empty:
                if waiting is not None:
                    waiting()
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------- stitching


def _pool_partial(core: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of ``(K, h, w)``; the last blocks may be partial."""
    if factor == 1:
        return core
    h, w = core.shape[1:]
    rows = np.arange(0, h, factor)
    cols = np.arange(0, w, factor)
    sums = np.add.reduceat(np.add.reduceat(core.astype(np.float64), rows, axis=1), cols, axis=2)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    return (sums / counts).astype(np.float32)


@dataclass(frozen=True)
class SlideHeatmaps:
    """Heatmaps of one slide at ``downsample``.

    Attributes
    ----------
    members : (K, H, W) float32 or float16 (may be a ``np.memmap``)
        Tumor probability of each sample (member, dropout pass, augmentation).
    mean : (H, W) float32
        Segmentation heatmap ``s``.
    entropy, mutual_information, variance : (H, W) float32
        Uncertainty heatmaps (:mod:`analysis.uncertainty`).
    tissue : (H, W) bool
        Where tissue was found; elsewhere every map is 0.
    downsample : float
        Heatmap pixel size in level-0 pixels.
    level_downsample : float
        Resolution the models saw.
    tiles_processed, tiles_total : int
        Tiles run (tissue) and the tiles covering the whole slide.
    elapsed_s : float
    tissue_fraction : float or None
        Fraction of the slide that the tissue mask (before its dilation)
        covers, as :func:`analysis.slide_io.tissue_fraction` computes it;
        None when the run kept every pixel (``use_tissue_mask=False``).
    """

    members: np.ndarray
    mean: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    variance: np.ndarray
    tissue: np.ndarray
    downsample: float
    level_downsample: float
    tiles_processed: int
    tiles_total: int
    elapsed_s: float
    tissue_fraction: float | None = None


@dataclass(frozen=True)
class InferenceOptions:
    """How :func:`run_ensemble` cuts, runs and stores a slide.

    Attributes
    ----------
    level_downsample
        Resolution the models see, relative to level 0.
    heatmap_downsample
        Heatmap pixel size; an integer multiple of ``level_downsample``.
    tile_size, overlap
        Tiles of ``tile_size`` pixels at ``level_downsample``; each keeps only
        its central ``tile_size - 2 * overlap`` core.  Choose ``overlap`` at
        least the model's useful receptive radius.
    batch_size
        Tiles per forward pass.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``; ignored for a Predictor (it has one).
    autocast
        Mixed precision of the :class:`EnsemblePredictor` built from the
        members (``None``: on CUDA only; ``True``: bf16 on the CPU as well).
    tissue_downsample
        Resolution of the tissue mask (default: :func:`analysis.slide_io.tissue_downsample`).
    use_tissue_mask
        False runs every tile and keeps every pixel (for comparisons).
    members_dtype
        float32 (default) or float16 for the ``(K, H, W)`` samples.
    members_path
        Write the samples to this ``.npy`` file (memory-mapped) instead of RAM.
    prefetch
        Batches the reader thread may decode ahead (a bounded queue: memory
        does not grow with the slide).
    chunk_rows
        Row chunk of the uncertainty computation.
    workers
        CPU forward passes run side by side by the :class:`EnsemblePredictor`
        built from the members (``None``: ``torch.get_num_threads()``, the
        caller's thread budget; see :class:`EnsemblePredictor`).
    decode_threads
        Threads that decode a batch's tiles side by side.
    poll_s
        Longest wait, in seconds, before ``progress`` is called and
        ``should_stop`` asked, also inside a batch of the members' passes
        (:class:`EnsemblePredictor`; any other Predictor between batches).
    channels_last
        NHWC memory format for the :class:`EnsemblePredictor` built from the members.
    compile
        ``torch.compile`` the members of the :class:`EnsemblePredictor` built
        from them (see there: for GPU workers, whose slides amortise the compile).
    """

    level_downsample: float
    heatmap_downsample: float
    tile_size: int = 256
    overlap: int = 32
    batch_size: int = 16
    device: str | torch.device = "cpu"
    autocast: bool | None = None
    tissue_downsample: float | None = None
    use_tissue_mask: bool = True
    members_dtype: type[np.floating[Any]] | np.dtype[Any] = np.float32
    members_path: str | os.PathLike[str] | None = None
    prefetch: int = defaults.INFERENCE_PREFETCH
    chunk_rows: int = 256
    workers: int | None = None
    decode_threads: int = defaults.INFERENCE_DECODE_THREADS
    poll_s: float = defaults.INFERENCE_POLL_S
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "prefetch", "decode_threads", "chunk_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {self.poll_s}")


def run_ensemble(
    slide_path: str | os.PathLike[str],
    members: Sequence[nn.Module] | Predictor,
    options: InferenceOptions,
    *,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SlideHeatmaps:
    """Segmentation and uncertainty heatmaps of a whole slide.

    Parameters
    ----------
    slide_path
        Any slide large-image opens.
    members
        The ensemble's K models (run as an :class:`EnsemblePredictor` on
        ``options.device``), or any :class:`Predictor` (MC dropout, TTA, ...).
    options
        Resolutions, tiling, device and storage (:class:`InferenceOptions`).
    progress
        Called with the fraction of tiles done (0 ... 1).
    should_stop
        Polled before each batch and every ``options.poll_s`` seconds within
        one; True stops the run with :class:`InferenceCancelled`.

    Returns
    -------
    SlideHeatmaps

    Raises
    ------
    InferenceCancelled
        When ``should_stop()`` returned True.
    ValueError
        On inconsistent downsamples or tile geometry.

    Examples
    --------
    >>> options = InferenceOptions(level_downsample=4, heatmap_downsample=16)
    >>> result = run_ensemble("slide.tiff", members, options)  # doctest: +SKIP
    >>> result.mean.shape == result.tissue.shape  # doctest: +SKIP
    True
    """
    started = time.perf_counter()
    predictor = (
        members
        if isinstance(members, Predictor)
        else EnsemblePredictor(
            list(members),
            device=options.device,
            autocast=options.autocast,
            workers=options.workers,
            channels_last=options.channels_last,
            compile=options.compile,
        )
    )
    factor = check_tiling(
        tile_size=options.tile_size,
        overlap=options.overlap,
        level_downsample=options.level_downsample,
        heatmap_downsample=options.heatmap_downsample,
    )
    slide = open_slide(slide_path)
    lvl = level_shape(slide, options.level_downsample)
    hm_shape = (math.ceil(lvl[0] / factor), math.ceil(lvl[1] / factor))
    tissue, fraction = (
        _tissue_on_heatmap(slide, hm_shape, options.heatmap_downsample, options.tissue_downsample)
        if options.use_tissue_mask
        else (np.ones(hm_shape, dtype=bool), None)
    )
    grid = plan_tiles(
        lvl,
        factor=factor,
        tile_size=options.tile_size,
        overlap=options.overlap,
        tissue=tissue if options.use_tissue_mask else None,
    )
    k = predictor.n_samples
    if options.members_path is not None:
        samples: np.ndarray = np.lib.format.open_memmap(
            Path(options.members_path), mode="w+", dtype=np.dtype(options.members_dtype), shape=(k, *hm_shape)
        )
    else:
        samples = np.zeros((k, *hm_shape), dtype=options.members_dtype)
    if progress is not None:
        progress(0.0)
    _predict_into(samples, predictor, slide, grid, options, progress=progress, should_stop=should_stop)
    if options.use_tissue_mask:
        outside = ~tissue
        for i in range(k):
            samples[i][outside] = 0
    if isinstance(samples, np.memmap):
        samples.flush()
    maps = ensemble_heatmaps(samples, chunk_rows=options.chunk_rows)
    if progress is not None and len(grid.cores) == 0:
        progress(1.0)
    return SlideHeatmaps(
        members=samples,
        mean=maps.mean,
        entropy=maps.entropy,
        mutual_information=maps.mutual_information,
        variance=maps.variance,
        tissue=tissue,
        downsample=float(options.heatmap_downsample),
        level_downsample=float(options.level_downsample),
        tiles_processed=len(grid.cores),
        tiles_total=grid.n_total,
        elapsed_s=time.perf_counter() - started,
        tissue_fraction=fraction,
    )


class _Ticker:
    """Progress and cancel requests, answered on the caller's thread every ``poll_s`` seconds at most.

    ``should_stop`` is asked before every batch (as it always was) and, while
    a batch runs or the model waits for tiles, whenever ``poll_s`` has passed
    since it was last asked; ``progress`` then gets the tiles done plus the
    running batch's share of passes done, so it never goes back.
    """

    def __init__(
        self,
        n_cores: int,
        poll_s: float,
        progress: Callable[[float], None] | None,
        should_stop: Callable[[], bool] | None,
        what: str,
    ) -> None:
        self.n_cores = n_cores
        self.poll_s = poll_s
        self.progress = progress
        self.should_stop = should_stop
        self.what = what
        self.done = 0
        self.running = 0  # tiles of the batch in the model, not yet in ``done``
        self.reported = 0.0
        self.asked = time.monotonic()

    def check(self) -> None:
        """Raise :class:`InferenceCancelled` if the caller asks to stop."""
        self.asked = time.monotonic()
        if self.should_stop is not None and self.should_stop():
            raise InferenceCancelled(f"{self.what}: inference stopped after {self.done} of {self.n_cores} tiles")

    def report(self, fraction: float) -> None:
        if self.progress is not None and fraction > self.reported:
            self.reported = fraction
            self.progress(fraction)

    def __call__(self, batch_fraction: float = 0.0) -> None:
        """Within a batch: ``batch_fraction`` of its passes are done."""
        if time.monotonic() - self.asked < self.poll_s:
            return
        self.check()
        if self.n_cores:
            self.report((self.done + batch_fraction * self.running) / self.n_cores)

    def batch_done(self, tiles: int) -> None:
        """``tiles`` more are in the heatmaps."""
        self.done += tiles
        self.report(self.done / self.n_cores if self.n_cores else 1.0)


@dataclass
class _Pooled:
    """One batch's pooled cores on the host, maybe still arriving from the GPU.

    ``pooled`` is ``(K, B, step, step)``; ``edges`` the unpooled ``(K, E, c, c)``
    cores of the batch's E tiles over the grid's edge (``edge_index`` into the
    batch), pooled on the host like :func:`_pool_partial` always did.
    """

    cores: np.ndarray
    pooled: torch.Tensor
    edges: torch.Tensor | None
    edge_index: list[int]
    ready: torch.cuda.Event | None

    def write(self, samples: np.ndarray, grid: TileGrid) -> None:
        """Copy every core's block into ``samples`` (waiting for the GPU's copy first)."""
        if self.ready is not None:
            self.ready.synchronize()
        pooled = self.pooled.numpy()
        edges = self.edges.numpy() if self.edges is not None else None
        c, f = grid.core, grid.factor
        step = c // f
        lvl = grid.level_shape
        for b, (top, left) in enumerate(self.cores):
            r0, c0 = int(top) // f, int(left) // f
            if b not in self.edge_index:
                samples[:, r0 : r0 + step, c0 : c0 + step] = pooled[:, b]
                continue
            # A core over the grid's edge: average only the analysis pixels on the grid.
            assert edges is not None
            valid_h, valid_w = min(c, lvl[0] - int(top)), min(c, lvl[1] - int(left))
            block = _pool_partial(edges[:, self.edge_index.index(b), :valid_h, :valid_w], f)
            samples[:, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block


def _to_host(tensor: torch.Tensor, cuda: bool) -> torch.Tensor:
    """Float32 on the host: a non-blocking copy into page-locked memory from a GPU, as is on the CPU."""
    tensor = tensor.float()
    if not cuda:
        return tensor.contiguous()
    host = torch.empty(tensor.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def _predict_into(
    samples: np.ndarray,
    predictor: Predictor,
    slide: Slide,
    grid: TileGrid,
    options: InferenceOptions,
    *,
    progress: Callable[[float], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Run every tile of ``grid`` and write each core's pooled ``(K, step, step)`` block into ``samples``.

    On a GPU nothing waits: batch n+1 is copied up (pinned memory, a copy
    stream) and its passes queued before batch n's results, copied down
    asynchronously, are written into ``samples``.  On the CPU each batch is
    written as soon as it is done.
    """
    n_cores = len(grid.cores)
    o, c, f = grid.overlap, grid.core, grid.factor
    dev = predictor.device
    cuda = dev.type == "cuda"
    ticker = _Ticker(n_cores, options.poll_s, progress, should_stop, str(slide.path))
    lvl = grid.level_shape
    edge = (grid.cores[:, 0] + c > lvl[0]) | (grid.cores[:, 1] + c > lvl[1]) if n_cores else np.zeros(0, dtype=bool)
    copy_stream = torch.cuda.Stream(dev) if cuda else None
    behind: _Pooled | None = None  # the GPU's previous batch, not yet written
    start = 0
    batches = _batches(
        slide,
        grid,
        options.level_downsample,
        options.batch_size,
        options.prefetch,
        pin=cuda,
        decode_threads=options.decode_threads,
        waiting=ticker,
        poll_s=min(options.poll_s, 0.1),
    )
    # closing: a cancel or an error stops and joins the reader before it leaves here (a
    # traceback would otherwise keep the generator, and so the reader thread, alive).
    with torch.inference_mode(), contextlib.closing(batches):
        for cores, tiles in batches:
            ticker.check()
            ticker.running = len(cores)
            # (B, T, T, 3) uint8 -> (B, 3, T, T) float in [0, 1]: a permuted view is NHWC
            # (channels_last) already, and the division happens on the device.
            if copy_stream is not None:
                with torch.cuda.stream(copy_stream):
                    up = tiles.to(dev, non_blocking=True)
                torch.cuda.current_stream(dev).wait_stream(copy_stream)
                up.record_stream(torch.cuda.current_stream(dev))
            else:
                up = tiles.to(dev)
            if cuda and len(cores) < options.batch_size:
                # The last batch padded to the others' size: cuDNN's kernel choice (and compiled
                # members) are per shape, and a new one costs seconds on a GPU, more than the padding.
                up = torch.cat([up, up.new_zeros((options.batch_size - len(cores), *up.shape[1:]))])
            batch = up.permute(0, 3, 1, 2).float().div_(255.0)
            if isinstance(predictor, EnsemblePredictor):
                probs = predictor.predict(batch, tick=ticker)  # (K, B, T, T)
            else:
                probs = predictor.predict(batch)
            probs = probs[:, : len(cores)]
            core = probs[:, :, o : o + c, o : o + c]
            k = core.shape[0]
            pooled = (
                F.avg_pool2d(core.reshape(-1, 1, c, c), f).reshape(k, len(cores), c // f, c // f) if f > 1 else core
            )
            edge_index = np.flatnonzero(edge[start : start + len(cores)]).tolist()
            done = _Pooled(
                cores=cores,
                pooled=_to_host(pooled, cuda),
                edges=_to_host(core[:, edge_index], cuda) if edge_index else None,
                edge_index=edge_index,
                ready=None,
            )
            start += len(cores)
            if cuda:
                done.ready = torch.cuda.Event()
                done.ready.record(torch.cuda.current_stream(dev))
                if behind is not None:
                    behind.write(samples, grid)
                    ticker.batch_done(len(behind.cores))
                behind = done
            else:
                done.write(samples, grid)
                ticker.batch_done(len(cores))
        if behind is not None:
            behind.write(samples, grid)
            ticker.batch_done(len(behind.cores))
