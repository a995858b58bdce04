"""Server-rendered pages of runs: the list, the start form, the dashboard, two runs side by side,
and the cohort page (slides with their review state under the project's review run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from analysis.report import FIGURES, TABLES, report_table_cells
from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.errors import DomainError
from sua_portal.runs import services
from sua_portal.runs.models import Run, RunCohort, RunSlide
from sua_portal.slides.models import Cohort, Slide
from sua_portal.slides.pages import cohort_context

#: The per-slide table's columns: (key in RunSlide.figures, heading), in the order shown.
SLIDE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nprs", "NPRs"), ("true_fns", "True FNs"), ("flagged", "Flagged"), ("dice_before", "Dice before"),
    ("dice_sua", "Dice SUA"), ("dice_baseline", "Dice baseline"),
)


def _can_start(user: Any) -> bool:
    return roles.has_role(user, roles.ADMIN, roles.RESEARCHER)


def _visible_run(request: HttpRequest, pk: int) -> Run:
    run = (Run.objects.filter(project__in=Project.objects.visible_to(request.user), pk=pk)
           .select_related("project", "ensemble", "created_by").first())
    if run is None:
        raise Http404("No such run.")
    return run


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    projects = Project.objects.visible_to(request.user)
    runs = list(services.runs_of(projects).select_related("created_by").order_by("project__name", "-created"))
    review = {r.pk for r in (services.review_run(p) for p in projects) if r is not None}
    flagged = services.flagged_in_review_range(runs)
    for run in runs:
        run.is_reviewed = run.pk in review  # type: ignore[attr-defined]
        run.flagged = flagged.get(run.pk, 0)  # type: ignore[attr-defined]
        ranges = run.settings.get("ranges", [])
        index = run.settings.get("review_range", 0)
        run.review_label = "{:g} to {:g}".format(*ranges[index]) if index < len(ranges) else ""  # type: ignore[attr-defined]
    return render(request, "runs/list.html", {"runs": runs, "can_start": _can_start(request.user)})


def _form_context(request: HttpRequest, project: Project | None, values: dict[str, Any]) -> dict[str, Any]:
    projects = list(Project.objects.visible_to(request.user))
    project = project or (projects[0] if projects else None)
    defaults = services.RunSettings.defaults()
    return {
        "projects": projects, "project": project,
        "ensembles": Ensemble.objects.filter(project=project, status=Ensemble.Status.READY) if project else [],
        "validation": Cohort.objects.active().filter(project=project, split=Cohort.Split.VALIDATION) if project else [],
        "test": Cohort.objects.active().filter(project=project, split=Cohort.Split.TEST) if project else [],
        "defaults": defaults, "values": values,
        "ranges_text": values.get("ranges_text") or ", ".join(f"{lo:g}-{up:g}" for lo, up in defaults.ranges),
        "aggregates": ["mean", "p90", services.AGGREGATE_AUTO],
    }


def _parse_ranges(text: str) -> list[list[float]]:
    ranges = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            lower, _, upper = part.strip().partition("-")
            try:
                ranges.append([float(lower), float(upper)])
            except ValueError:
                raise services.RunError(f"range {part.strip()!r} is not 'lower-upper', e.g. 0.55-0.95") from None
    return ranges


@login_required
def new_run(request: HttpRequest) -> HttpResponse:
    """The start form, the paper's defaults filled in; researchers and admins only."""
    if not _can_start(request.user):
        raise PermissionDenied("Researchers and admins start runs.")
    project = None
    wanted = request.POST.get("project") or request.GET.get("project")
    if wanted and wanted.isdigit():
        project = Project.objects.visible_to(request.user).filter(pk=int(wanted)).first()
    if request.method != "POST":
        return render(request, "runs/new.html", _form_context(request, project, {}))
    values = request.POST
    try:
        if project is None:
            raise services.RunError("choose a project")
        settings_values: dict[str, Any] = {
            "uncertainty": values.get("uncertainty", ""), "aggregate": values.get("aggregate", ""),
            "ranges": _parse_ranges(values.get("ranges", "")),
        }
        for name, cast in (("fn_fraction", float), ("beta", float), ("bootstrap", int), ("seed", int),
                           ("heatmap_downsample", float), ("review_range", int)):
            raw = values.get(name, "").strip()
            if raw:
                try:
                    settings_values[name] = cast(raw)
                except ValueError:
                    raise services.RunError(f"{name.replace('_', ' ')} {raw!r} is not a number") from None
        ensemble = Ensemble.objects.filter(project=project, pk=values.get("ensemble") or 0).first()
        cohorts = {str(c.pk): c for c in Cohort.objects.filter(project=project)}
        run = services.start_run(
            project=project, ensemble=ensemble,
            validation=[cohorts[pk] for pk in values.getlist("validation") if pk in cohorts],
            test=[cohorts[pk] for pk in values.getlist("test") if pk in cohorts],
            values=settings_values, name=values.get("name", ""), user=request.user,
        )
    except DomainError as exc:
        context = _form_context(request, project, {**values.dict(), "ranges_text": values.get("ranges", "")})
        context["error"] = str(exc)
        context["chosen"] = {"validation": values.getlist("validation"), "test": values.getlist("test")}
        return render(request, "runs/new.html", context, status=400)
    return HttpResponseRedirect(reverse("run-page", args=[run.pk]))


