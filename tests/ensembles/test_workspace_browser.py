"""The admin workspace in headless Chromium: a project made and a pathologist added who then sees only
it; cohorts made, edited, deleted softly and restored; a slide's ground truth uploaded and replaced after
the server's question; an ensemble's import dry run shown before the import; the training form's recipe;
heatmaps computed for a cohort on a real worker and cancelled; every page refused to non-admins.

Screenshots: with SUA_SHOTS=/some/folder the tests save the pages they open there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from analysis.training.config import TRAINING_PRESETS
from sua_portal.accounts import roles
from sua_portal.accounts.models import Membership, Project
from sua_portal.ensembles.models import Ensemble, EnsembleMember, SlideHeatmap
from sua_portal.slides import services as slide_services
from sua_portal.slides.models import Annotation, Cohort, Slide
from tests.conftest import create_user, shot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def problems(page: Any) -> Iterator[list[str]]:
    """Errors the page logs or throws while a test drives it (a refused request's 4xx is expected)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if m.type == "error" and "status of 4" not in m.text else None)
    page.on("pageerror", lambda error: seen.append(str(error)))
    yield seen


@pytest.fixture
def accept_dialogs(page: Any) -> Any:
    """Answer "OK" to the pages' confirmations (Playwright dismisses them otherwise)."""
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def test_an_admin_creates_a_project_adds_a_pathologist_who_then_sees_only_that_project(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, accept_dialogs: Any,
    problems: list[str], browser: Any,
) -> None:
    newcomer = create_user("dr-new")  # no role yet, in no project
    page = signed_in_page("admin")
    page.click("nav >> text=Manage")
    page.fill("#new-project input[name=name]", "Sentinel study")
    page.fill("#new-project input[name=description]", "Lymph nodes, domain shift")
    page.click("#new-project button[type=submit]")
    project = wait_for(lambda: Project.objects.filter(name="Sentinel study").first(), what="the project")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/")
    assert page.locator("#project-name").inner_text() == "Sentinel study"
    assert page.locator("#member-table tbody tr").all_inner_texts()[0].startswith("admin (you)")

    # A name nobody has: the API's message, nothing added.
    page.fill("#add-member input[name=username]", "dr-nobody")
    page.click("#add-member button[type=submit]")
    expect(page.locator("#add-member .form-error")).to_contain_text("There is no user called 'dr-nobody'")
    assert project.memberships.count() == 1

    page.fill("#add-member input[name=username]", "dr-new")
    page.select_option("#add-member select[name=role]", "pathologist")
    page.click("#add-member button[type=submit]")
    page.locator("tr[data-member=dr-new]").wait_for()
    assert roles.roles_of(newcomer) == {"pathologist"}
    assert page.locator("tr[data-member=dr-new] select[name=role]").input_value() == "pathologist"
    shot(page, "admin-project")

    # Blind review off, then on again: saved as it is clicked.
    assert project.blind_review is True
    page.uncheck("#blind-review input[name=blind_review]")
    page.wait_for_function("document.getElementById('blind-state').textContent === 'off'")
    project.refresh_from_db()
    assert project.blind_review is False

    # The pathologist sees this project only, on the pages and in the API.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    other = context.new_page()
    other.goto(f"{live_server.url}/accounts/login/")
    other.fill("input[name=username]", "dr-new")
    other.fill("input[name=password]", "pw-for-tests")
    other.click("button[type=submit]")
    other.wait_for_url(f"{live_server.url}/")
    other.goto(f"{live_server.url}/projects/")
    assert other.locator("li.card.project h2").all_inner_texts() == ["Sentinel study"]
    assert "Manage" not in other.locator("header nav").inner_text()
    listed = other.evaluate("fetch('/api/projects/').then(r => r.json())")
    assert [p["name"] for p in listed["results"]] == ["Sentinel study"]
    shot(other, "pathologist-projects")
    assert other.goto(f"{live_server.url}/projects/{project.pk}/").status == 403
    assert other.goto(f"{live_server.url}/projects/{people['own'].pk}/").status == 403
    context.close()

    # Removed again: the pathologist's project list is empty.
    page.locator("tr[data-member=dr-new] .remove-form button").click()
    wait_for(lambda: not Membership.objects.filter(project=project, user=newcomer).exists(), what="the removal")
    page.locator("tr[data-member=dr-new]").wait_for(state="detached")
    client = Client()
    client.force_login(newcomer)
    assert client.get("/api/projects/").json()["results"] == []
    assert problems == []


def test_an_admin_changes_a_member_s_role_but_not_their_own(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, problems: list[str],
) -> None:
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/")
    assert page.locator("tr[data-member=admin] select").count() == 0  # one's own role is not offered
    page.select_option("tr[data-member=researcher] select[name=role]", "admin")
    wait_for(lambda: roles.roles_of(people["researcher"]) == {"admin"}, what="the new role")
    page.wait_for_load_state()
    assert page.locator("tr[data-member=researcher] select[name=role]").input_value() == "admin"
    assert problems == []


def test_an_admin_creates_edits_deletes_softly_and_restores_a_cohort(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, accept_dialogs: Any,
    problems: list[str],
) -> None:
    own = people["own"]
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{own.pk}/")
    page.fill("#new-cohort input[name=name]", "Camelyon validation")
    page.select_option("#new-cohort select[name=split]", "validation")
    page.fill("#new-cohort input[name=domain]", "in-domain")
    page.click("#new-cohort button[type=submit]")
    cohort = wait_for(lambda: Cohort.objects.filter(project=own, name="Camelyon validation").first(), what="cohort")
    page.wait_for_url(f"{live_server.url}/cohorts/{cohort.pk}/")
    assert cohort.split == "validation" and cohort.domain == "in-domain" and cohort.mpp_override is None

    # The same name again: the API's sentence, nothing made.
    page.goto(f"{live_server.url}/projects/{own.pk}/")
    page.fill("#new-cohort input[name=name]", "Camelyon validation")
    page.click("#new-cohort button[type=submit]")
    expect(page.locator("#new-cohort .form-error")).to_contain_text("exists in this project")
    assert Cohort.objects.filter(project=own).count() == 1

    # Edit: split, domain and a resolution override; a bad resolution is refused first.
    row = page.locator(f"tr[data-cohort='{cohort.pk}']")
    row.get_by_role("button", name="Edit").click()
    edit = page.locator(f"#edit-{cohort.pk} form")
    edit.locator("input[name=mpp_override]").fill("500")
    edit.locator("button[type=submit]").click()
    expect(edit.locator(".form-error")).to_contain_text("A resolution must be between")
    cohort.refresh_from_db()
    assert cohort.mpp_override is None
    edit.locator("input[name=name]").fill("Sentinel test")
    edit.locator("select[name=split]").select_option("test")
    edit.locator("input[name=domain]").fill("shifted")
    edit.locator("input[name=mpp_override]").fill("0.243")
    edit.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelector('#cohort-table').textContent.includes('Sentinel test')")
    cohort.refresh_from_db()
    assert (cohort.name, cohort.split, cohort.domain, cohort.mpp_override) == ("Sentinel test", "test", "shifted", 0.243)
    assert "0.2430 µm/px" in page.locator(f"tr[data-cohort='{cohort.pk}']").inner_text()
    shot(page, "admin-cohorts")

    # Delete (softly, after the question): gone from the lists, its page and row kept; then restored.
    page.locator(f"tr[data-cohort='{cohort.pk}'] .archive-form button").click()
    page.locator("#archived-cohorts").wait_for()
    cohort.refresh_from_db()
    assert cohort.archived and Cohort.objects.filter(pk=cohort.pk).exists()
    assert page.locator("#cohort-table").count() == 0
    page.goto(f"{live_server.url}/projects/")
    assert "Sentinel test" not in page.locator("main").inner_text()
    page.goto(f"{live_server.url}/cohorts/{cohort.pk}/")
    assert "This cohort was deleted" in page.locator(".archived-note").inner_text()
    page.goto(f"{live_server.url}/projects/{own.pk}/")
    page.locator("#archived-cohorts summary").click()
    page.locator(f"#archived-cohorts li[data-cohort='{cohort.pk}'] button").click()
    page.locator(f"tr[data-cohort='{cohort.pk}']").wait_for()
    cohort.refresh_from_db()
    assert not cohort.archived
    assert problems == []


def _geojson(tmp_path: Path, name: str, box: tuple[int, int, int, int]) -> Path:
    left, top, right, bottom = box
    feature = {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
               "geometry": {"type": "Polygon", "coordinates": [[[left, top], [right, top], [right, bottom],
                                                                 [left, bottom], [left, top]]]}}
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def test_an_admin_uploads_a_slide_s_ground_truth_and_replaces_it_after_the_server_s_question(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, testdata: Path, tmp_path: Path,
    problems: list[str],
) -> None:
    cohort = Cohort.objects.create(project=people["own"], name="Boxes", split="test")
    slide = slide_services.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff", queue_check=False)
    slide = slide_services.check_slide(slide.pk) or slide
    assert slide.status == Slide.Status.READY and slide.width and slide.height
    first = _geojson(tmp_path, "first.geojson", (5, 5, slide.width // 2, slide.height // 2))
    second = _geojson(tmp_path, "second.geojson", (slide.width // 2, slide.height // 2, slide.width - 5,
                                                   slide.height - 5))
    garbage = tmp_path / "notes.geojson"
    garbage.write_text("this is not GeoJSON")

    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/cohorts/{cohort.pk}/")
    cell = page.locator(f"td[data-annotate='{slide.pk}']")
    tumor = page.locator(f"tr:has(td[data-annotate='{slide.pk}']) td[data-role=tumor]")
    assert tumor.inner_text() == "unknown"
    cell.locator("input[type=file]").set_input_files(str(first))
    cell.locator(".annotate-note.ok").wait_for()
    assert "first.geojson is the ground truth" in cell.inner_text()
    assert cell.locator("[data-role=count]").inner_text() == "1"
    # The row's Tumor column follows the ground truth without a reload.
    tumor.locator(".tumor-yes").wait_for(timeout=5_000)
    assert tumor.inner_text() == "yes"

    # A second file: the server's 409 in words, and the choice to replace.
    cell.locator("input[type=file]").set_input_files(str(second))
    cell.locator("[data-role=replace]").wait_for()
    assert "already has its ground truth (first.geojson" in cell.inner_text()
    assert Annotation.objects.get(slide=slide).original_filename == "first.geojson"
    shot(page, "admin-annotation-replace")
    cell.locator("[data-role=replace]").click()
    cell.locator(".annotate-note.ok").wait_for()
    assert "Replaced: second.geojson" in cell.inner_text()
    assert Annotation.objects.get(slide=slide).original_filename == "second.geojson"

    # A file that is not an annotation: its reason, nothing changed.
    cell.locator("input[type=file]").set_input_files(str(garbage))
    cell.locator(".annotate-note.error").wait_for()
    assert "notes.geojson" in cell.locator(".annotate-note").inner_text()
    assert Annotation.objects.get(slide=slide).original_filename == "second.geojson"
    assert problems == []


def test_an_admin_sees_the_import_s_dry_run_before_importing_the_ensemble(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, members: list[bytes],
    tmp_path: Path, problems: list[str],
) -> None:
    files = []
    for i, data in enumerate(members):
        files.append(tmp_path / f"member-{i}.pt")
        files[-1].write_bytes(data)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"no model in here")
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/ensembles/")
    form = page.locator("#import-form")
    form.locator("input[name=name]").fill("Two tiny members")
    form.locator("input[name=tile_size]").fill("128")
    form.locator("input[name=level_downsample]").fill("2")

    form.locator("input[name=members]").set_input_files([str(files[0]), str(broken)])
    form.get_by_role("button", name="Check (dry run)").click()
    form.locator(".form-error:not(:empty)").wait_for()
    assert form.locator(".form-error").inner_text().startswith("broken.pt: ")
    assert form.get_by_role("button", name="Import").is_disabled()

    form.locator("input[name=members]").set_input_files([str(f) for f in files])
    form.get_by_role("button", name="Check (dry run)").click()
    form.locator("#dry-run p.ok").wait_for()
    assert "Dry run passed: 2 members segment a 128 px tile" in form.locator("#dry-run").inner_text()
    assert form.locator("#dry-run tbody tr").count() == 2
    assert "member-1.pt" in form.locator("#dry-run tbody tr").nth(1).inner_text()
    assert not Ensemble.objects.exists()  # only checked so far
    shot(page, "admin-ensemble-dry-run")
    form.get_by_role("button", name="Import").click()
    page.locator("article.ensemble h2", has_text="Two tiny members").wait_for()
    ensemble = Ensemble.objects.get()
    assert ensemble.members.count() == 2 and ensemble.tile_size == 128 and ensemble.level_downsample == 2.0
    assert problems == []


def test_the_training_form_starts_from_the_paper_s_recipe_and_shows_a_refusal(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, problems: list[str],
) -> None:
    Cohort.objects.create(project=people["own"], name="Train", split="train")
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/ensembles/")
    form = page.locator("#train-form")
    assert form.locator("select[name=preset]").input_value() == settings.TRAINING_FORM_PRESET == "paper"
    values = {name: form.locator(f"[name={name}]").input_value()
              for name in ("members", "learning_rate", "lr_decay", "lr_patience", "max_epochs", "healthy_per_tumor",
                           "optimizer")}
    # SPEC §8: K = 5, Adam, learning rate 0.01, x0.1 after 20 epochs without improvement, at most 250, 4:1.
    assert values == {"members": "5", "learning_rate": "0.01", "lr_decay": "0.1", "lr_patience": "20",
                      "max_epochs": "250", "healthy_per_tumor": "4", "optimizer": "adam"}
    form.locator("select[name=preset]").select_option("demo")
    # The form refills from the preset the portal trains with.
    assert form.locator("[name=max_epochs]").input_value() == str(TRAINING_PRESETS["demo"].max_epochs)
    shot(page, "admin-ensembles-train-form")

    form.locator("input[name=name]").fill("Bad")
    form.locator("[name=members]").fill("0")
    form.get_by_role("button", name="Start training").click()
    form.locator(".form-error:not(:empty)").wait_for()
    assert "members must be >= 1" in form.locator(".form-error").inner_text()
    assert not Ensemble.objects.exists()
    assert problems == []


@pytest.fixture
def slow_ensemble(make_ensemble: Callable[..., Any]) -> Any:
    """Small tiles at full resolution: many forward passes, seconds of work per slide even when inference
    runs alone on the machine (time for the page's 2 s polls to see progress, and to cancel)."""
    return make_ensemble("Slow", tile_size=96, level_downsample=1.0)


def test_an_admin_computes_a_cohort_s_heatmaps_follows_their_progress_and_cancels_them(
    celery_worker_process: Any, people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any,
    slow_ensemble: Any, demo_cohorts: dict[str, Any], problems: list[str],
) -> None:
    cohort = demo_cohorts["validation"]
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/ensembles/")
    card = page.locator(f"article.ensemble[data-ensemble='{slow_ensemble.pk}']")
    card.locator("select[name=cohort]").select_option(str(cohort.pk))
    card.locator("[data-role=summary]", has_text="No heatmaps of this cohort yet").wait_for()
    card.get_by_role("button", name="Compute heatmaps for this cohort").click()
    card.locator("[data-role=heatmaps] tbody tr").first.wait_for()
    assert card.locator("[data-role=heatmaps] tbody tr").count() == cohort.slides.count()
    # The worker takes one slide at a time: the page shows it running with its progress.
    card.locator("tr[data-status=running]").wait_for(timeout=60_000)
    page.wait_for_function(
        "[...document.querySelectorAll('tr[data-status=running] progress')].some(p => p.value > 0)", timeout=60_000)
    shot(page, "admin-heatmaps-running")
    card.locator("[data-role=cancel-all]").click()
    page.wait_for_function(
        "document.querySelectorAll('tr[data-status=queued], tr[data-status=running]').length === 0", timeout=30_000)
    statuses = set(SlideHeatmap.objects.filter(ensemble=slow_ensemble).values_list("status", flat=True))
    assert statuses == {"cancelled"}
    assert f"{cohort.slides.count()} cancelled" in card.locator("[data-role=summary]").inner_text()
    assert card.locator("[data-role=cancel-all]").is_hidden()
    shot(page, "admin-heatmaps-cancelled")
    assert problems == []


@pytest.mark.parametrize("role", ["pathologist", "researcher"])
def test_the_workspace_pages_are_for_admins_only(role: str, people: dict[str, Any], live_server: Any) -> None:
    client = Client()
    client.force_login(people[role])
    own = people["own"].pk
    for path in ("/manage/", f"/projects/{own}/", f"/projects/{own}/ensembles/"):
        assert client.get(path).status_code == 403, path
    admin = Client()
    admin.force_login(people["admin"])
    assert admin.get(f"/projects/{people['foreign'].pk}/").status_code == 404  # not a member
    cohort = Cohort.objects.create(project=people["own"], name="Seen", split="test")
    html = client.get(f"/cohorts/{cohort.pk}/").content.decode()
    assert "data-annotate" not in html and "annotate.js" not in html


def _epochs(n: int) -> list[dict[str, Any]]:
    return [{"member": 0, "epoch": i + 1, "train_loss": 0.7 - 0.1 * i, "val_loss": 0.75 - 0.08 * i,
             "val_dice": 0.3 + 0.1 * i, "best_dice": 0.3 + 0.1 * i, "improved": True, "learning_rate": 0.01,
             "elapsed_s": 1.0} for i in range(n)]


def test_a_training_ensemble_shows_each_member_s_loss_curve_as_epochs_come_in(
    people: dict[str, Any], signed_in_page: Callable[..., Any], live_server: Any, problems: list[str],
) -> None:
    ensemble = Ensemble.objects.create(project=people["own"], name="K=2", origin=Ensemble.Origin.TRAINED,
                                       status=Ensemble.Status.TRAINING)
    rows = [EnsembleMember.objects.create(ensemble=ensemble, index=i, seed=i, status=Ensemble.Status.TRAINING,
                                          history=_epochs(3 - i)) for i in range(2)]
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/ensembles/")
    card = page.locator(f"article.ensemble[data-ensemble='{ensemble.pk}']")
    first = card.locator("tr[data-member='0']")
    assert first.locator("[data-role=epochs]").inner_text() == "3"
    assert first.locator("[data-role=loss]").inner_text() == "0.500"
    assert first.locator("svg.loss-curve polyline.loss-train").get_attribute("points").count(",") == 3
    assert "training 0.500, validation 0.590" in first.locator("svg.loss-curve").get_attribute("aria-label")
    # The next epoch shows up without a reload; the finished ensemble brings the page back with its heatmaps.
    EnsembleMember.objects.filter(pk=rows[1].pk).update(history=_epochs(4))
    expect(card.locator("tr[data-member='1'] [data-role=epochs]")).to_have_text("4", timeout=10_000)
    assert card.locator("tr[data-member='1'] polyline.loss-train").get_attribute("points").count(",") == 4
    shot(page, "admin-ensemble-training")
    Ensemble.objects.filter(pk=ensemble.pk).update(status=Ensemble.Status.READY)
    card.locator("form.compute-form").wait_for(timeout=10_000)
    assert problems == []
