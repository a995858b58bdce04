"""Training the ensemble: configuration, patch sampling, augmentation, determinism, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import MultiPolygon, box

from analysis import defaults
from analysis.annotations import rasterize
from analysis.inference import InferenceOptions, run_ensemble
from analysis.models import load_member
from analysis.synthetic import SlideSpec, generate_slide
from analysis.training import (
    AugmentationConfig,
    EpochReport,
    PatchSet,
    TrainedMember,
    TrainingCancelled,
    TrainingConfig,
    TrainingSlide,
    augment_batch,
    sample_patches,
    train_ensemble,
    train_member,
)

# One torch thread (tests/analysis/conftest.py): the two cores are shared with other work.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainingSlide]:
    """Three small synthetic slides at 2 um/px: two with metastases, one tumor-free."""
    folder = tmp_path_factory.mktemp("train")
    slides = {}
    for name, spec in {
        "tumor": SlideSpec(seed=11, width=1024, height=1024, mpp=2.0, tumor=True, lesions=("micro", "micro")),
        "free": SlideSpec(seed=12, width=1024, height=768, mpp=2.0, tumor=False),
        "validation": SlideSpec(seed=13, width=1024, height=1024, mpp=2.0, tumor=True, lesions=("micro",)),
    }.items():
        made = generate_slide(spec, folder / f"{name}.tiff")
        geometry = MultiPolygon(made.polygons) if made.polygons else None
        slides[name] = TrainingSlide(path=made.path, tumor=geometry)
    return slides


def small_config(**overrides: object) -> TrainingConfig:
    return TrainingConfig.from_dict({"preset": "test", **overrides})


# --------------------------------------------------------------------------- configuration


def test_defaults_are_the_papers() -> None:
    config = TrainingConfig()
    assert config.members == defaults.ENSEMBLE_MEMBERS
    assert config.optimizer == "adam" and config.learning_rate == defaults.LEARNING_RATE
    assert config.betas == defaults.ADAM_BETAS and config.lr_decay == defaults.LR_DECAY
    assert config.lr_patience == defaults.LR_PATIENCE_EPOCHS and config.max_epochs == defaults.MAX_EPOCHS
    assert config.healthy_per_tumor == defaults.HEALTHY_PER_TUMOR_PATCH
    assert TrainingConfig.preset("paper").network.growth_rate == 16


def test_config_round_trips_through_json() -> None:
    config = TrainingConfig.preset("demo")
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainingConfig.from_dict({"preset": "demo", "members": 3}).members == 3
    assert TrainingConfig.from_dict({"network": "tiny"}).network == TrainingConfig.preset("demo").network


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown training settings: epochs"):
        TrainingConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        TrainingConfig(optimizer="adagrad")
    with pytest.raises(ValueError, match="member_seeds must hold 5 seeds"):
        TrainingConfig(member_seeds=(1, 2))
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainingConfig.preset("huge")


def test_members_differ_only_by_seed() -> None:
    config = TrainingConfig(seed=40)
    assert [config.seed_of(i) for i in range(5)] == [40, 41, 42, 43, 44]
    assert TrainingConfig(members=2, member_seeds=(9, 3)).seed_of(1) == 3


# --------------------------------------------------------------------------- patches


def test_patches_are_four_healthy_per_tumor_patch_and_centred_right(cohort: dict[str, TrainingSlide]) -> None:
    patches = sample_patches(
        [cohort["tumor"], cohort["free"]], tumor_patches=20, patch_size=32, level_downsample=2, seed=0
    )
    assert len(patches) == 100 and patches.from_tumor.sum() == 20
    assert patches.images.shape == (100, 32, 32, 3) and patches.images.dtype == np.uint8
    centre = patches.labels[:, 16, 16]
    # Centres are drawn inside a tumor (or healthy) cell of a coarse grid: near edges
    # the exact centre pixel may fall just across the boundary.
    assert centre[patches.from_tumor].mean() >= 0.8
    assert centre[~patches.from_tumor].mean() <= 0.1
    # Healthy patches come from tissue, not glass.
    healthy = patches.images[~patches.from_tumor].astype(np.float32)
    saturation = (healthy.max(-1) - healthy.min(-1)) / np.maximum(healthy.max(-1), 1)
    assert np.median(saturation.mean(axis=(1, 2))) > 0.1


def test_patch_labels_are_the_annotation_at_the_analysis_level(
    tmp_path: Path, cohort: dict[str, TrainingSlide]
) -> None:
    # A square tumor in level-0 pixels: labels must be exactly its rasterisation.
    square = box(300, 300, 700, 620)
    slide = TrainingSlide(path=cohort["free"].path, tumor=square)
    patches = sample_patches([slide], tumor_patches=10, healthy_per_tumor=0, patch_size=32, level_downsample=2, seed=1)
    full = rasterize(square, shape=(384, 512), downsample=2)
    for image, labels in zip(patches.images, patches.labels, strict=True):
        assert image.shape == (32, 32, 3)
        assert labels.sum() > 0
    assert full.sum() == 200 * 160
    # The same slide as a level-0 mask at downsample 4 gives the same labels where the grids agree.
    mask = rasterize(square, shape=(192, 256), downsample=4)
    as_mask = TrainingSlide(path=cohort["free"].path, tumor=mask, mask_downsample=4)
    again = sample_patches([as_mask], tumor_patches=10, healthy_per_tumor=0, patch_size=32, level_downsample=2, seed=1)
    np.testing.assert_array_equal(again.labels, patches.labels)


def test_sampling_is_repeatable_by_seed(cohort: dict[str, TrainingSlide]) -> None:
    kwargs = {"tumor_patches": 5, "patch_size": 32, "level_downsample": 2.0}
    a = sample_patches([cohort["tumor"]], seed=3, **kwargs)  # type: ignore[arg-type]
    b = sample_patches([cohort["tumor"]], seed=3, **kwargs)  # type: ignore[arg-type]
    c = sample_patches([cohort["tumor"]], seed=4, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_tumor_free_slides_give_only_healthy_patches(cohort: dict[str, TrainingSlide]) -> None:
    patches = sample_patches([cohort["free"]], tumor_patches=4, patch_size=32, level_downsample=2, seed=0)
    assert len(patches) == 20 and not patches.from_tumor.any() and not patches.labels.any()


# --------------------------------------------------------------------------- augmentation


def test_flips_and_rotations_move_labels_with_pixels() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 8, 8, generator=generator)
    labels = (images[:, 0] > 0.5).long()
    config = AugmentationConfig(hed_scale=0, hed_shift=0, brightness=0, contrast=0)
    out_images, out_labels = augment_batch(images, labels, config, generator)
    assert torch.equal(out_labels, (out_images[:, 0] > 0.5).long())
    assert not torch.equal(out_images, images)  # something turned
    # Each output is one of the eight symmetries of its input.
    for i in range(8):
        variants = [
            torch.rot90(torch.flip(images[i], (2,)) if f else images[i], k, (1, 2)) for f in (0, 1) for k in range(4)
        ]
        assert any(torch.equal(out_images[i], v) for v in variants)


def test_hed_jitter_matches_scikit_image_and_stays_in_range() -> None:
    from skimage.color import hed2rgb, rgb2hed

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 6, 6, generator=generator) * 0.8 + 0.1
    labels = torch.zeros(4, 6, 6, dtype=torch.long)
    # Scale 1 and shift 0 (tiny ranges): the round trip is scikit-image's.
    tiny = AugmentationConfig(flips=False, rotations=False, hed_scale=1e-9, hed_shift=1e-9, brightness=0, contrast=0)
    out, _ = augment_batch(images, labels, tiny, generator)
    rgb = images.permute(0, 2, 3, 1).numpy().astype(np.float64)
    expected = np.stack([hed2rgb(rgb2hed(x)) for x in rgb])
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)
    strong = AugmentationConfig(hed_scale=0.5, hed_shift=0.5, brightness=0.5, contrast=0.5)
    out, _ = augment_batch(images, labels, strong, generator)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, images, atol=0.01)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def sampled(cohort: dict[str, TrainingSlide]) -> tuple[PatchSet, PatchSet]:
    """The test preset's training and validation patches, sampled once per module (the
    training tests below vary only what is learnt from them, never how they are sampled)."""
    config = small_config()
    train = sample_patches(
        [cohort["tumor"], cohort["free"]],
        tumor_patches=config.tumor_patches,
        patch_size=config.patch_size,
        level_downsample=config.level_downsample,
        seed=0,
    )
    val = sample_patches(
        [cohort["validation"]],
        tumor_patches=config.val_tumor_patches,
        patch_size=config.patch_size,
        level_downsample=config.level_downsample,
        seed=1,
    )
    return train, val


@pytest.fixture
def patch_sets(sampled: tuple[PatchSet, PatchSet]) -> tuple[PatchSet, PatchSet]:
    """A private copy of the sampled patches per test, so no test trains on another's changes."""
    train, val = (
        PatchSet(images=p.images.copy(), labels=p.labels.copy(), from_tumor=p.from_tumor.copy()) for p in sampled
    )
    return train, val


