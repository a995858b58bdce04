"""Review: pathologists' verdicts on the review run's flagged regions, and what follows from them.

* **Verdicts** — one per reviewer and region (a constraint; saves of one region are serialised
  by a row lock on it, so two reviewers saving at once both keep theirs, and a double submit
  changes nothing). Every change is a :class:`VerdictChange` with the state before it, which
  :func:`undo_last` restores. Only the flagged regions of the run's review range, only while
  the run is its project's review run, and only on a slide the reviewer has not marked complete.
* **Reviewers** — a cohort may name a first and a second reviewer (:class:`CohortReviewer`);
  then only they give verdicts on its slides. A cohort naming none is open to every
  pathologist and admin of the project, each as a first reviewer.
* **Blind review** — a reviewer only ever sees their own verdicts: the queue, the worklist,
  the summary, the reviewed segmentation and the exports of a caller who may review (a
  pathologist who is not an admin) are built from the caller's verdicts alone. Admins and
  researchers (who are not pathologists) see the outcome of all verdicts (:func:`outcomes`):
  an admin's settlement, else the verdict every reviewer gave, else "disputed".
* **The loop closed** — the reviewed segmentation of a slide is the original positives of the
  review range (``s >= upper`` on the slide's heatmap) plus every region confirmed as tumor
  (:func:`reviewed_mask`, drawn by :func:`analysis.sua.sua_refine` as the run drew its
  SUA-refined mask); the summary sets the precision of the flags by the verdicts beside the
  precision the calibration expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, QuerySet
from django.utils import timezone
from shapely.geometry import shape

from analysis.annotations import Annotation, annotations_csv, asap_xml, geojson, mask_to_polygons
from analysis.refine import mask_png as layer_png
from analysis.refine import write_mask_tiff
from analysis.sua import negative_prediction_regions, region_areas, sua_refine
from sua_portal.accounts import roles
from sua_portal.ensembles.services import read_heatmap
from sua_portal.errors import Conflict, DomainError, Forbidden, Gone
from sua_portal.review.models import (
    CohortReviewer,
    Kind,
    Settlement,
    SlideCompletion,
    Slot,
    Verdict,
    VerdictChange,
)
from sua_portal.runs.models import Region, Run, RunRange, RunSlide
from sua_portal.runs.services import review_range, review_run
from sua_portal.slides.models import Cohort

#: The outcome of a region the reviewers disagree on (and no admin settled), and of one without a verdict.
DISPUTED, UNREVIEWED = "disputed", "unreviewed"
#: Class names of the exports, by verdict or outcome.
CLASS_NAMES: dict[str, str] = {**{k.value: k.label for k in Kind}, DISPUTED: "Disputed", UNREVIEWED: "Unreviewed"}
EXPORT_TYPES = ("geojson", "xml", "csv")
MASK_TYPES = ("tiff", "geojson", "png")


class ReviewError(DomainError, ValueError):
    """A review request a person can fix (an unknown verdict, a region that is not flagged)."""


# --- who sees what ---------------------------------------------------------------------------


def sees_all_verdicts(user: Any) -> bool:
    """Admins, and researchers who do not review, see the outcome of every reviewer's verdicts;
    anyone who may review sees only their own (blind review)."""
    return roles.has_role(user, roles.ADMIN) or (
        roles.has_role(user, roles.RESEARCHER) and not roles.has_role(user, roles.PATHOLOGIST))


def may_review(user: Any) -> bool:
    return roles.has_role(user, roles.ADMIN, roles.PATHOLOGIST)


# --- checks ----------------------------------------------------------------------------------


def verdict_kind(value: Any) -> str:
    """``value`` as a verdict, or :class:`ReviewError` naming the verdicts there are."""
    if isinstance(value, str) and value in Kind.values:
        return value
    raise ReviewError(f"{str(value)[:40]!r} is not a verdict: give one of {', '.join(Kind.values)}.")


def _comment(comment: str | None) -> str | None:
    if comment is not None and len(comment) > settings.REVIEW_COMMENT_MAX:
        raise ReviewError(f"The comment has {len(comment)} characters; at most {settings.REVIEW_COMMENT_MAX}.")
    return comment


def the_review_range(run: Run) -> RunRange:
    """The range whose flagged regions pathologists review; 409 while the run is not finished."""
    if run.status != Run.Status.DONE:
        raise Conflict(f"{run.name} is {run.status}: only a finished run's flags are reviewed.")
    chosen = review_range(run)
    if chosen is None:
        raise Conflict(f"{run.name} has no range {run.settings.get('review_range', 0)} to review.")
    return chosen


def check_review_run(run: Run) -> None:
    """Verdicts go to the project's review run only: 409 (naming the review run) for any other."""
    current = review_run(run.project_id)
    if current is not None and current.pk == run.pk:
        return
    now = f"; {current.name} is (id {current.pk})" if current is not None else "; the project has none now"
    raise Conflict(f"{run.name} is no longer the review run of its project{now}: verdicts, undo and completion "
                   "go to the review run's regions.", review_run=current.pk if current is not None else None)


