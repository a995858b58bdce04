"""The API the admin workspace calls: members with their roles, cohorts deleted softly, the ensemble
import's dry run, and a cohort's heatmaps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from sua_portal.accounts import roles
from sua_portal.accounts.models import Membership
from sua_portal.ensembles.models import Ensemble, EnsembleMember, SlideHeatmap
from sua_portal.slides.models import Cohort

pytestmark = pytest.mark.django_db


def _members_url(people: dict[str, Any]) -> str:
    return f"/api/projects/{people['own'].pk}/members/"


def test_an_admin_adds_a_member_with_a_role_changes_it_and_removes_them(
    people: dict[str, Any], api_for: Callable[[Any], Any], make_user: Callable[..., Any],
) -> None:
    newcomer = make_user("newcomer")
    client = api_for(people["admin"])
    added = client.post(_members_url(people), {"username": "newcomer", "role": "pathologist"}, format="json")
    assert added.status_code == 201
    assert {"username": "newcomer", "roles": ["pathologist"]}.items() <= next(
        m for m in added.json() if m["username"] == "newcomer").items()
    assert roles.roles_of(newcomer) == {"pathologist"}

    changed = client.patch(f"{_members_url(people)}{newcomer.pk}/", {"role": "researcher"}, format="json")
    assert changed.status_code == 200
    assert next(m for m in changed.json() if m["username"] == "newcomer")["roles"] == ["researcher"]
    assert roles.roles_of(newcomer) == {"researcher"}  # one role: the pathologist role went

    assert client.delete(f"{_members_url(people)}{newcomer.pk}/").status_code == 204
    assert not Membership.objects.filter(project=people["own"], user=newcomer).exists()
    assert roles.roles_of(newcomer) == {"researcher"}  # leaving a project keeps the role elsewhere


def test_member_changes_that_cannot_be_are_refused_with_a_reason_and_change_nothing(
    people: dict[str, Any], api_for: Callable[[Any], Any], make_user: Callable[..., Any],
) -> None:
    client = api_for(people["admin"])
    url = _members_url(people)
    bad_role = client.post(url, {"username": "researcher", "role": "boss"}, format="json")
    assert bad_role.status_code == 400 and "role" in bad_role.json()
    twice = client.post(url, {"username": "pathologist", "role": "admin"}, format="json")
    assert twice.status_code == 400 and "already a member" in twice.json()["username"][0]
    assert roles.roles_of(people["pathologist"]) == {"pathologist"}

    own = client.patch(f"{url}{people['admin'].pk}/", {"role": "pathologist"}, format="json")
    assert own.status_code == 403 and "your own role" in own.json()["detail"]
    assert roles.roles_of(people["admin"]) == {"admin"}

    last = client.delete(f"{url}{people['admin'].pk}/")
    assert last.status_code == 409 and "last admin" in last.json()["detail"]
    assert Membership.objects.filter(project=people["own"], user=people["admin"]).exists()

    # Another admin in the project: then the first may leave.
    second = make_user("second-admin", "admin")
    Membership.objects.create(project=people["own"], user=second)
    assert api_for(second).delete(f"{url}{people['admin'].pk}/").status_code == 204

    for role in ("pathologist", "researcher"):
        refused = api_for(people[role]).patch(f"{url}{people[role].pk}/", {"role": "admin"}, format="json")
        assert refused.status_code == 403
    assert api_for(people["outsider"]).patch(f"{url}{people['pathologist'].pk}/", {"role": "admin"},
                                             format="json").status_code == 404
    assert roles.roles_of(people["pathologist"]) == {"pathologist"}


def test_a_cohort_deleted_softly_leaves_the_lists_but_keeps_its_page_slides_and_name(
    people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    client = api_for(people["admin"])
    cohort = Cohort.objects.create(project=people["own"], name="Sentinel test", split="test", domain="shifted")
    assert client.patch(f"/api/cohorts/{cohort.pk}/", {"archived": True}, format="json").json()["archived"] is True
    assert [c["name"] for c in client.get("/api/cohorts/").json()["results"]] == []
    assert [c["name"] for c in client.get("/api/cohorts/?archived=true").json()["results"]] == ["Sentinel test"]
    assert client.get(f"/api/cohorts/{cohort.pk}/").status_code == 200
    clash = client.post("/api/cohorts/", {"project": people["own"].pk, "name": "Sentinel test", "split": "test"},
                        format="json")
    assert clash.status_code == 400 and "archived: restore it" in clash.json()["name"][0]
    assert client.get("/api/cohorts/?archived=maybe").status_code == 400
    assert api_for(people["researcher"]).patch(f"/api/cohorts/{cohort.pk}/", {"archived": False},
                                               format="json").status_code == 403
    assert client.patch(f"/api/cohorts/{cohort.pk}/", {"archived": False}, format="json").status_code == 200
    assert [c["name"] for c in client.get("/api/cohorts/").json()["results"]] == ["Sentinel test"]


def _files(members: list[bytes], extra: list[tuple[str, bytes]] = ()) -> list[SimpleUploadedFile]:  # type: ignore[assignment]
    files = [SimpleUploadedFile(f"member-{i}.pt", data) for i, data in enumerate(members)]
    return files + [SimpleUploadedFile(name, data) for name, data in extra]


def test_the_import_s_dry_run_describes_each_member_and_stores_nothing(
    people: dict[str, Any], api_for: Callable[[Any], Any], members: list[bytes],
) -> None:
    client = api_for(people["admin"])
    stored = Path(settings.MEDIA_ROOT) / "ensembles"

    def member_files() -> set[Path]:
        # The test process's MEDIA_ROOT holds earlier tests' ensembles: only new files count.
        return set(stored.rglob("*")) if stored.exists() else set()

    before = member_files()
    body = {"project": people["own"].pk, "name": "Checked", "tile_size": 128, "level_downsample": 2.0}
    answer = client.post("/api/ensembles/import/", {**body, "dry_run": "true", "members": _files(members)},
                         format="multipart")
    assert answer.status_code == 200, answer.content
    found = answer.json()
    assert found["dry_run"] is True and found["tile_size"] == 128
    assert [m["file"] for m in found["members"]] == ["member-0.pt", "member-1.pt"]
    assert {m["format"] for m in found["members"]} == {"state_dict"}
    assert all(m["parameters"] > 0 and m["size_bytes"] == len(data) for m, data in zip(found["members"], members,
                                                                                       strict=True))
    assert found["members"][0]["config"]["growth_rate"] > 0
    assert not Ensemble.objects.exists() and not EnsembleMember.objects.exists()
    assert member_files() == before

    broken = client.post("/api/ensembles/import/", {**body, "dry_run": "true",
                                                    "members": _files(members, [("notes.pt", b"not a model")])},
                         format="multipart")
    assert broken.status_code == 400 and broken.json()["members"][0].startswith("notes.pt: ")
    assert not Ensemble.objects.exists()

    stored = client.post("/api/ensembles/import/", {**body, "members": _files(members)}, format="multipart")
    assert stored.status_code == 201 and Ensemble.objects.get().members.count() == 2


def test_heatmaps_list_by_cohort(
    people: dict[str, Any], api_for: Callable[[Any], Any], make_ensemble: Callable[..., Any],
    demo_cohorts: dict[str, Any],
) -> None:
    ensemble = make_ensemble()
    for cohort in ("validation", "test_shifted"):
        for slide in demo_cohorts[cohort].slides.all():
            SlideHeatmap.objects.create(ensemble=ensemble, slide=slide)
    client = api_for(people["admin"])
    listed = client.get(f"/api/heatmaps/?ensemble={ensemble.pk}&cohort={demo_cohorts['validation'].pk}").json()
    names = sorted(demo_cohorts["validation"].slides.values_list("name", flat=True))
    assert sorted(h["slide_name"] for h in listed["results"]) == names
