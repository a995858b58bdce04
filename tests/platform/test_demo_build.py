"""The demo build's progress on the pages, from its stored state (the DemoBuild row `load_demo` writes):
the step, each member's epoch, slides done, the results ready so far; and the panel following the build."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from sua_portal.core.demo_build import BuildRecorder
from sua_portal.core.models import DemoBuild


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _panel(html: str) -> str:
    """The demo build's panel of a page ("" when the page has none)."""
    found = re.search(r'<section class="card demo-build.*?</section>', html, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(0))).strip() if found else ""


@pytest.mark.django_db
def test_the_home_page_shows_each_step_of_the_build_from_its_stored_state(people: dict[str, Any]) -> None:
    build = BuildRecorder(people["own"])
    client = _client(people["admin"])

    build.count(slides_done=7, slides_total=18)
    panel = _panel(client.get("/").content.decode())
    assert "The demo is being built · Own" in panel
    assert "generating and importing the slides: 7 of 18 slides ready" in panel

    build.link("Demo validation", "/cohorts/12/")
    build.step(DemoBuild.Step.TRAINING, members=5, epochs=12, member_epochs=[0] * 5)
    build.epoch(0, 3)
    build.epoch(1, 2)
    html = client.get("/").content.decode()
    panel = _panel(html)
    assert "training the ensemble: 5 members; member 1: epoch 3 of 12; member 2: epoch 2 of 12" in panel
    assert "Ready so far: Demo validation" in panel and 'href="/cohorts/12/"' in html
    # 5 of 60 member-epochs.
    assert re.search(r'<progress max="100" value="8"', html)

    build.step(DemoBuild.Step.HEATMAPS, heatmaps_total=12)
    build.count(heatmaps_done=4)
    assert "computing the heatmaps: 4 of 12 slides" in _panel(client.get("/").content.decode())

    build.step(DemoBuild.Step.RUN)
    build.link("Demo run: the dashboard", "/runs/3/")
    build.done()
    html = client.get("/").content.decode()
    assert "The demo is ready · Own" in _panel(html) and 'href="/runs/3/"' in html
    # Ready: no script follows it any more, and the other pages leave it out.
    assert "app/build.js" not in html and "data-poll" not in html
    assert _panel(client.get("/projects/").content.decode()) == ""


@pytest.mark.django_db
def test_every_page_shows_a_running_or_failed_build_but_only_to_the_projects_members(people: dict[str, Any]) -> None:
    build = BuildRecorder(people["own"])
    build.step(DemoBuild.Step.TRAINING, members=2, epochs=4)
    for role, page in (("researcher", "/runs/"), ("pathologist", "/review/"), ("admin", "/projects/")):
        html = _client(people[role]).get(page).content.decode()
        assert "training the ensemble" in _panel(html), (role, page)
        assert "app/build.js" in html and 'data-poll="/demo-build/"' in html
    assert _panel(_client(people["outsider"]).get("/").content.decode()) == ""

    build.failed("CommandError: the training cohorts have no ready slides")
    panel = _panel(_client(people["researcher"]).get("/runs/").content.decode())
    assert "The demo build failed" in panel and "the training cohorts have no ready slides" in panel
    # The step it stopped in is the one marked failed; the steps before it are done.
    html = _client(people["researcher"]).get("/runs/").content.decode()
    assert '<li class="step-done">generating and importing the slides' in html
    assert '<li class="step-failed">training the ensemble' in html


@pytest.mark.django_db
def test_the_panel_alone_is_what_the_script_fetches(people: dict[str, Any]) -> None:
    BuildRecorder(people["own"]).count(slides_done=3, slides_total=18)
    response = _client(people["pathologist"]).get("/demo-build/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<section class="card demo-build') and "<nav>" not in html
    assert "3 of 18 slides ready" in _panel(html)
    assert _client(people["outsider"]).get("/demo-build/").content.decode().strip() == ""
    assert Client().get("/demo-build/").status_code == 302


@pytest.mark.django_db
def test_starting_again_begins_a_fresh_record(people: dict[str, Any]) -> None:
    first = BuildRecorder(people["own"])
    first.link("Demo run: the dashboard", "/runs/1/")
    first.failed("stopped before it finished")
    again = BuildRecorder(people["own"])
    row = DemoBuild.objects.get(project=people["own"])
    assert row.pk == again.row.pk and row.step == "cohorts" and row.links == [] and row.failure_reason == ""
    assert row.started <= timezone.now()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_panel_follows_the_build_and_the_start_page_shows_what_a_step_made(
    people: dict[str, Any], signed_in_page: Any,
) -> None:
    build = BuildRecorder(people["own"])
    build.step(DemoBuild.Step.TRAINING, members=2, epochs=4, member_epochs=[0, 0])
    page = signed_in_page("admin")
    assert "2 members; their first epoch under way" in page.locator("#demo-build").inner_text()

    build.epoch(1, 2)  # the same step: the panel is fetched again and put in place
    page.wait_for_function("document.querySelector('#demo-build .build-detail').textContent.includes('epoch 2 of 4')",
                           timeout=15_000)
    build.step(DemoBuild.Step.HEATMAPS, heatmaps_total=6)
    build.link("Demo ensemble (2 members)", "/api/ensembles/1/")
    build.done()  # a new step: the start page loads again with what it made
    page.wait_for_function("document.querySelector('#demo-build').dataset.step === 'done'", timeout=15_000)
    assert "The demo is ready" in page.locator("#demo-build h2").inner_text()
    assert page.locator("#demo-build .build-links a").all_inner_texts() == ["Demo ensemble (2 members)"]