def reviewer_slot(cohort: Cohort | None, user: Any) -> int:
    """The caller's slot in the cohort: theirs when the cohort names reviewers, else first."""
    named = list(CohortReviewer.objects.filter(cohort=cohort).select_related("reviewer")) if cohort else []
    if not named:
        return int(Slot.FIRST)
    for entry in named:
        if entry.reviewer_id == user.pk:
            return int(entry.slot)
    assert cohort is not None
    who = ", ".join(f"{e.reviewer.get_username()} ({e.get_slot_display()})" for e in named)
    raise Forbidden(f"You are not a reviewer of cohort {cohort.name}: its reviewers are {who}.")


def _check_open(run_slide: RunSlide, user: Any) -> None:
    if SlideCompletion.objects.filter(run_slide=run_slide, reviewer=user).exists():
        raise Conflict(f"You marked slide {run_slide.name} review complete in {run_slide.run.name}: "
                       "reopen it to change your verdicts.")


def _check_flagged(region: Region, run_range: RunRange) -> None:
    if region.run_range_id != run_range.pk or not region.flagged:
        raise ReviewError(f"Region {region.label} of slide {region.run_slide.name} is not flagged in the review "
                          f"range {run_range.label} of {region.run.name}: only flagged regions are reviewed.")


def _cohort_of(run_slide: RunSlide) -> Cohort:
    if run_slide.slide is None:
        raise Conflict(f"Slide {run_slide.name} was deleted: its regions can no longer be reviewed.")
    return run_slide.slide.cohort


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    verdict: Verdict
    created: bool
    changed: bool


def _locked(region: Region) -> Region:
    return (Region.objects.select_for_update(of=("self",))
            .select_related("run__project", "run_range", "run_slide__run", "run_slide__slide__cohort")
            .get(pk=region.pk))


def save_verdict(region: Region, reviewer: Any, verdict: Any, comment: str | None = None) -> Saved:
    """Give (or change) the reviewer's verdict on a flagged region of the review run.

    ``comment`` None keeps the comment there is. Saving what is there already changes nothing
    and records nothing (a double submit is idempotent).
    """
    kind = verdict_kind(verdict)
    comment = _comment(comment)
    with transaction.atomic():
        region = _locked(region)
        run = region.run
        check_review_run(run)
        _check_flagged(region, the_review_range(run))
        slot = reviewer_slot(_cohort_of(region.run_slide), reviewer)
        _check_open(region.run_slide, reviewer)
        current = Verdict.objects.filter(region=region, reviewer=reviewer).first()
        text = comment if comment is not None else (current.comment if current is not None else "")
        if current is not None and current.verdict == kind and current.comment == text:
            return Saved(current, created=False, changed=False)
        VerdictChange.objects.create(
            run=run, run_slide=region.run_slide, region=region, reviewer=reviewer,
            before_verdict=current.verdict if current is not None else "",
            before_comment=current.comment if current is not None else "", after_verdict=kind, after_comment=text)
        if current is None:
            made = Verdict.objects.create(run=run, region=region, reviewer=reviewer, slot=slot, verdict=kind,
                                          comment=text)
            return Saved(made, created=True, changed=True)
        current.verdict, current.comment, current.slot = kind, text, slot
        current.save(update_fields=["verdict", "comment", "slot", "updated"])
        return Saved(current, created=False, changed=True)


@dataclass(frozen=True)
class Undone:
    region: Region
    verdict: Verdict | None  # the verdict restored, None when the undone change gave the first one
    change: VerdictChange


