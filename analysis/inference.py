"""Whole-slide inference: tumor probability of K samples per pixel, stitched without seams.

Pipeline of :func:`run_ensemble`:

1. a tissue mask from a low-resolution thumbnail (:func:`analysis.slide_io.tissue_mask`);
2. the slide's grid at ``level_downsample`` is cut into cores of
   ``tile_size - 2 * overlap`` pixels; only cores that touch tissue are
   processed, each read once as a ``tile_size`` tile (its core plus
   ``overlap`` pixels of context on every side; outside the slide is white);
3. a reader thread decodes tiles into batches while the main thread runs
   the batch through every sample source (the K members of a deep ensemble,
   or MC dropout, or test-time augmentation: a :class:`Predictor`);
4. each prediction is cropped to its core (the context is only there so the
   core sees what it would see in the whole image) and average-pooled to the
   heatmap grid, where cores tile the grid exactly: no seams, no blending;
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

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
        always run the module's own forward.
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
    ) -> None:
        if len(members) == 0:
            raise ValueError("the ensemble has no members")
        self._device = torch.device(device)
        self.members = [_prepare(m, self._device, channels_last) for m in members]
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

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` in [0, 1] -> ``(K, N, h, w)`` float32 tumor probabilities."""
        micro = self.micro_batch if self.micro_batch is not None else batch.shape[0]
        n_tasks = len(self.members) * math.ceil(batch.shape[0] / max(1, micro))
        if self.workers > 1 and n_tasks > 1:
            return self._predict_side_by_side(batch, micro, min(self.workers, n_tasks))
        with _no_grad_autocast(self._device, self.autocast):
            return torch.stack(
                [
                    _probability(m, batch, self.micro_batch, lean)
                    for m, lean in zip(self.members, self.lean, strict=True)
                ]
            )

    def _predict_side_by_side(self, batch: torch.Tensor, micro: int, workers: int) -> torch.Tensor:
        """:meth:`predict` with ``workers`` threads, one (member, micro-batch) pass per task.

        Every pass is the serial path's computation (same module, same
        micro-batch) on one intra-op thread: equal to it up to float rounding
        (oneDNN may split a reduction differently with another thread count).  Autocast and inference mode are thread-local, so each task
        enters them itself.
        """
        parts = list(torch.split(batch, micro))

        def one(member: nn.Module, lean: bool, part: torch.Tensor) -> torch.Tensor:
            with _no_grad_autocast(self._device, self.autocast):
                return _probability(member, part, None, lean)

        # Tasks in member-major order, so consecutive tasks reuse a member's weights in cache.
        with _intra_op_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="ensemble-member") as pool:
            futures = [
                [pool.submit(one, m, lean, part) for part in parts]
                for m, lean in zip(self.members, self.lean, strict=True)
            ]
            results = [[f.result() for f in row] for row in futures]
        with torch.inference_mode():
            return torch.stack([torch.cat(row) if len(row) > 1 else row[0] for row in results])


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
) -> None:
    """Decode tiles into ``(B, T, T, 3)`` uint8 batches and queue them (runs in a thread).

    With ``pin`` the batch goes out as a page-locked tensor, so the copy to the
    GPU can be asynchronous; pinning here keeps that copy off the compute thread.
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

    try:
        t, o = grid.tile_size, grid.overlap
        for start in range(0, len(grid.cores), batch_size):
            if stop.is_set():
                return
            cores = grid.cores[start : start + batch_size]
            tiles = np.empty((len(cores), t, t, 3), dtype=np.uint8)
            for i, (top, left) in enumerate(cores):
                tiles[i] = read_region(
                    slide, level_downsample=level_downsample, left=int(left) - o, top=int(top) - o, width=t, height=t
                )
            batch: np.ndarray | torch.Tensor = torch.from_numpy(tiles).pin_memory() if pin else tiles
            if not put((cores, batch)):
                return
        put(_DONE)
    except BaseException as exc:  # handed to the main thread, which re-raises it
        put(exc)


def _batches(
    slide: Slide, grid: TileGrid, level_downsample: float, batch_size: int, prefetch: int, pin: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray | torch.Tensor]]:
    """Batches from a reader thread, so that decoding overlaps the forward passes."""
    out: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    thread = threading.Thread(
        target=_reader,
        args=(slide, grid, level_downsample, batch_size, out, stop, pin),
        name="tile-reader",
        daemon=True,
    )
    thread.start()
    try:
        while True:
            item = out.get()
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
        Batches the reader thread may decode ahead.
    chunk_rows
        Row chunk of the uncertainty computation.
    workers
        CPU forward passes run side by side by the :class:`EnsemblePredictor`
        built from the members (``None``: ``torch.get_num_threads()``, the
        caller's thread budget; see :class:`EnsemblePredictor`).
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
    prefetch: int = 3
    chunk_rows: int = 256
    workers: int | None = None


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
        Polled before each batch; True stops the run with :class:`InferenceCancelled`.

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
            list(members), device=options.device, autocast=options.autocast, workers=options.workers
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
    """Run every tile of ``grid`` and write each core's pooled ``(K, step, step)`` block into ``samples``."""
    n_cores = len(grid.cores)
    lvl = grid.level_shape
    k = predictor.n_samples
    done = 0
    o, c, f = grid.overlap, grid.core, grid.factor
    step = c // f
    dev = predictor.device
    batches = _batches(slide, grid, options.level_downsample, options.batch_size, options.prefetch,
                       pin=dev.type == "cuda")
    with torch.inference_mode():
        for cores, tiles in batches:
            if should_stop is not None and should_stop():
                raise InferenceCancelled(f"{slide.path}: inference stopped after {done} of {n_cores} tiles")
            # (B, T, T, 3) uint8 -> (B, 3, T, T) float in [0, 1]: a permuted view is NHWC
            # (channels_last) already, and the division happens on the device.
            host = torch.from_numpy(tiles) if isinstance(tiles, np.ndarray) else tiles
            batch = host.to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            probs = predictor.predict(batch)  # (K, B, T, T)
            core = probs[:, :, o : o + c, o : o + c]
            pooled = F.avg_pool2d(core.reshape(-1, 1, c, c), f).reshape(k, len(cores), step, step) if f > 1 else core
            pooled_np = pooled.float().cpu().numpy()
            for b, (top, left) in enumerate(cores):
                r0, c0 = int(top) // f, int(left) // f
                valid_h, valid_w = min(c, lvl[0] - int(top)), min(c, lvl[1] - int(left))
                if valid_h == c and valid_w == c:
                    samples[:, r0 : r0 + step, c0 : c0 + step] = pooled_np[:, b]
                else:
                    # A core over the grid's edge: average only the analysis pixels on the grid.
                    part = core[:, b, :valid_h, :valid_w].float().cpu().numpy()
                    block = _pool_partial(part, f)
                    samples[:, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block
            done += len(cores)
            if progress is not None:
                progress(done / n_cores if n_cores else 1.0)
