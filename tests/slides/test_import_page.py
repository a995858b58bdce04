"""The cohort import page in a real browser: choose a folder, read the plan, import, see each slide's outcome."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sua_portal.slides.models import Cohort, CohortImport, Slide
from tests.conftest import shot
from tests.slides.conftest import Storage
from tests.slides.mirax import write_mirax

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def drop(tmp_path: Path, testdata: Path, synthetic_cohort: Path) -> Path:
    """A folder as a lab would drop it: slides with annotations, an MRXS, a DICOM series, a stray file, a manifest."""
    folder = tmp_path / "drop" / "sentinel"
    folder.mkdir(parents=True)
    for name in ("validation_01.tiff", "validation_01.geojson", "validation_02.tiff"):
        shutil.copy(synthetic_cohort / "validation" / name, folder / name)
    write_mirax(folder, "scan7", images=2)
    (folder / "series3").mkdir()
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(testdata / name, folder / "series3" / name)
    shutil.copy(testdata / "unreadable.svs", folder / "broken.svs")
    (folder / "notes.txt").write_text("scanned on Tuesday")
    (folder / "stray.xml").write_text("<ASAP_Annotations/>")
    (folder / "manifest.csv").write_text(
        "slide,split,domain,tumor_free,mpp\n"
        "validation_01,validation,in-domain,,\n"
        "validation_02,validation,in-domain,,\n"
        "scan7,test,shifted,yes,0.25\n"
        "series3,test,shifted,,\n"
        "broken,test,shifted,,\n"
        "ghost,test,shifted,,\n"
    )
    return folder


def test_an_admin_previews_a_folder_imports_it_and_sees_each_slide_s_outcome(
    people: dict[str, Any], storage: Storage, drop: Path, signed_in_page: Any, live_server: Any,
) -> None:
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/import/")
    page.fill("input[name=cohort]", "Sentinel")
    page.set_input_files("#import-folder", str(drop))
    page.wait_for_selector("#import-table tbody tr", timeout=20_000)
    rows = {row.get_attribute("data-slide"): row.inner_text() for row in page.locator("#import-table tbody tr").all()}
    assert set(rows) == {"validation_01", "validation_02", "scan7", "series3", "broken"}
    assert "MRXS" in rows["scan7"] and "0.25 µm/px" in rows["scan7"] and "Sentinel test (shifted)" in rows["scan7"]
    assert "DICOM" in rows["series3"] and "validation_01.geojson" in rows["validation_01"]
    assert "ghost" in page.locator("[data-problems=rows]").inner_text()
    assert "stray.xml" in page.locator("[data-problems=unmatched]").inner_text()
    assert "notes.txt" in page.locator("[data-problems=left-out]").inner_text()
    assert "5 slides to create in 2 cohorts" in page.locator("#import-summary").inner_text()
    assert not Cohort.objects.exists() and not CohortImport.objects.exists(), "a preview stores nothing"
    shot(page, "import-preview")

    page.click("#import-start")
    page.wait_for_function("document.querySelectorAll('#import-files li[data-state]').length === 5", timeout=60_000)
    states = {li.get_attribute("data-item"): li.get_attribute("data-state")
              for li in page.locator("#import-files li").all()}
    assert states == {"validation_01": "created", "validation_02": "created", "scan7": "created",
                      "series3": "created", "broken": "rejected"}
    assert "not a readable slide" in page.locator("#import-files li[data-item=broken]").inner_text()
    page.wait_for_selector("#import-progress >> text=Done: 5 slides: 4 created, 1 rejected", timeout=10_000)
    shot(page, "import-done")
    slides = {s.name: s for s in Slide.objects.select_related("cohort")}
    assert set(slides) == {"validation_01", "validation_02", "scan7", "series3"}
    assert slides["validation_01"].annotations.count() == 1 and slides["validation_01"].has_tumor is True
    assert (slides["scan7"].cohort.name, slides["scan7"].mpp_override, slides["scan7"].has_tumor) == (
        "Sentinel test (shifted)", 0.25, False)
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('sua-import:')).length") == 0


def test_bad_manifest_shows_the_errors_and_the_import_cannot_start(
    people: dict[str, Any], storage: Storage, drop: Path, signed_in_page: Any, live_server: Any,
) -> None:
    (drop / "manifest.csv").write_text("slide,split,stain\nvalidation_01,holdout,HE\n")
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/import/")
    page.fill("input[name=cohort]", "Sentinel")
    page.set_input_files("#import-folder", str(drop))
    errors = page.wait_for_selector("[data-problems=errors]", timeout=20_000)
    text = errors.inner_text()
    assert "unknown column 'stain'" in text and "unknown split 'holdout'" in text
    assert page.locator("#import-start").is_disabled()
    shot(page, "import-errors")
    assert not Cohort.objects.exists() and not CohortImport.objects.exists()


def test_an_interrupted_import_goes_on_after_a_reload(
    people: dict[str, Any], storage: Storage, testdata: Path, tmp_path: Path, signed_in_page: Any, live_server: Any,
) -> None:
    archive = tmp_path / "cohort.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(testdata / "boxes.tiff", "c/boxes.tiff")
        zf.write(testdata / "small.svs", "c/small.svs")
        zf.writestr("c/manifest.csv", "slide,split\nboxes,train\nsmall,train\n")
    archive.write_bytes(buffer.getvalue())
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/projects/{people['own'].pk}/import/")
    page.fill("input[name=cohort]", "Zipped")
    # The first try: the network drops (every request for a part is lost: the chunks and the page's question
    # after a failed chunk of how much arrived), so the import stops half done.
    page.route("**/parts/**", lambda route: route.abort())
    page.set_input_files("#import-zip", str(archive))
    page.wait_for_selector("#import-table tbody tr", timeout=20_000)
    assert "manifest c/manifest.csv" in page.locator("#import-chosen").inner_text(), "read from inside the zip"
    page.click("#import-start")
    page.wait_for_selector("#import-files li.failed", timeout=60_000)
    assert CohortImport.objects.count() == 1 and not Slide.objects.exists()
    page.unroute("**/parts/**")
    page.reload()
    page.wait_for_selector("#import-resume:not([hidden])", timeout=10_000)
    assert "2 slides to go" in page.locator("#import-resume").inner_text()
    page.set_input_files("#import-zip", str(archive))
    page.wait_for_selector("#import-progress >> text=Done: 2 slides: 2 created", timeout=60_000)
    assert set(Slide.objects.values_list("name", "cohort__split")) == {("boxes", "train"), ("small", "train")}
    assert CohortImport.objects.count() == 1, "the same import went on; no second one was started"


def test_the_import_page_is_for_admins(people: dict[str, Any], signed_in_page: Any, live_server: Any) -> None:
    page = signed_in_page("researcher")
    response = page.goto(f"{live_server.url}/projects/{people['own'].pk}/import/")
    # The portal's own pages, in words, with the way back: not the server's bare "403 Forbidden".
    assert response.status == 403
    assert page.locator("h1").inner_text() == "This page is not for your role"
    assert page.locator(".error-reason").inner_text() == "Only admins import cohorts."
    assert page.locator("header.topbar a.who").inner_text() == "researcher"
    response = page.goto(f"{live_server.url}/projects/{people['foreign'].pk}/import/")
    assert response.status == 404
    assert page.locator(".error-reason").inner_text() == "No such project."
