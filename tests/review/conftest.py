"""Review on a real run: the session's synthetic cohort, a tiny ensemble, the run carried through here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# The runs tests' fixtures (a run started and carried through in this process) and what they build on.
from tests.ensembles.conftest import demo_cohorts, make_ensemble, members  # noqa: F401
from tests.runs.conftest import carry_through, checked_slide, heatmaps_computed, start  # noqa: F401


def give(client: Any, region: int, verdict: str, comment: str | None = None) -> None:
    """A verdict through the API (``client`` signed in as a reviewer); it must be saved."""
    body: dict[str, Any] = {"region": region, "verdict": verdict}
    if comment is not None:
        body["comment"] = comment
    answer = client.post("/api/review/verdicts/", body, format="json")
    assert answer.status_code in (200, 201), answer.content


def flagged(run: Any, *, slide: Any = None) -> list[Any]:
    """The run's flagged regions in its review range (on one RunSlide), highest score first."""
    from sua_portal.review import services

    return list(services.flagged_regions(run, services.the_review_range(run), slide).select_related("run_slide"))


def slides_with_flags(run: Any) -> list[Any]:
    """The RunSlides with at least one flagged region in the review range, most flags first."""
    counts: dict[Any, int] = {}
    for region in flagged(run):
        counts[region.run_slide] = counts.get(region.run_slide, 0) + 1
    return sorted(counts, key=lambda row: (-counts[row], row.name))


def regions_made_directly(project: Any, count: int) -> list[Any]:
    """A finished run (the project's review run) with ``count`` flagged regions on one slide, made directly."""
    from sua_portal.runs.models import Region, Run, RunRange, RunSlide
    from sua_portal.runs.services import RunSettings
    from sua_portal.slides.models import Cohort, Slide

    cohort = Cohort.objects.create(project=project, name="Concurrent", split="test")
    slide = Slide.objects.create(cohort=cohort, name="s.tiff", file="slides/s.tiff", sha256="0" * 64, size_bytes=1,
                                 status="ready", width=1000, height=1000)
    run = Run.objects.create(project=project, name="Run", ensemble_name="gone", status=Run.Status.DONE,
                             settings=RunSettings.defaults().to_dict())
    run_range = RunRange.objects.create(run=run, index=run.settings["review_range"], lower=0.55, upper=0.95,
                                        sua_threshold=0.5)
    row = RunSlide.objects.create(run=run, slide=slide, name=slide.name, cohort_name=cohort.name, role="test",
                                  domain="in-domain", has_tumor=True, downsample=16.0)
    return [Region.objects.create(run=run, run_slide=row, run_range=run_range, label=i + 1, area_px=1, score=0.9,
                                  flagged=True, x=16.0 * i, y=0.0, width=16.0, height=16.0,
                                  geometry={"type": "Polygon", "coordinates": [[[16 * i, 0], [16 * i + 16, 0],
                                                                                [16 * i + 16, 16], [16 * i, 16],
                                                                                [16 * i, 0]]]})
            for i in range(count)]


#: The range the tests review: the untrained tiny ensemble's heatmaps flag regions in (0.75, 0.95) only.
REVIEW_RANGE = 2


@pytest.fixture
def review_run(start: Callable[..., Any]) -> Any:  # noqa: F811
    """The project's review run (its only finished run, reviewing range 2), with flagged regions on
    several slides."""
    from sua_portal.runs.services import review_run as chosen

    run = carry_through(start(review_range=REVIEW_RANGE))
    assert chosen(run.project) == run
    assert len(slides_with_flags(run)) >= 2, "the synthetic run should flag regions on two slides"
    return run


@pytest.fixture
def second_pathologist(people: dict[str, Any], make_user: Callable[..., Any]) -> Any:
    """Another pathologist of project 'Own'."""
    from sua_portal.accounts.models import Membership

    user = make_user("second-pathologist", "pathologist")
    Membership.objects.create(project=people["own"], user=user)
    return user