#: Two members, two short epochs: what the determinism and side-by-side tests compare.
TWO_SHORT_EPOCHS = {"members": 2, "max_epochs": 2, "patches_per_epoch": 32}


@pytest.fixture(scope="module")
def trained_one_after_the_other(sampled: tuple[PatchSet, PatchSet], one_torch_thread: None) -> list[TrainedMember]:
    """Both members of :data:`TWO_SHORT_EPOCHS` trained in this process, one after the other, once per module.

    On one torch thread, as the tests' own training runs: that is what side-by-side workers must match.
    """
    train, val = sampled
    return train_ensemble(small_config(**TWO_SHORT_EPOCHS), train, val)


def test_training_is_deterministic_given_the_seed(
    patch_sets: tuple[PatchSet, PatchSet], trained_one_after_the_other: list[TrainedMember]
) -> None:
    config = small_config(**TWO_SHORT_EPOCHS)
    train, val = patch_sets
    # train_ensemble trains member i as train_member(config, i, ...) does: a and c are members 0 and 1.
    a, c = trained_one_after_the_other
    b = train_member(config, 0, train, val)
    assert [r.val_dice for r in a.history] == [r.val_dice for r in b.history]
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert any(not torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)
    assert (a.seed, c.seed) == (config.seed_of(0), config.seed_of(1))


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "nadam", "sgd"])
def test_every_optimizer_trains(patch_sets: tuple[PatchSet, PatchSet], optimizer: str) -> None:
    config = small_config(max_epochs=1, patches_per_epoch=32, optimizer=optimizer)
    train, val = patch_sets
    member = train_member(config, 0, train, val)
    assert len(member.history) == 1 and np.isfinite(member.history[0].train_loss)


