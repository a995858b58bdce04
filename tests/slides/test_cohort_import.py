"""Cohort imports through the API: the preview's refusals, a zip cohort end to end, MRXS and DICOM folders."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import openslide
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from sua_portal.slides import services, tasks
from sua_portal.slides.models import Cohort, CohortImport, ImportPart, Slide
from tests.conftest import wait_for
from tests.slides.conftest import Storage, checks_sent
from tests.slides.mirax import write_mirax

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


def _preview(client: Any, project: Any, **body: Any) -> Any:
    return client.post(f"/api/projects/{project.pk}/imports/preview/", {"cohort": "Camelyon", **body}, format="json")


def _start(client: Any, project: Any, **body: Any) -> Any:
    return client.post(f"/api/projects/{project.pk}/imports/", {"cohort": "Camelyon", **body}, format="json")


def _entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": path, "size": len(content)} for path, content in files.items()]


def _send(client: Any, session: dict[str, Any], contents: dict[str, bytes]) -> None:
    """Every file of the import in chunks of CHUNK bytes, as the page sends them."""
    for part in session["parts"]:
        content = contents[part["path"]]
        for start in range(part["offset"], len(content), CHUNK):
            body = content[start:start + CHUNK]
            answer = client.generic(
                "PUT", f"/api/imports/{session['id']}/parts/{part['id']}/", body,
                content_type="application/octet-stream",
                HTTP_CONTENT_RANGE=f"bytes {start}-{start + len(body) - 1}/{len(content)}",
            )
            assert answer.status_code == 200, answer.content


def _complete_all(client: Any, session: dict[str, Any], on_commit: Any = None) -> dict[str, dict[str, Any]]:
    """Make each slide of the import; ``on_commit``: pytest-django's django_capture_on_commit_callbacks, so
    that what waits for the commit (the slide check, removing staged bytes) runs inside a test's transaction."""
    results = {}
    for item in session["items"]:
        if on_commit is None:
            answer = client.post(f"/api/imports/{session['id']}/items/{item['position']}/complete/")
        else:
            with on_commit(execute=True):
                answer = client.post(f"/api/imports/{session['id']}/items/{item['position']}/complete/")
        assert answer.status_code == 200, answer.content
        results[item["name"]] = answer.json()
    return results


