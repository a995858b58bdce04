"""Every role against every endpoint, in its own and in a foreign project."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from sua_portal.accounts.models import Membership

ROLES = ("admin", "pathologist", "researcher")


def _expect(role: str, own: bool, *, admin_write: bool, method: str, created: int = 200) -> int:
    if not own:
        # A non-admin is refused any change before we look the project up; reads of a foreign
        # project never reveal that it exists.
        return 403 if method != "get" and role != "admin" else 404
    if admin_write and role != "admin":
        return 403
    return created


CASES = [
    # (name, method, path template, body, admin-only?, status on success)
    ("read project", "get", "/api/projects/{p}/", None, False, 200),
    ("rename project", "patch", "/api/projects/{p}/", {"description": "changed"}, True, 200),
    ("list members", "get", "/api/projects/{p}/members/", None, False, 200),
    ("add member", "post", "/api/projects/{p}/members/", {"username": "newcomer"}, True, 201),
    ("remove member", "delete", "/api/projects/{p}/members/{u}/", None, True, 204),
    ("delete project", "delete", "/api/projects/{p}/", None, True, 204),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("own", [True, False], ids=["own", "foreign"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_role_gets_the_right_answer(role: str, own: bool, case: tuple[Any, ...], people: dict[str, Any],
                                         api_for: Any, make_user: Any) -> None:
    name, method, template, body, admin_only, ok = case
    make_user("newcomer")
    project = people["own"] if own else people["foreign"]
    bystander = make_user("bystander")
    Membership.objects.create(project=project, user=bystander)
    path = template.format(p=project.pk, u=bystander.pk)
    response = getattr(api_for(people[role]), method)(path, body, format="json")
    assert response.status_code == _expect(role, own, admin_write=admin_only, method=method, created=ok), (
        name, response.content)


def test_project_list_shows_only_own_projects(people: dict[str, Any], api_for: Any) -> None:
    for role in ROLES:
        names = [p["name"] for p in api_for(people[role]).get("/api/projects/").json()["results"]]
        assert names == ["Own"]
    assert [p["name"] for p in api_for(people["outsider"]).get("/api/projects/").json()["results"]] == ["Foreign"]


def test_only_admins_create_projects_and_become_members(people: dict[str, Any], api_for: Any) -> None:
    for role in ("pathologist", "researcher"):
        assert api_for(people[role]).post("/api/projects/", {"name": f"by {role}"}).status_code == 403
    response = api_for(people["admin"]).post("/api/projects/", {"name": "Sentinel study"})
    assert response.status_code == 201
    assert people["admin"].projects.filter(name="Sentinel study").exists()


def test_adding_an_unknown_user_says_so_and_changes_nothing(people: dict[str, Any], api_for: Any) -> None:
    response = api_for(people["admin"]).post(f"/api/projects/{people['own'].pk}/members/", {"username": "ghost"})
    assert response.status_code == 400
    assert "no user called 'ghost'" in response.json()["username"][0]
    assert people["own"].memberships.count() == 3


def test_adding_a_member_twice_is_refused(people: dict[str, Any], api_for: Any) -> None:
    url = f"/api/projects/{people['own'].pk}/members/"
    response = api_for(people["admin"]).post(url, {"username": "pathologist"})
    assert response.status_code == 400
    assert "already a member" in response.json()["username"][0]


def test_me_tells_the_roles(people: dict[str, Any], api_for: Any) -> None:
    body = api_for(people["pathologist"]).get("/api/me/").json()
    assert body["username"] == "pathologist" and body["roles"] == ["pathologist"]


ANONYMOUS_API = ["/api/me/", "/api/projects/", "/api/projects/1/", "/api/projects/1/members/", "/api/schema/",
                 "/api/docs/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ANONYMOUS_API)
def test_anonymous_is_refused_on_the_api(path: str, api_for: Any) -> None:
    assert api_for(None).get(path).status_code in (401, 403)


@pytest.mark.django_db
def test_anonymous_pages_send_to_the_login_page(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/accounts/login/").status_code == 200


def test_token_authentication_works(people: dict[str, Any], client: Any) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=people["researcher"])
    response = client.get("/api/projects/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200


def test_schema_and_docs_are_served_to_members(people: dict[str, Any], api_for: Any) -> None:
    client = api_for(people["researcher"])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/projects/" in schema.content.decode()
    assert client.get("/api/docs/").status_code == 200


def test_django_admin_manages_projects_and_members(admin_client: Any) -> None:
    assert admin_client.get("/admin/accounts/project/add/").status_code == 200
    assert User.objects.filter(is_superuser=True).exists()


def test_the_schema_generates_without_warnings(tmp_path: Any) -> None:
    """Name clashes and unresolved authenticators make drf-spectacular warn and write a wrong schema."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "DEBUG": "true"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    schema = (tmp_path / "schema.yml").read_text()
    assert "/api/heatmaps/{id}/image/" in schema and "HeatmapStatusEnum" in schema
