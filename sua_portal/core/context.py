"""Template context every page gets: the person's roles (the navigation) and the demo build's state."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from sua_portal.accounts import roles
from sua_portal.core.demo_build import demo_build_of


def portal(request: HttpRequest) -> dict[str, Any]:
    """``user_roles``: the roles of the signed-in person; ``demo_build``: the demo build of one of their
    projects while it runs or failed (on the start page, ``/``, also once it is ready)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": set(), "demo_build": None}
    build = demo_build_of(user)
    on_home = getattr(request.resolver_match, "url_name", None) == "home"
    if build is not None and not (build.building or build.step == build.Step.FAILED or on_home):
        build = None
    return {"user_roles": roles.roles_of(user), "demo_build": build}