def undo_last(run: Run, run_slide: RunSlide, reviewer: Any) -> Undone:
    """Take back the reviewer's last verdict change on the slide: the verdict before it comes back."""
    check_review_run(run)
    with transaction.atomic():
        change = (VerdictChange.objects.select_for_update()
                  .filter(run=run, run_slide=run_slide, reviewer=reviewer, undone__isnull=True)
                  .select_related("region").order_by("-pk").first())
        if change is None:
            raise Conflict(f"You have no verdict on slide {run_slide.name} to undo.")
        _check_open(run_slide, reviewer)
        region = _locked(change.region)
        current = Verdict.objects.filter(region=region, reviewer=reviewer).first()
        restored: Verdict | None = None
        if not change.before_verdict:
            if current is not None:
                current.delete()
        elif current is None:
            restored = Verdict.objects.create(
                run=run, region=region, reviewer=reviewer, verdict=change.before_verdict,
                comment=change.before_comment, slot=reviewer_slot(_cohort_of(run_slide), reviewer))
        else:
            current.verdict, current.comment = change.before_verdict, change.before_comment
            current.save(update_fields=["verdict", "comment", "updated"])
            restored = current
        change.undone = timezone.now()
        change.save(update_fields=["undone"])
    return Undone(region=region, verdict=restored, change=change)


def verdicts_of(reviewer: Any, *, runs: QuerySet[Run], run: int | None = None, slide: int | None = None
                ) -> QuerySet[Verdict]:
    """The reviewer's own verdicts (never anyone else's) in ``runs``, newest first."""
    found = Verdict.objects.filter(reviewer=reviewer, run__in=runs).select_related(
        "region__run_slide", "region__run_range", "reviewer")
    if run is not None:
        found = found.filter(run=run)
    if slide is not None:
        found = found.filter(region__run_slide__slide=slide)
    return found.order_by("-updated", "-pk")


# --- slides marked complete --------------------------------------------------------------------


def flagged_regions(run: Run, run_range: RunRange, run_slide: RunSlide | None = None) -> QuerySet[Region]:
    """The run's flagged regions in ``run_range`` (on one slide), highest score first: the review queue's order."""
    regions = Region.objects.filter(run=run, run_range=run_range, flagged=True)
    if run_slide is not None:
        regions = regions.filter(run_slide=run_slide)
    return regions.order_by("-score", "label", "pk")


def complete_slide(run: Run, run_slide: RunSlide, reviewer: Any) -> SlideCompletion:
    """Mark the slide review complete for the reviewer: every flagged region has their verdict."""
    check_review_run(run)
    run_range = the_review_range(run)
    reviewer_slot(_cohort_of(run_slide), reviewer)
    left = flagged_regions(run, run_range, run_slide).exclude(verdicts__reviewer=reviewer).count()
    if left:
        raise Conflict(f"{left} flagged region{'s' if left != 1 else ''} of slide {run_slide.name} "
                       f"{'have' if left != 1 else 'has'} no verdict of yours yet: give one to each before marking "
                       "the slide complete.", unreviewed=left)
    try:
        with transaction.atomic():
            done, _ = SlideCompletion.objects.get_or_create(run=run, run_slide=run_slide, reviewer=reviewer)
    except IntegrityError:  # the same request twice at once: the other one marked it
        done = SlideCompletion.objects.get(run_slide=run_slide, reviewer=reviewer)
    return done


def reopen_slide(run: Run, run_slide: RunSlide, reviewer: Any) -> None:
    """The slide is open to the reviewer's verdicts again (nothing happens when it was open)."""
    check_review_run(run)
    SlideCompletion.objects.filter(run_slide=run_slide, reviewer=reviewer).delete()


# --- the queue of a slide, the worklist of the run ------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    region: Region
    verdict: Verdict | None
    outcome: Outcome | None = None  # what the caller may see of every verdict (:func:`outcomes_for`)


@dataclass(frozen=True)
class SlideQueue:
    run: Run
    run_slide: RunSlide
    run_range: RunRange
    items: list[QueueItem]
    completion: SlideCompletion | None
    slot: int | None  # None: the caller is not a reviewer of the slide's cohort
    everyone: bool = False  # the outcomes are of every reviewer's verdicts, not only the caller's

    @property
    def flagged(self) -> int:
        return len(self.items)

    @property
    def reviewed(self) -> int:
        return sum(item.verdict is not None for item in self.items)

    @property
    def resume(self) -> int | None:
        """The first region without the caller's verdict: where the reviewer goes on."""
        return next((item.region.pk for item in self.items if item.verdict is None), None)


