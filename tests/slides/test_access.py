"""Every role against every slides endpoint, in its own and in a foreign project, and anonymous callers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from PIL import Image

from sua_portal.slides import services
from sua_portal.slides.models import Annotation, Cohort, Slide
from tests.slides.conftest import Storage, multipart

pytestmark = pytest.mark.django_db

ROLES = ("admin", "pathologist", "researcher")


def _expect(role: str, own: bool, *, admin_only: bool, method: str, ok: int) -> int:
    if not own:
        # As for projects: a non-admin is refused any change before anything is looked up; a read (or an
        # admin's change) in a foreign project never reveals that the thing exists.
        return 403 if method != "get" and role != "admin" else 404
    if admin_only and role != "admin":
        return 403
    return ok


def _png() -> bytes:
    out = io.BytesIO()
    image = Image.new("L", (150, 125))
    image.paste(255, (10, 10, 40, 40))  # some tumor: an all-zero mask is refused
    image.save(out, format="PNG")
    return out.getvalue()


# (name, method, path, body kind, admin only?, status on success)
CASES = [
    ("read cohort", "get", "/api/cohorts/{c}/", None, False, 200),
    ("create cohort", "post", "/api/cohorts/", "cohort", True, 201),
    ("rename cohort", "patch", "/api/cohorts/{c}/", {"name": "renamed"}, True, 200),
    ("delete cohort", "delete", "/api/cohorts/{c}/", None, True, 204),
    ("list slides", "get", "/api/cohorts/{c}/slides/", None, False, 200),
    ("upload slide", "post", "/api/cohorts/{c}/slides/", "slide", True, 201),
    ("start resumable upload", "post", "/api/cohorts/{c}/uploads/", {"filename": "x.svs", "size": 10}, True, 201),
    ("read upload offset", "get", "/api/uploads/{u}/", None, False, 200),
    ("send chunk", "put", "/api/uploads/{u}/", "chunk", True, 200),
    ("complete upload", "post", "/api/uploads/{u}/complete/", None, True, 201),
    ("cancel upload", "delete", "/api/uploads/{u}/", None, True, 204),
    ("read slide", "get", "/api/slides/{s}/", None, False, 200),
    ("label slide", "patch", "/api/slides/{s}/", {"has_tumor": True}, True, 200),
    ("delete slide", "delete", "/api/slides/{s}/", None, True, 204),
    ("check slide again", "post", "/api/slides/{s}/check/", None, True, 202),
    ("metadata", "get", "/api/slides/{s}/metadata/", None, False, 200),
    ("dzi descriptor", "get", "/api/slides/{s}/dzi.dzi", None, False, 200),
    ("dzi tile", "get", "/api/slides/{s}/dzi_files/9/0_0.jpeg", None, False, 200),
    ("thumbnail", "get", "/api/slides/{s}/thumbnail.jpeg?width=64", None, False, 200),
    ("region", "get", "/api/slides/{s}/region.png?left=0&top=0&width=20&height=20", None, False, 200),
    ("list annotations", "get", "/api/slides/{s}/annotations/", None, False, 200),
    ("upload annotation", "post", "/api/slides/{s}/annotations/", "mask", True, 201),
    ("delete annotation", "delete", "/api/slides/{s}/annotations/{a}/", None, True, 204),
]


def _world(project: Any, testdata: Path) -> dict[str, Any]:
    """A cohort with a ready slide (boxes.tiff), an annotation and a fully received resumable upload."""
    cohort = Cohort.objects.create(project=project, name=f"C {project.name}", split="train")
    slide = services.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff", probe=False,
                                 queue_check=False)
    Slide.objects.filter(pk=slide.pk).update(status=Slide.Status.READY, width=300, height=250, levels=4)
    annotation = Annotation.objects.create(slide=slide, geometry={"type": "MultiPolygon", "coordinates": []})
    content = (testdata / "small.svs").read_bytes()
    upload = services.start_upload(cohort, filename="small.svs", size=len(content))
    services.receive_chunk(upload, offset=0, length=len(content), stream=io.BytesIO(content))
    return {"c": cohort.pk, "s": slide.pk, "a": annotation.pk, "u": upload.pk, "p": project.pk}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("own", [True, False], ids=["own", "foreign"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_role_gets_the_right_answer(role: str, own: bool, case: tuple[Any, ...], people: dict[str, Any],
                                         api_for: Any, storage: Storage, testdata: Path) -> None:
    name, method, template, body, admin_only, ok = case
    ids = _world(people["own"] if own else people["foreign"], testdata)
    path = template.format(**ids)
    client = api_for(people[role])
    if body == "slide":
        content, content_type = multipart("file", "small.svs", (testdata / "small.svs").read_bytes())
        response = client.generic("POST", path, content, content_type=content_type)
    elif body == "mask":
        # The slide has its ground truth (the world's annotation): this one replaces it.
        content, content_type = multipart("file", "mask.png", _png(), replace="true")
        response = client.generic("POST", path, content, content_type=content_type)
    elif body == "chunk":
        response = client.generic("PUT", path, b"", content_type="application/octet-stream",
                                  HTTP_UPLOAD_OFFSET=str(Path(testdata / "small.svs").stat().st_size))
    elif body == "cohort":
        response = client.post(path, {"project": ids["p"], "name": "new", "split": "test"}, format="json")
    else:
        response = getattr(client, method)(path, body, format="json") if body else getattr(client, method)(path)
    expected = _expect(role, own, admin_only=admin_only, method=method, ok=ok)
    assert response.status_code == expected, (name, response.status_code, response.content[:300])


ANONYMOUS = [
    ("get", "/api/cohorts/"), ("get", "/api/cohorts/{c}/"), ("get", "/api/cohorts/{c}/slides/"),
    ("post", "/api/cohorts/{c}/slides/"), ("post", "/api/cohorts/{c}/uploads/"), ("get", "/api/uploads/{u}/"),
    ("put", "/api/uploads/{u}/"), ("post", "/api/uploads/{u}/complete/"), ("get", "/api/slides/"),
    ("get", "/api/slides/{s}/"), ("get", "/api/slides/{s}/dzi.dzi"), ("get", "/api/slides/{s}/dzi_files/9/0_0.jpeg"),
    ("get", "/api/slides/{s}/thumbnail.jpeg"), ("get", "/api/slides/{s}/region.png?left=0&top=0&width=5&height=5"),
    ("get", "/api/slides/{s}/metadata/"), ("get", "/api/slides/{s}/annotations/"),
    ("post", "/api/slides/{s}/annotations/"),
]


@pytest.mark.parametrize(("method", "template"), ANONYMOUS, ids=[f"{m} {t}" for m, t in ANONYMOUS])
def test_anonymous_callers_are_refused(method: str, template: str, people: dict[str, Any], api_for: Any,
                                       storage: Storage, testdata: Path) -> None:
    ids = _world(people["own"], testdata)
    response = getattr(api_for(None), method)(template.format(**ids))
    assert response.status_code in (401, 403)


def test_lists_show_only_the_callers_projects(people: dict[str, Any], api_for: Any, storage: Storage,
                                              testdata: Path) -> None:
    own = _world(people["own"], testdata)
    foreign = _world(people["foreign"], testdata)
    for role in ROLES:
        client = api_for(people[role])
        assert [c["id"] for c in client.get("/api/cohorts/").json()["results"]] == [own["c"]]
        assert [s["id"] for s in client.get("/api/slides/").json()["results"]] == [own["s"]]
        assert client.get(f"/api/slides/?cohort={foreign['c']}").json()["results"] == []
    outsider = api_for(people["outsider"])
    assert [c["id"] for c in outsider.get("/api/cohorts/").json()["results"]] == [foreign["c"]]


@pytest.mark.parametrize("page", ["/cohorts/{c}/", "/slides/{s}/"])
def test_pages_open_for_members_hide_from_others_and_send_strangers_to_sign_in(
    page: str, people: dict[str, Any], storage: Storage, testdata: Path,
) -> None:
    ids = _world(people["own"], testdata)
    path = page.format(**ids)
    member = Client()
    member.force_login(people["pathologist"])
    assert member.get(path).status_code == 200
    outsider = Client()
    outsider.force_login(people["outsider"])
    assert outsider.get(path).status_code == 404
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_the_schema_documents_the_slides_api(people: dict[str, Any], api_for: Any) -> None:
    schema = api_for(people["researcher"]).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = json.loads(schema.content)["paths"]
    for path in ("/api/cohorts/{id}/slides/", "/api/cohorts/{id}/uploads/", "/api/uploads/{id}/complete/",
                 "/api/slides/{id}/dzi.dzi", "/api/slides/{id}/dzi_files/{level}/{col}_{row}.{fmt}",
                 "/api/slides/{id}/annotations/"):
        assert path in paths, sorted(paths)
