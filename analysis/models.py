"""The segmentation network of the ensemble: a fully convolutional DenseNet (paper §4.1).

The paper builds its members "upon the DenseNet architecture" following earlier
work of the same group; the fully convolutional DenseNet ("FC-DenseNet", "the
one hundred layers Tiramisu", Jégou et al. 2017) is that design:

* a 3x3 convolution to ``initial_features`` channels;
* down path: dense blocks (each layer BN-ReLU-Conv3x3 adding ``growth_rate``
  channels, all earlier outputs concatenated) followed by a transition down
  (BN-ReLU-Conv1x1-Dropout-MaxPool2); the block output is kept as a skip;
* a bottleneck dense block;
* up path: transition up (3x3 transposed convolution, stride 2) on the new
  features of the block below, concatenated with the skip of the same
  resolution, then a dense block (which again passes on only its new features,
  except the last, so that the width does not explode);
* a 1x1 convolution to two logits (class 1 = tumor).

Everything shape-related is a :class:`NetworkConfig` (a frozen, JSON-safe
dataclass); ``"paper"`` is FC-DenseNet103, ``"tiny"`` a small variant that
trains on a CPU in minutes.  Member weights are He-initialised from an
explicit seed, so the ensemble's members differ only by that seed.

Input contract of every model this module builds or loads (also what an
uploaded TorchScript model must accept): ``(N, 3, H, W)`` float RGB in
[0, 1]; the network normalises internally.  Output: ``(N, 2, H, W)`` logits
(softmax class 1 = tumor) or ``(N, 1, H, W)`` logits of tumor (sigmoid).
Any H, W are accepted: inputs are reflect-padded to a multiple of
``2 ** len(down_blocks)`` inside the model and the output cropped back.

Nothing here runs torch at import time (a Celery prefork worker hangs when
torch has run in the parent before the fork); models are built in functions.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CONFIG_EXTRA_FILE",
    "NETWORK_PRESETS",
    "FCDenseNet",
    "NetworkConfig",
    "build_network",
    "dry_run",
    "export_torchscript",
    "fcdensenet_probability",
    "load_member",
    "save_member",
    "tumor_probability",
]

#: Name of the JSON network configuration stored inside exported TorchScript files.
CONFIG_EXTRA_FILE = "sua_network_config.json"


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of an FC-DenseNet.

    Attributes
    ----------
    initial_features : int
        Channels of the first 3x3 convolution.
    growth_rate : int
        Channels each dense layer adds.
    down_blocks : tuple of int
        Layers of each dense block of the down path; one 2x pooling follows each.
    bottleneck_layers : int
        Layers of the dense block at the lowest resolution.
    up_blocks : tuple of int or None
        Layers of each up-path block, lowest resolution first; ``None`` mirrors
        ``down_blocks``.
    dropout : float
        Dropout probability after each convolution (0 disables dropout; MC
        dropout needs it > 0).
    in_channels, n_classes : int
        3 (RGB) and 2 (background, tumor).
    input_mean, input_std : tuple of float
        Per-channel normalisation applied inside the model to [0, 1] input.
    """

    initial_features: int = 48
    growth_rate: int = 16
    down_blocks: tuple[int, ...] = (4, 5, 7, 10, 12)
    bottleneck_layers: int = 15
    up_blocks: tuple[int, ...] | None = None
    dropout: float = 0.2
    in_channels: int = 3
    n_classes: int = 2
    input_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    input_std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        # Lists from JSON become tuples, so that configs compare and hash.
        for name in ("down_blocks", "up_blocks", "input_mean", "input_std"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.initial_features < 1 or self.growth_rate < 1:
            raise ValueError("initial_features and growth_rate must be positive integers")
        if not self.down_blocks or any(n < 1 for n in self.down_blocks):
            raise ValueError(f"down_blocks must be a non-empty list of positive layer counts, got {self.down_blocks}")
        if self.bottleneck_layers < 1:
            raise ValueError(f"bottleneck_layers must be positive, got {self.bottleneck_layers}")
        ups = self.resolved_up_blocks
        if len(ups) != len(self.down_blocks) or any(n < 1 for n in ups):
            raise ValueError(
                f"up_blocks must hold {len(self.down_blocks)} positive layer counts (one per down block), got {ups}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_classes not in (1, 2):
            raise ValueError(f"n_classes must be 2 (softmax) or 1 (sigmoid), got {self.n_classes}")
        if len(self.input_mean) != self.in_channels or len(self.input_std) != self.in_channels:
            raise ValueError("input_mean and input_std need one value per input channel")
        if any(s <= 0 for s in self.input_std):
            raise ValueError("input_std values must be positive")

    @property
    def resolved_up_blocks(self) -> tuple[int, ...]:
        """Up-path layer counts, lowest resolution first."""
        return tuple(reversed(self.down_blocks)) if self.up_blocks is None else self.up_blocks

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this (``2 ** len(down_blocks)``)."""
        return int(2 ** len(self.down_blocks))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (tuples become lists)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # keys() and [] make ``dict(config)`` the same JSON-safe dictionary, for
    # callers that store a configuration wherever a mapping is expected.
    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown network configuration keys: {', '.join(unknown)}")
        return cls(**dict(data))

    @classmethod
    def preset(cls, name: str) -> NetworkConfig:
        """A named configuration: ``"paper"`` (FC-DenseNet103) or ``"tiny"`` (CPU demo)."""
        try:
            return NETWORK_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown network preset {name!r}; use one of {', '.join(NETWORK_PRESETS)}") from None


#: Named network configurations.  "paper": FC-DenseNet103 (Jégou et al.), the
#: DenseNet-based FCN the paper's group used; about 9.3 M parameters.  "tiny":
#: three resolutions, about 72 k parameters: trains on a CPU core in about a minute.
NETWORK_PRESETS: dict[str, NetworkConfig] = {
    "paper": NetworkConfig(),
    "tiny": NetworkConfig(
        initial_features=12,
        growth_rate=6,
        down_blocks=(2, 3, 3),
        bottleneck_layers=3,
        dropout=0.1,
    ),
}


# --------------------------------------------------------------------------- layers


class _DenseLayer(nn.Sequential):
    """BN-ReLU-Conv3x3(-Dropout): adds ``growth`` channels."""

    def __init__(self, in_channels: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        # No bias: a BatchNorm follows every use of these features.
        self.add_module("conv", nn.Conv2d(in_channels, growth, kernel_size=3, padding=1, bias=False))
        if dropout > 0:
            self.add_module("drop", nn.Dropout2d(dropout))


class _DenseBlock(nn.Module):
    """``n_layers`` dense layers; returns input + new features, or the new features only."""

    def __init__(self, in_channels: int, growth: int, n_layers: int, dropout: float, keep_input: bool) -> None:
        super().__init__()
        self.keep_input = keep_input
        self.layers = nn.ModuleList([_DenseLayer(in_channels + i * growth, growth, dropout) for i in range(n_layers)])
        self.out_channels = (in_channels if keep_input else 0) + n_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        if self.keep_input:
            return torch.cat(features, 1)
        return torch.cat(features[1:], 1)


class _TransitionDown(nn.Sequential):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(channels, channels, kernel_size=1, bias=False))
        if dropout > 0:
            self.add_module("drop", nn.Dropout2d(dropout))
        self.add_module("pool", nn.MaxPool2d(2))


class FCDenseNet(nn.Module):
    """Fully convolutional DenseNet: ``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, n_classes, H, W)`` logits.

    Build with :func:`build_network`, which also initialises the weights.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.size_multiple = config.size_multiple
        self.register_buffer("mean", torch.tensor(config.input_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.input_std, dtype=torch.float32).view(1, -1, 1, 1))
        g, p = config.growth_rate, config.dropout
        self.first = nn.Conv2d(config.in_channels, config.initial_features, kernel_size=3, padding=1, bias=False)
        channels = config.initial_features
        skip_channels: list[int] = []
        down: list[nn.Module] = []
        trans_down: list[nn.Module] = []
        for n_layers in config.down_blocks:
            block = _DenseBlock(channels, g, n_layers, p, keep_input=True)
            down.append(block)
            channels = block.out_channels
            skip_channels.append(channels)
            trans_down.append(_TransitionDown(channels, p))
        self.down = nn.ModuleList(down)
        self.trans_down = nn.ModuleList(trans_down)
        self.bottleneck = _DenseBlock(channels, g, config.bottleneck_layers, p, keep_input=False)
        new_channels = self.bottleneck.out_channels
        up: list[nn.Module] = []
        trans_up: list[nn.Module] = []
        ups = config.resolved_up_blocks
        for i, n_layers in enumerate(ups):
            trans_up.append(
                nn.ConvTranspose2d(new_channels, new_channels, kernel_size=3, stride=2, padding=1, output_padding=1)
            )
            last = i == len(ups) - 1
            block = _DenseBlock(new_channels + skip_channels[-1 - i], g, n_layers, p, keep_input=last)
            up.append(block)
            new_channels = block.out_channels
        self.trans_up = nn.ModuleList(trans_up)
        self.up = nn.ModuleList(up)
        self.classifier = nn.Conv2d(new_channels, config.n_classes, kernel_size=1)

    def normalise_and_pad(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> standardised and padded to a multiple of :attr:`size_multiple`."""
        height, width = x.shape[-2], x.shape[-1]
        m = self.size_multiple
        pad_h = (m - height % m) % m
        pad_w = (m - width % m) % m
        # Buffers type as Tensor | Module for mypy; class annotations would break TorchScript.
        x = (x - self.mean) / self.std  # type: ignore[operator]
        if pad_h > 0 or pad_w > 0:
            # Reflect keeps the statistics of the border; replicate where the
            # input is too small for reflect (pad must be < size).
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        x = self.first(self.normalise_and_pad(x))
        skips: list[torch.Tensor] = []
        for block, trans in zip(self.down, self.trans_down, strict=True):
            x = block(x)
            skips.append(x)
            x = trans(x)
        x = self.bottleneck(x)
        n_skips = len(skips)
        for i, (trans, block) in enumerate(zip(self.trans_up, self.up, strict=True)):
            x = trans(x)
            x = block(torch.cat([x, skips[n_skips - 1 - i]], 1))
        x = self.classifier(x)
        return x[:, :, :height, :width]


def _init_he(model: nn.Module, generator: torch.Generator) -> None:
    """He (kaiming normal, fan-in, ReLU gain) weights, zero biases, BN at identity."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_network(config: NetworkConfig | str, *, seed: int) -> FCDenseNet:
    """A freshly He-initialised FC-DenseNet.

    Parameters
    ----------
    config
        A :class:`NetworkConfig` or a preset name (``"paper"``, ``"tiny"``).
    seed
        Seed of the weight initialisation; the same seed gives the same
        weights, and the global torch RNG is left untouched.

    Returns
    -------
    FCDenseNet
        In training mode, on the CPU, float32.

    Examples
    --------
    >>> net = build_network("tiny", seed=0)
    >>> net(torch.rand(1, 3, 40, 36)).shape
    torch.Size([1, 2, 40, 36])
    """
    if isinstance(config, str):
        config = NetworkConfig.preset(config)
    # Module constructors draw default weights from the global RNG; those are
    # overwritten below, so fork it: building a member must not shift the
    # random stream of the caller (e.g. another member's training).
    with torch.random.fork_rng(devices=[]):
        model = FCDenseNet(config)
    generator = torch.Generator().manual_seed(int(seed))
    _init_he(model, generator)
    return model


def tumor_probability(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Tumor probability of every pixel.

    Parameters
    ----------
    model
        Maps ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, 2, H, W)`` logits (softmax,
        class 1 = tumor) or ``(N, 1, H, W)`` tumor logits (sigmoid).
    batch
        ``(N, 3, H, W)`` float RGB in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` float32 in [0, 1].  Gradient mode is the caller's.
    """
    logits = model(batch)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise ValueError("the model must return one (N, C, H, W) tensor")
    logits = logits.float()
    if logits.shape[1] == 2:
        # softmax over two classes, class 1 = sigmoid(l1 - l0): one op, no (N,2,H,W) temporary.
        return torch.sigmoid(logits[:, 1] - logits[:, 0])
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    raise ValueError(f"the model must output 2 (softmax) or 1 (sigmoid) channels, got {logits.shape[1]}")


# --------------------------------------------------------------------------- lean inference


def _bn_relu(pieces: list[torch.Tensor], norm: nn.Module) -> torch.Tensor:
    """ReLU(BN(cat(pieces))) of an eval-mode BatchNorm in two passes over memory.

    ``nn.Sequential`` BN-ReLU after ``torch.cat`` makes three full-size passes
    (copy, normalise into a new tensor, ReLU), and a lone piece is copied by
    ``cat`` too; on a CPU these memory-bound passes over 256-pixel tiles cost
    about as much as the 6-channel convolutions between them.  Here: the one
    copy, then the affine in place (or straight from a lone piece), then ReLU.
    """
    assert isinstance(norm, nn.BatchNorm2d) and norm.running_var is not None and norm.running_mean is not None
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = (norm.bias - norm.running_mean * scale).view(1, -1, 1, 1)
    scale = scale.view(1, -1, 1, 1)
    if len(pieces) == 1:
        y = torch.addcmul(shift, pieces[0], scale)
    else:
        y = torch.cat(pieces, 1)
        torch.addcmul(shift, y, scale, out=y)
    return y.relu_()


def _dense_block_pieces(pieces: list[torch.Tensor], block: nn.Module) -> list[torch.Tensor]:
    """A :class:`_DenseBlock` on features kept as a list (concatenated only where a layer reads them)."""
    assert isinstance(block, _DenseBlock)
    pieces = list(pieces)
    new: list[torch.Tensor] = []
    for layer in block.layers:
        assert isinstance(layer, _DenseLayer)
        conv, norm = cast(nn.Module, layer.conv), cast(nn.Module, layer.norm)
        out = conv(_bn_relu(pieces, norm))
        pieces.append(out)
        new.append(out)
    return pieces if block.keep_input else new


def fcdensenet_probability(model: FCDenseNet, batch: torch.Tensor) -> torch.Tensor:
    """:func:`tumor_probability` of an eval-mode :class:`FCDenseNet`, with fewer memory passes.

    The same computation as ``tumor_probability(model, batch)`` (equal up to
    float rounding, about 1e-6), for inference only: BatchNorm uses its
    running statistics and dropout is off, whatever ``model.training`` says,
    so call it for a model in eval mode.  It saves the copies of
    ``torch.cat`` that the module makes on every dense layer and before the
    classifier (features stay a list of pieces), fuses BN-ReLU into two
    passes, and computes the two-class softmax's class 1 as one dot product
    per pixel (``sigmoid(x . (w1 - w0) + b1 - b0)``), so that the 2-channel
    logits are never written.  About 20 % less time per tile on a CPU.

    Parameters
    ----------
    model
        An FC-DenseNet (:func:`build_network`, :func:`load_member` of a
        checkpoint); not a TorchScript module.
    batch
        ``(N, 3, H, W)`` float RGB in [0, 1], any H, W.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` float32 in [0, 1].  Gradient mode is the caller's.
    """
    height, width = batch.shape[-2], batch.shape[-1]
    pieces = [model.first(model.normalise_and_pad(batch))]
    skips: list[list[torch.Tensor]] = []
    for block, trans in zip(model.down, model.trans_down, strict=True):
        pieces = _dense_block_pieces(pieces, block)
        skips.append(pieces)
        # BN-ReLU, 1x1 conv, (dropout: off), 2x max pool.
        pool, conv, norm = (cast(nn.Module, getattr(trans, name)) for name in ("pool", "conv", "norm"))
        pieces = [pool(conv(_bn_relu(pieces, norm)))]
    pieces = _dense_block_pieces(pieces, model.bottleneck)
    for i, (trans_up, block) in enumerate(zip(model.trans_up, model.up, strict=True)):
        up = trans_up(torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0])
        pieces = _dense_block_pieces([up, *skips[len(skips) - 1 - i]], block)
    classifier = model.classifier
    assert isinstance(classifier, nn.Conv2d) and classifier.bias is not None
    weight, bias = classifier.weight[:, :, 0, 0], classifier.bias
    if weight.shape[0] == 2:
        weight, bias = weight[1] - weight[0], bias[1] - bias[0]
    else:
        weight, bias = weight[0], bias[0]
    logit: torch.Tensor | None = None
    start = 0
    for piece in pieces:
        # (N, C, h, w) channels_last or not -> (N, h, w): a matrix-vector product over channels.
        part = piece.permute(0, 2, 3, 1) @ weight[start : start + piece.shape[1]].to(piece.dtype)
        logit = part if logit is None else logit.add_(part)
        start += piece.shape[1]
    assert logit is not None
    return torch.sigmoid(logit.float().add_(bias.float()))[:, :height, :width]


# --------------------------------------------------------------------------- files

PathLike = str | os.PathLike[str]


def save_member(
    model: nn.Module | Mapping[str, torch.Tensor], config: NetworkConfig, file: PathLike | IO[bytes]
) -> None:
    """Save a member as a state-dict checkpoint ``{"config": dict, "state_dict": ...}``.

    :func:`load_member` reads it back; ``torch.load(weights_only=True)`` can,
    so loading never unpickles arbitrary objects.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    state = {k: v.detach().cpu() for k, v in state.items()}
    torch.save({"config": config.to_dict(), "state_dict": state}, file)


def export_torchscript(model: nn.Module, config: NetworkConfig | None, file: PathLike | IO[bytes]) -> None:
    """Save a member as TorchScript (scripted, so any tile size works), config inside."""
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated but still the portable format.
        scripted = torch.jit.script(model)
        extra = {CONFIG_EXTRA_FILE: json.dumps(config.to_dict())} if config is not None else {}
        torch.jit.save(scripted, file, _extra_files=extra)
    model.train(was_training)


def _read_bytes(file: PathLike | IO[bytes]) -> tuple[bytes, str]:
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"{path}: no such model file")
        return path.read_bytes(), str(path)
    data = file.read()
    return data, getattr(file, "name", "uploaded model")


def _is_torchscript(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    # torch.save archives hold data.pkl; TorchScript archives also hold code/ and constants.pkl.
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_member(
    file: PathLike | IO[bytes], *, config: NetworkConfig | None = None
) -> tuple[nn.Module, NetworkConfig | None]:
    """Load an ensemble member from a TorchScript file or a state-dict checkpoint.

    Parameters
    ----------
    file
        A path or binary file object: TorchScript (``torch.jit.save``), a
        checkpoint ``{"config": dict, "state_dict": dict}`` (:func:`save_member`),
        or a bare state dict when ``config`` is given.
    config
        Network configuration for a bare state dict (ignored otherwise).

    Returns
    -------
    (model, config)
        The model in eval mode on the CPU, and its configuration (``None`` for
        TorchScript without an embedded configuration).

    Raises
    ------
    ValueError
        If the file is not one of those, with a one-line reason.
    """
    data, name = _read_bytes(file)
    if _is_torchscript(data):
        extra = {CONFIG_EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError, but also others on corrupt archives
            raise ValueError(f"{name}: not a loadable TorchScript model ({_one_line(exc)})") from exc
        embedded = extra.get(CONFIG_EXTRA_FILE)
        found: NetworkConfig | None = None
        if embedded:
            try:
                found = NetworkConfig.from_dict(json.loads(embedded))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{name}: the embedded network configuration is invalid ({_one_line(exc)})") from exc
        module.eval()
        return module, found
    try:
        # weights_only: a checkpoint is tensors and plain containers; never run pickled code from an upload.
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{name}: not a TorchScript model or a torch checkpoint ({_one_line(exc)})") from exc
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        if "config" not in checkpoint:
            if config is None:
                raise ValueError(f"{name}: the checkpoint has no network configuration; pass one")
        else:
            try:
                config = NetworkConfig.from_dict(checkpoint["config"])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{name}: invalid network configuration ({_one_line(exc)})") from exc
        state = checkpoint["state_dict"]
    elif isinstance(checkpoint, Mapping) and config is not None:
        state = checkpoint
    else:
        raise ValueError(f"{name}: expected a checkpoint {{'config': ..., 'state_dict': ...}} or TorchScript")
    assert config is not None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{name}: the state_dict must map parameter names to tensors")
    model = build_network(config, seed=0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{name}: weights do not match the network configuration ({_one_line(exc)})") from exc
    model.eval()
    return model, config


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def dry_run(model: nn.Module | PathLike, *, tile_size: int, device: str | torch.device = "cpu", batch: int = 2) -> None:
    """Check that a model (or model file) segments a tile as the pipeline needs.

    Runs a seeded random ``(batch, 3, tile_size, tile_size)`` input in [0, 1]
    through the model in eval mode without gradients and checks the output.

    Raises
    ------
    ValueError
        With one clear sentence when the file does not load, the forward pass
        fails, the output is not one tensor of shape ``(batch, 2 or 1,
        tile_size, tile_size)``, or it holds NaN or infinity.

    Examples
    --------
    >>> dry_run(build_network("tiny", seed=0), tile_size=64)
    >>> dry_run(nn.Conv2d(3, 3, 1), tile_size=64)
    Traceback (most recent call last):
    ...
    ValueError: The model outputs 3 channels; it must output 2 (softmax, class 1 = tumor) or 1 (sigmoid).
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if isinstance(model, (str, os.PathLike)):
        model, _ = load_member(model)
    if not isinstance(model, nn.Module):
        raise ValueError(f"Expected a torch module, got {type(model).__name__}.")
    was_training = model.training
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, tile_size, tile_size, generator=generator).to(device)
    model.eval()
    try:
        with torch.inference_mode():
            out = model.to(device)(x)
    except Exception as exc:
        raise ValueError(f"The model failed on a {tuple(x.shape)} RGB input in [0, 1]: {_one_line(exc)}.") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"The model returns {type(out).__name__}; it must return one (N, C, H, W) tensor.")
    if out.ndim != 4 or out.shape[0] != batch:
        raise ValueError(
            f"The model returns shape {tuple(out.shape)} for input {tuple(x.shape)}; expected ({batch}, 2, "
            f"{tile_size}, {tile_size})."
        )
    if out.shape[1] not in (1, 2):
        raise ValueError(
            f"The model outputs {out.shape[1]} channels; it must output 2 (softmax, class 1 = tumor) or 1 (sigmoid)."
        )
    if tuple(out.shape[2:]) != (tile_size, tile_size):
        raise ValueError(
            f"The model output is {out.shape[2]} x {out.shape[3]} pixels for a {tile_size} x {tile_size} input; "
            "it must keep the input's spatial size."
        )
    if not torch.isfinite(out).all():
        raise ValueError("The model output contains NaN or infinite values.")