def _slot_or_none(run_slide: RunSlide, user: Any) -> int | None:
    if run_slide.slide is None or not may_review(user):
        return None
    try:
        return reviewer_slot(run_slide.slide.cohort, user)
    except Forbidden:
        return None


def slide_queue(run: Run, run_slide: RunSlide, user: Any) -> SlideQueue:
    """The slide's flagged regions in the review range, highest score first, each with the caller's verdict
    and the outcome the caller may see (every reviewer's for admins and researchers, else their own)."""
    run_range = the_review_range(run)
    regions = list(flagged_regions(run, run_range, run_slide).select_related("run_slide__slide").defer("geometry"))
    mine = {v.region_id: v for v in Verdict.objects.filter(region__in=regions, reviewer=user)}
    everyone = sees_all_verdicts(user)
    seen = outcomes_for(run, user, regions=regions) if everyone else {
        pk: Outcome(v.verdict, v.comment) for pk, v in mine.items()}
    return SlideQueue(
        run=run, run_slide=run_slide, run_range=run_range,
        items=[QueueItem(region, mine.get(region.pk), seen.get(region.pk)) for region in regions],
        completion=SlideCompletion.objects.filter(run_slide=run_slide, reviewer=user).first(),
        slot=_slot_or_none(run_slide, user), everyone=everyone,
    )


@dataclass(frozen=True)
class WorklistEntry:
    run_slide: RunSlide
    flagged: int
    reviewed: int
    max_score: float | None
    complete: bool

    @property
    def has_work(self) -> bool:
        return not self.complete and self.reviewed < self.flagged

    def order(self) -> tuple[int, float, str, int]:
        """Slides with regions left to review first, then those with none left, then those marked
        complete; the most uncertain (highest flagged score) first within each."""
        rank = 0 if self.has_work else 2 if self.complete else 1
        return rank, -(self.max_score if self.max_score is not None else -math.inf), self.run_slide.name, \
            self.run_slide.pk


@dataclass(frozen=True)
class Place:
    """A slide of the worklist and the region on it to go to (None: none left there)."""

    slide: WorklistEntry
    region: int | None


@dataclass(frozen=True)
class Worklist:
    run: Run
    run_range: RunRange
    entries: list[WorklistEntry]
    resume: Place | None = None


def _entries(run: Run, run_range: RunRange, user: Any, cohort: Cohort | None) -> list[WorklistEntry]:
    rows = RunSlide.objects.filter(run=run, slide__isnull=False).select_related("slide__cohort")
    if cohort is not None:
        rows = rows.filter(slide__cohort=cohort)
    flags: dict[int, tuple[int, float | None]] = {
        r["run_slide"]: (r["n"], r["top"]) for r in Region.objects.filter(run=run, run_range=run_range, flagged=True)
        .order_by().values("run_slide").annotate(n=Count("id"), top=Max("score"))}
    mine = dict(Verdict.objects.filter(run=run, reviewer=user, region__run_range=run_range, region__flagged=True)
                .order_by().values("region__run_slide").annotate(n=Count("id")).values_list("region__run_slide", "n"))
    complete = set(SlideCompletion.objects.filter(run=run, reviewer=user).values_list("run_slide", flat=True))
    entries = [WorklistEntry(run_slide=row, flagged=flags.get(row.pk, (0, None))[0], reviewed=mine.get(row.pk, 0),
                             max_score=flags.get(row.pk, (0, None))[1], complete=row.pk in complete)
               for row in rows]
    return sorted(entries, key=WorklistEntry.order)


def _first_unreviewed(run: Run, run_range: RunRange, run_slide: RunSlide, user: Any) -> int | None:
    region = flagged_regions(run, run_range, run_slide).exclude(verdicts__reviewer=user).only("pk").first()
    return region.pk if region is not None else None


