"""Per-patch augmentation on the fly, vectorised in torch: flips, rotations, HED stain and colour jitter."""

from __future__ import annotations

import math

import torch

from analysis.training.config import AugmentationConfig

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
