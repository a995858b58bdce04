"""Training the deep ensemble (paper §4.1, SPEC §8).

K members, identical but for the random seed (He initialisation, data order,
augmentation, dropout); Adam (beta1 0.9, beta2 0.999), initial learning rate
0.01, x0.1 after 20 epochs without validation improvement, at most 250
epochs with early stopping, four healthy patches per tumor patch, stain /
colour, flip and rotation augmentation.  Every number is a
:class:`TrainingConfig` field whose default comes from :mod:`analysis.defaults`.

Data: patches are sampled once from annotated slides into memory
(:func:`sample_patches`: tumor patches centred on a tumor pixel, healthy ones
on tissue outside the tumor) and augmented afresh every epoch on the fly
(vectorised torch), so an epoch costs only forward and backward passes.
Validation score: Dice of ``p >= 0.5`` against the annotation, pooled over
the validation patches (1 when both are empty).

Nothing runs torch at import time (Celery prefork workers hang when torch ran
in the parent before the fork).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from shapely.geometry.base import BaseGeometry
from torch import nn

from analysis import defaults
from analysis.metrics import dice_from_counts
from analysis.models import NetworkConfig, build_network, save_member
from analysis.slide_io import Slide, level_shape, open_slide, read_region, tissue_mask

__all__ = [
    "OPTIMIZERS",
    "TRAINING_PRESETS",
    "AugmentationConfig",
    "EpochReport",
    "PatchSet",
    "TrainedMember",
    "TrainingCancelled",
    "TrainingConfig",
    "TrainingSlide",
    "augment_batch",
    "sample_patches",
    "train_ensemble",
    "train_member",
]

#: Optimisers the paper tried (§4.2); Adam is its choice.
OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop", "nadam", "sgd")


class TrainingCancelled(Exception):
    """``should_stop()`` returned True during training."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AugmentationConfig:
    """Per-patch random augmentation, drawn anew every epoch (Tellez et al. 2019, "light" ranges).

    Attributes
    ----------
    flips, rotations : bool
        Random left-right flip; random multiple of 90 degrees.
    hed_scale, hed_shift : float
        Stain jitter in the HED colour space: each of the three stain
        concentrations becomes ``c * U(1 - hed_scale, 1 + hed_scale) +
        U(-hed_shift, hed_shift)``.
    brightness : float
        Add ``U(-brightness, brightness)`` to RGB in [0, 1].
    contrast : float
        Scale deviations from the patch mean by ``U(1 - contrast, 1 + contrast)``.
    """

    flips: bool = True
    rotations: bool = True
    hed_scale: float = 0.05
    hed_shift: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        for name in ("hed_scale", "hed_shift", "brightness", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"augmentation {name} must be in [0, 1), got {value}")