def _nothing_stored(storage: Storage) -> None:
    assert not Cohort.objects.exists() and not CohortImport.objects.exists() and not Slide.objects.exists()
    assert not [f for f in storage.files() if not f.endswith(".lock")]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("body", "expected"), [
    ({"files": [{"path": "a.svs", "size": 10}], "manifest": "slide,splitt\na.svs,train\n"}, "unknown column 'splitt'"),
    ({"files": [{"path": "a.svs", "size": 10}], "manifest": "slide,split\na.svs,holdout\n"}, "unknown split 'holdout'"),
    ({"files": [{"path": "x/\uff41.svs", "size": 10}, {"path": "y/A.tif", "size": 10}]},
     "after Unicode NFKC normalisation"),
    ({"files": [{"path": "a.svs", "size": 10}, {"path": "n.txt", "size": 1}], "manifest": "slide\nn.txt\n"},
     "files '.txt' are not slides"),
    ({"files": [{"path": "notes.txt", "size": 10}]}, "there is no slide among the files"),
    ({"files": [{"path": "../../etc/a.svs", "size": 10}]}, "an unsafe path"),
    ({"files": [{"path": "a.svs", "size": 10}], "manifest": "slide,mpp\na.svs,1000\n"}, "mpp must be a resolution"),
    ({"files": [{"path": "a.svs", "size": 10}], "manifest": "slide,annotation\na.svs,a.xml\n"},
     "'a.xml' is not among the files"),
])
def test_a_bad_import_is_refused_with_its_reasons_and_stores_nothing(
    body: dict[str, Any], expected: str, people: dict[str, Any], storage: Storage, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    for answer in (_preview(client, people["own"], **body), _start(client, people["own"], **body)):
        assert answer.status_code == 400, answer.content
        reasons = " ".join(e["reason"] for e in answer.json()["errors"])
        assert expected in reasons and "Nothing was stored" in answer.json()["detail"]
        assert "slides" in answer.json()["plan"], "the plan comes with the refusal, for the page's table"
    _nothing_stored(storage)


@pytest.mark.parametrize(("body", "field"), [
    ({"files": []}, "files"),
    ({"files": [{"path": "a.svs", "size": -1}]}, "files"),
    ({"files": [{"path": "a.svs"}]}, "files"),
    ({"files": "a.svs"}, "files"),
    ({"files": [{"path": "a.svs", "size": 1}], "split": "holdout"}, "split"),
    ({"files": [{"path": "a.svs", "size": 1}], "cohort": ""}, "cohort"),
])
def test_a_malformed_request_names_the_field(
    body: dict[str, Any], field: str, people: dict[str, Any], storage: Storage, api_for: Any,
) -> None:
    answer = _preview(api_for(people["admin"]), people["own"], **body)
    assert answer.status_code == 400 and field in answer.json(), answer.content
    _nothing_stored(storage)


def test_an_existing_cohort_of_another_split_is_an_error_and_one_of_the_same_split_is_added_to(
    people: dict[str, Any], storage: Storage, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    Cohort.objects.create(project=people["own"], name="Camelyon", split="train")
    answer = _preview(client, people["own"], files=[{"path": "a.svs", "size": 1}], split="test")
    assert answer.status_code == 400 and "exists as train / in-domain" in answer.json()["detail"]
    answer = _preview(client, people["own"], files=[{"path": "a.svs", "size": 1}], split="train")
    assert answer.status_code == 200 and answer.json()["cohorts"][0]["exists"] is True


def test_only_admins_of_the_project_import(people: dict[str, Any], storage: Storage, api_for: Any) -> None:
    body = {"files": [{"path": "a.svs", "size": 1}]}
    assert _preview(api_for(people["pathologist"]), people["own"], **body).status_code == 403
    assert _preview(api_for(people["outsider"]), people["own"], **body).status_code == 404
    assert _preview(api_for(None), people["own"], **body).status_code in (401, 403)
    _nothing_stored(storage)


def test_a_preview_lists_what_would_be_created_missing_and_unmatched(
    people: dict[str, Any], storage: Storage, api_for: Any,
) -> None:
    files = [{"path": "c/a.svs", "size": 10}, {"path": "c/b.svs", "size": 10}, {"path": "c/zz.xml", "size": 1},
             {"path": "c/readme.md", "size": 1}, {"path": "c/manifest.csv", "size": 30}]
    answer = _preview(api_for(people["admin"]), people["own"], files=files, manifest_path="c/manifest.csv",
                      manifest="slide,split,domain\na,validation,shifted\nghost,test,\n")
    assert answer.status_code == 200, answer.content
    plan = answer.json()
    assert [(s["name"], s["split"], s["domain"], s["cohort"]) for s in plan["slides"]] == [
        ("a", "validation", "shifted", "Camelyon")]
    assert plan["missing_from_manifest"] == ["b"] and plan["unmatched_annotations"] == ["c/zz.xml"]
    assert [r["reason"] for r in plan["rows_without_files"]] == ["slide 'ghost' is not among the files"]
    assert [r["where"] for r in plan["left_out"]] == ["c/readme.md"]
    _nothing_stored(storage)


# --------------------------------------------------------------------------- uploads


def test_chunks_resume_from_the_offset_and_a_slide_waits_for_all_its_files(
    people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    content = (testdata / "boxes.tiff").read_bytes()
    session = _start(client, people["own"], files=[{"path": "boxes.tiff", "size": len(content)}]).json()
    (part,) = session["parts"]
    url = f"/api/imports/{session['id']}/parts/{part['id']}/"
    first = client.generic("PUT", url, content[:1000], content_type="application/octet-stream",
                           HTTP_CONTENT_RANGE=f"bytes 0-999/{len(content)}")
    assert first.status_code == 200 and first.json()["offset"] == 1000
    early = client.post(f"/api/imports/{session['id']}/items/0/complete/")
    assert early.status_code == 409 and early.json()["offset"] == 1000 and "boxes.tiff" in early.json()["detail"]
    wrong = client.generic("PUT", url, content[:10], content_type="application/octet-stream",
                           HTTP_CONTENT_RANGE=f"bytes 0-9/{len(content)}")
    assert wrong.status_code == 409 and wrong.json()["offset"] == 1000
    # After a reload the page asks the import where each file stands.
    assert client.get(f"/api/imports/{session['id']}/").json()["parts"][0]["offset"] == 1000
    rest = client.generic("PUT", url, content[1000:], content_type="application/octet-stream",
                          HTTP_UPLOAD_OFFSET="1000")
    assert rest.status_code == 200 and rest.json()["offset"] == len(content)
    session = client.get(f"/api/imports/{session['id']}/").json()
    result = _complete_all(client, session, django_capture_on_commit_callbacks)["boxes"]
    assert result["state"] == "created" and result["done"] is True
    slide = Slide.objects.get(pk=result["slide"])
    assert (storage.media / str(slide.file.name)).read_bytes() == content
    assert not ImportPart.objects.exists(), "a slide's uploads are forgotten once it is made"
    assert not list(storage.staging.glob("*.part"))
    again = client.post(f"/api/imports/{session['id']}/items/0/complete/")
    assert again.status_code == 200 and again.json()["slide"] == slide.pk, "completing twice changes nothing"


def test_a_file_that_is_not_a_slide_is_rejected_with_the_reason_and_the_others_go_on(
    people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    contents = {"c/good.svs": (testdata / "small.svs").read_bytes(), "c/bad.svs": b"not a slide at all" * 10,
                "c/good.xml": b"<ASAP_Annotations><Annotations/></ASAP_Annotations>"}
    session = _start(client, people["own"], files=_entries(contents)).json()
    _send(client, session, contents)
    results = _complete_all(client, session, django_capture_on_commit_callbacks)
    assert results["bad"]["state"] == "rejected" and "not a readable slide" in results["bad"]["reason"]
    assert results["good"]["state"] == "rejected" and "good.xml" in results["good"]["reason"], \
        "an annotation that outlines nothing keeps its slide out (never a silently empty truth)"
    assert not Slide.objects.exists() and Cohort.objects.filter(name="Camelyon").exists()
    assert not list(storage.staging.glob("*.part"))


# --------------------------------------------------------------------------- a zip cohort, end to end


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return out.getvalue()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_zip_cohort_is_imported_end_to_end_and_the_worker_checks_its_slides(
    celery_worker_process: Any, people: dict[str, Any], synthetic_cohort: Path, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    splits = {"train": ("train", "in-domain"), "validation": ("validation", "in-domain"),
              "test_in_domain": ("test", "in-domain"), "test_shifted": ("test", "shifted")}
    contents = {f"cohort/{p.relative_to(synthetic_cohort).as_posix()}": p.read_bytes()
                for p in sorted(synthetic_cohort.glob("*/*")) if p.suffix in (".tiff", ".geojson", ".xml")}
    rows = [f"{p.stem},{splits[p.parent.name][0]},{splits[p.parent.name][1]},," + ("0.5" if p.stem == "train_02" else "")
            for p in sorted(synthetic_cohort.glob("*/*.tiff"))]
    manifest = "slide,split,domain,tumor_free,mpp\n" + "\n".join(rows) + "\n"
    contents["cohort/manifest.csv"] = manifest.encode()
    archive = _zip(contents)
    started = _start(client, people["own"], files=_entries(contents), manifest=manifest,
                     manifest_path="cohort/manifest.csv", archive="cohort.zip", archive_size=len(archive))
    assert started.status_code == 201, started.content
    session = started.json()
    assert [p["path"] for p in session["parts"]] == ["cohort.zip"], "a dropped zip travels whole"
    assert sorted(session["plan"]["unmatched_annotations"]) == sorted(
        p for p in contents if p.endswith(".xml")), "GeoJSON is preferred over ASAP XML"
    _send(client, session, {"cohort.zip": archive})
    results = _complete_all(client, session)
    assert {r["state"] for r in results.values()} == {"created"}, results
    cohorts = {c.name: (c.split, c.domain) for c in Cohort.objects.filter(project=people["own"])}
    assert cohorts == {"Camelyon train (in-domain)": ("train", "in-domain"),
                       "Camelyon validation (in-domain)": ("validation", "in-domain"),
                       "Camelyon test (in-domain)": ("test", "in-domain"),
                       "Camelyon test (shifted)": ("test", "shifted")}
    slides = {s.name: s for s in Slide.objects.select_related("cohort")}
    assert len(slides) == 8
    for name, slide in slides.items():
        folder = next(synthetic_cohort.glob(f"*/{name}.tiff")).parent.name
        assert (slide.cohort.split, slide.cohort.domain) == splits[folder]
        annotated = (synthetic_cohort / folder / f"{name}.geojson").exists()
        assert slide.annotations.count() == int(annotated) and results[name]["annotated"] is annotated
        assert slide.has_tumor is annotated, "no annotation file: tumor-free"
    assert slides["train_02"].mpp_override == 0.5 and slides["train_01"].mpp_override is None
    wait_for(lambda: not Slide.objects.filter(status="uploaded").exists(), timeout=120, what="the slide checks")
    assert set(Slide.objects.values_list("status", flat=True)) == {"ready"}
    assert not ImportPart.objects.exists(), "the zip is dropped once every slide is made"


def test_an_entry_that_differs_from_the_preview_is_rejected(
    people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    archive = _zip({"c/boxes.tiff": (testdata / "boxes.tiff").read_bytes()})
    session = _start(client, people["own"], files=[{"path": "c/boxes.tiff", "size": 5}], archive="c.zip",
                     archive_size=len(archive)).json()
    _send(client, session, {"c.zip": archive})
    result = _complete_all(client, session, django_capture_on_commit_callbacks)["boxes"]
    assert result["state"] == "rejected" and "not the 5 the preview was made with" in result["reason"]
    assert not Slide.objects.exists()


# --------------------------------------------------------------------------- MRXS and DICOM


def test_an_mrxs_slide_with_its_data_folder_is_imported(
    people: dict[str, Any], storage: Storage, tmp_path: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    sent = checks_sent(monkeypatch)
    source = tmp_path / "drop" / "scans"
    write_mirax(source, "CMU-1", images=4)
    contents = {p.relative_to(source.parent).as_posix(): p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()}
    preview = _preview(client, people["own"], files=_entries(contents)).json()
    (planned,) = preview["slides"]
    assert (planned["name"], planned["kind"], len(planned["files"])) == ("CMU-1", "mrxs", 4)
    session = _start(client, people["own"], files=_entries(contents)).json()
    _send(client, session, contents)
    result = _complete_all(client, session, django_capture_on_commit_callbacks)["CMU-1"]
    assert result["state"] == "created", result
    slide = Slide.objects.get(pk=result["slide"])
    assert slide.format.startswith("MIRAX") and (slide.width, slide.height, slide.mpp) == (256, 256, 0.25)
    assert sorted(c["path"] for c in slide.companion_files) == [
        "CMU-1/Data0000.dat", "CMU-1/Index.dat", "CMU-1/Slidedat.ini"]
    stored = Path(default_storage.path(str(slide.file.name)))
    assert openslide.OpenSlide(str(stored)).dimensions == (256, 256)
    assert sent == [slide.pk]
    checked = services.check_slide(slide.pk)
    assert checked is not None and checked.status == "ready"
    # Deleting the slide removes its data folder with it.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/slides/{slide.pk}/").status_code == 204
    assert not [f for f in storage.media.rglob("*") if f.is_file()]


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_dicom_series_is_imported_as_one_slide(
    as_zip: bool, people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any,
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    series = {f"case 9/{n}": (testdata / n).read_bytes() for n in ("boxes_0.dcm", "boxes_1.dcm")}
    if as_zip:
        archive = _zip(series)
        contents = {"drop/case 9.zip": archive}
        files = [{"path": "drop/case 9.zip", "size": len(archive), "entries": _entries(series)}]
    else:
        contents = {f"drop/{path}": content for path, content in series.items()}
        files = _entries(contents)
    session = _start(client, people["own"], files=files).json()
    assert [(i["name"]) for i in session["items"]] == ["case 9"]
    _send(client, session, contents)
    result = _complete_all(client, session, django_capture_on_commit_callbacks)["case 9"]
    assert result["state"] == "created", result
    slide = Slide.objects.get(pk=result["slide"])
    assert slide.format.startswith("DICOM") and len(slide.companion_files) == 1
    # The series stays together: the reader finds its thumbnail in the other file.
    stored = Path(default_storage.path(str(slide.file.name)))
    assert "thumbnail" in openslide.OpenSlide(str(stored)).associated_images
    assert services.check_slide(slide.pk).status == "ready"  # type: ignore[union-attr]


def test_two_dicom_series_in_one_folder_are_rejected(
    people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    content = (testdata / "boxes_0.dcm").read_bytes()
    uid = b"1.3.6.1.4.1.5962.99.1.1747645553.419656796.1689669825649.4.0"
    other = content.replace(uid, uid[:-3] + b"9.0")
    contents = {"mixed/a.dcm": content, "mixed/b.dcm": other}
    session = _start(client, people["own"], files=_entries(contents)).json()
    _send(client, session, contents)
    result = _complete_all(client, session, django_capture_on_commit_callbacks)["mixed"]
    assert result["state"] == "rejected" and "holds 2 DICOM series" in result["reason"]


def test_an_import_abandoned_for_two_days_is_given_up_and_a_finished_one_stays(
    people: dict[str, Any], storage: Storage, testdata: Path, api_for: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def last_touched(days: int) -> None:
        """Every import and upload of an import as if nobody had written to it for ``days``."""
        CohortImport.objects.update(updated=timezone.now() - timedelta(days=days))
        ImportPart.objects.update(updated=timezone.now() - timedelta(days=days))

    client = api_for(people["admin"])
    checks_sent(monkeypatch)
    content = (testdata / "boxes.tiff").read_bytes()
    files = [{"path": "boxes.tiff", "size": len(content)}]
    # One import left after its first 1,000 bytes; another one finished.
    left = _start(client, people["own"], cohort="Left", files=files).json()
    part = left["parts"][0]
    sent = client.generic("PUT", f"/api/imports/{left['id']}/parts/{part['id']}/", content[:1000],
                          content_type="application/octet-stream", HTTP_CONTENT_RANGE=f"bytes 0-999/{len(content)}")
    assert sent.status_code == 200
    done = _start(client, people["own"], cohort="Done", files=files).json()
    _send(client, done, {"boxes.tiff": content})
    _complete_all(client, client.get(f"/api/imports/{done['id']}/").json(), django_capture_on_commit_callbacks)
    assert len(list(storage.staging.glob("*.part"))) == 1, "the abandoned import's partial file"
    # Touched a day ago: kept (the admin may come back).
    last_touched(days=1)
    assert tasks.purge_stale_uploads() == 0
    # Three days: given up, its partial file removed; the finished import and its slide stay.
    last_touched(days=3)
    assert tasks.purge_stale_uploads() == 1
    assert list(CohortImport.objects.values_list("name", flat=True)) == ["Done"]
    assert not list(storage.staging.glob("*.part"))
    assert Slide.objects.filter(cohort__name="Done", name="boxes").exists()
