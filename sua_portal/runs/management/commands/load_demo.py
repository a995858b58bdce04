"""Load the demo: the synthetic cohort in the demo project, a trained ensemble, its heatmaps and a finished run.

It lives in the runs app, the highest layer whose data it loads (accounts < slides < ensembles < runs).
Its state goes to the project's :class:`~sua_portal.core.models.DemoBuild` row as it goes, so that
the web pages show the build's progress and its results as they come (``make demo`` serves the
portal while this runs in the background).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from sua_portal.accounts.management.commands.create_demo_users import DEMO_PROJECT
from sua_portal.accounts.models import Project
from sua_portal.core.demo_build import BuildRecorder
from sua_portal.core.models import DemoBuild
from sua_portal.ensembles.models import Ensemble
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


class _Clock:
    """Wall and CPU seconds (this process and its finished children: the slide and training pools) since made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.monotonic(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __str__(self) -> str:
        return f"{time.monotonic() - self.wall:.0f} s, CPU {self._cpu() - self.cpu:.0f} s"


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = ("Generate the synthetic demo cohort (once), import its train / validation / test cohorts, train the "
            "demo ensemble on them, compute the heatmaps of the validation and test slides, and carry the demo run "
            "through (thresholds calibrated on validation, regions flagged, metrics and reports). Each step is "
            "kept, so running it again only redoes what is missing. The build's progress is stored for the "
            "web pages (the home page shows it).")

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
        build = BuildRecorder(project)
        # `make demo` stops the build with SIGTERM: recorded as stopped, like a Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            self._build(project, build, overrides, options)
        except KeyboardInterrupt:
            build.failed("stopped before it finished")
            raise
        except CommandError as exc:
            build.failed(str(exc))
            raise
        except Exception as exc:
            build.failed(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _build(self, project: Project, build: BuildRecorder, overrides: dict[str, Any], options: dict[str, Any]
               ) -> None:
        data_dir = options["data_dir"] or Path(settings.MEDIA_ROOT).parent / f"demo-cohort-{options['preset']}"
        say = self.stdout.write

        def progress(items: Any) -> Any:
            return tqdm(items, unit="slide", file=sys.stderr, disable=options["verbosity"] == 0)

        def generated(done: int, total: int) -> None:
            build.count(slides_done=done, slides_total=total)
            say(f"slides: {done} of {total} generated")

        clock = _Clock()
        cohorts = services.load_demo_cohorts(
            project, data_dir, preset=options["preset"], seed=options["seed"], progress=progress,
            log_line=say, generated=generated,
        )
        total = sum(c.slides.count() for c in cohorts)
        build.count(slides_done=total, slides_total=total)
        for cohort in cohorts:
            build.link(cohort.name, reverse("cohort-page", args=[cohort.pk]))
        say(f"Demo cohorts in {project.name!r}: {', '.join(c.name for c in cohorts)} ({total} slides, {clock})")
        clock = _Clock()
        if options["cohorts_only"]:
            build.done()
            return
        # analysis.training imports torch: only here, where it is needed (a command, not a Celery parent).
        from analysis.training import TrainingConfig

        config = TrainingConfig.from_dict({"preset": options["preset"], **overrides})
        build.step(DemoBuild.Step.TRAINING, members=config.members, epochs=config.max_epochs,
                   member_epochs=[0] * config.members)

        def on_epoch(report: dict[str, Any]) -> None:
            build.epoch(int(report["member"]), int(report["epoch"]))
            say(f"training: member {int(report['member']) + 1} of {config.members}, epoch {report['epoch']} of "
                f"{config.max_epochs} (validation Dice {report['val_dice']:.3f})")

        def on_heatmaps(ensemble: Ensemble, done: int, total: int) -> None:
            nonlocal clock
            if build.row.step != DemoBuild.Step.HEATMAPS:
                build.link(f"{ensemble.name} ({ensemble.members.count()} members)",
                           reverse("ensemble-detail", args=[ensemble.pk]))
                build.step(DemoBuild.Step.HEATMAPS, heatmaps_total=total)
                say(f"{ensemble.name} ready ({clock})")
                clock = _Clock()
            build.count(heatmaps_done=done, heatmaps_total=total)
            if done == total:
                say(f"Heatmaps of {total} slides ready ({clock})")

        try:
            ensemble = load_demo_ensemble(project, cohorts, preset=options["preset"], overrides=overrides,
                                          threads=options["threads"], log_line=say, on_epoch=on_epoch,
                                          on_heatmaps=on_heatmaps)
            build.step(DemoBuild.Step.RUN)
            clock = _Clock()
            run = load_demo_run(project, ensemble, cohorts, log_line=say)
            say(f"{run.name} ready with its reports ({clock})")
        except (EnsembleError, RunError) as exc:
            raise CommandError(str(exc)) from None
        build.link(f"{run.name}: the dashboard", reverse("run-page", args=[run.pk]))
        flagged = services_flagged(run)
        if flagged:
            slide_id, count = flagged
            viewer = f"{reverse('slide-viewer', args=[slide_id])}?run={run.pk}"
            build.link("the most flagged slide", viewer)
            say(f"Most flagged regions: {count} on the viewer at {viewer}")
        build.done()
        say(f"The demo run's dashboard: /runs/{run.pk}/")