def worklist(run: Run, user: Any, *, cohort: Cohort | None = None) -> Worklist:
    """The run's slides (of one cohort) with flagged and the caller's reviewed counts, in review order,
    and where the caller resumes: the slide of their last verdict while it has regions left, else
    the first slide with regions left, at its first region without their verdict."""
    run_range = the_review_range(run)
    entries = _entries(run, run_range, user, cohort)
    last = (VerdictChange.objects.filter(run=run, reviewer=user).order_by("-pk")
            .values_list("run_slide", flat=True).first())
    waiting = [e for e in entries if e.has_work]
    chosen = next((e for e in waiting if e.run_slide.pk == last), waiting[0] if waiting else None)
    resume = None if chosen is None else Place(chosen, _first_unreviewed(run, run_range, chosen.run_slide, user))
    return Worklist(run=run, run_range=run_range, entries=entries, resume=resume)


def next_slide(run: Run, user: Any, *, after: int | None = None, cohort: Cohort | None = None) -> Place | None:
    """The next slide with regions left for the caller after slide ``after`` in worklist order
    (from the top again past the end; never ``after`` itself), with its first region to review."""
    run_range = the_review_range(run)
    entries = _entries(run, run_range, user, cohort)
    position = next((i for i, e in enumerate(entries) if e.run_slide.slide_id == after), -1)
    for entry in [*entries[position + 1:], *entries[:position + 1]]:
        if entry.has_work and entry.run_slide.slide_id != after:
            return Place(entry, _first_unreviewed(run, run_range, entry.run_slide, user))
    return None


# --- outcomes: every reviewer's verdicts together ----------------------------------------------


@dataclass(frozen=True)
class Outcome:
    verdict: str  # a Kind value, or DISPUTED
    comment: str
    settled: bool = False


def outcomes(run: Run, *, regions: Iterable[Region] | QuerySet[Region] | None = None,
             reviewer: Any = None) -> dict[int, Outcome]:
    """Region id -> the outcome of its verdicts: with ``reviewer``, that reviewer's own verdict;
    else an admin's settlement, else the verdict every reviewer gave, else :data:`DISPUTED`."""
    verdicts = Verdict.objects.filter(run=run)
    settlements = Settlement.objects.filter(run=run)
    if regions is not None:
        verdicts, settlements = verdicts.filter(region__in=regions), settlements.filter(region__in=regions)
    if reviewer is not None:
        return {region: Outcome(verdict, comment) for region, verdict, comment
                in verdicts.filter(reviewer=reviewer).values_list("region", "verdict", "comment")}
    given: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for region, verdict, comment in verdicts.order_by("slot", "pk").values_list("region", "verdict", "comment"):
        given[region].append((verdict, comment))
    result = {}
    for region, these in given.items():
        kinds = {verdict for verdict, _ in these}
        comment = " | ".join(comment for _, comment in these if comment)
        result[region] = Outcome(kinds.pop() if len(kinds) == 1 else DISPUTED, comment)
    for region, verdict, comment in settlements.values_list("region", "verdict", "comment"):
        result[region] = Outcome(verdict, comment, settled=True)
    return result


def outcomes_for(run: Run, user: Any, *, regions: Iterable[Region] | QuerySet[Region] | None = None
                 ) -> dict[int, Outcome]:
    """The outcomes ``user`` may see: everyone's (:func:`sees_all_verdicts`) or their own."""
    return outcomes(run, regions=regions, reviewer=None if sees_all_verdicts(user) else user)


# --- the summary: counts and the precision of the flags --------------------------------------------


@dataclass
class Counts:
    flagged: int = 0
    reviewed: int = 0
    confirmed: int = 0
    rejected: int = 0
    unsure: int = 0
    disputed: int = 0
    settled: int = 0

    def add(self, outcome: Outcome | None) -> None:
        self.flagged += 1
        if outcome is None:
            return
        self.reviewed += 1
        self.settled += outcome.settled
        if outcome.verdict == Kind.TUMOR:
            self.confirmed += 1
        elif outcome.verdict == Kind.NOT_TUMOR:
            self.rejected += 1
        elif outcome.verdict == Kind.UNSURE:
            self.unsure += 1
        else:
            self.disputed += 1

    @property
    def precision(self) -> float | None:
        """Flags the reviewers confirmed among those they decided on: confirmed / (confirmed + rejected)."""
        decided = self.confirmed + self.rejected
        return self.confirmed / decided if decided else None


