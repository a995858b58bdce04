from django.contrib import admin
from django.http import HttpRequest

from sua_portal.accounts.models import ApiToken, Membership, Project


class MembershipInline(admin.TabularInline[Membership, Project]):
    model = Membership
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin[Project]):
    list_display = ["name", "blind_review", "created"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Admins see and revoke anyone's tokens; only their owner makes them (the key is shown to them alone)."""

    list_display = ["name", "user", "prefix", "created", "expires", "last_used"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "key_hash", "created", "expires", "last_used"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
