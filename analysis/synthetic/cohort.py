"""Cohorts of synthetic slides (train, validation, test in-domain, test shifted) and the command line."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.annotations import write_asap_xml, write_geojson
from analysis.synthetic.slide import generate_slide
from analysis.synthetic.spec import GENERATOR, Domain, LesionPlan, Preset, SlideSpec

#: Splits of the default cohort, in order: (directory name, domain).
SPLITS: tuple[tuple[str, Domain], ...] = (
    ("train", "in-domain"),
    ("validation", "in-domain"),
    ("test_in_domain", "in-domain"),
    ("test_shifted", "shifted"),
)


@dataclass(frozen=True)
class CohortEntry:
    """One slide of a generated cohort; paths are absolute, ``to_json`` makes them relative."""

    slide_id: str
    split: str
    domain: Domain
    tumor: bool
    image: Path
    xml: Path | None
    geojson: Path | None
    mpp: float
    width: int
    height: int
    seed: int
    lesions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    elapsed_s: float = 0.0

    def to_json(self, root: Path) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else p.relative_to(root).as_posix()

        return {
            "id": self.slide_id,
            "split": self.split,
            "domain": self.domain,
            "tumor": self.tumor,
            "image": rel(self.image),
            "annotation_xml": rel(self.xml),
            "annotation_geojson": rel(self.geojson),
            "mpp": self.mpp,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "lesions": list(self.lesions),
        }


@dataclass(frozen=True)
class _Job:
    slide_id: str
    split: str
    spec: SlideSpec


# Lesion plans of tumor slides, cycled through a cohort so that every split gets every size class.
_LESION_PLANS: tuple[tuple[LesionPlan, ...], ...] = (
    ("macro", "itc"),
    ("micro", "micro", "itc"),
    ("micro",),
    ("macro", "micro"),
    ("itc", "itc", "micro"),
    ("micro", "itc"),
)
# The demo's: every size class and, on every tumor slide, faint micro-metastases, the lesions an
# ensemble is least sure of (so that each test domain has enough uncertain regions to compare methods on).
_DEMO_LESION_PLANS: tuple[tuple[LesionPlan, ...], ...] = (
    ("macro", "faint", "itc"),
    ("micro", "faint", "faint"),
    ("faint", "micro", "itc"),
    ("macro", "faint", "faint"),
    ("itc", "faint", "micro"),
    ("micro", "faint", "itc"),
)


@dataclass(frozen=True)
class _CohortPreset:
    """Slides per split as (tumor, tumor-free), their sizes (cycled through), resolution (µm/px),
    whether macro-metastases fit (they do not on the small test slides: their lesion plans leave them out)
    and the lesion plans of the tumor slides (cycled through).
    """

    slides: Mapping[str, tuple[int, int]]
    sizes: tuple[tuple[int, int], ...]
    mpp: float
    macro: bool
    plans: tuple[tuple[LesionPlan, ...], ...] = _LESION_PLANS
    mimics: int = 0


_PRESETS: dict[str, _CohortPreset] = {
    "demo": _CohortPreset(
        slides={"train": (3, 3), "validation": (3, 3), "test_in_domain": (5, 4), "test_shifted": (5, 4)},
        sizes=((8192, 6144), (6144, 8192), (7168, 7168), (8192, 7168), (7168, 6144)),
        mpp=1.0,
        macro=True,
        plans=_DEMO_LESION_PLANS,
        # Benign look-alikes of the faint lesions on every slide: the uncertain regions that are not tumor.
        # The comparison needs at least 10 true-negative and 10 false-negative NPRs per test domain in
        # 0.55-0.95, and a validation cohort that calibrates on more than a handful. Measured (demo run,
        # 7 epochs): 3 a slide and 2+2 / 4+3 / 4+3 validation / test slides gave 5-8 TN per test domain; 8 a
        # slide gave 8 (in-domain) and 6 (shifted), validation 4 FN / 2 TN; 12 a slide with 3+3 / 5+4 / 5+4
        # give 17 and 12 TN (59 and 143 FN), validation 20 FN / 8 TN.
        mimics=12,
    ),
    "test": _CohortPreset(
        slides={"train": (1, 1), "validation": (1, 1), "test_in_domain": (1, 1), "test_shifted": (1, 1)},
        sizes=((1024, 768), (768, 1024), (1024, 1024)),
        mpp=2.0,
        macro=False,
    ),
}


def _cohort_jobs(preset: Preset, seed: int) -> list[_Job]:
    if preset not in _PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use 'demo' or 'test'")
    p = _PRESETS[preset]
    jobs: list[_Job] = []
    n = 0
    plan_i = 0
    for split, domain in SPLITS:
        n_tumor, n_free = p.slides[split]
        labels = [True] * n_tumor + [False] * n_free
        # interleave so ids do not give the label away
        rng = np.random.default_rng([seed, n])
        labels = [labels[i] for i in rng.permutation(len(labels))]
        for k, tumor in enumerate(labels):
            w, h = p.sizes[n % len(p.sizes)]
            lesions: tuple[LesionPlan, ...] | None = None
            if tumor:
                plan = p.plans[plan_i % len(p.plans)]
                plan_i += 1
                lesions = plan if p.macro else tuple(k2 for k2 in plan if k2 != "macro") or ("micro",)
            spec = SlideSpec(seed=seed * 1000 + n, width=w, height=h, mpp=p.mpp, tumor=tumor, domain=domain,
                             lesions=lesions, mimics=p.mimics)
            jobs.append(_Job(f"{split}_{k + 1:02d}", split, spec))
            n += 1
    return jobs


def _run_job(job: _Job, out_dir: Path) -> CohortEntry:
    image = out_dir / job.split / f"{job.slide_id}.tiff"
    slide = generate_slide(job.spec, image)
    xml = geo = None
    if job.spec.tumor:
        xml = image.with_suffix(".xml")
        write_asap_xml(slide.polygons, xml)
        geo = image.with_suffix(".geojson")
        write_geojson(slide.polygons, geo, id_namespace=f"synthetic:{job.slide_id}")
    return CohortEntry(
        slide_id=job.slide_id,
        split=job.split,
        domain=job.spec.domain,
        tumor=job.spec.tumor,
        image=image,
        xml=xml,
        geojson=geo,
        mpp=job.spec.mpp,
        width=job.spec.width,
        height=job.spec.height,
        seed=job.spec.seed,
        lesions=tuple(lesion.to_json() for lesion in slide.lesions),
        elapsed_s=slide.elapsed_s,
    )


def generate_cohort(
    out_dir: str | os.PathLike[str],
    *,
    preset: Preset = "demo",
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int, CohortEntry], None] | None = None,
) -> list[CohortEntry]:
    """Write a cohort of synthetic slides and its ``manifest.json`` under ``out_dir``.

    Splits ``train``, ``validation``, ``test_in_domain`` (in-domain) and
    ``test_shifted`` (domain shift), each a mix of tumor and tumor-free slides:
    6 / 4 / 4 / 4 slides of about 6-8k pixels square at 1 µm/px for ``"demo"``,
    2 / 2 / 2 / 2 slides of 768-1024 pixels at 2 µm/px for ``"test"``.  Each slide is
    ``<split>/<id>.tiff``; tumor slides also get ``<id>.xml`` (ASAP) and
    ``<id>.geojson`` (QuPath).  ``workers`` processes render slides in parallel
    (default: up to 2).  ``progress(done, total, entry)`` is called after each slide.
    """
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    jobs = _cohort_jobs(preset, seed)
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if multiprocessing.current_process().daemon:  # e.g. a Celery prefork worker: no children allowed
        n_workers = 1
    entries: list[CohortEntry] = []
    if n_workers <= 1:
        for i, job in enumerate(jobs):
            entry = _run_job(job, root)
            entries.append(entry)
            if progress is not None:
                progress(i + 1, len(jobs), entry)
    else:
        # biggest first keeps both workers busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i].spec.width * jobs[i].spec.height)
        by_index: dict[int, CohortEntry] = {}
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures = {i: pool.submit(_run_job, jobs[i], root) for i in order}
            for done, i in enumerate(order, start=1):
                by_index[i] = futures[i].result()
                if progress is not None:
                    progress(done, len(jobs), by_index[i])
        entries = [by_index[i] for i in range(len(jobs))]
    manifest = {
        "generator": GENERATOR,
        "preset": preset,
        "seed": seed,
        "splits": [{"name": s, "domain": d} for s, d in SPLITS],
        "slides": [e.to_json(root) for e in entries],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N] [--workers N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.synthetic",
        description="Synthetic H&E lymph-node whole-slide images for the demo and the tests.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", choices=["demo", "test"], default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: up to 2)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def report(done: int, total: int, e: CohortEntry) -> None:
        kinds = ", ".join(str(les["kind"]) for les in e.lesions) or "tumor-free"
        print(
            f"[{done:2d}/{total}] {e.split}/{e.image.name} {e.width}x{e.height} {e.domain} ({kinds}) "
            f"{e.elapsed_s:.1f} s",
            flush=True,
        )

    entries = generate_cohort(args.out_dir, preset=args.preset, seed=args.seed, workers=args.workers, progress=report)
    print(f"{len(entries)} slides, manifest {args.out_dir / 'manifest.json'}, {time.perf_counter() - t0:.1f} s")
    return 0