def _slide_rows(run: Run, index: int, request: HttpRequest) -> list[dict[str, Any]]:
    """The per-slide table in range ``index``, filtered by ?domain= and ?changed=sua|baseline."""
    rows = []
    domain, changed = request.GET.get("domain"), request.GET.get("changed")
    for row in RunSlide.objects.filter(run=run):
        figure = row.figure(index)
        if domain and row.domain != domain:
            continue
        if changed in ("sua", "baseline") and not (figure.get(f"changed_{changed}") and not row.has_tumor):
            continue
        rows.append({"row": row, "cells": [figure.get(key) for key, _ in SLIDE_COLUMNS],
                     "changed_sua": figure.get("changed_sua"), "changed_baseline": figure.get("changed_baseline")})
    return rows


def _test_domains(cohorts: Sequence[RunCohort]) -> list[str]:
    """The run's test domains in the order its pipeline met them (its cohorts by role, then name)."""
    return list(dict.fromkeys(c.domain for c in cohorts if c.role == RunCohort.Role.TEST))


def _in_domain_order(report: dict[str, Any], domains: Sequence[str]) -> dict[str, Any]:
    """``report`` with each range's domains in ``domains``' order: a JSON column keeps no key order
    (PostgreSQL's jsonb sorts keys by length), while report.json lists domains as they were evaluated."""
    def ordered(block: dict[str, Any]) -> dict[str, Any]:
        rank = {name: i for i, name in enumerate(domains)}
        return dict(sorted(block.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))

    return {**report, "ranges": [{**entry, "domains": ordered(entry.get("domains", {}))}
                                 for entry in report.get("ranges", [])]}


#: Report tables the page does not repeat: the thresholds have their own section (with validation figures).
_TABLES_SHOWN_ELSEWHERE = frozenset({"thresholds"})


@login_required
def run_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The dashboard: state, settings, thresholds, the paper's tables and figures, slides, downloads."""
    run = _visible_run(request, pk)
    ranges = list(run.range_set.all())
    cohorts = list(run.cohorts.all())
    domains = _test_domains(cohorts)
    index = request.GET.get("range", str(run.settings.get("review_range", 0)))
    index_value = int(index) if index.isdigit() and int(index) < max(len(ranges), 1) else 0
    tables = []
    if run.report:
        cells = report_table_cells(_in_domain_order(run.report, domains), (run.figures or {}).get("slide_counts", {}))
        tables = [{"name": name, "caption": TABLES[name], "head": rows[0], "rows": rows[1:]}
                  for name, rows in cells.items() if name in TABLES and name not in _TABLES_SHOWN_ELSEWHERE]
    context = {
        "run": run, "ranges": ranges, "range_index": index_value, "tables": tables,
        # The charts' columns: validation first, then the test domains as the tables list them.
        "chart_parts": ["validation", *domains],
        "figures": [(name, caption) for name, caption in FIGURES.items() if f"{name}.svg" in run.files],
        "slide_rows": _slide_rows(run, index_value, request) if run.status == Run.Status.DONE else [],
        "slide_columns": [heading for _, heading in SLIDE_COLUMNS],
        "cohorts": cohorts,
        "can_start": _can_start(request.user), "is_review": services.review_run(run.project) == run,
        "others": Run.objects.filter(project=run.project, status=Run.Status.DONE).exclude(pk=run.pk),
        "downloads": sorted(run.files) + (["slides.csv"] if run.status == Run.Status.DONE else []),
        "filters": {k: request.GET[k] for k in ("domain", "changed") if request.GET.get(k)},
    }
    return render(request, "runs/run.html", context)


@login_required
@require_POST
def run_again_page(request: HttpRequest, pk: int) -> HttpResponse:
    run = _visible_run(request, pk)
    if not _can_start(request.user):
        raise PermissionDenied("Researchers and admins start runs.")
    try:
        again = services.run_again(run, user=request.user)
    except DomainError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("run-page", args=[run.pk]))
    return HttpResponseRedirect(reverse("run-page", args=[again.pk]))


