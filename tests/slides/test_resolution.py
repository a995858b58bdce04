"""Slides whose file has no resolution: "resolution unknown" on the pages, an override per slide or
cohort (admins, through the API) used by the scale bar and the sizes, and inference refused until set."""

from __future__ import annotations

from typing import Any

import pytest

from sua_portal.slides.models import Slide

pytestmark = pytest.mark.django_db


@pytest.fixture
def bare(people: dict[str, Any], cohort: Any, add_slide: Any) -> Any:
    """boxes.tiff: its file says nothing about micrometres."""
    slide = add_slide(cohort, "boxes.tiff")
    assert slide.mpp is None and slide.status == Slide.Status.READY
    return slide


@pytest.fixture
def scanned(cohort: Any, add_slide: Any) -> Any:
    """small.svs: an Aperio file with its resolution (0.499 µm/px)."""
    slide = add_slide(cohort, "small.svs")
    assert slide.mpp == pytest.approx(0.499)
    return slide


def test_the_resolution_in_use_is_the_slide_override_then_the_file_then_the_cohort_override(
    bare: Any, scanned: Any, cohort: Any,
) -> None:
    assert bare.effective_mpp is None and bare.mpp_source == "unknown"
    cohort.mpp_override = 0.25
    cohort.save()
    bare.refresh_from_db()
    scanned.refresh_from_db()
    assert (bare.effective_mpp, bare.mpp_source) == (0.25, "cohort override")
    assert (scanned.effective_mpp, scanned.mpp_source) == (pytest.approx(0.499), "file")
    scanned.mpp_override = 0.5
    assert (scanned.effective_mpp, scanned.mpp_source) == (0.5, "slide override")


