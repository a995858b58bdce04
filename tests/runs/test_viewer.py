"""The viewer and the cohort page show the review run's flags, naming the run and the range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunSlide
from tests.runs.conftest import carry_through


@pytest.fixture
def flagging_run(start: Callable[..., Any]) -> Run:
    """A run whose review range is the one where the tests' tiny ensemble flags regions (0.75 to 0.95)."""
    run: Run = carry_through(start(review_range=2))
    return run


def _busiest(run: Run) -> RunSlide:
    """The slide with the most flagged regions in the run's review range."""
    counts = services.flagged_per_slide(run, run.slide_set.values_list("slide", flat=True))
    assert counts, "the run flagged nothing"
    return RunSlide.objects.get(run=run, slide=max(counts, key=lambda pk: counts[pk]))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_pathologist_sees_the_review_runs_flagged_outlines_and_goes_to_each(
    flagging_run: Run, signed_in_page: Any, live_server: Any,
) -> None:
    row = _busiest(flagging_run)
    review = services.review_range(flagging_run)
    flagged = sorted(Region.objects.filter(run_slide=row, run_range=review, flagged=True)
                     .values_list("score", flat=True), reverse=True)
    page = signed_in_page("pathologist")
    page.goto(f"{live_server.url}/slides/{row.slide_id}/")
    page.wait_for_function("window.suaViewerState && window.suaViewerState.overlay === 'entropy'", timeout=30_000)
    page.wait_for_function(f"window.suaViewerState.flaggedShown === {len(flagged)}", timeout=10_000)
    assert page.locator("#npr-run").text_content() == flagging_run.name
    assert review is not None and review.label.split()[0] in page.locator("#npr-range option:checked").inner_text()
    # Outlines, not boxes: one path per flagged region.
    assert page.locator("svg.annotation-layer path.npr").count() == len(flagged)
    scores = [float(t.split()[1]) for t in page.locator("#npr-list li .score").all_inner_texts()]
    assert scores == pytest.approx(flagged, abs=1e-3)

    before = page.evaluate("window.suaViewer.viewport.getZoom()")
    page.locator("#npr-list li").first.click()
    page.wait_for_timeout(1500)
    assert page.evaluate("window.suaViewer.viewport.getZoom()") > before * 1.5
    assert page.locator("svg.annotation-layer path.npr.active").count() == 1

    # The run's SUA-refined mask of this range over the heatmap, then none.
    page.select_option("#refined-mask", "sua")
    page.wait_for_function("window.suaViewerState.mask === 'sua'", timeout=10_000)
    assert page.evaluate("window.suaViewer.world.getItemCount()") == 3
    page.select_option("#refined-mask", "")
    page.wait_for_function("window.suaViewer.world.getItemCount() === 2", timeout=10_000)

    # Another overlay, then none.
    page.select_option("#heatmap-kind", "segmentation")
    page.wait_for_function("window.suaViewerState.overlay === 'segmentation'", timeout=10_000)
    assert page.evaluate("window.suaViewer.world.getItemCount()") == 2
    page.select_option("#heatmap-kind", "")
    page.wait_for_function("window.suaViewer.world.getItemCount() === 1", timeout=10_000)


@pytest.mark.django_db
def test_the_cohort_page_counts_the_review_runs_flags_and_names_run_and_range(
    flagging_run: Run, people: dict[str, Any], demo_cohorts: dict[str, Any],
) -> None:
    from django.test import Client

    row = _busiest(flagging_run)
    review = services.review_range(flagging_run)
    count = Region.objects.filter(run_slide=row, run_range=review, flagged=True).count()
    client = Client()
    client.force_login(people["pathologist"])
    assert row.slide is not None
    page = client.get(f"/cohorts/{row.slide.cohort_id}/").content.decode()
    head = page[page.index("<th>Review"):]
    assert flagging_run.name in head[: head.index("</th>")] and review is not None
    assert review.label in head[: head.index("</th>")]
    line = page[page.index(f'data-slide="{row.slide_id}"'):]
    assert f"{count} flagged" in line[: line.index("</tr>")]
    assert f"?run={flagging_run.pk}" in line[: line.index("</tr>")]
    # The training cohort is in no run: its slides say so.
    train = client.get(f"/cohorts/{demo_cohorts['train'].pk}/").content.decode()
    assert "no heatmaps" in train
