"""Import a folder of slides and their annotations into a cohort (idempotent by SHA-256)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from sua_portal.accounts.models import Project
from sua_portal.slides import services
from sua_portal.slides.models import Cohort


class Command(BaseCommand):
    help = (
        "Import the slides of DIR into a cohort of a project. Each slide's annotation is the file with the same "
        "stem: .geojson / .json (QuPath), .xml (ASAP / Camelyon) or _mask.png / _mask.tif (binary mask). Slides "
        "already in the cohort (same SHA-256) are skipped, so running it again is safe."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--project", required=True, help="project name (or id)")
        parser.add_argument("--cohort", required=True, help="cohort name: created when missing")
        parser.add_argument("--split", required=True, choices=Cohort.Split.values)
        parser.add_argument("--domain", default="in-domain", help='e.g. "in-domain" or "shifted"')
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--check", choices=["queue", "sync", "none"], default="queue",
            help="queue: a worker checks each slide (default); sync: check here; none: leave them uploaded",
        )
        parser.add_argument("--mask-downsample", type=float, default=None,
                            help="downsample of the _mask images (default: from the mask and slide sizes)")
        parser.add_argument("--unlabelled", action="store_true",
                            help="a slide without annotation has unknown tumor status (default: tumor-free)")
        parser.add_argument("--user", default=None, help="username recorded as uploader")

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path = options["directory"]
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory")
        project_key = options["project"]
        project = Project.objects.filter(name=project_key).first()
        if project is None and str(project_key).isdigit():
            project = Project.objects.filter(pk=int(project_key)).first()
        if project is None:
            raise CommandError(f"there is no project called {project_key!r}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"there is no user called {options['user']!r}")
        try:
            cohort = services.get_or_create_cohort(
                project, name=options["cohort"], split=options["split"], domain=options["domain"],
                description=options["description"],
            )
        except services.SlideRejected as exc:
            raise CommandError(str(exc)) from None
        files = services.slide_files(directory)
        if not files:
            raise CommandError(f"{directory} has no slides ({', '.join(services.SLIDE_EXTENSIONS)})")

        def progress(items: Iterable[Path]) -> Iterable[Path]:
            return tqdm(items, desc=cohort.name, unit="slide", file=sys.stderr, disable=options["verbosity"] == 0)

        report = services.import_folder(
            directory, cohort, user=user, check=options["check"], mask_downsample=options["mask_downsample"],
            unannotated_is_negative=not options["unlabelled"], progress=progress,
        )
        for name, reason in report.refused:
            self.stderr.write(f"refused {name}: {reason}")
        failed = [s for s in report.created if s.status == s.Status.FAILED]
        for slide in failed:
            self.stderr.write(f"failed {slide.name}: {slide.failure_reason}")
        self.stdout.write(
            f"{cohort.name}: {len(report.created)} slides imported ({report.annotations} with annotations), "
            f"{len(report.skipped)} already there, {len(report.refused)} refused"
            + (f", {len(failed)} failed their check" if failed else "")
            + (" (checks queued)" if options["check"] == "queue" and report.created else "")
        )
