"""Server-rendered pages; the interactive parts are small static scripts in frontend/src."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = Project.objects.visible_to(request.user)
    return render(request, "home.html", {"projects": projects, "roles": sorted(roles.roles_of(request.user))})