#: Scalar settings of :class:`TrainingConfig` and the type each must have (ints pass as floats).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("members", "seed", "lr_patience", "early_stopping_patience", "max_epochs", "patch_size",
                     "tumor_patches", "val_tumor_patches", "patches_per_epoch", "batch_size"), int),
    **dict.fromkeys(("learning_rate", "momentum", "weight_decay", "lr_decay", "min_improvement",
                     "level_downsample", "healthy_per_tumor"), (int, float)),
    "optimizer": str,
}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines a trained ensemble (with the data and the seeds).

    Attributes
    ----------
    members : int
        K, ensemble size.
    seed : int
        Member ``i`` uses ``seed + i`` unless ``member_seeds`` names them;
        ``seed`` also drives patch sampling.
    member_seeds : tuple of int or None
    member_optimizers : tuple of str or None
        One optimiser per member (the paper also tried ensembles whose members
        differ in optimiser); None: every member uses ``optimizer``.
    member_healthy_per_tumor : tuple of float or None
        One healthy:tumor patch ratio per member (the paper's other variation);
        members with the same ratio share one sampled patch pool.
    optimizer : {"adam", "rmsprop", "nadam", "sgd"}
    learning_rate : float
    betas : (float, float)
        Adam / NAdam moment decay rates.
    momentum : float
        SGD and RMSprop momentum.
    weight_decay : float
    lr_decay : float
        Learning rate factor when validation Dice has not improved for ...
    lr_patience : int
        ... this many epochs (ReduceLROnPlateau).
    early_stopping_patience : int
        Stop after this many epochs without improvement (default: two decay
        periods, i.e. the learning rate was cut twice in vain).
    max_epochs : int
    min_improvement : float
        A validation Dice must beat the best by more than this to count.
    patch_size : int
        Patch edge in pixels at ``level_downsample``.
    level_downsample : float
        Resolution the network sees, relative to level 0 (inference must use the same).
    healthy_per_tumor : float
        Healthy patches sampled per tumor patch (the paper: 4).
    tumor_patches, val_tumor_patches : int
        Tumor patches sampled into the training / validation pools (healthy:
        ``healthy_per_tumor`` times as many).
    patches_per_epoch : int or None
        Patches drawn from the pool per epoch (None: the whole pool once).
    batch_size : int
    augmentation : AugmentationConfig
    network : NetworkConfig
    """

    members: int = defaults.ENSEMBLE_MEMBERS
    seed: int = defaults.SEED
    member_seeds: tuple[int, ...] | None = None
    member_optimizers: tuple[str, ...] | None = None
    member_healthy_per_tumor: tuple[float, ...] | None = None
    optimizer: str = "adam"
    learning_rate: float = defaults.LEARNING_RATE
    betas: tuple[float, float] = defaults.ADAM_BETAS
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: float = defaults.LR_DECAY
    lr_patience: int = defaults.LR_PATIENCE_EPOCHS
    early_stopping_patience: int = 2 * defaults.LR_PATIENCE_EPOCHS
    max_epochs: int = defaults.MAX_EPOCHS
    min_improvement: float = 1e-4
    patch_size: int = 256
    level_downsample: float = 2.0
    healthy_per_tumor: float = defaults.HEALTHY_PER_TUMOR_PATCH
    tumor_patches: int = 2000
    val_tumor_patches: int = 400
    patches_per_epoch: int | None = None
    batch_size: int = 16
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        # Settings often arrive as JSON from the API: say which one has the wrong type,
        # rather than fail later on a comparison between a string and a number.
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if value is None and name == "patches_per_epoch":
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                wanted = "a whole number" if kind is int else "text" if kind is str else "a number"
                raise ValueError(f"{name} must be {wanted}, got {value!r}")
            if isinstance(kind, tuple):
                object.__setattr__(self, name, float(value))  # type: ignore[arg-type]  # checked: int or float
        if isinstance(self.network, Mapping):
            object.__setattr__(self, "network", NetworkConfig.from_dict(self.network))
        if isinstance(self.augmentation, Mapping):
            object.__setattr__(self, "augmentation", AugmentationConfig(**dict(self.augmentation)))
        if self.member_seeds is not None and not isinstance(self.member_seeds, tuple):
            object.__setattr__(self, "member_seeds", tuple(int(s) for s in self.member_seeds))
        if not isinstance(self.betas, tuple):
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if self.member_seeds is not None and len(self.member_seeds) != self.members:
            raise ValueError(f"member_seeds must hold {self.members} seeds, got {len(self.member_seeds)}")
        if self.member_optimizers is not None:
            object.__setattr__(self, "member_optimizers", tuple(str(o) for o in self.member_optimizers))
            if len(self.member_optimizers) != self.members:
                raise ValueError(f"member_optimizers must name {self.members} optimizers, "
                                 f"got {len(self.member_optimizers)}")
            for name in self.member_optimizers:
                if name not in OPTIMIZERS:
                    raise ValueError(f"unknown optimizer {name!r} in member_optimizers; use {', '.join(OPTIMIZERS)}")
        if self.member_healthy_per_tumor is not None:
            ratios = self.member_healthy_per_tumor
            if isinstance(ratios, (str, bytes)) or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in ratios):
                raise ValueError(f"member_healthy_per_tumor must be numbers >= 0, got {ratios!r}")
            object.__setattr__(self, "member_healthy_per_tumor", tuple(float(r) for r in ratios))
            if len(self.member_healthy_per_tumor) != self.members:
                raise ValueError(f"member_healthy_per_tumor must hold {self.members} ratios, "
                                 f"got {len(self.member_healthy_per_tumor)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 < self.lr_decay < 1.0:
            raise ValueError(f"lr_decay must be in (0, 1), got {self.lr_decay}")
        for name in ("lr_patience", "early_stopping_patience", "max_epochs", "patch_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.level_downsample < 1:
            raise ValueError(f"level_downsample must be >= 1, got {self.level_downsample}")
        if self.healthy_per_tumor < 0:
            raise ValueError(f"healthy_per_tumor must be >= 0, got {self.healthy_per_tumor}")
        if self.tumor_patches < 1 or self.val_tumor_patches < 1:
            raise ValueError("tumor_patches and val_tumor_patches must be positive")
        if self.patches_per_epoch is not None and self.patches_per_epoch < 1:
            raise ValueError(f"patches_per_epoch must be positive or None, got {self.patches_per_epoch}")

    def seed_of(self, member: int) -> int:
        """Seed of member ``member`` (0-based)."""
        if not 0 <= member < self.members:
            raise ValueError(f"member index {member} out of range 0..{self.members - 1}")
        return self.member_seeds[member] if self.member_seeds is not None else self.seed + member

    def optimizer_of(self, member: int) -> str:
        """Optimiser of member ``member`` (0-based)."""
        self.seed_of(member)  # range check
        return self.member_optimizers[member] if self.member_optimizers is not None else self.optimizer

    def healthy_per_tumor_of(self, member: int) -> float:
        """Healthy patches per tumor patch in the pool member ``member`` trains on."""
        self.seed_of(member)
        if self.member_healthy_per_tumor is not None:
            return self.member_healthy_per_tumor[member]
        return self.healthy_per_tumor

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (nested network and augmentation)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, NetworkConfig):
                value = value.to_dict()
            elif isinstance(value, AugmentationConfig):
                value = asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are an error.

        A ``"preset"`` key starts from that preset (:data:`TRAINING_PRESETS`)
        and the other keys override it.
        """
        data = dict(data)
        base = cls.preset(str(data.pop("preset"))) if "preset" in data else cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        if isinstance(data.get("network"), str):
            data["network"] = NetworkConfig.preset(data["network"])
        return replace(base, **data)

    @classmethod
    def preset(cls, name: str) -> TrainingConfig:
        """``"paper"`` (the paper's settings, FC-DenseNet103), ``"demo"`` (tiny, CPU minutes), ``"test"``."""
        try:
            return TRAINING_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown training preset {name!r}; use one of {', '.join(TRAINING_PRESETS)}") from None


#: Named training configurations.  "paper": every SPEC §8 default with the
#: FC-DenseNet103.  "demo": the paper's optimiser and learning rate with the
#: tiny network on 32-pixel patches at downsample 8 (8 um/px, a 256 um field
#: on the 1 um/px synthetic slides), short patience and 12 epochs of 1600
#: patches, so that five members train on a CPU core in about 4 minutes; infer
#: at the same level_downsample (8) with heatmap_downsample 16.  "test":
#: smaller still, for the test suite.
TRAINING_PRESETS: dict[str, TrainingConfig] = {
    "paper": TrainingConfig(network=NetworkConfig.preset("paper")),
    "demo": TrainingConfig(
        network=NetworkConfig.preset("tiny"),
        lr_patience=4,
        early_stopping_patience=8,
        max_epochs=12,
        patch_size=32,
        level_downsample=8.0,
        tumor_patches=300,
        val_tumor_patches=60,
        patches_per_epoch=1600,
        batch_size=16,
    ),
    "test": TrainingConfig(
        members=2,
        network=NetworkConfig.preset("tiny"),
        learning_rate=3e-3,
        lr_patience=2,
        early_stopping_patience=4,
        max_epochs=4,
        patch_size=32,
        level_downsample=2.0,
        tumor_patches=24,
        val_tumor_patches=8,
        patches_per_epoch=96,
        batch_size=16,
    ),
}


# --------------------------------------------------------------------------- patches


@dataclass(frozen=True)
class TrainingSlide:
    """An annotated slide to sample patches from.

    Attributes
    ----------
    path : str or Path
        Any slide large-image opens.
    tumor : shapely geometry, bool ndarray, or None
        Tumor area: polygons in level-0 pixels (as
        :func:`analysis.annotations.load_tumor_geometry` returns), or a mask
        (non-zero = tumor) at ``mask_downsample``; None or empty = tumor-free.
    mask_downsample : float or None
        Downsample of an ndarray ``tumor`` (required with one).
    """

    path: str | os.PathLike[str]
    tumor: BaseGeometry | np.ndarray | None = None
    mask_downsample: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tumor, np.ndarray):
            if self.tumor.ndim != 2:
                raise ValueError(f"{self.path}: a tumor mask must be 2-D, got shape {self.tumor.shape}")
            if self.mask_downsample is None or self.mask_downsample <= 0:
                raise ValueError(f"{self.path}: a tumor mask needs its mask_downsample")


