"""Start pages by role: ``/`` shows an admin projects and cohorts, a researcher the runs, a pathologist the
review worklist; the navigation offers each role what it can do."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunSlide
from tests.runs.conftest import carry_through

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _nav(html: str) -> list[str]:
    """The topbar's navigation entries, in order (their data-nav names)."""
    nav = re.search(r"<nav>(.*?)</nav>", html, re.S)
    assert nav is not None
    return re.findall(r'data-nav="([^"]+)"', nav.group(1))


def _h1(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_an_admin_lands_on_projects_and_cohorts(people: dict[str, Any], demo_cohorts: dict[str, Any]) -> None:
    people["admin"].is_staff = True  # the door to the Django admin, as the demo's admin has it
    people["admin"].save()
    html = _client(people["admin"]).get("/").content.decode()
    assert _h1(html) == "Your projects"
    for cohort in demo_cohorts.values():
        assert f'href="/cohorts/{cohort.pk}/"' in html
    assert "Foreign" not in html  # only the admin's own projects
    assert _nav(html) == ["worklist", "runs", "new-run", "projects", "manage", "admin"]


def test_a_researcher_lands_on_their_runs(people: dict[str, Any], finished_run: Run) -> None:
    html = _client(people["researcher"]).get("/").content.decode()
    assert _h1(html) == "Runs"
    assert f'href="/runs/{finished_run.pk}/"' in html and finished_run.name in html
    assert _nav(html) == ["runs", "new-run", "projects"]


def test_someone_in_another_project_sees_none_of_its_runs(people: dict[str, Any], finished_run: Run,
                                                         make_user: Callable[..., Any]) -> None:
    from sua_portal.accounts.models import Membership

    stranger = make_user("stranger", "researcher")
    Membership.objects.create(project=people["foreign"], user=stranger)
    html = _client(stranger).get("/").content.decode()
    assert _h1(html) == "Runs" and f"/runs/{finished_run.pk}/" not in html


@pytest.fixture
def flagging_run(start: Callable[..., Any]) -> Run:
    """A run whose review range is the one where the tests' tiny ensemble flags regions (0.75 to 0.95)."""
    run: Run = carry_through(start(review_range=2))
    return run


def test_a_pathologist_lands_on_the_review_runs_flagged_slides_most_uncertain_first(
    people: dict[str, Any], flagging_run: Run,
) -> None:
    review = services.review_range(flagging_run)
    assert services.review_run(people["own"]) == flagging_run and review is not None
    # What the worklist must list: every slide of the run with a flagged region in its review range.
    expected: dict[int, int] = {}
    top: dict[int, float] = {}
    for slide_id, score in Region.objects.filter(run=flagging_run, run_range=review, flagged=True).values_list(
            "run_slide__slide", "score"):
        expected[slide_id] = expected.get(slide_id, 0) + 1
        top[slide_id] = max(top.get(slide_id, score), score)
    assert expected, "the run flagged nothing"

    response = _client(people["pathologist"]).get("/")
    html = response.content.decode()
    assert _h1(html) == "Your worklist"
    assert f'href="/runs/{flagging_run.pk}/"' in html and review.label in html
    rows = re.findall(r'<tr data-slide="(\d+)"[^>]*>.*?href="([^"]+)".*?data-flagged="(\d+)"', html, re.S)
    listed = {int(slide): int(count) for slide, _, count in rows}
    assert listed == expected
    # Nothing reviewed yet: the most uncertain slide (highest flagged score) first.
    scores = [top[int(slide)] for slide, _, _ in rows]
    assert scores == sorted(scores, reverse=True)
    for slide, href, _ in rows:
        assert href == f"/slides/{slide}/?run={flagging_run.pk}"
    first = rows[0][0]
    assert f'href="/slides/{first}/?run={flagging_run.pk}&amp;region=' in html  # resume: at its first region
    quiet = RunSlide.objects.filter(run=flagging_run).count() - len(expected)
    if quiet:
        assert f"{quiet} other slide" in html
    assert _nav(html) == ["worklist", "runs", "projects"]
    # The same list at its own address, from any role's navigation.
    assert _client(people["pathologist"]).get("/review/").content.decode().count("<tr data-slide=") == len(rows)


def test_the_worklist_says_when_a_project_has_no_finished_run(people: dict[str, Any]) -> None:
    html = _client(people["pathologist"]).get("/").content.decode()
    assert _h1(html) == "Your worklist"
    assert "No finished run in this project yet" in html and "<tr data-slide=" not in html


def test_everyone_reaches_the_projects_page_and_the_breadcrumbs_lead_there(
    people: dict[str, Any], demo_cohorts: dict[str, Any],
) -> None:
    for role in ("pathologist", "researcher", "admin"):
        client = _client(people[role])
        assert _h1(client.get("/projects/").content.decode()) == "Your projects"
    cohort_page = _client(people["pathologist"]).get(f"/cohorts/{demo_cohorts['validation'].pk}/").content.decode()
    assert '<a href="/projects/">Projects</a>' in cohort_page

