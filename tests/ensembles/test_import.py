"""Admins import ensemble members through the API; each is dry-run on one tile before it is accepted."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sua_portal.ensembles.models import Ensemble, EnsembleMember
from tests.ensembles.conftest import member_bytes

pytestmark = pytest.mark.django_db

URL = "/api/ensembles/import/"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def post(client: Any, project: Any, files: list[tuple[str, bytes]], **fields: Any) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = {"project": project.pk, "name": "Imported", "tile_size": 128, "level_downsample": 2.0, **fields,
            "members": [SimpleUploadedFile(name, data) for name, data in files]}
    return client.post(URL, body, format="multipart")


def scripted(module: nn.Module) -> bytes:
    out = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), out)
    return out.getvalue()


def test_an_admin_imports_state_dict_and_torchscript_members(
    people: dict[str, Any], api_for: Callable[[Any], Any], media: Path,
) -> None:
    files = [("member-a.pt", member_bytes(1)), ("member-b.pt", member_bytes(2, torchscript=True))]
    response = post(api_for(people["admin"]), people["own"], files)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ready" and body["origin"] == "imported" and body["tile_size"] == 128
    assert [(m["index"], m["format"]) for m in body["members"]] == [(0, "state_dict"), (1, "torchscript")]
    assert body["network_config"]["growth_rate"] == 6  # the tiny configuration, read from the checkpoint
    ensemble = Ensemble.objects.get(pk=body["id"])
    for member in ensemble.members.all():
        with member.checkpoint.open("rb") as fh:
            assert fh.read() == dict(files)[Path(str(member.checkpoint.name)).name.split("-", 2)[2]]
    # Everyone in the project sees it; nobody outside does.
    assert api_for(people["pathologist"]).get(f"/api/ensembles/{ensemble.pk}/").status_code == 200
    assert api_for(people["outsider"]).get(f"/api/ensembles/{ensemble.pk}/").status_code == 404


def _nan_model() -> nn.Module:
    model = nn.Conv2d(3, 2, 1)
    nn.init.constant_(model.weight, float("nan"))
    return model


BROKEN: dict[str, tuple[Callable[[], bytes], str]] = {
    "not a model": (lambda: b"these bytes are no model at all" * 10, "not a TorchScript model or a torch checkpoint"),
    "truncated": (lambda: member_bytes(3)[:5000], "member-0.pt"),
    "three outputs": (lambda: scripted(nn.Conv2d(3, 3, 1)), "3"),
    "NaN output": (lambda: scripted(_nan_model()), "NaN"),
    "weights of another network": (
        lambda: _mismatched_checkpoint(), "weights do not match the network configuration"),
}


def _mismatched_checkpoint() -> bytes:
    from analysis.models import NetworkConfig, build_network

    out = io.BytesIO()
    config = NetworkConfig.preset("tiny").to_dict()
    weights = build_network(NetworkConfig.from_dict({**config, "growth_rate": 4}), seed=0).state_dict()
    torch.save({"config": config, "state_dict": weights}, out)
    return out.getvalue()


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_member_is_refused_with_its_reason_and_nothing_is_stored(
    case: str, people: dict[str, Any], api_for: Callable[[Any], Any], media: Path,
) -> None:
    make, reason = BROKEN[case]
    # A good member first: one bad file refuses the whole ensemble.
    files = [("member-good.pt", member_bytes(1)), ("member-0.pt", make())]
    response = post(api_for(people["admin"]), people["own"], files)
    assert response.status_code == 400, response.content
    message = response.json()["members"][0]
    assert reason in message and "member-0.pt" in message
    assert not Ensemble.objects.exists() and not EnsembleMember.objects.exists()
    assert stored_files(media) == []


def test_tiles_too_small_for_the_overlap_are_refused(
    people: dict[str, Any], api_for: Callable[[Any], Any], media: Path, settings: Any,
) -> None:
    settings.INFERENCE_OVERLAP = 32
    response = post(api_for(people["admin"]), people["own"], [("m.pt", member_bytes(1))], tile_size=64)
    assert response.status_code == 400
    assert "overlap" in response.json()["members"][0]
    assert not Ensemble.objects.exists() and stored_files(media) == []


def test_tiles_whose_core_splits_heatmap_pixels_are_refused(
    people: dict[str, Any], api_for: Callable[[Any], Any], media: Path, settings: Any,
) -> None:
    settings.INFERENCE_OVERLAP, settings.HEATMAP_DOWNSAMPLE = 32, 16
    # At downsample 1 a heatmap pixel is 16 px; a 72 px tile keeps an 8 px core.
    response = post(api_for(people["admin"]), people["own"], [("m.pt", member_bytes(1))], tile_size=72,
                    level_downsample=1.0)
    assert response.status_code == 400
    assert "use a tile size such as 80 px" in response.json()["members"][0]
    assert not Ensemble.objects.exists() and stored_files(media) == []


def test_a_second_ensemble_of_the_same_name_is_refused(
    people: dict[str, Any], api_for: Callable[[Any], Any], media: Path,
) -> None:
    client = api_for(people["admin"])
    assert post(client, people["own"], [("m.pt", member_bytes(1))]).status_code == 201
    before = stored_files(media)
    response = post(client, people["own"], [("m.pt", member_bytes(2))])
    assert response.status_code == 400 and "already exists" in response.json()["members"][0]
    assert Ensemble.objects.count() == 1 and stored_files(media) == before


@pytest.mark.parametrize(("who", "project", "expected"), [
    ("researcher", "own", 403),  # researchers train and run ensembles; importing is the admins' job
    ("pathologist", "own", 403),
    ("outsider", "own", 404),  # an admin, but of another project: the project does not exist for them
    ("anonymous", "own", 403),
])
def test_only_admins_of_the_project_import(
    who: str, project: str, expected: int, people: dict[str, Any], api_for: Callable[[Any], Any], media: Path,
) -> None:
    response = post(api_for(people.get(who)), people[project], [("m.pt", member_bytes(1))])
    assert response.status_code == expected, response.content
    assert not Ensemble.objects.exists() and stored_files(media) == []


def test_a_missing_field_is_named(people: dict[str, Any], api_for: Callable[[Any], Any]) -> None:
    response = api_for(people["admin"]).post(URL, {"project": people["own"].pk, "name": "x"}, format="multipart")
    assert response.status_code == 400 and "members" in response.json()