def test_learning_rate_decays_and_training_stops_early_without_improvement(
    patch_sets: tuple[PatchSet, PatchSet],
) -> None:
    # No epoch can beat the best by more than 1: every epoch is "no improvement".
    config = small_config(
        min_improvement=1.0, lr_patience=1, early_stopping_patience=4, max_epochs=10, patches_per_epoch=16
    )
    train, val = patch_sets
    reports: list[EpochReport] = []
    member = train_member(config, 0, train, val, progress=reports.append)
    assert len(reports) == 4 and member.best_epoch == 0
    assert reports[-1].learning_rate < reports[0].learning_rate
    assert json.loads(json.dumps(reports[0].as_dict()))["epoch"] == 1


def test_training_can_be_cancelled(patch_sets: tuple[PatchSet, PatchSet]) -> None:
    config = small_config()
    train, val = patch_sets
    with pytest.raises(TrainingCancelled):
        train_member(config, 0, train, val, should_stop=lambda: True)


def test_members_trained_side_by_side_equal_members_trained_one_after_the_other(
    patch_sets: tuple[PatchSet, PatchSet], trained_one_after_the_other: list[TrainedMember]
) -> None:
    config = small_config(**TWO_SHORT_EPOCHS)
    train, val = patch_sets
    alone = trained_one_after_the_other
    reports: list[EpochReport] = []
    together = train_ensemble(config, train, val, workers=2, progress=reports.append)
    for a, b in zip(alone, together, strict=True):
        assert a.member == b.member and [r.val_dice for r in a.history] == [r.val_dice for r in b.history]
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    # Every epoch of every member reached the caller, in epoch order per member.
    assert sorted((r.member, r.epoch) for r in reports) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [r.epoch for r in reports if r.member == 1] == [1, 2]
    with pytest.raises(TrainingCancelled):
        train_ensemble(config, train, val, workers=2, should_stop=lambda: True)


