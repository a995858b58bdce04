"""A synthetic run with N regions on one slide: a measurement fixture for the viewer, not a result."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from sua_portal.runs.models import Region, Run, RunCohort, RunRange, RunSlide
from sua_portal.runs.services import RunSettings
from sua_portal.slides.models import Slide

#: Level-0 pixels per heatmap cell of the made-up run (the portal's default).
DOWNSAMPLE = 16.0
_BATCH = 5000


def synthetic_regions(width: int, height: int, count: int, *, seed: int = 0,
                      downsample: float = DOWNSAMPLE) -> list[dict[str, Any]]:
    """``count`` plausible NPR outlines on a ``width`` x ``height`` slide (level-0 pixels), each a dict of
    Region fields: a star-shaped polygon of 6 to 16 vertices on the heatmap grid's half cells, 1 to 6 cells
    across (smaller when many must fit), clustered around a few dozen centres as NPRs gather at a tumor's
    rim; scores from a beta distribution, the top fifth flagged. Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height), size=(max(8, count // 400), 2))
    spread = 0.08 * min(width, height)
    # Cells a region spans: 1 to 6, fewer when the slide's grid cannot hold that many apart.
    cells = (width / downsample) * (height / downsample)
    largest = float(np.clip(math.sqrt(cells / max(count, 1)) * 1.5, 1.0, 6.0))
    scores = 0.05 + 0.6 * rng.beta(2.0, 5.0, size=count)
    threshold = float(np.quantile(scores, 0.8)) if count else 1.0
    half = downsample / 2
    regions = []
    for i in range(count):
        cx, cy = centres[rng.integers(len(centres))] + rng.normal(0.0, spread, size=2)
        cx, cy = float(np.clip(cx, 0, width - 1)), float(np.clip(cy, 0, height - 1))
        radius = downsample * rng.uniform(0.5, largest / 2 + 0.5)
        n = int(rng.integers(6, 17))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        reach = radius * rng.uniform(0.6, 1.0, n)
        xs = np.clip(np.round((cx + reach * np.cos(angles)) / half) * half, 0, width)
        ys = np.clip(np.round((cy + reach * np.sin(angles)) / half) * half, 0, height)
        ring = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
        ring.append(ring[0])
        x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
        area = max(1, round((x1 - x0) * (y1 - y0) * 0.6 / downsample**2))
        regions.append({
            "label": i + 1, "area_px": area, "score": float(scores[i]), "flagged": bool(scores[i] >= threshold),
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0,
        })
    return regions


class Command(BaseCommand):
    help = ("MEASUREMENT FIXTURE, not a result: make a finished run named 'Synthetic N regions' with N made-up "
            "negative prediction regions (plausible polygons on the heatmap grid, beta-distributed scores, the "
            "top fifth flagged) on one slide, written straight into the database (Run, RunCohort, RunRange, "
            "RunSlide, Region; no heatmaps, masks or report behind it). benchmarks/bench_viewer.py measures the "
            "viewer with it (10,000 and 100,000 regions); open /slides/SLIDE/?run=RUN to look at it.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--slide", type=int, required=True, help="the slide's id (its project owns the run)")
        parser.add_argument("--regions", type=int, default=10_000, help="how many regions (default 10,000)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--review", action="store_true", help="make it the project's review run")

    def handle(self, *args: Any, **options: Any) -> None:
        slide = Slide.objects.select_related("cohort__project").filter(pk=options["slide"]).first()
        if slide is None:
            raise CommandError(f"No slide {options['slide']}.")
        if not slide.width or not slide.height:
            raise CommandError(f"Slide {slide.pk} has no size yet: it has not passed its check.")
        count = options["regions"]
        if not 0 <= count <= 2_000_000:
            raise CommandError("--regions must be between 0 and 2,000,000.")
        made = synthetic_regions(slide.width, slide.height, count, seed=options["seed"])
        threshold = min((r["score"] for r in made if r["flagged"]), default=1.0)
        values = RunSettings.defaults().to_dict()
        values["review_range"] = 0
        lower, upper = values["ranges"][0]
        mpp = slide.mpp
        now = timezone.now()
        with transaction.atomic():
            run = Run.objects.create(
                project=slide.cohort.project, name=f"Synthetic {count:,} regions", ensemble=None,
                ensemble_name="synthetic (measurement fixture)", settings=values, aggregate="mean",
                status=Run.Status.DONE, step="made by make_region_run", progress=100.0, started=now, finished=now)
            RunCohort.objects.create(run=run, cohort=slide.cohort, name=slide.cohort.name,
                                     role=RunCohort.Role.TEST, domain=slide.cohort.domain)
            run_range = RunRange.objects.create(run=run, index=0, lower=lower, upper=upper, sua_threshold=threshold)
            row = RunSlide.objects.create(
                run=run, slide=slide, name=slide.name, cohort_name=slide.cohort.name, role=RunCohort.Role.TEST,
                domain=slide.cohort.domain, has_tumor=bool(slide.has_tumor), downsample=DOWNSAMPLE,
                figures=[{"nprs": count, "true_fns": None, "flagged": sum(r["flagged"] for r in made)}], masks=[])
            for start in range(0, count, _BATCH):
                Region.objects.bulk_create([
                    Region(run=run, run_slide=row, run_range=run_range,
                           area_um2=None if mpp is None else r["area_px"] * (DOWNSAMPLE * mpp) ** 2, **r)
                    for r in made[start:start + _BATCH]])
            if options["review"]:
                Run.objects.filter(project=run.project_id, is_review_run=True).update(is_review_run=False)
                Run.objects.filter(pk=run.pk).update(is_review_run=True)
        self.stdout.write(f"run {run.pk}: {count} regions on slide {slide.pk} ({slide.name}), "
                          f"{row.figures[0]['flagged']} flagged at {threshold:.4f}")
