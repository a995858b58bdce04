"""The three roles of the portal, as Django groups."""

from __future__ import annotations

from typing import Any

ADMIN = "admin"
PATHOLOGIST = "pathologist"
RESEARCHER = "researcher"
ROLES: tuple[str, ...] = (ADMIN, PATHOLOGIST, RESEARCHER)


def roles_of(user: Any) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    names = {g.name for g in user.groups.all()}
    if user.is_superuser:
        names.add(ADMIN)
    return names & set(ROLES)


def has_role(user: Any, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))
