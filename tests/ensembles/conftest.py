"""Fixtures of the ensemble tests: member files, an imported ensemble and annotated synthetic slides.

Slides live in the test MEDIA_ROOT the session's Celery worker also reads (never a per-test
directory the worker could not see).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def member_bytes(seed: int, *, torchscript: bool = False) -> bytes:
    """A tiny FC-DenseNet member as a state-dict checkpoint or TorchScript file."""
    from analysis.models import NetworkConfig, build_network, export_torchscript, save_member

    config = NetworkConfig.preset("tiny")
    model = build_network(config, seed=seed)
    out = io.BytesIO()
    if torchscript:
        export_torchscript(model, config, out)
    else:
        save_member(model, config, out)
    return out.getvalue()


@pytest.fixture(scope="session")
def members() -> list[bytes]:
    return [member_bytes(seed) for seed in (1, 2)]


def import_ensemble(people: dict[str, Any], members: list[bytes], name: str = "Two tiny members", *,
                    tile_size: int = 128, level_downsample: float = 2.0) -> Any:
    """``members`` imported as an ensemble of project 'Own' by its admin."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from sua_portal.ensembles import services

    return services.import_members(
        project=people["own"], name=name,
        files=[SimpleUploadedFile(f"member-{i}.pt", data, content_type="application/octet-stream")
               for i, data in enumerate(members)],
        tile_size=tile_size, level_downsample=level_downsample, user=people["admin"],
    )


@pytest.fixture
def make_ensemble(people: dict[str, Any], members: list[bytes]) -> Callable[..., Any]:
    """An imported two-member ensemble of untrained tiny networks (plumbing, not accuracy)."""

    def make(name: str = "Two tiny members", *, tile_size: int = 128, level_downsample: float = 2.0) -> Any:
        return import_ensemble(people, members, name, tile_size=tile_size, level_downsample=level_downsample)

    return make


def import_demo_cohorts(project: Any, synthetic_cohort: Path) -> dict[str, Any]:
    """The synthetic test cohort's four splits imported into ``project`` (slides checked here, ready)."""
    from sua_portal.slides.models import Cohort
    from sua_portal.slides.services import import_folder

    cohorts = {}
    for folder, split, domain in (("train", "train", "in-domain"), ("validation", "validation", "in-domain"),
                                  ("test_in_domain", "test", "in-domain"), ("test_shifted", "test", "shifted")):
        cohort = Cohort.objects.create(project=project, name=folder, split=split, domain=domain)
        report = import_folder(synthetic_cohort / folder, cohort, check="sync")
        assert not report.refused, report.refused
        cohorts[folder] = cohort
    return cohorts


@pytest.fixture
def demo_cohorts(people: dict[str, Any], synthetic_cohort: Path) -> dict[str, Any]:
    """The synthetic test cohort's four splits imported into project 'Own' (slides checked here, ready)."""
    return import_demo_cohorts(people["own"], synthetic_cohort)


def compute_heatmap(ensemble: Any, demo_cohorts: dict[str, Any]) -> Any:
    """The heatmaps of the first tumor slide of the validation cohort, computed here."""
    from sua_portal.ensembles import services
    from sua_portal.ensembles.models import SlideHeatmap
    from sua_portal.slides.models import Slide

    slide = Slide.objects.filter(cohort=demo_cohorts["validation"], has_tumor=True).order_by("name")[0]
    heatmap = SlideHeatmap.objects.create(ensemble=ensemble, slide=slide)
    assert services.infer(heatmap.pk) == "done"
    heatmap.refresh_from_db()
    return heatmap


@pytest.fixture
def computed(make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any]) -> Any:
    """One tumor slide's heatmaps, computed here."""
    return compute_heatmap(make_ensemble(), demo_cohorts)
