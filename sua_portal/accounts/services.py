"""Who is in a project and with which role: the admin workspace's member changes.

Roles are portal-wide (Django groups, :mod:`sua_portal.accounts.roles`): a person has one role
everywhere, and a project's members list says who sees the project. Changing a member's role here
changes it in every project; the page says so.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from sua_portal.accounts import roles
from sua_portal.accounts.models import Membership, Project
from sua_portal.errors import Conflict, DomainError, Forbidden


class MemberError(DomainError):
    """A member change a person has to correct (an unknown role)."""


def _check_role(role: str) -> str:
    if role not in roles.ROLES:
        raise MemberError(f"{role!r} is not a role; choose one of {', '.join(roles.ROLES)}.")
    return role


def set_role(user: Any, role: str, *, by: Any) -> None:
    """Give ``user`` the one portal role ``role`` (their other roles go): never one's own role."""
    _check_role(role)
    if user.pk == by.pk:
        raise Forbidden("You cannot change your own role: ask another admin.")
    with transaction.atomic():
        others = Group.objects.filter(name__in=[r for r in roles.ROLES if r != role])
        user.groups.remove(*others)
        user.groups.add(Group.objects.get_or_create(name=role)[0])


def add_member(project: Project, user: Any, *, role: str | None, by: Any) -> Membership:
    """Make ``user`` a member of ``project``; with ``role``, also give them that portal role."""
    if role is not None:
        _check_role(role)
    if role is not None and user.pk == by.pk and role not in roles.roles_of(user):
        raise Forbidden("You cannot change your own role: ask another admin.")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(project=project, user=user)
            if role is not None and role not in roles.roles_of(user):
                set_role(user, role, by=by)
    except IntegrityError:
        raise MemberError(f"{user.get_username()} is already a member of {project.name}.") from None
    return membership


def remove_member(project: Project, user: Any, *, by: Any) -> None:
    """Take ``user`` out of ``project`` (their role elsewhere stays); a project keeps at least one admin."""
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        raise MemberError(f"{user.get_username()} is not a member of {project.name}.")
    if roles.has_role(user, roles.ADMIN):
        members = project.memberships.select_related("user").prefetch_related("user__groups")
        admins = [m.user for m in members if roles.has_role(m.user, roles.ADMIN)]
        if len(admins) <= 1:
            raise Conflict(f"{user.get_username()} is the last admin of {project.name}: add another admin first.")
    membership.delete()
