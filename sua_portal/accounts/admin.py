from django.contrib import admin

from sua_portal.accounts.models import Membership, Project


class MembershipInline(admin.TabularInline[Membership, Project]):
    model = Membership
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin[Project]):
    list_display = ["name", "created"]
    search_fields = ["name"]
    inlines = [MembershipInline]
