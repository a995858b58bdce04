"""Load the demo: the synthetic cohort imported into the demo project (more steps are added by other apps)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from sua_portal.accounts.management.commands.create_demo_users import DEMO_PROJECT
from sua_portal.accounts.models import Project
from sua_portal.slides import services


class Command(BaseCommand):
    help = "Generate the synthetic demo cohort (once) and import its train / validation / test cohorts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", default=DEMO_PROJECT)
        parser.add_argument("--data-dir", type=Path, default=None,
                            help="where the synthetic slides are written (default: next to MEDIA_ROOT)")
        parser.add_argument("--preset", choices=["demo", "test"], default="demo")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"there is no project called {options['project']!r} (run create_demo_users first)")
        data_dir = options["data_dir"] or Path(settings.MEDIA_ROOT).parent / f"demo-cohort-{options['preset']}"

        def progress(items: Any) -> Any:
            return tqdm(items, unit="slide", file=sys.stderr, disable=options["verbosity"] == 0)

        cohorts = services.load_demo_cohorts(
            project, data_dir, preset=options["preset"], seed=options["seed"], progress=progress,
            log_line=self.stdout.write,
        )
        total = sum(c.slides.count() for c in cohorts)
        self.stdout.write(f"Demo cohorts in {project.name!r}: {', '.join(c.name for c in cohorts)} ({total} slides)")
