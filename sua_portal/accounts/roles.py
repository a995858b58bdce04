"""The three roles of the portal, as Django groups."""

from __future__ import annotations

from typing import Any

from django.apps import apps as installed_apps
from django.conf import settings

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


# --------------------------------------------------------------------------- the Django admin for the admin role

#: Apps whose models the admin group may see and change in the Django admin (/admin/) for rare fixes.
#: Apps not installed yet (runs, review) are granted as soon as their models exist (see grant_admin_permissions).
PORTAL_APPS: tuple[str, ...] = ("accounts", "core", "slides", "ensembles", "runs", "review")


def grant_admin_permissions(group_model: Any, permission_model: Any) -> int:
    """Give the admin group every model permission of :data:`PORTAL_APPS`; returns how many it lacked.

    Takes the models as arguments so that a data migration can pass its historical ones. Runs after
    every ``migrate`` too (:func:`grant_after_migrate`), so the models of later apps are granted.
    Never Django's own user and group permissions: those stay with superusers.
    """
    group, _ = group_model.objects.get_or_create(name=ADMIN)
    wanted = permission_model.objects.filter(content_type__app_label__in=PORTAL_APPS)
    missing = list(wanted.exclude(pk__in=group.permissions.values("pk")))
    group.permissions.add(*missing)
    return len(missing)


def grant_after_migrate(sender: Any, *, apps: Any = None, using: str = "default", **kwargs: Any) -> None:
    """post_migrate: Django creates the permissions of new models then; the admin group gets them."""
    if apps is None or getattr(sender, "label", None) not in PORTAL_APPS:
        return
    try:
        group_model, permission_model = apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    except LookupError:
        return
    grant_admin_permissions(group_model, permission_model)


def sync_staff(user_model: Any, user_ids: Any) -> None:
    """Staff status (the door to /admin/) follows membership of the admin group; superusers keep theirs."""
    ids = set(user_ids)
    if not ids:
        return
    admins = set(user_model.objects.filter(pk__in=ids, groups__name=ADMIN).values_list("pk", flat=True))
    user_model.objects.filter(pk__in=admins, is_staff=False).update(is_staff=True)
    user_model.objects.filter(pk__in=ids - admins, is_staff=True, is_superuser=False).update(is_staff=False)


def staff_follows_admin_group(sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any,
                              **kwargs: Any) -> None:
    """m2m_changed of User.groups, from either side: who joins or leaves the admin group becomes or stops being staff.

    ``user.groups.add(admin)`` (forward) and ``admin.user_set.add(user)`` (reverse) both count, and so do
    removals and clears; a change to other groups leaves staff status alone.
    """
    if action not in ("pre_clear", "post_add", "post_remove", "post_clear"):
        return
    if sender is not installed_apps.get_model(settings.AUTH_USER_MODEL).groups.through:
        return
    if reverse:  # instance is a group, pk_set users
        if instance.name != ADMIN:
            return
        if action == "pre_clear":
            instance._users_before_clear = list(instance.user_set.values_list("pk", flat=True))
            return
        user_model = model
        ids = pk_set if action != "post_clear" else getattr(instance, "_users_before_clear", [])
    else:  # instance is a user, pk_set groups
        if action == "pre_clear":
            instance._was_admin = instance.groups.filter(name=ADMIN).exists()
            return
        touched = (getattr(instance, "_was_admin", False) if action == "post_clear"
                   else model.objects.filter(pk__in=pk_set or (), name=ADMIN).exists())
        if not touched:
            return
        user_model = type(instance)
        ids = [instance.pk]
    sync_staff(user_model, ids or ())
    if not reverse:
        # The caller's object too, so that a later user.save() does not write the old value back.
        instance.is_staff = bool(user_model.objects.filter(pk=instance.pk).values_list("is_staff", flat=True).first())