@dataclass(frozen=True)
class PatchSet:
    """Patches in memory.

    Attributes
    ----------
    images : (N, P, P, 3) uint8
    labels : (N, P, P) uint8, 1 = tumor
    from_tumor : (N,) bool
        Sampled as a tumor patch (centred in tumor) rather than a healthy one.
    """

    images: np.ndarray
    labels: np.ndarray
    from_tumor: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, P, P, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != self.images.shape[:3]:
            raise ValueError(f"labels must be (N, P, P) like the images, got {self.labels.shape}")
        if self.from_tumor.shape != (n,):
            raise ValueError("from_tumor must hold one flag per patch")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def tumor_fraction(self) -> float:
        """Fraction of tumor pixels."""
        return float(self.labels.mean()) if self.labels.size else 0.0


@dataclass
class _SlideSampler:
    """One slide's candidate centres on a coarse sampling grid."""

    slide: Slide
    source: TrainingSlide
    scale: int  # sampling-grid pixel = scale analysis pixels
    tumor_cells: np.ndarray  # (n, 2) row, col on the sampling grid
    healthy_cells: np.ndarray


def _tumor_on_grid(source: TrainingSlide, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """Tumor by the pixel-centre rule on a grid of ``shape`` at ``downsample``."""
    tumor = source.tumor
    if tumor is None:
        return np.zeros(shape, dtype=bool)
    if isinstance(tumor, np.ndarray):
        assert source.mask_downsample is not None
        rows = np.floor((np.arange(shape[0]) + 0.5) * downsample / source.mask_downsample).astype(np.int64)
        cols = np.floor((np.arange(shape[1]) + 0.5) * downsample / source.mask_downsample).astype(np.int64)
        out = np.zeros(shape, dtype=bool)
        keep_r = rows < tumor.shape[0]
        keep_c = cols < tumor.shape[1]
        out[np.ix_(keep_r, keep_c)] = tumor[np.ix_(rows[keep_r], cols[keep_c])] != 0
        return out
    if tumor.is_empty:
        return np.zeros(shape, dtype=bool)
    from analysis.annotations import rasterize

    return rasterize(tumor, shape=shape, downsample=downsample)


def _prepare_slide(source: TrainingSlide, level_downsample: float, patch_size: int) -> _SlideSampler:
    slide = open_slide(source.path)
    height, width = level_shape(slide, level_downsample)
    # Sampling grid: a power-of-two multiple of the analysis grid, coarse
    # enough to be cheap (<= 1024 on the long side), no coarser than a patch.
    scale = 1
    while max(height, width) / scale > 1024 and scale * 2 <= max(1, patch_size // 2):
        scale *= 2
    shape = (math.ceil(height / scale), math.ceil(width / scale))
    downsample = level_downsample * scale
    tumor = _tumor_on_grid(source, shape, downsample)
    tissue = tissue_mask(slide, downsample=downsample)
    tissue_grid = np.zeros(shape, dtype=bool)
    h, w = min(shape[0], tissue.shape[0]), min(shape[1], tissue.shape[1])
    tissue_grid[:h, :w] = tissue[:h, :w]
    healthy = tissue_grid & ~tumor
    return _SlideSampler(
        slide=slide,
        source=source,
        scale=scale,
        tumor_cells=np.argwhere(tumor),
        healthy_cells=np.argwhere(healthy),
    )


def _patch_labels(source: TrainingSlide, *, left: int, top: int, size: int, level_downsample: float) -> np.ndarray:
    """(size, size) uint8 tumor labels of a patch (pixel-centre rule at the analysis level)."""
    tumor = source.tumor
    if tumor is None or (isinstance(tumor, BaseGeometry) and tumor.is_empty):
        return np.zeros((size, size), dtype=np.uint8)
    d = level_downsample
    if isinstance(tumor, np.ndarray):
        assert source.mask_downsample is not None
        centres = (np.arange(size) + 0.5) * d
        rows = np.floor((top * d + centres) / source.mask_downsample).astype(np.int64)
        cols = np.floor((left * d + centres) / source.mask_downsample).astype(np.int64)
        out = np.zeros((size, size), dtype=np.uint8)
        keep_r = (rows >= 0) & (rows < tumor.shape[0])
        keep_c = (cols >= 0) & (cols < tumor.shape[1])
        out[np.ix_(keep_r, keep_c)] = tumor[np.ix_(rows[keep_r], cols[keep_c])] != 0
        return out
    import shapely
    from shapely import affinity

    from analysis.annotations import rasterize

    x0, y0 = left * d, top * d
    # Clip first: rasterising a whole-slide geometry per patch would cost its full vertex count.
    local = shapely.clip_by_rect(tumor, x0 - d, y0 - d, x0 + (size + 1) * d, y0 + (size + 1) * d)
    if local.is_empty:
        return np.zeros((size, size), dtype=np.uint8)
    local = affinity.translate(local, xoff=-x0, yoff=-y0)
    return rasterize(local, shape=(size, size), downsample=d).astype(np.uint8)


def sample_patches(
    slides: Sequence[TrainingSlide],
    *,
    tumor_patches: int,
    healthy_per_tumor: float = defaults.HEALTHY_PER_TUMOR_PATCH,
    patch_size: int,
    level_downsample: float,
    seed: int,
) -> PatchSet:
    """Sample tumor and healthy patches from annotated slides into memory.

    Tumor patches: a slide with tumor is drawn uniformly, then a tumor pixel of
    a coarse sampling grid, then a centre uniformly inside that grid cell.
    Healthy patches (``round(tumor_patches * healthy_per_tumor)``): the same on
    tissue (:func:`analysis.slide_io.tissue_mask`) outside the tumor, over all
    slides.  Labels are the annotation rasterised at the analysis level by the
    pixel-centre rule.  When no slide has tumor, only healthy patches are
    drawn (as many as ``tumor_patches * (1 + healthy_per_tumor)``).

    Returns
    -------
    PatchSet
        Tumor patches first, then healthy ones.

    Raises
    ------
    ValueError
        If no slide has any tissue to sample from.
    """
    if not slides:
        raise ValueError("no slides to sample patches from")
    rng = np.random.default_rng([seed, 0x5A3])
    samplers = [_prepare_slide(s, level_downsample, patch_size) for s in slides]
    with_tumor = [s for s in samplers if len(s.tumor_cells)]
    with_healthy = [s for s in samplers if len(s.healthy_cells)]
    n_healthy = round(tumor_patches * healthy_per_tumor)
    n_tumor = tumor_patches
    if not with_tumor:
        n_healthy += n_tumor
        n_tumor = 0
    if n_healthy and not with_healthy:
        raise ValueError("no tissue outside tumor found on the training slides")
    size = patch_size
    total = n_tumor + n_healthy
    images = np.empty((total, size, size, 3), dtype=np.uint8)
    labels = np.empty((total, size, size), dtype=np.uint8)
    from_tumor = np.zeros(total, dtype=bool)
    plan = [(True, with_tumor)] * n_tumor + [(False, with_healthy)] * n_healthy
    for i, (is_tumor, pool) in enumerate(plan):
        sampler = pool[int(rng.integers(len(pool)))]
        cells = sampler.tumor_cells if is_tumor else sampler.healthy_cells
        row, col = cells[int(rng.integers(len(cells)))]
        cy = int(row) * sampler.scale + int(rng.integers(sampler.scale))
        cx = int(col) * sampler.scale + int(rng.integers(sampler.scale))
        top, left = cy - size // 2, cx - size // 2
        images[i] = read_region(
            sampler.slide, level_downsample=level_downsample, left=left, top=top, width=size, height=size
        )
        labels[i] = _patch_labels(sampler.source, left=left, top=top, size=size, level_downsample=level_downsample)
        from_tumor[i] = is_tumor
    return PatchSet(images=images, labels=labels, from_tumor=from_tumor)


# --------------------------------------------------------------------------- augmentation


def _hed_matrices(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image's HED stain matrices (Ruifrok & Johnston), as torch tensors."""
    from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

    return (
        torch.as_tensor(hed_from_rgb, dtype=torch.float32, device=device),
        torch.as_tensor(rgb_from_hed, dtype=torch.float32, device=device),
    )


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentationConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly flip, rotate and stain/colour-jitter a batch (each patch its own draw).

    Parameters
    ----------
    images : (N, 3, P, P) float in [0, 1]
    labels : (N, P, P) int64
    config : AugmentationConfig
    generator : torch.Generator (CPU)
        Source of every random draw, for repeatable training.

    Returns
    -------
    (images, labels)
        Same shapes; images still in [0, 1].

    The HED jitter is scikit-image's ``rgb2hed`` / ``hed2rgb`` written in
    torch for a whole batch: optical density ``log(max(rgb, 1e-6)) /
    log(1e-6)`` times ``hed_from_rgb``, clipped at 0, scaled and shifted per
    stain, then ``exp(-(hed * -log(1e-6)) @ rgb_from_hed)``.
    """
    n = images.shape[0]
    device = images.device
    if n == 0:
        return images, labels

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(device)

    if config.flips or config.rotations:
        turns = torch.randint(0, 4 if config.rotations else 1, (n,), generator=generator)
        flips = torch.randint(0, 2 if config.flips else 1, (n,), generator=generator)
        out_x, out_y = images.clone(), labels.clone()
        for k in range(4):
            for f in range(2):
                idx = torch.nonzero((turns == k) & (flips == f)).flatten().to(device)
                if idx.numel() == 0 or (k == 0 and f == 0):
                    continue
                x, y = images[idx], labels[idx]
                if f:
                    x, y = torch.flip(x, dims=(3,)), torch.flip(y, dims=(2,))
                out_x[idx] = torch.rot90(x, k, dims=(2, 3))
                out_y[idx] = torch.rot90(y, k, dims=(1, 2))
        images, labels = out_x, out_y

    if config.hed_scale > 0 or config.hed_shift > 0:
        to_hed, to_rgb = _hed_matrices(device)
        log_adjust = math.log(1e-6)
        rgb = images.clamp(min=1e-6).permute(0, 2, 3, 1)  # (N, P, P, 3)
        hed = torch.clamp((torch.log(rgb) / log_adjust) @ to_hed, min=0.0)
        scale = uniform((n, 1, 1, 3), 1.0 - config.hed_scale, 1.0 + config.hed_scale)
        shift = uniform((n, 1, 1, 3), -config.hed_shift, config.hed_shift)
        hed = hed * scale + shift
        rgb = torch.exp((hed * log_adjust) @ to_rgb).clamp(0.0, 1.0)
        images = rgb.permute(0, 3, 1, 2)

    if config.brightness > 0:
        images = images + uniform((n, 1, 1, 1), -config.brightness, config.brightness)
    if config.contrast > 0:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * uniform((n, 1, 1, 1), 1.0 - config.contrast, 1.0 + config.contrast) + mean
    return images.clamp(0.0, 1.0).contiguous(memory_format=torch.channels_last), labels


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch of one member (what ``progress`` receives)."""

    member: int
    epoch: int
    train_loss: float
    val_loss: float
    val_dice: float
    best_dice: float
    improved: bool
    learning_rate: float
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary, floats rounded for display and storage."""
        out = asdict(self)
        for key in ("train_loss", "val_loss", "val_dice", "best_dice", "elapsed_s"):
            out[key] = round(float(out[key]), 5)
        out["learning_rate"] = float(f"{self.learning_rate:.3g}")
        return out


@dataclass(frozen=True)
class TrainedMember:
    """A trained member: best-validation weights and how it got there.

    Attributes
    ----------
    state_dict : dict of tensors (CPU)
    network_config : dict
        JSON-safe :meth:`NetworkConfig.to_dict`.
    history : tuple of EpochReport
    member, seed : int
    best_epoch : int
        Epoch of the kept weights (0 = the initial weights, never improved on).
    best_dice : float
    """

    state_dict: dict[str, torch.Tensor]
    network_config: dict[str, Any]
    history: tuple[EpochReport, ...]
    member: int
    seed: int
    best_epoch: int
    best_dice: float

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig.from_dict(self.network_config)

    def model(self) -> nn.Module:
        """The network with these weights, eval mode, CPU."""
        model = build_network(self.network, seed=0)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint :func:`analysis.models.load_member` reads."""
        save_member(self.state_dict, self.network, path)
        return Path(path)


def _optimizer(config: TrainingConfig, params: Any, member: int) -> torch.optim.Optimizer:
    lr, wd = config.learning_rate, config.weight_decay
    name = config.optimizer_of(member)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=config.betas, weight_decay=wd)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=config.betas, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)


def _as_tensors(patches: PatchSet) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(patches.images)), torch.from_numpy(patches.labels.astype(np.int64))


