"""Server-rendered pages; the interactive parts are small static scripts in frontend/src."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.core.demo_build import demo_build_of


@login_required
def projects(request: HttpRequest) -> HttpResponse:
    """Projects and their cohorts: the admin's start page, everyone's "Projects"."""
    visible = Project.objects.visible_to(request.user)
    return render(request, "home.html", {"projects": visible, "roles": sorted(roles.roles_of(request.user))})


@login_required
def demo_build_panel(request: HttpRequest) -> HttpResponse:
    """The demo build's panel alone: the pages' script fetches it again while the build goes on."""
    return render(request, "core/demo_build.html", {"demo_build": demo_build_of(request.user)})
