"""Researchers calibrate the SUA threshold of each range on validation cohorts; every slide's NPRs get flagged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from sua_portal.ensembles.models import NegativePredictionRegion, SlideHeatmap
from sua_portal.slides.models import Cohort
from tests.conftest import create_people, remove_people
from tests.ensembles.conftest import compute_flagged_heatmap, import_demo_cohorts, import_ensemble

# Not transactional: each test runs in a transaction that is rolled back, so every test starts from
# the state made once for the module below (a transactional test's flush would remove it).
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def calibration_world(django_db_setup: Any, django_db_blocker: Any, synthetic_cohort: Path, members: list[bytes]
                      ) -> Iterator[tuple[dict[str, Any], dict[str, Any], SlideHeatmap]]:
    """People, the demo cohorts and one computed heatmap with flagged NPRs (the ``people``,
    ``demo_cohorts`` and ``computed`` of ensembles/conftest.py), made and committed once for the module
    (the slide checks and the inference take seconds) and removed at its end."""
    with django_db_blocker.unblock():
        people = create_people()
        cohorts = import_demo_cohorts(people["own"], synthetic_cohort)
        heatmap = compute_flagged_heatmap(import_ensemble(people, members), cohorts)
        yield people, cohorts, heatmap
        remove_people(people)


@pytest.fixture
def people(calibration_world: tuple[dict[str, Any], dict[str, Any], SlideHeatmap]) -> dict[str, Any]:
    return calibration_world[0]


@pytest.fixture
def demo_cohorts(calibration_world: tuple[dict[str, Any], dict[str, Any], SlideHeatmap]) -> dict[str, Any]:
    return calibration_world[1]


@pytest.fixture
def computed(calibration_world: tuple[dict[str, Any], dict[str, Any], SlideHeatmap]) -> SlideHeatmap:
    return calibration_world[2]


def calibrate(client: Any, heatmap: SlideHeatmap, cohorts: list[int], **body: Any) -> Any:
    return client.post(f"/api/ensembles/{heatmap.ensemble_id}/calibrate/",
                       {"validation_cohorts": cohorts, **body}, format="json")


def flags(heatmap: SlideHeatmap) -> list[tuple[int, bool]]:
    return sorted(NegativePredictionRegion.objects.filter(heatmap=heatmap).values_list("pk", "flagged"))


def test_a_researcher_calibrates_each_range_on_validation_and_regions_are_flagged_by_it(
    computed: SlideHeatmap, people: dict[str, Any], api_for: Callable[[Any], Any], demo_cohorts: dict[str, Any],
) -> None:
    response = calibrate(api_for(people["researcher"]), computed, [demo_cohorts["validation"].pk])
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(r["lower"], r["upper"]) for r in body] == [tuple(r) for r in settings.SUA_RANGES]
    for entry in body:
        regions = NegativePredictionRegion.objects.filter(heatmap=computed, lower=entry["lower"])
        if entry["threshold"] is None:
            assert not regions.filter(flagged=True).exists()
        else:
            # Flagged exactly when the score reaches the threshold.
            assert all(r.flagged == (r.score >= entry["threshold"]) for r in regions)
        assert entry["flagged"] == regions.filter(flagged=True).count()
    assert any(entry["threshold"] is not None for entry in body)

    # Beta weighs recall: beta 4 flags at least as much as beta 0.25 in every range.
    strict = calibrate(api_for(people["researcher"]), computed, [demo_cohorts["validation"].pk], beta=0.25).json()
    lenient = calibrate(api_for(people["researcher"]), computed, [demo_cohorts["validation"].pk], beta=4).json()
    assert all(a["flagged"] <= b["flagged"] for a, b in zip(strict, lenient, strict=True))


@pytest.mark.parametrize(("cohort", "message"), [
    ("test_in_domain", "test cohorts must stay unseen"),
    ("empty validation", "no negative prediction regions with ground truth"),
    ("foreign", "not in this project"),
])
def test_calibrating_on_the_wrong_cohorts_is_refused_and_changes_no_flag(
    cohort: str, message: str, computed: SlideHeatmap, people: dict[str, Any], api_for: Callable[[Any], Any],
    demo_cohorts: dict[str, Any],
) -> None:
    if cohort == "empty validation":
        pk = Cohort.objects.create(project=people["own"], name="V2", split="validation", domain="in-domain").pk
    elif cohort == "foreign":
        pk = Cohort.objects.create(project=people["foreign"], name="V", split="validation", domain="in-domain").pk
    else:
        pk = demo_cohorts[cohort].pk
    before = flags(computed)
    response = calibrate(api_for(people["researcher"]), computed, [pk])
    assert response.status_code == 400 and message in str(response.json())
    assert flags(computed) == before


def test_pathologists_review_but_do_not_calibrate(
    computed: SlideHeatmap, people: dict[str, Any], api_for: Callable[[Any], Any], demo_cohorts: dict[str, Any],
) -> None:
    before = flags(computed)
    assert calibrate(api_for(people["pathologist"]), computed, [demo_cohorts["validation"].pk]).status_code == 403
    assert calibrate(api_for(people["outsider"]), computed, [demo_cohorts["validation"].pk]).status_code == 404
    assert flags(computed) == before