def _to_input(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, P, P, 3) uint8 -> (N, 3, P, P) float in [0, 1], channels_last, on ``device``."""
    return images_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def _evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """(mean cross-entropy, pooled Dice of p >= 0.5) on validation patches."""
    model.eval()
    tp = fp = fn = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _to_input(images[start : start + batch_size], device)
            y = labels[start : start + batch_size].to(device)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            predicted = logits[:, 1] > logits[:, 0]  # softmax class 1 >= 0.5
            truth = y == 1
            tp += int((predicted & truth).sum())
            fp += int((predicted & ~truth).sum())
            fn += int((~predicted & truth).sum())
    n_pixels = max(1, labels.numel())
    return loss_sum / n_pixels, float(dice_from_counts(tp, fp, fn))


def train_member(
    config: TrainingConfig,
    member_index: int,
    train_patches: PatchSet,
    val_patches: PatchSet,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> TrainedMember:
    """Train one member from its seed; keep the weights of the best validation Dice.

    Deterministic on a given device and thread count: initialisation, patch
    order, augmentation and dropout all come from ``config.seed_of(member_index)``,
    and the global torch RNG is restored afterwards.

    Parameters
    ----------
    config
        Optimiser, schedule, stopping, augmentation and network.
    member_index
        0-based; selects the seed.
    train_patches, val_patches
        From :func:`sample_patches`.
    progress
        Called after every epoch.
    device
        Where to train.
    should_stop
        Polled after every batch; True raises :class:`TrainingCancelled`.
    """
    if len(train_patches) == 0 or len(val_patches) == 0:
        raise ValueError("training and validation patch sets must not be empty")
    if member_index < 0 or member_index >= config.members:
        raise ValueError(f"member index {member_index} out of range 0..{config.members - 1}")
    seed = config.seed_of(member_index)
    dev = torch.device(device)
    started = time.perf_counter()
    fork_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type=dev.type):
        # Dropout draws from the global RNG: seed it here, inside the fork.
        torch.manual_seed(seed)
        model = build_network(config.network, seed=seed).to(dev)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = _optimizer(config, model.parameters(), member_index)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=config.lr_decay,
            patience=config.lr_patience,
            threshold=config.min_improvement,
            threshold_mode="abs",
        )
        generator = torch.Generator().manual_seed(seed)
        train_x, train_y = _as_tensors(train_patches)
        val_x, val_y = _as_tensors(val_patches)
        n_pool = len(train_x)
        per_epoch = config.patches_per_epoch or n_pool
        # Start from the initial weights' score so that best_epoch 0 is meaningful.
        _, best_dice = _evaluate(model, val_x, val_y, config.batch_size, dev)
        best_state = copy.deepcopy(model.state_dict())
        best_epoch = 0
        since_best = 0
        history: list[EpochReport] = []
        cursor, order = n_pool, torch.arange(0)
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            loss_sum, seen = 0.0, 0
            picked: list[torch.Tensor] = []
            need = per_epoch
            while need > 0:
                # Walk through shuffled passes over the pool, continuing across epochs.
                if cursor >= n_pool:
                    order, cursor = torch.randperm(n_pool, generator=generator), 0
                take = min(need, n_pool - cursor)
                picked.append(order[cursor : cursor + take])
                cursor += take
                need -= take
            indices = torch.cat(picked)
            for start in range(0, len(indices), config.batch_size):
                batch_idx = indices[start : start + config.batch_size]
                if len(batch_idx) < 2:
                    continue  # BatchNorm needs more than one sample
                x = _to_input(train_x[batch_idx], dev)
                y = train_y[batch_idx].to(dev)
                x, y = augment_batch(x, y, config.augmentation, generator)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(batch_idx)
                seen += len(batch_idx)
                if should_stop is not None and should_stop():
                    raise TrainingCancelled(f"member {member_index}: training stopped in epoch {epoch}")
            val_loss, val_dice = _evaluate(model, val_x, val_y, config.batch_size, dev)
            improved = val_dice > best_dice + config.min_improvement
            if improved:
                best_dice, best_epoch, since_best = val_dice, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            learning_rate = float(optimizer.param_groups[0]["lr"])
            scheduler.step(val_dice)
            report = EpochReport(
                member=member_index,
                epoch=epoch,
                train_loss=loss_sum / max(1, seen),
                val_loss=val_loss,
                val_dice=val_dice,
                best_dice=best_dice,
                improved=improved,
                learning_rate=learning_rate,
                elapsed_s=time.perf_counter() - started,
            )
            history.append(report)
            if progress is not None:
                progress(report)
            if since_best >= config.early_stopping_patience:
                break
    return TrainedMember(
        state_dict={k: v.detach().cpu().clone() for k, v in best_state.items()},
        network_config=config.network.to_dict(),
        history=tuple(history),
        member=member_index,
        seed=seed,
        best_epoch=best_epoch,
        best_dice=best_dice,
    )


def train_ensemble(
    config: TrainingConfig,
    train: Sequence[TrainingSlide] | PatchSet,
    validation: Sequence[TrainingSlide] | PatchSet | None = None,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> list[TrainedMember]:
    """Train all ``config.members`` members on the same patches (one pool per
    healthy:tumor ratio when ``member_healthy_per_tumor`` varies it), one after
    the other or ``workers`` at a time.

    Parameters
    ----------
    config
    train
        Annotated slides (patches are sampled once, seeded by ``config.seed``)
        or a ready :class:`PatchSet`.
    validation
        Slides or patches for the validation Dice.  None or empty: validation
        patches are sampled from the training slides with another seed (a
        weaker check; prefer separate slides).
    progress, device, should_stop
        As in :func:`train_member`.
    workers
        Members trained side by side on the CPU, each in its own (spawned)
        process with one torch thread: members are independent, and a tiny
        network's steps are too small to split across cores.  The results are
        those of training each member alone on one thread.  Not from inside a
        daemonic process (a Celery prefork child): keep 1 there.

    Returns
    -------
    list of TrainedMember
        In member order.
    """
    size, level = config.patch_size, config.level_downsample
    pools: dict[float, PatchSet] = {}

    def train_pool(member: int) -> PatchSet:
        """The member's training patches: one pool per healthy:tumor ratio, sampled once."""
        if isinstance(train, PatchSet):
            return train
        ratio = config.healthy_per_tumor_of(member)
        if ratio not in pools:
            pools[ratio] = sample_patches(
                train,
                tumor_patches=config.tumor_patches,
                healthy_per_tumor=ratio,
                patch_size=size,
                level_downsample=level,
                seed=config.seed,
            )
        return pools[ratio]

    if isinstance(validation, PatchSet):
        val_patches = validation
    else:
        val_slides = list(validation or [])
        if not val_slides:
            if isinstance(train, PatchSet):
                raise ValueError("give validation patches when training from patches")
            val_slides = list(train)
        val_patches = sample_patches(
            val_slides,
            tumor_patches=config.val_tumor_patches,
            healthy_per_tumor=config.healthy_per_tumor,
            patch_size=size,
            level_downsample=level,
            seed=config.seed + 7919,
        )
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    if workers > 1 and config.members > 1 and torch.device(device).type == "cpu":
        return _train_side_by_side(config, [train_pool(i) for i in range(config.members)], val_patches,
                                   progress=progress, should_stop=should_stop, workers=workers)
    return [
        train_member(config, i, train_pool(i), val_patches, progress=progress, device=device, should_stop=should_stop)
        for i in range(config.members)
    ]