@login_required
@require_POST
def review_page_action(request: HttpRequest, pk: int) -> HttpResponse:
    run = _visible_run(request, pk)
    if not _can_start(request.user):
        raise PermissionDenied("Researchers and admins choose the review run.")
    try:
        services.choose_review_run(run)
        messages.success(request, f"{run.name} is now the run pathologists review.")
    except DomainError as exc:
        messages.error(request, str(exc))
    return HttpResponseRedirect(reverse("run-page", args=[run.pk]))


def _f_beta_rows(run: Run) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(domain, method, range index) -> F-beta block of a run's report."""
    out = {}
    for k, entry in enumerate((run.report or {}).get("ranges", [])):
        for domain, block in entry["domains"].items():
            for method in ("sua", "baseline"):
                out[(domain, method, k)] = block[method]["f_beta"]
    return out


def _setting_text(value: Any) -> str:
    """A setting as the run page shows it: ranges as "0.55 to 0.95", numbers without trailing zeros."""
    if isinstance(value, list | tuple) and value and all(isinstance(r, list | tuple) and len(r) == 2 for r in value):
        return ", ".join(f"{float(lo):g} to {float(up):g}" for lo, up in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None or value == "" else str(value)


@login_required
def compare_runs(request: HttpRequest) -> HttpResponse:
    """Two runs side by side: settings that differ, Table 2 of each and the difference."""
    a_pk, b_pk = request.GET.get("a", ""), request.GET.get("b", "")
    if not (a_pk.isdigit() and b_pk.isdigit()):
        raise Http404("Choose two runs: ?a=RUN&b=RUN")
    a, b = _visible_run(request, int(a_pk)), _visible_run(request, int(b_pk))
    settings_rows = [(key, a.settings.get(key), b.settings.get(key)) for key in sorted(set(a.settings) | set(b.settings))]
    settings_rows += [("ensemble", a.ensemble_name, b.ensemble_name), ("aggregate used", a.aggregate, b.aggregate)]
    fa, fb = _f_beta_rows(a), _f_beta_rows(b)
    rows = []
    for key in sorted(set(fa) | set(fb), key=lambda k: (k[0], k[1], k[2])):
        ma, mb = (fa.get(key) or {}).get("mean"), (fb.get(key) or {}).get("mean")
        ranges = a.ranges if key[2] < len(a.ranges) else b.ranges
        rows.append({"domain": key[0], "method": "SUA" if key[1] == "sua" else "Baseline",
                     "range": "{:g} to {:g}".format(*ranges[key[2]]), "a": ma, "b": mb,
                     "diff": None if ma is None or mb is None else mb - ma})
    return render(request, "runs/compare.html", {
        "a": a, "b": b, "rows": rows,
        "settings_rows": [(k.replace("_", " "), _setting_text(x), _setting_text(y), x != y) for k, x, y in settings_rows],
        "beta": a.settings.get("beta"),
    })


# --- the cohort page --------------------------------------------------------------------------


@login_required
def cohort_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A cohort's slides (from the slides app) and, per slide, its heatmaps' state and the flags of the
    project's review run in that run's review range (the page names both)."""
    context = cohort_context(request, pk)
    run = services.review_run(context["cohort"].project)
    context["review_run"] = run
    context["review_range"] = services.review_range(run) if run is not None else None
    _add_review_state(context["slides"], run)
    return render(request, "slides/cohort.html", context)


def _add_review_state(slides: Sequence[Slide], run: Run | None) -> None:
    """Per slide: how far its heatmaps are, and how many regions the review run flags on it."""
    heatmaps: dict[int, list[tuple[str, float]]] = {}
    for slide_id, status, progress in SlideHeatmap.objects.filter(slide__in=slides).values_list(
            "slide", "status", "progress"):
        heatmaps.setdefault(slide_id, []).append((status, progress))
    flagged = services.flagged_per_slide(run, slides) if run is not None else {}
    in_run = set(RunSlide.objects.filter(run=run, slide__in=slides).values_list("slide", flat=True)) if run else set()
    for slide in slides:
        states = heatmaps.get(slide.pk, [])
        running = [p for s, p in states if s in ("queued", "running")]
        slide.review_flagged = flagged.get(slide.pk, 0)  # type: ignore[attr-defined]
        slide.in_review_run = slide.pk in in_run  # type: ignore[attr-defined]
        slide.review_state = (  # type: ignore[attr-defined]
            "none" if not states else f"computing {min(running):.0f} %" if running
            else "failed" if all(s == "failed" for s, _ in states) else "done")
