"""The run page (dashboard) in headless Chromium: the numbers of the run's report.json, the three
charts, ranges toggled, the slide table sorted; what a pathologist sees; two runs side by side.

Screenshots: with SUA_SHOTS=/some/folder the tests also save the pages they open there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from sua_portal.runs import services
from sua_portal.runs.models import Run, RunSlide
from tests.conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def problems(page: Any) -> Iterator[list[str]]:
    """Errors the page logs or throws while a test drives it."""
    seen: list[str] = []
    page.on("console", lambda message: seen.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(str(error)))
    yield seen


def _report_json(run: Run) -> dict[str, Any]:
    """The report.json the run offers for download (the file, not the database column)."""
    with default_storage.open(run.files["report.json"], "rb") as fh:
        report: dict[str, Any] = json.load(fh)
    return report


def _label(entry: dict[str, Any]) -> str:
    return f"{entry['lower']:g} to {entry['upper']:g}"


def _mean_std(block: dict[str, Any]) -> str:
    return "n/a" if block["mean"] is None else f"{block['mean']:.3f} ({block['std']:.3f})"


def _open_dashboard(page: Any, live_server: Any, run: Run) -> None:
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function("window.suaRunCharts && window.suaRunCharts.ready", timeout=30_000)
    charts = page.evaluate("window.suaRunCharts")
    assert charts["failed"] == [] and charts["drawn"] == charts["expected"] > 0, charts


def _check_table2(page: Any, report: dict[str, Any]) -> None:
    """Table 2 shows F-beta mean (std) of every domain, method and range, the 95 % interval on hover."""
    table = page.locator("#table2_f_beta table")
    heads = [text.strip() for text in table.locator("thead th").all_text_contents()]
    rows = {
        tuple(cells[:2]): (cells, row)
        for row in table.locator("tbody tr").all()
        for cells in [[text.strip() for text in row.locator("td").all_text_contents()]]
    }
    beta = report["settings"]["beta"]
    domains = list(report["ranges"][0]["domains"])
    assert [key[0] for key in rows][::2] == domains  # in report.json's order
    for k, entry in enumerate(report["ranges"]):
        column = heads.index(f"F{beta:g}, {_label(entry)}")
        for domain, block in entry["domains"].items():
            for title, method in (("Baseline", "baseline"), ("SUA", "sua")):
                f_beta = block[method]["f_beta"]
                cells, row = rows[(domain, title)]
                assert cells[column] == _mean_std(f_beta), (domain, title, k)
                if f_beta["mean"] is not None:
                    low, high = f_beta["ci95"]
                    hint = row.locator("td").nth(column).get_attribute("title")
                    assert f"[{low:.3f}, {high:.3f}]" in hint


def test_the_dashboard_shows_its_report_json_draws_its_charts_and_sorts_its_slides(
    finished_run: Run, signed_in_page: Any, live_server: Any, problems: list[str],
) -> None:
    run = finished_run
    report = _report_json(run)
    # A slide added after the run without ground truth has no Dice: such cells show "—" and sort last.
    late = RunSlide.objects.filter(run=run).order_by("name").first()
    assert late is not None
    figures = late.figures
    figures[0] = {**figures[0], "dice_sua": None}
    RunSlide.objects.filter(pk=late.pk).update(figures=figures, added_after_run=True)

    page = signed_in_page("researcher")
    _open_dashboard(page, live_server, run)
    assert page.locator("#run-state").get_attribute("data-status") == "done"
    assert page.locator("button", has_text="Run again").count() == 1

    _check_table2(page, report)
    # The thresholds, calibrated on validation, per range.
    for k, entry in enumerate(report["ranges"]):
        cells = [t.strip() for t in page.locator(f"#thresholds tr[data-range='{k}'] td").all_text_contents()]
        assert cells[0] == _label(entry)
        for column, tau in ((1, entry["sua_threshold"]), (6, entry["baseline_threshold"])):
            assert cells[column] == ("none" if tau is None else f"{tau:.4f}"), (k, column)
    # Table 1: the ensemble's FROC per domain.
    table1 = [[t.strip() for t in row.locator("td").all_text_contents()]
              for row in page.locator("#table1_segmentation tbody tr").all()]
    assert [(row[0], row[1]) for row in table1] == [
        (domain, _mean_std(block["original"]["froc"])) for domain, block in report["ranges"][0]["domains"].items()]

    # The three charts: a histogram row per range for NPR scores and candidate pixels, one box plot chart.
    n_ranges = len(report["ranges"])
    assert page.locator("#chart-npr .chart-range svg.marks").count() == n_ranges
    assert page.locator("#chart-pixels .chart-range svg.marks").count() == n_ranges
    assert page.locator("#chart-fncr svg.marks").count() == 1
    # Each threshold is a rule in its range's panels (none where there is no threshold), its value on hover.
    parts = 1 + len(report["ranges"][0]["domains"])
    for k, entry in enumerate(report["ranges"]):
        for chart, tau in (("npr", entry["sua_threshold"]), ("pixels", entry["baseline_threshold"])):
            rules = page.locator(f"#chart-{chart} .chart-range[data-range='{k}'] svg.marks g.mark-rule.role-mark > *")
            assert rules.count() == (0 if tau is None else parts), (chart, k)
            if tau is not None:
                assert f"{tau:.4f}" in (rules.first.get_attribute("aria-label") or "")
    shot(page, "run-page")

    # Unticking a range hides its histograms and its boxes; ticking it brings them back.
    fncr = run.figures["ranges"]
    k = next(k for k, entry in enumerate(fncr)
             if any(v is not None for part in entry["parts"].values() for s in part["fncr"].values() for v in s))
    label = _label(report["ranges"][k])

    def fncr_labels() -> list[str]:
        return page.evaluate("[...document.querySelectorAll('#chart-fncr svg.marks text')].map(t => t.textContent)")

    assert label in fncr_labels()
    page.locator(f"#chart-controls input[name=range][value='{k}']").uncheck()
    page.wait_for_function(
        f"![...document.querySelectorAll('#chart-fncr svg.marks text')].some(t => t.textContent === '{label}')")
    for chart in ("npr", "pixels"):
        assert page.locator(f"#chart-{chart} .chart-range[data-range='{k}']").is_hidden()
        assert page.locator(f"#chart-{chart} .chart-range:visible").count() == n_ranges - 1
    page.locator(f"#chart-controls input[name=range][value='{k}']").check()
    page.wait_for_function(
        f"[...document.querySelectorAll('#chart-fncr svg.marks text')].some(t => t.textContent === '{label}')")
    assert page.locator("#chart-npr .chart-range:visible").count() == n_ranges

    # The slide table sorted by Dice after SUA refinement: numerically, "—" last either way.
    dice = [row.figure(0).get("dice_sua") for row in RunSlide.objects.filter(run=run)]
    known = sorted(f"{v:.3f}" for v in dice if v is not None)
    assert None in dice and len(known) >= 3
    header = page.locator("#slide-table th", has_text="Dice SUA")
    column = [t.strip() for t in page.locator("#slide-table thead th").all_text_contents()].index(
        header.text_content().strip())

    def dice_column() -> list[str]:
        return [t.strip() for t in page.locator(f"#slide-table tbody td:nth-child({column + 1})").all_text_contents()]

    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert dice_column() == [*sorted(known, key=float), "—"]
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert dice_column() == [*sorted(known, key=float, reverse=True), "—"]
    assert page.locator("#slide-table th[aria-sort]").count() == 1
    assert problems == []


def test_a_pathologist_reads_the_dashboard_but_cannot_run_it_again(
    finished_run: Run, signed_in_page: Any, live_server: Any, problems: list[str],
) -> None:
    page = signed_in_page("pathologist")
    _open_dashboard(page, live_server, finished_run)
    _check_table2(page, _report_json(finished_run))
    assert page.locator("#chart-fncr svg.marks").count() == 1
    assert page.locator("#slide-table tbody tr").count() == RunSlide.objects.filter(run=finished_run).count()
    assert page.locator("button", has_text="Run again").count() == 0
    assert page.locator("button", has_text="review run").count() == 0
    assert problems == []


def test_two_runs_side_by_side_and_the_runs_list_and_form(
    finished_run: Run, people: dict[str, Any], demo_cohorts: dict[str, Any], signed_in_page: Any,
    live_server: Any, problems: list[str],
) -> None:
    # A second run over the same cohorts with the other aggregation; the heatmaps are reused.
    other = services.start_run(
        project=finished_run.project, ensemble=finished_run.ensemble, validation=[demo_cohorts["validation"]],
        test=[demo_cohorts["test_in_domain"], demo_cohorts["test_shifted"]],
        values={"bootstrap": finished_run.settings["bootstrap"], "aggregate": "p90"}, user=people["researcher"])
    assert services.execute(other.pk) == "done"
    other.refresh_from_db()

    page = signed_in_page("researcher")
    page.goto(f"{live_server.url}/runs/")
    assert {t.strip() for t in page.locator(".runs-table tbody td:first-child a").all_text_contents()} == {
        finished_run.name, other.name}
    shot(page, "run-list")
    page.goto(f"{live_server.url}/runs/new/")
    assert page.locator("input[name=bootstrap]").input_value() == str(settings.SUA_BOOTSTRAP)
    shot(page, "run-new")

    page.goto(f"{live_server.url}/runs/{finished_run.pk}/")
    page.select_option("#compare-with", str(other.pk))
    page.locator("form.compare button").click()
    page.wait_for_url(f"**/runs/compare/?a={finished_run.pk}&b={other.pk}")
    differs = [t.strip() for t in page.locator("#settings-diff tr.differs td:first-child").all_text_contents()]
    assert "aggregate" in differs and "seed" not in differs
    f_a = {(d, m, k): b[m]["f_beta"]["mean"] for k, e in enumerate(finished_run.report["ranges"])  # type: ignore[index]
           for d, b in e["domains"].items() for m in ("sua", "baseline")}
    f_b = {(d, m, k): b[m]["f_beta"]["mean"] for k, e in enumerate(other.report["ranges"])  # type: ignore[index]
           for d, b in e["domains"].items() for m in ("sua", "baseline")}
    labels = [_label(e) for e in finished_run.report["ranges"]]  # type: ignore[index]
    rows = page.locator("#f-beta-diff tbody tr").all()
    assert len(rows) == len(f_a)
    changed = 0
    for row in rows:
        domain, method, label, *_ = [t.strip() for t in row.locator("td").all_text_contents()]
        key = (domain, "sua" if method == "SUA" else "baseline", labels.index(label))
        diff = row.locator("td").nth(5)
        if f_a[key] is None or f_b[key] is None:
            assert diff.text_content() == "—"
            continue
        delta = f_b[key] - f_a[key]
        assert float(diff.text_content() or "nan") == pytest.approx(delta, abs=5e-4)
        expected = "better" if delta > 0 else "worse" if delta < 0 else None
        assert (diff.get_attribute("class") or "").split()[1:] == ([expected] if expected else [])
        changed += delta != 0
    shot(page, "run-compare")
    assert problems == []