class _QueueReporter:
    """``progress`` for a member trained in another process: epoch reports go back through a queue."""

    def __init__(self, reports: Any) -> None:
        self.reports = reports

    def __call__(self, report: EpochReport) -> None:
        self.reports.put(report)


class _EventStop:
    """``should_stop`` for a member trained in another process: the parent sets the event."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __call__(self) -> bool:
        return bool(self.event.is_set())


def _train_in_worker(
    config: TrainingConfig, member: int, train_patches: PatchSet, val_patches: PatchSet, reports: Any, stop: Any
) -> tuple[TrainedMember, dict[str, np.ndarray]]:
    """One member in a spawned process; weights go back as numpy arrays (plain pickling, no shared memory)."""
    torch.set_num_threads(1)
    trained = train_member(config, member, train_patches, val_patches, progress=_QueueReporter(reports),
                           should_stop=_EventStop(stop))
    weights = {k: v.detach().cpu().numpy() for k, v in trained.state_dict.items()}
    return replace(trained, state_dict={}), weights


def _train_side_by_side(
    config: TrainingConfig,
    pools: Sequence[PatchSet],
    val_patches: PatchSet,
    *,
    progress: Callable[[EpochReport], None] | None,
    should_stop: Callable[[], bool] | None,
    workers: int,
) -> list[TrainedMember]:
    import multiprocessing
    import queue
    from concurrent.futures import ProcessPoolExecutor, wait

    # Spawn, never fork: torch has run in this process already, and a forked child can hang on its locks.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(
        max_workers=min(workers, config.members), mp_context=context
    ) as pool:
        reports, stop = manager.Queue(), manager.Event()
        futures = [pool.submit(_train_in_worker, config, i, pools[i], val_patches, reports, stop)
                   for i in range(config.members)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.2)
            while True:  # the parent calls progress, in epoch order per member
                try:
                    report = reports.get_nowait()
                except queue.Empty:
                    break
                if progress is not None:
                    progress(report)
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
        results = [future.result() for future in futures]  # re-raises a member's error (TrainingCancelled too)
    return [replace(member, state_dict={k: torch.from_numpy(v) for k, v in weights.items()})
            for member, weights in results]
