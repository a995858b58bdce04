"""The API contract, fuzzed: every operation of /api/schema/, as anonymous and as each role.

Schemathesis reads the schema the portal publishes and sends generated requests (valid and
invalid) to the WSGI app in-process; a 5xx, a status code, media type or body the schema does
not document fails the test. Operations come from the schema, so a new endpoint is fuzzed
without anyone writing a test for it.

Path parameters mostly name real objects made here (a project, cohort, checked slide,
annotation, upload, cohort import, ensemble, heatmap, member, run, verdict, cohort reviewer), so the handlers run and
not only their 404s.
Each request runs in a savepoint that is rolled back, so a DELETE (or a PATCH) of one of
them leaves the next request the same data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.serializers.json import DjangoJSONEncoder
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Generated requests per operation, each sent as every caller.
MAX_EXAMPLES = 4
#: Fixed, so a failure found once is found again.
SEED = 20261201
CALLERS = ("anonymous", "admin", "pathologist", "researcher")
METHODS = ("get", "post", "put", "patch", "delete")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _published_schema() -> dict[str, Any]:
    """What GET /api/schema/ serves (test_the_fuzzed_schema_is_the_published_one checks that)."""
    from drf_spectacular.generators import SchemaGenerator

    generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    # Through JSON, as a client reads it (enums and lazy strings become plain values).
    return json.loads(json.dumps(generated, cls=DjangoJSONEncoder))


@pytest.fixture(scope="module")
def fuzz_data(django_db_setup: Any, django_db_blocker: Any, testdata: Path) -> Iterator[dict[str, Any]]:
    """One project with a member per role and one object of each kind a path parameter names.

    Made once for the module and removed at its end (pytest-django's ``db`` could not keep it: it
    closes the connection after each test).
    """
    from django.contrib.auth.models import Group, User

    from analysis.cohort_import import FileEntry
    from sua_portal.accounts import tokens
    from sua_portal.accounts.models import Membership, Project
    from sua_portal.ensembles.models import Ensemble, SlideHeatmap
    from sua_portal.review.models import CohortReviewer, Verdict
    from sua_portal.runs.models import Region, Run, RunRange, RunSlide
    from sua_portal.runs.services import RunSettings
    from sua_portal.slides import imports, services
    from sua_portal.slides.models import Annotation, Cohort

    with django_db_blocker.unblock():
        project = Project.objects.create(name="Fuzzed")
        users = {}
        for role in (*CALLERS[1:], "pathologist"):
            name = f"fuzz-{role}" if role not in users else "fuzz-guest"
            user = User.objects.create_user(username=name, password="pw-for-tests")
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            Membership.objects.create(project=project, user=user)
            users[role if role not in users else "guest"] = user
        cohort = Cohort.objects.create(project=project, name="Fuzz validation", split="validation")
        slide = services.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff", user=users["admin"],
                                     queue_check=False)
        slide = services.check_slide(slide.pk) or slide
        annotation = Annotation.objects.create(
            slide=slide, author=users["pathologist"],
            geometry={"type": "MultiPolygon", "coordinates": [[[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]]},
        )
        upload = services.start_upload(cohort, filename="next.tiff", size=1000, user=users["admin"])
        cohort_import = imports.start_import(project, imports.ImportRequest(
            files=(FileEntry("drop/next.tiff", 1000),), cohort="Fuzz import", split="test"), user=users["admin"])
        ensemble = Ensemble.objects.create(project=project, name="Fuzz ensemble", origin=Ensemble.Origin.IMPORTED)
        heatmap = SlideHeatmap.objects.create(ensemble=ensemble, slide=slide)
        # A finished run with one range and the slide (no files: its downloads answer 404).
        run = Run.objects.create(project=project, name="Fuzz run", ensemble=ensemble, ensemble_name=ensemble.name,
                                 settings=RunSettings.defaults().to_dict(), status=Run.Status.DONE, aggregate="mean")
        run_range = RunRange.objects.create(run=run, index=0, lower=0.55, upper=0.95, sua_threshold=0.5)
        run_slide = RunSlide.objects.create(run=run, slide=slide, heatmap=heatmap, name=slide.name,
                                            cohort_name=cohort.name, role="validation", domain="validation",
                                            has_tumor=True, downsample=16.0, figures=[{"nprs": 1, "flagged": 1}])
        # A flagged region of the (review) run with a pathologist's verdict; the cohort names its two reviewers.
        region = Region.objects.create(
            run=run, run_slide=run_slide, run_range=run_range, label=1, area_px=4, score=0.8, flagged=True,
            geometry={"type": "Polygon", "coordinates": [[[0, 0], [32, 0], [32, 32], [0, 32], [0, 0]]]},
            x=0, y=0, width=32, height=32)
        verdict = Verdict.objects.create(run=run, region=region, reviewer=users["pathologist"], verdict="tumor")
        assignment = CohortReviewer.objects.create(cohort=cohort, reviewer=users["pathologist"], slot=1)
        CohortReviewer.objects.create(cohort=cohort, reviewer=users["guest"], slot=2)
        # Personal API tokens, as a researcher's script sends them.
        keys = {role: tokens.issue(users[role], name="fuzz") for role in CALLERS[1:]}
        headers = {role: {"Authorization": f"Token {key}"} for role, (_, key) in keys.items()}
        yield {
            "headers": {"anonymous": {}, **headers},
            # Path parameter values by the first segment of the path, then by name.
            "objects": {
                "projects": {"id": project.pk, "user_id": users["guest"].pk, "project_pk": project.pk},
                "cohorts": {"id": cohort.pk},
                "slides": {"id": slide.pk, "annotation_id": annotation.pk, "level": 8, "col": 0, "row": 0,
                           "fmt": "jpeg"},
                "uploads": {"id": str(upload.pk)},
                "imports": {"id": cohort_import.pk, "part_id": str(cohort_import.parts.get().pk), "position": 0},
                "ensembles": {"id": ensemble.pk},
                "heatmaps": {"id": heatmap.pk, "kind": "entropy", "level": 0, "col": 0, "row": 0},
                "runs": {"id": run.pk, "name": "slides.csv", "slide": slide.pk, "index": 0, "method": "sua",
                         "level": 0, "col": 0, "row": 0},
                "review": {"run": run.pk, "verdict": verdict.pk, "assignment": assignment.pk},
                "tokens": {"id": keys["admin"][0].pk},
            },
        }
        # Committed for the module (each request's changes are rolled back), removed at its end.
        project.delete()
        User.objects.filter(pk__in=[u.pk for u in users.values()]).delete()


@pytest.fixture(autouse=True)
def _one_request_at_a_time() -> Iterator[None]:
    """Keep the test's database connection (and transaction) open across in-process requests.

    Django closes a connection that is inside a transaction when a request starts or ends;
    its test client avoids that the same way (and reconnects afterwards, hence per test).
    """
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True, scope="module")
def _no_tasks_left() -> Iterator[None]:
    yield
    from sua_portal.celery import app

    # Training and inference queued by the fuzzer belong to rolled-back rows: drop them.
    app.control.purge()


def _load() -> Any:
    from sua_portal.wsgi import application

    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
        "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": False}},
    })
    loaded = schemathesis.openapi.from_dict(_published_schema(), config=config)
    loaded.app = application
    return loaded


schema = _load()
_objects: dict[str, dict[str, Any]] = {}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    # Three requests in four name the real objects; the rest keep the generated values (404s mostly).
    if not path_parameters:
        return st.just(path_parameters)
    segment = context.operation.path.strip("/").split("/")[1]
    real = {**path_parameters, **{k: v for k, v in _objects.get(segment, {}).items() if k in path_parameters}}
    return st.sampled_from([real, real, real, path_parameters])


def test_the_fuzzed_schema_is_the_published_one(db: None, make_user: Any) -> None:
    # Runs first, and marks the module as one that needs the test database.
    from django.test import Client

    client = Client()
    client.force_login(make_user("reader", "researcher"))
    served = client.get("/api/schema/?format=json")
    assert served.status_code == 200
    assert served.json() == _published_schema()
    operations = [m for ops in served.json()["paths"].values() for m in ops if m in METHODS]
    assert len(operations) >= 51


@schema.parametrize()
@hypothesis.settings(deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_no_request_crashes_the_api_or_breaks_its_schema(case: Any, fuzz_data: dict[str, Any],
                                                          django_db_blocker: Any) -> None:
    from django.db import transaction

    _objects.update(fuzz_data["objects"])
    # Every generated request is sent once per caller: the roles share the cost of generating it.
    for role in CALLERS:
        with django_db_blocker.unblock(), transaction.atomic():
            try:
                case.call_and_validate(headers=fuzz_data["headers"][role], checks=CHECKS)
            except BaseException as exc:
                exc.add_note(f"(sent as {role})")
                raise
            finally:
                transaction.set_rollback(True)


@pytest.mark.parametrize(("query", "named"), [
    ("limit=9223372036854775808", "limit"), ("limit=-1", "limit"), ("limit=0", "limit"), ("limit=ten", "limit"),
    ("limit=1001", "limit"), ("offset=-5", "offset"), ("offset=1e3", "offset"), ("offset=9223372036854775808", "offset"),
])
def test_a_limit_or_offset_out_of_range_is_a_400_naming_it(people: dict[str, Any], api_for: Any, query: str,
                                                            named: str) -> None:
    for url in ("/api/projects/", "/api/slides/", "/api/heatmaps/", "/api/tokens/"):
        response = api_for(people["admin"]).get(f"{url}?{query}")
        assert response.status_code == 400, (url, response.content)
        assert list(response.json()) == [named]


def test_pages_are_bounded_and_link_to_the_next(people: dict[str, Any], api_for: Any) -> None:
    from sua_portal.accounts.models import Membership, Project

    for i in range(3):
        Membership.objects.create(project=Project.objects.create(name=f"p{i}"), user=people["admin"])
    page = api_for(people["admin"]).get("/api/projects/?limit=2&offset=1").json()
    assert page["count"] == 4 and [p["name"] for p in page["results"]] == ["p0", "p1"]
    assert "offset=3" in page["next"] and page["previous"] is not None
    assert api_for(people["admin"]).get("/api/projects/?offset=100").json()["results"] == []