@dataclass
class CohortCounts(Counts):
    cohort: str = ""
    role: str = ""
    domain: str = ""


@dataclass(frozen=True)
class Summary:
    run: Run
    run_range: RunRange
    everyone: bool  # the outcome of every reviewer's verdicts, or the caller's own
    total: Counts
    cohorts: list[CohortCounts]

    @property
    def expected_precision(self) -> float | None:
        """The precision of the flags on the validation cohorts at the calibrated threshold."""
        value = self.run_range.sua_validation.get("precision")
        return float(value) if value is not None else None


def summary(run: Run, user: Any) -> Summary:
    """Per run and cohort: flagged, reviewed, confirmed, rejected, unsure and disputed regions, and
    the precision of the flags by the verdicts beside the one the calibration expected."""
    run_range = the_review_range(run)
    regions = flagged_regions(run, run_range)
    found = outcomes_for(run, user, regions=regions)
    total = Counts()
    cohorts: dict[tuple[str, str, str], CohortCounts] = {}
    cohort_of: dict[int, CohortCounts] = {}
    for pk, *key in (RunSlide.objects.filter(run=run).order_by("role", "domain", "cohort_name")
                     .values_list("pk", "cohort_name", "role", "domain")):
        name, role, domain = key
        cohort_of[pk] = cohorts.setdefault((name, role, domain), CohortCounts(cohort=name, role=role, domain=domain))
    for region, run_slide in regions.order_by().values_list("pk", "run_slide"):
        outcome = found.get(region)
        total.add(outcome)
        cohort_of[run_slide].add(outcome)
    return Summary(run=run, run_range=run_range, everyone=sees_all_verdicts(user), total=total,
                   cohorts=list(cohorts.values()))


# --- the reviewed segmentation ---------------------------------------------------------------


@dataclass(frozen=True)
class Reviewed:
    run_slide: RunSlide
    run_range: RunRange
    confirmed: list[Region]  # the regions confirmed as tumor, by label
    everyone: bool

    def etag(self, kind: str) -> str:
        state = ",".join(str(r.pk) for r in self.confirmed)
        digest = hashlib.sha256(f"{self.run_slide.pk}:{self.run_range.pk}:{self.everyone}:{state}".encode())
        return f'"reviewed-{digest.hexdigest()[:24]}-{kind}"'


def reviewed(run: Run, run_slide: RunSlide, user: Any) -> Reviewed:
    """Which regions of the slide the reviewed segmentation adds (those confirmed as tumor), cheaply:
    enough for an ETag before :func:`reviewed_mask` reads the heatmap."""
    run_range = the_review_range(run)
    regions = list(flagged_regions(run, run_range, run_slide).defer("geometry"))
    found = outcomes_for(run, user, regions=regions)
    confirmed = sorted((r for r in regions if (o := found.get(r.pk)) is not None and o.verdict == Kind.TUMOR),
                       key=lambda r: r.label)
    return Reviewed(run_slide=run_slide, run_range=run_range, confirmed=confirmed, everyone=sees_all_verdicts(user))


def reviewed_mask(state: Reviewed) -> tuple[npt.NDArray[np.bool_], float]:
    """The reviewed segmentation on the heatmap grid and its downsample: the original positives of the
    review range (``s >= upper``) plus every pixel of each region confirmed as tumor.

    The regions are labelled again on the slide's heatmap (the run's own labelling); a heatmap that
    no longer gives the run's regions is refused (410) rather than drawn wrong.
    """
    row, run_range = state.run_slide, state.run_range
    heatmap = row.heatmap
    if heatmap is None or not heatmap.segmentation:
        raise Gone(f"The heatmaps of slide {row.name} were deleted: its reviewed segmentation cannot be drawn.")
    s = read_heatmap(heatmap, "segmentation")
    labels = negative_prediction_regions(s, lower=run_range.lower, upper=run_range.upper)
    areas = region_areas(labels)
    stored = dict(Region.objects.filter(run_slide=row, run_range=run_range).values_list("label", "area_px"))
    if len(areas) != len(stored) or any(stored.get(i + 1) != int(a) for i, a in enumerate(areas)):
        raise Gone(f"The heatmap of slide {row.name} no longer gives the regions {row.run.name} found "
                   f"({len(areas)} regions now, {len(stored)} then): its reviewed segmentation cannot be drawn.")
    confirmed = np.zeros(len(areas), dtype=bool)
    confirmed[[r.label - 1 for r in state.confirmed]] = True
    return sua_refine(s, labels, confirmed, upper=run_range.upper), float(row.downsample)


