from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from sua_portal.accounts import roles


class ProjectQuerySet(models.QuerySet["Project"]):
    def visible_to(self, user: Any) -> ProjectQuerySet:
        """Only the projects the user is a member of: nobody sees anyone else's work."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user=user).distinct()


class Project(models.Model):
    """A body of work (cohorts, ensembles, runs, reviews) shared by its members."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    blind_review = models.BooleanField(
        default=True, help_text="pathologists review without seeing the ground truth (researchers and admins see it)"
    )
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(  # type: ignore[var-annotated]
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def has_member(self, user: Any) -> bool:
        return bool(getattr(user, "is_authenticated", False)) and self.memberships.filter(user=user).exists()

    def shows_truth_to(self, user: Any) -> bool:
        """Whether ``user`` may see the ground truth of this project's slides: always for researchers and
        admins; for anyone else (pathologists) only when the project's review is not blind."""
        return not self.blind_review or roles.has_role(user, roles.ADMIN, roles.RESEARCHER)


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    added = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project}"


class ApiToken(models.Model):
    """A personal API token for scripts: shown once when made, kept only as its SHA-256, revocable, expiring."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="what the token is for, e.g. 'nightly report script'")
    prefix = models.CharField(max_length=16, help_text="the key's first characters, to tell tokens apart")
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"
