"""Training configuration: the paper's settings as a frozen dataclass, and named presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from analysis import defaults
from analysis.models import NetworkConfig

#: Optimisers the paper tried (§4.2); Adam is its choice.
OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop", "nadam", "sgd")


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
#: on the 1 um/px synthetic slides), short patience and 7 epochs of 1600
#: patches, so that five members train on 2 CPU cores in about 5 minutes; infer
#: at the same level_downsample (8) with heatmap_downsample 16.  "test":
#: smaller still, for the test suite.
TRAINING_PRESETS: dict[str, TrainingConfig] = {
    "paper": TrainingConfig(network=NetworkConfig.preset("paper")),
    "demo": TrainingConfig(
        network=NetworkConfig.preset("tiny"),
        lr_patience=4,
        early_stopping_patience=8,
        max_epochs=7,  # 12 took 490 s of make demo's 12.3 minutes on 2 cores (the target is 10); 7: 250 s
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