def mask_tiff(state: Reviewed) -> bytes:
    """The reviewed segmentation as a pyramidal TIFF (:func:`analysis.refine.write_mask_tiff`)."""
    mask, downsample = reviewed_mask(state)
    with tempfile.TemporaryDirectory(prefix="reviewed-") as folder:
        path = write_mask_tiff(mask, Path(folder) / "reviewed.tiff", downsample=downsample, extra={
            "kind": "reviewed", "run": state.run_slide.run_id, "slide": state.run_slide.name,
            "range": [state.run_range.lower, state.run_range.upper],
            "confirmed_regions": [r.label for r in state.confirmed]})
        return path.read_bytes()


def mask_geojson(state: Reviewed) -> dict[str, Any]:
    """The reviewed segmentation as tumor polygons in level-0 pixels (a GeoJSON FeatureCollection)."""
    mask, downsample = reviewed_mask(state)
    polygons = mask_to_polygons(mask, downsample=downsample)
    tumor = CLASS_NAMES[Kind.TUMOR]
    return geojson([Annotation(f"Reviewed tumor {i + 1}", tumor, p) for i, p in enumerate(polygons)],
                   colors={tumor: settings.REVIEW_VERDICT_COLORS[Kind.TUMOR]})


def mask_png(state: Reviewed) -> bytes:
    """The reviewed segmentation as the viewer's layer: one RGBA pixel per heatmap cell, clear outside."""
    mask, _ = reviewed_mask(state)
    return layer_png(mask, settings.REVIEW_MASK_RGBA)


# --- exports -------------------------------------------------------------------------------------


def export(run: Run, user: Any, kind: str, *, run_slide: RunSlide | None = None) -> tuple[bytes, str, str]:
    """The flagged regions of the review range with their verdicts (everyone's outcome or the caller's
    own, as :func:`outcomes_for`): ``kind`` geojson (QuPath), xml (ASAP, a group per verdict) or csv.

    Returns (body, content type, file name). GeoJSON and ASAP XML annotate one image: they need the slide.
    """
    if kind not in EXPORT_TYPES:
        raise ReviewError(f"Exports are {', '.join(EXPORT_TYPES)}, not {kind[:20]!r}.")
    if kind != "csv" and run_slide is None:
        raise ReviewError("QuPath and ASAP annotate one image at a time: name the slide (?slide=).")
    run_range = the_review_range(run)
    regions = list(flagged_regions(run, run_range, run_slide).select_related("run_slide")
                   .order_by("run_slide__name", "-score", "label"))
    found = outcomes_for(run, user, regions=regions)
    items, details = [], []
    colors = {CLASS_NAMES[k]: tuple(v) for k, v in settings.REVIEW_VERDICT_COLORS.items()}
    for region in regions:
        outcome = found.get(region.pk)
        verdict = outcome.verdict if outcome is not None else UNREVIEWED
        items.append(Annotation(f"Region {region.label}", CLASS_NAMES[verdict], shape(region.geometry)))
        details.append({"slide": region.run_slide.name, "region": region.pk, "label": region.label,
                        "score": region.score, "area_um2": region.area_um2, "verdict": verdict,
                        "settled": bool(outcome and outcome.settled), "comment": outcome.comment if outcome else ""})
    stem = f"run-{run.pk}-{run_slide.name if run_slide is not None else 'all'}-verdicts"
    if kind == "csv":
        return annotations_csv(items, columns=details).encode(), "text/csv; charset=utf-8", f"{stem}.csv"
    if kind == "xml":
        hex_colors = {name: "#{:02X}{:02X}{:02X}".format(*rgb) for name, rgb in colors.items()}
        return asap_xml(items, colors=hex_colors), "application/xml", f"{stem}.xml"
    properties = [{"measurements": {k: d[k] for k in ("score", "area_um2") if d[k] is not None},
                   **{k: d[k] for k in ("region", "label", "verdict", "settled", "comment")}} for d in details]
    body = json.dumps(geojson(items, colors=colors, properties=properties)).encode()
    return body, "application/geo+json", f"{stem}.geojson"


