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

The package: :mod:`~analysis.training.config` (:class:`TrainingConfig`,
presets), :mod:`~analysis.training.sampling` (:func:`sample_patches`),
:mod:`~analysis.training.augmentation` (:func:`augment_batch`),
:mod:`~analysis.training.loop` (:func:`train_member`) and
:mod:`~analysis.training.parallel` (:func:`train_ensemble`, members side by
side).  Everything public is importable from ``analysis.training``.
"""

from __future__ import annotations

from analysis.training.augmentation import augment_batch
from analysis.training.config import OPTIMIZERS, TRAINING_PRESETS, AugmentationConfig, TrainingConfig
from analysis.training.loop import EpochReport, TrainedMember, TrainingCancelled, train_member
from analysis.training.parallel import train_ensemble
from analysis.training.sampling import PatchSet, TrainingSlide, sample_patches

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
