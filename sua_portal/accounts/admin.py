"""The Django admin (/admin/) for rare fixes by the admin role: each user sees only the rows of their projects.

Users of the admin group are staff and hold the model permissions of the portal's apps
(:mod:`sua_portal.accounts.roles`); daily work happens in the portal's own pages and API. Superusers
see every project.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models, transaction
from django.http import HttpRequest

from sua_portal.accounts.models import ApiToken, Membership, Project


class ProjectScopedAdmin(admin.ModelAdmin[Any]):
    """Rows of the caller's projects only (as everywhere in the portal), and only those as choices.

    ``project_path``: the lookup from the model to its project (``"pk"`` for a project itself).
    A foreign key to another scoped model offers only that model's visible rows.
    """

    project_path = "project"

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.project_path}__in": Project.objects.visible_to(request.user)}).distinct()

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        other = self.admin_site._registry.get(db_field.related_model)
        if isinstance(other, ProjectScopedAdmin):
            kwargs["queryset"] = other.get_queryset(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipInline(admin.TabularInline[Membership, Project]):
    model = Membership
    extra = 1


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_path = "pk"
    list_display = ["name", "blind_review", "created", "created_by"]
    search_fields = ["name", "description"]
    readonly_fields = ["created", "created_by"]
    inlines = [MembershipInline]

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        with transaction.atomic():
            if not change:
                obj.created_by = request.user if request.user.is_authenticated else None  # type: ignore[assignment]
            super().save_model(request, obj, form, change)
            if not change:
                # Its maker is a member, or the new project would vanish from their own list.
                Membership.objects.get_or_create(project=obj, user=request.user)  # type: ignore[misc]


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    list_display = ["user", "project", "added"]
    list_filter = ["project"]
    search_fields = ["user__username", "project__name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Admins see and revoke anyone's tokens; only their owner makes them (the key is shown to them alone)."""

    list_display = ["name", "user", "prefix", "created", "expires", "last_used"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "key_hash", "created", "expires", "last_used"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
