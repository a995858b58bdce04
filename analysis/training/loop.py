"""Training one member: Adam, learning-rate decay and early stopping on the validation Dice."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis.metrics import dice_from_counts
from analysis.models import NetworkConfig, build_network, save_member
from analysis.training.augmentation import augment_batch
from analysis.training.config import TrainingConfig
from analysis.training.sampling import PatchSet


class TrainingCancelled(Exception):
    """``should_stop()`` returned True during training."""


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


def _epoch_order(
    order: torch.Tensor, cursor: int, n_pool: int, per_epoch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The pool indices of one epoch: a walk through shuffled passes over the pool, continued across epochs.

    Returns the epoch's ``(per_epoch,)`` indices and the walk's new ``(order, cursor)``.
    """
    picked: list[torch.Tensor] = []
    need = per_epoch
    while need > 0:
        if cursor >= n_pool:
            order, cursor = torch.randperm(n_pool, generator=generator), 0
        take = min(need, n_pool - cursor)
        picked.append(order[cursor : cursor + take])
        cursor += take
        need -= take
    return torch.cat(picked), order, cursor


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    pool: tuple[torch.Tensor, torch.Tensor],
    indices: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    device: torch.device,
    *,
    should_stop: Callable[[], bool] | None,
    cancelled: str,
) -> float:
    """One epoch over the ``indices`` of the pool (``(N, P, P, 3)`` uint8 images, ``(N, P, P)`` labels), augmented.

    Returns the mean training loss; polls ``should_stop`` after every batch
    and raises :class:`TrainingCancelled` with the message ``cancelled``.
    """
    images, labels = pool
    model.train()
    loss_sum, seen = 0.0, 0
    for start in range(0, len(indices), config.batch_size):
        batch_idx = indices[start : start + config.batch_size]
        if len(batch_idx) < 2:
            continue  # BatchNorm needs more than one sample
        x = _to_input(images[batch_idx], device)
        y = labels[batch_idx].to(device)
        x, y = augment_batch(x, y, config.augmentation, generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(batch_idx)
        seen += len(batch_idx)
        if should_stop is not None and should_stop():
            raise TrainingCancelled(cancelled)
    return loss_sum / max(1, seen)


def _model_and_optimizer(
    config: TrainingConfig, member_index: int, seed: int, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """A freshly initialised member (channels_last on ``device``), its optimiser and its plateau schedule."""
    model = build_network(config.network, seed=seed).to(device)
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
    return model, optimizer, scheduler


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
        model, optimizer, scheduler = _model_and_optimizer(config, member_index, seed, dev)
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
            indices, order, cursor = _epoch_order(order, cursor, n_pool, per_epoch, generator)
            train_loss = _train_epoch(
                model, optimizer, (train_x, train_y), indices, config, generator, dev,
                should_stop=should_stop, cancelled=f"member {member_index}: training stopped in epoch {epoch}",
            )
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
                train_loss=train_loss,
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