# --- disagreements and their settlement -------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    region: Region
    verdicts: list[Verdict]
    settlement: Settlement | None


def disagreements(run: Run, *, run_slide: RunSlide | None = None, settled: bool | None = None
                  ) -> list[Disagreement]:
    """Regions of the run whose reviewers gave different verdicts, highest score first, with each
    reviewer's verdict (and slot) and the admin's settlement if there is one."""
    regions = (Region.objects.filter(run=run).annotate(kinds=Count("verdicts__verdict", distinct=True))
               .filter(kinds__gte=2).select_related("run_slide", "settlement").defer("geometry")
               .order_by("-score", "pk"))
    if run_slide is not None:
        regions = regions.filter(run_slide=run_slide)
    if settled is not None:
        regions = regions.filter(settlement__isnull=not settled)
    found = list(regions)
    given: dict[int, list[Verdict]] = defaultdict(list)
    for verdict in Verdict.objects.filter(region__in=found).select_related("reviewer").order_by("slot", "pk"):
        given[verdict.region_id].append(verdict)
    return [Disagreement(r, given[r.pk], getattr(r, "settlement", None)) for r in found]


def settle(run: Run, region: Region, admin: Any, verdict: Any, comment: str = "") -> tuple[Settlement, bool]:
    """An admin's verdict on a region the reviewers disagree on; a second settlement replaces the first."""
    kind = verdict_kind(verdict)
    comment = _comment(comment) or ""
    if region.run_id != run.pk:
        raise ReviewError(f"Region {region.pk} is not a region of {run.name}.")
    kinds = set(Verdict.objects.filter(region=region).values_list("verdict", flat=True))
    if len(kinds) < 2:
        raise Conflict(f"The reviewers of region {region.label} of slide {region.run_slide.name} do not disagree "
                       "(it has fewer than two different verdicts): there is nothing to settle.")
    with transaction.atomic():
        settlement, created = Settlement.objects.update_or_create(
            region=region, defaults={"run": run, "verdict": kind, "comment": comment, "settled_by": admin})
    return settlement, created


# --- reviewers of a cohort -------------------------------------------------------------------------


def assign_reviewer(cohort: Cohort, user: Any, slot: int, *, by: Any = None) -> CohortReviewer:
    """Name ``user`` the first or second reviewer of the cohort."""
    if slot not in Slot.values:
        raise ReviewError(f"A slot is 1 (first reviewer) or 2 (second reviewer), not {slot}.")
    if not cohort.project.has_member(user):
        raise ReviewError(f"{user.get_username()} is not a member of project {cohort.project.name}.")
    if not may_review(user):
        raise ReviewError(f"{user.get_username()} is neither a pathologist nor an admin: they cannot give verdicts.")
    taken = CohortReviewer.objects.filter(cohort=cohort, slot=slot).select_related("reviewer").first()
    if taken is not None:
        raise Conflict(f"Cohort {cohort.name} has a {taken.get_slot_display()} already: "
                       f"{taken.reviewer.get_username()}; remove them first.")
    if CohortReviewer.objects.filter(cohort=cohort, reviewer=user).exists():
        raise Conflict(f"{user.get_username()} is a reviewer of cohort {cohort.name} already.")
    try:
        with transaction.atomic():
            return CohortReviewer.objects.create(cohort=cohort, reviewer=user, slot=slot, added_by=by)
    except IntegrityError:
        raise Conflict(f"Cohort {cohort.name} was given that reviewer or slot at the same moment.") from None


def region_image_box(region: Region, *, width: int | None, height: int | None) -> tuple[int, int, int, int]:
    """The level-0 rectangle (left, top, width, height) of a region's small image: the region with a
    margin of context, kept inside the slide."""
    margin = settings.REVIEW_IMAGE_MARGIN
    pad_x, pad_y = region.width * margin + 1, region.height * margin + 1
    left, top = max(0, math.floor(region.x - pad_x)), max(0, math.floor(region.y - pad_y))
    right, bottom = math.ceil(region.x + region.width + pad_x), math.ceil(region.y + region.height + pad_y)
    if width:
        right = min(right, width)
    if height:
        bottom = min(bottom, height)
    return left, top, max(1, right - left), max(1, bottom - top)