def test_a_tiny_ensemble_trains_end_to_end_in_under_a_minute(cohort: dict[str, TrainingSlide], tmp_path: Path) -> None:
    config = small_config(members=2)
    # CPU time of this process, not wall time: training runs here on one torch thread, so on an idle
    # core the two agree, while on cores shared with other work wall time measures the neighbours.
    started = time.process_time()
    members = train_ensemble(config, [cohort["tumor"], cohort["free"]], [cohort["validation"]])
    elapsed = time.process_time() - started
    assert elapsed < 60, f"training took {elapsed:.1f} s of CPU time"
    assert [m.member for m in members] == [0, 1]
    assert all(m.best_epoch >= 1 and m.best_dice > 0.3 for m in members), [m.best_dice for m in members]

    # Saved members load and segment the tumor slide: more tumor probability inside the lesions.
    models = []
    for m in members:
        models.append(load_member(m.save(tmp_path / f"member-{m.member}.pt"))[0])
    result = run_ensemble(
        cohort["tumor"].path,
        models,
        InferenceOptions(
            level_downsample=config.level_downsample,
            heatmap_downsample=8,
            tile_size=64,
            overlap=8,
            batch_size=8,
        ),
    )
    truth = rasterize(cohort["tumor"].tumor, shape=result.mean.shape, downsample=8)
    assert truth.any()
    assert result.mean[truth].mean() > 0.5 > result.mean[result.tissue & ~truth].mean()
    assert result.variance.max() > 0  # the two members disagree somewhere


def test_members_may_differ_in_optimizer_and_patch_ratio_as_the_paper_tried() -> None:
    import torch

    from analysis.training.loop import _optimizer

    config = TrainingConfig.from_dict({"members": 3, "member_optimizers": ["adam", "sgd", "rmsprop"],
                                       "member_healthy_per_tumor": [4, 1, 0]})
    assert [config.optimizer_of(i) for i in range(3)] == ["adam", "sgd", "rmsprop"]
    assert [config.healthy_per_tumor_of(i) for i in range(3)] == [4.0, 1.0, 0.0]
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert [type(_optimizer(config, params, i)) for i in range(3)] == [
        torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop]
    # By default the members differ only in seed.
    plain = TrainingConfig(members=2)
    assert {plain.optimizer_of(i) for i in range(2)} == {"adam"}
    assert {plain.healthy_per_tumor_of(i) for i in range(2)} == {4.0}
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad' in member_optimizers"):
        TrainingConfig(members=2, member_optimizers=("adam", "adagrad"))
    with pytest.raises(ValueError, match="member_optimizers must name 2 optimizers, got 1"):
        TrainingConfig(members=2, member_optimizers=("adam",))
    with pytest.raises(ValueError, match="member_healthy_per_tumor must be numbers >= 0"):
        TrainingConfig(members=2, member_healthy_per_tumor=(4, -1))


@pytest.mark.parametrize(("settings", "message"), [
    ({"members": "five"}, "members must be a whole number, got 'five'"),
    ({"learning_rate": "fast"}, "learning_rate must be a number"),
    ({"max_epochs": 2.5}, "max_epochs must be a whole number"),
    ({"optimizer": 3}, "optimizer must be text"),
    ({"members": True}, "members must be a whole number"),
])
def test_a_setting_of_the_wrong_type_is_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(settings)
