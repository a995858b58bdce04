"""Slides uploaded through the API, whole or in resumable chunks, good files and bad ones."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from sua_portal.slides.models import Slide, SlideUpload
from tests.slides.conftest import Storage, checks_sent, multipart

pytestmark = pytest.mark.django_db


def _upload(client: Any, cohort: Any, name: str, content: bytes) -> Any:
    body, content_type = multipart("file", name, content)
    return client.generic("POST", f"/api/cohorts/{cohort.pk}/slides/", body, content_type=content_type)


@pytest.mark.parametrize(
    ("name", "width", "height", "levels", "mpp"),
    [("small.svs", 16, 16, 1, 0.499), ("boxes.tiff", 300, 250, 4, None), ("boxes_0.dcm", 16, 16, 1, 0.499)],
)
def test_an_admin_uploads_a_real_slide_and_it_is_stored_with_its_hash(
    name: str, width: int, height: int, levels: int, mpp: float | None, people: dict[str, Any], cohort: Any,
    storage: Storage, testdata: Path, api_for: Any,
) -> None:
    content = (testdata / name).read_bytes()
    response = _upload(api_for(people["admin"]), cohort, name, content)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size_bytes"] == len(content)
    assert (body["width"], body["height"], body["levels"]) == (width, height, levels)
    assert body["mpp"] == pytest.approx(mpp) if mpp else body["mpp"] is None
    assert body["status"] == "uploaded" and body["uploaded_by"] == "admin"
    slide = Slide.objects.get(pk=body["id"])
    stored = storage.media / str(slide.file.name)
    assert stored.read_bytes() == content
    # Django's temporary upload file was moved into storage, not left behind.
    assert storage.files() == [str(stored)]


def test_the_upload_is_hashed_from_disk_not_memory_for_files_over_the_memory_limit(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any, settings: Any,
) -> None:
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # boxes.tiff (7.7 kB) now goes to a temporary file
    response = _upload(api_for(people["admin"]), cohort, "boxes.tiff", (testdata / "boxes.tiff").read_bytes())
    assert response.status_code == 201
    assert len(storage.files()) == 1


BAD_FILES = [
    ("not a slide", "notes.svs", lambda d: b"These are my notes, not a slide.\n" * 20, 400, "not a readable slide"),
    ("a PNG renamed", "boxes.tif", lambda d: (d / "boxes.png").read_bytes(), 400, "not a readable slide"),
    ("a truncated TIFF", "boxes.tiff", lambda d: (d / "boxes.tiff").read_bytes()[:4000], 400, "truncated"),
    ("a truncated SVS", "small.svs", lambda d: (d / "small.svs").read_bytes()[:1500], 400, "truncated"),
    ("an empty file", "empty.svs", lambda d: b"", 400, "empty"),
    ("a wrong extension", "boxes.png", lambda d: (d / "boxes.png").read_bytes(), 400, "not accepted as slides"),
    ("no extension", "slide", lambda d: (d / "boxes.tiff").read_bytes(), 400, "not accepted as slides"),
    ("a TIFF OpenSlide refuses", "unopenable.tiff", lambda d: (d / "unopenable.tiff").read_bytes(), 400,
     "cannot be decoded"),
    ("an SVS whose tiles do not decode", "unreadable.svs", lambda d: (d / "unreadable.svs").read_bytes(), 400,
     "cannot be decoded"),
    ("a parent path in the name", "../x.svs", lambda d: (d / "small.svs").read_bytes(), 400, "contains a path"),
    ("a folder in the name", "a/b.svs", lambda d: (d / "small.svs").read_bytes(), 400, "contains a path"),
    ("a Windows path in the name", "C:\\slides\\b.svs", lambda d: (d / "small.svs").read_bytes(), 400,
     "contains a path"),
]


@pytest.mark.parametrize(("case", "name", "content", "status", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_upload_is_refused_with_a_reason_and_leaves_nothing_behind(
    case: str, name: str, content: Any, status: int, message: str, people: dict[str, Any], cohort: Any,
    storage: Storage, testdata: Path, api_for: Any,
) -> None:
    response = _upload(api_for(people["admin"]), cohort, name, content(testdata))
    assert response.status_code == status, response.content
    assert message in response.json()["detail"], response.json()
    assert storage.files() == []
    assert Slide.objects.count() == 0


def test_the_same_slide_twice_in_a_cohort_is_a_conflict_naming_the_first(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "small.svs").read_bytes()
    first = _upload(client, cohort, "small.svs", content).json()
    files_before = storage.files()
    again = _upload(client, cohort, "renamed.svs", content)
    assert again.status_code == 409
    assert again.json()["slide"] == first["id"] and "already in this cohort" in again.json()["detail"]
    assert storage.files() == files_before and Slide.objects.count() == 1


def test_the_same_slide_may_be_in_two_cohorts(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    from sua_portal.slides.models import Cohort

    other = Cohort.objects.create(project=people["own"], name="Camelyon test", split="test")
    client = api_for(people["admin"])
    content = (testdata / "small.svs").read_bytes()
    assert _upload(client, cohort, "small.svs", content).status_code == 201
    assert _upload(client, other, "small.svs", content).status_code == 201


def test_a_slide_over_the_size_limit_is_refused_with_413(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any, settings: Any,
) -> None:
    settings.SLIDE_MAX_UPLOAD_BYTES = 5000
    response = _upload(api_for(people["admin"]), cohort, "boxes.tiff", (testdata / "boxes.tiff").read_bytes())
    assert response.status_code == 413
    assert "more than" in response.json()["detail"]
    assert storage.files() == [] and Slide.objects.count() == 0


def test_a_body_far_over_the_size_limit_is_refused_before_it_is_read(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any, settings: Any,
) -> None:
    settings.SLIDE_MAX_UPLOAD_BYTES = 1000
    response = _upload(api_for(people["admin"]), cohort, "big.svs", b"x" * 200_000)
    assert response.status_code == 413
    assert storage.files() == []


def test_an_upload_without_a_file_field_says_what_to_send(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any,
) -> None:
    body, content_type = multipart("other", "small.svs", b"abc")
    response = api_for(people["admin"]).generic(
        "POST", f"/api/cohorts/{cohort.pk}/slides/", body, content_type=content_type
    )
    assert response.status_code == 400 and "'file'" in str(response.json())


# --------------------------------------------------------------------------- resumable uploads


def _start(client: Any, cohort: Any, **body: Any) -> Any:
    return client.post(f"/api/cohorts/{cohort.pk}/uploads/", body, format="json")


def _put(client: Any, upload_id: str, content: bytes, start: int, total: int) -> Any:
    return client.generic(
        "PUT", f"/api/uploads/{upload_id}/", content, content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes {start}-{start + len(content) - 1}/{total}",
    )


def test_a_slide_arrives_in_chunks_and_is_stored_when_complete(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "boxes.tiff").read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    started = _start(client, cohort, filename="boxes.tiff", size=len(content), sha256=digest)
    assert started.status_code == 201 and started.json()["offset"] == 0
    upload_id = started.json()["id"]
    for start in range(0, len(content), 3000):
        response = _put(client, upload_id, content[start : start + 3000], start, len(content))
        assert response.status_code == 200, response.content
        assert response.json()["offset"] == min(len(content), start + 3000)
    assert client.get(f"/api/uploads/{upload_id}/").json()["complete"] is True
    done = client.post(f"/api/uploads/{upload_id}/complete/")
    assert done.status_code == 201, done.content
    slide = Slide.objects.get(pk=done.json()["id"])
    assert slide.sha256 == digest and (storage.media / str(slide.file.name)).read_bytes() == content
    # The staging file was moved into storage and the upload is forgotten.
    assert storage.files() == [str(storage.media / str(slide.file.name))]
    assert not SlideUpload.objects.exists()


def test_an_interrupted_upload_resumes_from_the_offset_the_server_reports(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "boxes.tiff").read_bytes()
    upload_id = _start(client, cohort, filename="boxes.tiff", size=len(content)).json()["id"]
    assert _put(client, upload_id, content[:4096], 0, len(content)).status_code == 200
    # The client lost track (say, it crashed): it asks where the upload stands ...
    status = client.get(f"/api/uploads/{upload_id}/")
    assert status.status_code == 200 and status.json()["offset"] == 4096 and status.json()["complete"] is False
    # ... a chunk from the wrong place is refused with the offset to go on from ...
    wrong = _put(client, upload_id, content[:100], 0, len(content))
    assert wrong.status_code == 409 and wrong.json()["offset"] == 4096
    # ... and it sends the rest from there, here with an Upload-Offset header instead of Content-Range.
    rest = client.generic("PATCH", f"/api/uploads/{upload_id}/", content[4096:],
                          content_type="application/octet-stream", HTTP_UPLOAD_OFFSET="4096")
    assert rest.status_code == 200 and rest.json()["offset"] == len(content)
    done = client.post(f"/api/uploads/{upload_id}/complete/")
    assert done.status_code == 201
    assert done.json()["sha256"] == hashlib.sha256(content).hexdigest()


def test_completing_before_every_byte_arrived_is_refused_and_the_upload_can_go_on(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "small.svs").read_bytes()
    upload_id = _start(client, cohort, filename="small.svs", size=len(content)).json()["id"]
    _put(client, upload_id, content[:1000], 0, len(content))
    early = client.post(f"/api/uploads/{upload_id}/complete/")
    assert early.status_code == 409 and early.json()["offset"] == 1000
    _put(client, upload_id, content[1000:], 1000, len(content))
    assert client.post(f"/api/uploads/{upload_id}/complete/").status_code == 201


def test_a_checksum_mismatch_is_refused_and_the_bytes_are_discarded(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "small.svs").read_bytes()
    upload_id = _start(client, cohort, filename="small.svs", size=len(content), sha256="0" * 64).json()["id"]
    _put(client, upload_id, content, 0, len(content))
    response = client.post(f"/api/uploads/{upload_id}/complete/")
    assert response.status_code == 400 and "damaged on the way" in response.json()["detail"]
    assert storage.files() == [] and not SlideUpload.objects.exists() and not Slide.objects.exists()


def test_a_chunked_upload_that_is_not_a_slide_is_refused_at_the_end_and_leaves_nothing(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    content = (testdata / "unreadable.svs").read_bytes()
    upload_id = _start(client, cohort, filename="unreadable.svs", size=len(content)).json()["id"]
    _put(client, upload_id, content, 0, len(content))
    response = client.post(f"/api/uploads/{upload_id}/complete/")
    assert response.status_code == 400 and "cannot be decoded" in response.json()["detail"]
    assert storage.files() == [] and not SlideUpload.objects.exists() and not Slide.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"filename": "../etc/x.svs", "size": 10}, 400, "contains a path"),
        ({"filename": "a/b.svs", "size": 10}, 400, "contains a path"),
        ({"filename": "slide.jpg", "size": 10}, 400, "not accepted as slides"),
        ({"filename": "slide.svs", "size": 0}, 400, "empty"),
        ({"filename": "slide.svs", "size": 10**13}, 413, "more than"),
        ({"filename": "slide.svs", "size": 10, "sha256": "xyz"}, 400, "64 hexadecimal"),
    ],
    ids=["parent path", "folder", "extension", "empty", "too big", "bad sha"],
)
def test_a_resumable_upload_is_refused_at_the_start_when_its_name_or_size_is_wrong(
    body: dict[str, Any], status: int, message: str, people: dict[str, Any], cohort: Any, storage: Storage,
    api_for: Any,
) -> None:
    response = _start(api_for(people["admin"]), cohort, **body)
    assert response.status_code == status and message in response.json()["detail"]
    assert storage.files() == [] and not SlideUpload.objects.exists()


def test_a_resumable_upload_of_a_slide_already_there_is_refused_at_the_start(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any, add_slide: Any,
) -> None:
    slide = add_slide(cohort, "small.svs", check=False)
    response = _start(api_for(people["admin"]), cohort, filename="copy.svs", size=slide.size_bytes,
                      sha256=slide.sha256)
    assert response.status_code == 409 and response.json()["slide"] == slide.pk


def test_a_chunk_past_the_announced_size_or_without_a_position_is_refused(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    upload_id = _start(client, cohort, filename="slide.svs", size=10).json()["id"]
    assert _put(client, upload_id, b"x" * 11, 0, 11).status_code == 400
    too_long = client.generic("PUT", f"/api/uploads/{upload_id}/", b"x" * 11,
                              content_type="application/octet-stream", HTTP_UPLOAD_OFFSET="0")
    assert too_long.status_code == 400 and "past the 10 bytes" in too_long.json()["detail"]
    nowhere = client.generic("PUT", f"/api/uploads/{upload_id}/", b"x", content_type="application/octet-stream")
    assert nowhere.status_code == 400 and "Content-Range" in nowhere.json()["detail"]
    assert client.get(f"/api/uploads/{upload_id}/").json()["offset"] == 0


def test_cancelling_a_resumable_upload_removes_its_bytes(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    upload_id = _start(client, cohort, filename="slide.svs", size=10).json()["id"]
    _put(client, upload_id, b"12345", 0, 10)
    assert storage.files()
    assert client.delete(f"/api/uploads/{upload_id}/").status_code == 204
    assert storage.files() == [] and not SlideUpload.objects.exists()


def test_deleting_a_slide_removes_its_file_once_committed(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any, add_slide: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    slide = add_slide(cohort, "small.svs", check=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_for(people["admin"]).delete(f"/api/slides/{slide.pk}/").status_code == 204
    assert storage.files() == [] and not Slide.objects.exists()


def test_an_upload_queues_the_slide_check_after_commit(
    people: dict[str, Any], cohort: Any, storage: Storage, testdata: Path, api_for: Any,
    django_capture_on_commit_callbacks: Any, monkeypatch: Any,
) -> None:
    sent = checks_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(api_for(people["admin"]), cohort, "small.svs", (testdata / "small.svs").read_bytes())
        assert sent == []  # not before the slide's row is committed
    assert sent == [response.json()["id"]]


def test_an_admin_creates_renames_and_labels(
    people: dict[str, Any], storage: Storage, api_for: Any, add_slide: Any,
) -> None:
    client = api_for(people["admin"])
    created = client.post("/api/cohorts/", {"project": people["own"].pk, "name": "Sentinel", "split": "test",
                                            "domain": "shifted"}, format="json")
    assert created.status_code == 201 and created.json()["project"] == people["own"].pk
    twice = client.post("/api/cohorts/", {"project": people["own"].pk, "name": "Sentinel", "split": "test"},
                        format="json")
    assert twice.status_code == 400 and "exists in this project" in str(twice.json())
    from sua_portal.slides.models import Cohort

    slide = add_slide(Cohort.objects.get(pk=created.json()["id"]), "small.svs", check=False)
    patched = client.patch(f"/api/slides/{slide.pk}/", {"has_tumor": False, "name": "S-1"}, format="json")
    assert patched.status_code == 200 and patched.json()["has_tumor"] is False and patched.json()["name"] == "S-1"
    listed = client.get(f"/api/cohorts/{created.json()['id']}/").json()
    assert listed["slide_count"] == 1 and listed["ready_count"] == 0


def test_deleting_a_cohort_removes_its_slide_files_and_unfinished_uploads(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any, add_slide: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    add_slide(cohort, "small.svs", check=False)
    add_slide(cohort, "boxes.tiff", check=False)
    client = api_for(people["admin"])
    upload_id = _start(client, cohort, filename="slide.svs", size=10).json()["id"]
    _put(client, upload_id, b"12345", 0, 10)
    assert len(storage.files()) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/cohorts/{cohort.pk}/").status_code == 204
    assert storage.files() == [] and not Slide.objects.exists() and not SlideUpload.objects.exists()
