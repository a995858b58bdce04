"""Saves at the same moment, on real PostgreSQL connections (one per thread): nothing is lost, nothing doubled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from sua_portal.review import services
from sua_portal.review.models import Verdict, VerdictChange

ROUNDS = 3


def _flagged_regions(project: Any, count: int) -> list[Any]:
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


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_saving_one_region_at_the_same_moment_both_keep_their_verdict_once(
    people: dict[str, Any], make_user: Callable[..., Any],
) -> None:
    from sua_portal.accounts.models import Membership

    second = make_user("second-pathologist", "pathologist")
    Membership.objects.create(project=people["own"], user=second)
    first = people["pathologist"]
    regions = _flagged_regions(people["own"], ROUNDS)
    for region in regions:
        # Each reviewer sends the verdict twice at once (a double click), all four requests together.
        senders = [(first, "tumor"), (first, "tumor"), (second, "not_tumor"), (second, "not_tumor")]
        start = threading.Barrier(len(senders))
        failures: list[BaseException] = []

        def send(user: Any, verdict: str, region: Any = region, start: threading.Barrier = start,
                 failures: list[BaseException] = failures) -> None:
            try:
                start.wait()
                services.save_verdict(region, user, verdict, "")
            except BaseException as exc:
                failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=sender) for sender in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert dict(Verdict.objects.filter(region=region).values_list("reviewer__username", "verdict")) == {
            "pathologist": "tumor", "second-pathologist": "not_tumor"}
        assert VerdictChange.objects.filter(region=region).count() == 2