def test_an_admin_sets_and_clears_a_slide_override_through_the_api(
    people: dict[str, Any], bare: Any, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    before = client.get(f"/api/slides/{bare.pk}/").json()
    assert (before["mpp"], before["mpp_override"], before["effective_mpp"], before["mpp_source"]) == (
        None, None, None, "unknown")
    response = client.patch(f"/api/slides/{bare.pk}/", {"mpp_override": 0.243}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["effective_mpp"], response.json()["mpp_source"]) == (0.243, "slide override")
    assert client.patch(f"/api/slides/{bare.pk}/", {"mpp_override": None}, format="json").json()[
        "effective_mpp"] is None


def test_an_admin_sets_a_cohort_override_for_its_slides_without_one(
    people: dict[str, Any], bare: Any, scanned: Any, cohort: Any, api_for: Any,
) -> None:
    client = api_for(people["admin"])
    response = client.patch(f"/api/cohorts/{cohort.pk}/", {"mpp_override": 0.5}, format="json")
    assert response.status_code == 200 and response.json()["mpp_override"] == 0.5
    slides = {s["name"]: s for s in client.get(f"/api/cohorts/{cohort.pk}/slides/").json()["results"]}
    assert (slides["boxes"]["effective_mpp"], slides["boxes"]["mpp_source"]) == (0.5, "cohort override")
    assert slides["small"]["effective_mpp"] == pytest.approx(0.499)  # its own file wins


@pytest.mark.parametrize(("value", "why"), [
    (0, "between 0.05 and 100"), (-0.25, "between 0.05 and 100"), (250, "between 0.05 and 100"),
    (0.001, "between 0.05 and 100"), ("abc", "valid number"), ("1e999", "valid number"),  # infinity
])
def test_an_impossible_resolution_is_refused_naming_the_field(
    people: dict[str, Any], bare: Any, cohort: Any, api_for: Any, value: Any, why: str,
) -> None:
    client = api_for(people["admin"])
    for url in (f"/api/slides/{bare.pk}/", f"/api/cohorts/{cohort.pk}/"):
        body = '{"mpp_override": %s}' % (value if not isinstance(value, str) or value[0].isdigit() else f'"{value}"')
        response = client.generic("PATCH", url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert list(response.json()) == ["mpp_override"] and why in response.json()["mpp_override"][0]
    bare.refresh_from_db()
    cohort.refresh_from_db()
    assert bare.mpp_override is None and cohort.mpp_override is None


def test_json_nan_is_not_a_resolution(people: dict[str, Any], bare: Any, api_for: Any) -> None:
    response = api_for(people["admin"]).generic("PATCH", f"/api/slides/{bare.pk}/", '{"mpp_override": NaN}',
                                                content_type="application/json")
    assert response.status_code == 400
    assert Slide.objects.get(pk=bare.pk).mpp_override is None


def test_the_sane_range_is_a_setting(people: dict[str, Any], bare: Any, api_for: Any, settings: Any) -> None:
    settings.SLIDE_MPP_MAX = 2.0
    response = api_for(people["admin"]).patch(f"/api/slides/{bare.pk}/", {"mpp_override": 4}, format="json")
    assert response.status_code == 400 and "between 0.05 and 2" in response.json()["mpp_override"][0]


def test_only_admins_set_a_resolution(people: dict[str, Any], bare: Any, cohort: Any, api_for: Any) -> None:
    for role in ("pathologist", "researcher"):
        assert api_for(people[role]).patch(f"/api/slides/{bare.pk}/", {"mpp_override": 0.25},
                                           format="json").status_code == 403
        assert api_for(people[role]).patch(f"/api/cohorts/{cohort.pk}/", {"mpp_override": 0.25},
                                           format="json").status_code == 403
    assert Slide.objects.get(pk=bare.pk).effective_mpp is None


def _page(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_pages_say_resolution_unknown_until_an_override_is_set(
    people: dict[str, Any], bare: Any, scanned: Any, cohort: Any,
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(people["pathologist"])
    viewer = _page(client, f"/slides/{bare.pk}/")
    assert "resolution unknown" in viewer and 'data-mpp=""' in viewer
    assert 'id="scalebar"' not in viewer  # no scale bar to draw
    cohort_page = _page(client, f"/cohorts/{cohort.pk}/")
    assert cohort_page.count("resolution unknown</span>") == 1  # boxes, not small
    assert 'data-stat="unknown-mpp">1<' in cohort_page
    cohort.mpp_override = 0.25
    cohort.save()
    viewer = _page(client, f"/slides/{bare.pk}/")
    assert "resolution unknown" not in viewer and 'data-mpp="0.25"' in viewer and 'id="scalebar"' in viewer
    assert "0.2500 µm/px" in viewer and "(cohort override)" in viewer
    assert "resolution unknown</span>" not in _page(client, f"/cohorts/{cohort.pk}/")


def test_annotation_areas_use_the_resolution_in_use(people: dict[str, Any], bare: Any) -> None:
    from django.test import Client

    from sua_portal.slides.models import Annotation

    Annotation.objects.create(slide=bare, geometry={"type": "MultiPolygon", "coordinates": [
        [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]]})
    client = Client()
    client.force_login(people["researcher"])  # the truth is hidden from pathologists under blind review
    assert "mm²" not in _page(client, f"/slides/{bare.pk}/")
    Slide.objects.filter(pk=bare.pk).update(mpp_override=10.0)  # 100 px = 1 mm
    assert "1.000 mm²" in _page(client, f"/slides/{bare.pk}/")


def test_inference_is_refused_until_the_resolution_is_known(
    people: dict[str, Any], bare: Any, scanned: Any, cohort: Any, api_for: Any,
) -> None:
    from sua_portal.ensembles.models import Ensemble, SlideHeatmap

    ensemble = Ensemble.objects.create(project=people["own"], name="Imported", origin=Ensemble.Origin.IMPORTED)
    client = api_for(people["researcher"])
    response = client.post(f"/api/ensembles/{ensemble.pk}/run/", {"cohorts": [cohort.pk]}, format="json")
    assert response.status_code == 409, response.content
    body = response.json()
    assert "no known resolution ('boxes')" in body["detail"] and "mpp_override" in body["detail"]
    assert body["slides"] == [bare.pk]
    assert not SlideHeatmap.objects.exists()  # nothing queued, not even the slide that has one
    Slide.objects.filter(pk=bare.pk).update(mpp_override=0.5)
    response = client.post(f"/api/ensembles/{ensemble.pk}/run/", {"cohorts": [cohort.pk]}, format="json")
    assert response.status_code == 202 and len(response.json()) == 2


def test_a_queued_slide_whose_resolution_went_away_fails_with_the_reason(people: dict[str, Any], bare: Any) -> None:
    from sua_portal.ensembles import services
    from sua_portal.ensembles.models import Ensemble, SlideHeatmap

    ensemble = Ensemble.objects.create(project=people["own"], name="Imported", origin=Ensemble.Origin.IMPORTED)
    heatmap = SlideHeatmap.objects.create(ensemble=ensemble, slide=bare)
    assert services.infer(heatmap.pk) == "failed"
    heatmap.refresh_from_db()
    assert "no known resolution" in heatmap.failure_reason and not heatmap.segmentation
