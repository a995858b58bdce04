"""Create one demo user per role (and a demo project they share); print their passwords."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from sua_portal.accounts import roles
from sua_portal.accounts.models import Membership, Project

DEMO_PROJECT = "Demo: lymph-node metastases"


class Command(BaseCommand):
    help = "Create demo users admin, pathologist and researcher with fresh passwords, members of the demo project."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", default=DEMO_PROJECT)

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        project, _ = Project.objects.get_or_create(
            name=options["project"],
            defaults={"description": "Synthetic H&E lymph-node cohort with a tiny deep ensemble and SUA flags."},
        )
        lines = []
        for role in roles.ROLES:
            username = f"demo-{role}"
            password = secrets.token_urlsafe(9)
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=role))
            Membership.objects.get_or_create(project=project, user=user)
            lines.append(f"  {role:<12} user {username:<18} password {password}")
        self.stdout.write("Demo users (passwords are new on every run):\n" + "\n".join(lines))
