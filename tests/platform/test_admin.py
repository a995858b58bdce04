"""The Django admin (/admin/) for the admin role: staff status and model permissions through the group,
only the rows of one's own projects, and nothing for the other roles."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

MAIN_MODELS = ("Projects", "Memberships", "Cohorts", "Slides", "Annotations", "Ensembles", "Slide heatmaps")


def _demo_passwords() -> dict[str, str]:
    """Run create_demo_users as `make demo` does; the passwords it prints, by user name."""
    out = io.StringIO()
    call_command("create_demo_users", stdout=out)
    return dict(re.findall(r"user (\S+)\s+password (\S+)", out.getvalue()))


def _signed_in(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code == 302 and response["Location"] == "/admin/", response.content.decode()[:2000]
    return client


@pytest.fixture
def demo_data() -> dict[str, Any]:
    """The demo project with a cohort, two slides and an annotation, and a foreign project with its own slide."""
    from sua_portal.accounts.management.commands.create_demo_users import DEMO_PROJECT
    from sua_portal.accounts.models import Project
    from sua_portal.slides.models import Annotation, Cohort, Slide

    demo, _ = Project.objects.get_or_create(name=DEMO_PROJECT)
    foreign = Project.objects.create(name="Someone else's study")
    cohort = Cohort.objects.create(project=demo, name="Demo validation", split="validation")
    other = Cohort.objects.create(project=foreign, name="Their test set", split="test")
    slides = [Slide.objects.create(cohort=cohort, name=f"validation_0{i}", sha256=f"{i}" * 64, file="x.tiff")
              for i in (1, 2)]
    hidden = Slide.objects.create(cohort=other, name="secret_slide", sha256="f" * 64, file="y.tiff")
    Annotation.objects.create(slide=slides[0], original_filename="validation_01.xml",
                              geometry={"type": "MultiPolygon", "coordinates": []})
    return {"demo": demo, "foreign": foreign, "slides": slides, "hidden": hidden}


def test_demo_admin_signs_in_and_sees_the_main_models(demo_data: dict[str, Any]) -> None:
    passwords = _demo_passwords()
    client = _signed_in("demo-admin", passwords["demo-admin"])
    index = client.get("/admin/").content.decode()
    assert "have permission to view or edit anything" not in index
    for name in MAIN_MODELS:
        assert f">{name}</a>" in index, name
    # Django's own users and groups stay with superusers.
    assert ">Users</a>" not in index and ">Groups</a>" not in index


def test_demo_admin_finds_the_slides_of_their_projects_only(demo_data: dict[str, Any]) -> None:
    client = _signed_in("demo-admin", _demo_passwords()["demo-admin"])
    listing = client.get("/admin/slides/slide/").content.decode()
    assert "validation_01" in listing and "validation_02" in listing
    assert "secret_slide" not in listing
    searched = client.get("/admin/slides/slide/?q=validation_02").content.decode()
    assert "validation_02" in searched and "validation_01" not in searched
    assert client.get(f"/admin/slides/slide/{demo_data['hidden'].pk}/change/").status_code == 302  # "not found"
    slide = demo_data["slides"][1]
    page = client.get(f"/admin/slides/slide/{slide.pk}/change/")
    assert page.status_code == 200 and "Resolution override (µm/px)" in page.content.decode()
    projects = client.get("/admin/accounts/project/").content.decode()
    assert demo_data["demo"].name in projects and "Someone else" not in projects
    annotations = client.get("/admin/slides/annotation/").content.decode()
    assert "validation_01.xml" in annotations


def test_demo_admin_fixes_a_slide_resolution_in_the_admin(demo_data: dict[str, Any]) -> None:
    from sua_portal.slides.models import Slide

    client = _signed_in("demo-admin", _demo_passwords()["demo-admin"])
    slide = demo_data["slides"][0]
    page = client.get(f"/admin/slides/slide/{slide.pk}/change/")
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()
            if name in form.fields and name not in ("has_tumor",)}
    data.update({"mpp_override": "0.25", "has_tumor": "unknown", "cohort": slide.cohort_id,
                 "annotations-TOTAL_FORMS": "1", "annotations-INITIAL_FORMS": "1",
                 "annotations-MIN_NUM_FORMS": "0", "annotations-MAX_NUM_FORMS": "1000",
                 "annotations-0-id": slide.annotations.get().pk, "annotations-0-slide": slide.pk})
    response = client.post(f"/admin/slides/slide/{slide.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Slide.objects.get(pk=slide.pk).effective_mpp == 0.25


def test_a_pathologist_and_a_researcher_get_nothing_there(demo_data: dict[str, Any]) -> None:
    passwords = _demo_passwords()
    for role in ("pathologist", "researcher"):
        client = Client()
        response = client.post("/admin/login/?next=/admin/",
                               {"username": f"demo-{role}", "password": passwords[f"demo-{role}"]})
        assert response.status_code == 200
        assert "correct username and password for a staff account" in response.content.decode()
        client.login(username=f"demo-{role}", password=passwords[f"demo-{role}"])
        assert client.get("/admin/slides/slide/").status_code == 302  # to the admin's sign-in page


def test_staff_status_follows_the_admin_group(make_user: Callable[..., Any]) -> None:
    from django.contrib.auth.models import Group, User

    admin_group = Group.objects.get(name="admin")
    user = make_user("newcomer", "pathologist")
    assert not user.is_staff
    user.groups.add(admin_group)
    assert user.is_staff and User.objects.get(pk=user.pk).is_staff
    user.save()  # the object in hand agrees, so saving it keeps staff status
    assert User.objects.get(pk=user.pk).is_staff
    user.groups.remove(admin_group)
    assert not User.objects.get(pk=user.pk).is_staff
    admin_group.user_set.add(user)  # from the group's side
    assert User.objects.get(pk=user.pk).is_staff
    admin_group.user_set.clear()
    assert not User.objects.get(pk=user.pk).is_staff
    # Another group's changes leave staff status alone (a superuser's too).
    boss = User.objects.create_superuser("boss", password="pw-for-tests")
    boss.groups.add(Group.objects.get(name="researcher"))
    boss.groups.clear()
    assert User.objects.get(pk=boss.pk).is_staff


def test_the_admin_group_holds_the_portal_model_permissions_only(db: None) -> None:
    from django.contrib.auth.models import Group

    granted = {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name="admin").permissions.all()
               .select_related("content_type")}
    for codename in ("accounts.change_project", "accounts.add_membership", "slides.change_slide",
                     "slides.delete_annotation", "ensembles.view_ensemble", "ensembles.change_slideheatmap"):
        assert codename in granted
    assert not any(p.startswith(("auth.", "sessions.", "admin.", "contenttypes.")) for p in granted)
    for role in ("pathologist", "researcher"):
        assert not Group.objects.get(name=role).permissions.exists()


def test_the_data_migration_makes_existing_admins_staff(make_user: Callable[..., Any]) -> None:
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import User

    user = make_user("old-admin")
    user.groups.add(__import__("django.contrib.auth.models", fromlist=["Group"]).Group.objects.get(name="admin"))
    User.objects.filter(pk=user.pk).update(is_staff=False)  # as before the migration
    migration = importlib.import_module("sua_portal.accounts.migrations.0004_admin_group_in_django_admin")
    migration.forwards(apps, None)
    assert User.objects.get(pk=user.pk).is_staff
