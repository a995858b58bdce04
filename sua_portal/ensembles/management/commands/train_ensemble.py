"""Train a deep ensemble on a project's annotated cohorts, here or on the Celery workers."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sua_portal.accounts.models import Project
from sua_portal.ensembles import services
from sua_portal.ensembles.models import Ensemble
from sua_portal.slides.models import Cohort


class Command(BaseCommand):
    help = "Train K ensemble members (default: the settings' defaults) on the named training cohorts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--name", required=True, help="name of the new ensemble")
        parser.add_argument("--cohort", action="append", required=True, help="training cohort (repeatable)")
        parser.add_argument("--validation", action="append", default=[], help="validation cohort (repeatable)")
        parser.add_argument("--config", default="{}", help="training settings as JSON, e.g. '{\"members\": 5}'")
        parser.add_argument("--on-workers", action="store_true", help="queue on Celery instead of training here")
        parser.add_argument("--user", default=None, help="username recorded as the creator")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            project = Project.objects.get(name=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project called {options['project']!r}") from None
        try:
            config = json.loads(options["config"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from None

        def cohorts(names: list[str]) -> list[Cohort]:
            found = list(Cohort.objects.filter(project=project, name__in=names))
            missing = set(names) - {c.name for c in found}
            if missing:
                raise CommandError(f"no cohort called {sorted(missing)[0]!r} in {project.name!r}")
            return found

        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        if Ensemble.objects.filter(project=project, name=options["name"]).exists():
            raise CommandError(f"an ensemble called {options['name']!r} already exists in {project.name!r}")
        if options["on_workers"]:
            try:
                ensemble = services.start_training(project=project, name=options["name"],
                                                   cohorts=cohorts(options["cohort"]),
                                                   validation=cohorts(options["validation"]), config=config, user=user)
            except services.EnsembleError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"queued training of ensemble {ensemble.pk} ({ensemble.name})")
            return
        try:
            ensemble = services.create_training(project=project, name=options["name"],
                                                cohorts=cohorts(options["cohort"]),
                                                validation=cohorts(options["validation"]), config=config, user=user)
            services.train(ensemble.pk, echo=self.stdout.write)
        except services.EnsembleError as exc:
            raise CommandError(str(exc)) from None
        ensemble.refresh_from_db()
        self.stdout.write(f"ensemble {ensemble.pk} ({ensemble.name}) is {ensemble.status}")
