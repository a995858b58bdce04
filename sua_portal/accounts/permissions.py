"""Access rules shared by every app: members see a project, admins manage it."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from sua_portal.accounts import roles


class IsAdminRoleOrReadOnly(BasePermission):
    """Reading is for any member; changing is for users in the admin group."""

    message = "Only admins may change this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or roles.has_role(request.user, roles.ADMIN)


class HasRole(BasePermission):
    """Allow users with one of ``view.allowed_roles`` (for writes when ``read_any`` is set)."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        allowed: tuple[str, ...] = getattr(view, "allowed_roles", roles.ROLES)
        if request.method in SAFE_METHODS and getattr(view, "read_any_role", True):
            return True
        return roles.has_role(request.user, *allowed)
