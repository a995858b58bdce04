"""Load the demo: the synthetic cohort in the demo project, a trained ensemble, its heatmaps and a finished run.

It lives in the runs app, the highest layer whose data it loads (accounts < slides < ensembles < runs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from sua_portal.accounts.management.commands.create_demo_users import DEMO_PROJECT
from sua_portal.accounts.models import Project
from sua_portal.ensembles.services import EnsembleError, load_demo_ensemble
from sua_portal.runs.services import RunError, flagged_per_slide, load_demo_run
from sua_portal.slides import services


def services_flagged(run: Any) -> tuple[int, int] | None:
    """The test slide with the most flagged regions in the run's review range, and how many."""
    counts = flagged_per_slide(run, run.slide_set.filter(role="test").values_list("slide", flat=True))
    if not counts:
        return None
    busiest = max(counts, key=lambda pk: counts[pk])
    return busiest, counts[busiest]


class Command(BaseCommand):
    help = ("Generate the synthetic demo cohort (once), import its train / validation / test cohorts, train the "
            "demo ensemble on them, compute the heatmaps of the validation and test slides, and carry the demo run "
            "through (thresholds calibrated on validation, regions flagged, metrics and reports). Each step is "
            "kept, so running it again only redoes what is missing.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--project", default=DEMO_PROJECT)
        parser.add_argument("--data-dir", type=Path, default=None,
                            help="where the synthetic slides are written (default: next to MEDIA_ROOT)")
        parser.add_argument("--preset", choices=["demo", "test"], default="demo")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cohorts-only", action="store_true",
                            help="import the cohorts; no ensemble, heatmaps or regions")
        parser.add_argument("--training", default="{}", metavar="JSON",
                            help="training settings over the preset's, e.g. '{\"members\": 3, \"max_epochs\": 4}'")
        parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                            help="CPU threads for inference, members side by side (default: all cores)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            overrides = json.loads(options["training"])
            if not isinstance(overrides, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise CommandError(f"--training must be a JSON object of training settings: {exc}") from None
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
        if options["cohorts_only"]:
            return
        try:
            ensemble = load_demo_ensemble(project, cohorts, preset=options["preset"], overrides=overrides,
                                          threads=options["threads"], log_line=self.stdout.write)
            run = load_demo_run(project, ensemble, cohorts, log_line=self.stdout.write)
        except (EnsembleError, RunError) as exc:
            raise CommandError(str(exc)) from None
        flagged = services_flagged(run)
        if flagged:
            slide_id, count = flagged
            self.stdout.write(f"Most flagged regions: {count} on the viewer at /slides/{slide_id}/?run={run.pk}")
        self.stdout.write(f"The demo run's dashboard: /runs/{run.pk}/")
