"""Verdicts through the API on a real run: the queue and worklist a pathologist works through, undo,
slides marked complete, what bad input is told, blind second reviewers and an admin's settlement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings

from sua_portal.review.models import CohortReviewer, Settlement, SlideCompletion, Verdict, VerdictChange
from sua_portal.runs.models import Region, Run
from sua_portal.runs.services import choose_review_run, run_again
from tests.review.conftest import REVIEW_RANGE, flagged, slides_with_flags

pytestmark = pytest.mark.django_db


def give(client: Any, region: int, verdict: str, comment: str | None = None) -> Any:
    body: dict[str, Any] = {"region": region, "verdict": verdict}
    if comment is not None:
        body["comment"] = comment
    return client.post("/api/review/verdicts/", body, format="json")


def test_a_pathologist_works_through_the_queue_and_resumes_where_they_stopped(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    run, pathologist = review_run, api_for(people["pathologist"])
    base = f"/api/review/runs/{run.pk}"
    work = pathologist.get(f"{base}/worklist/").json()
    assert work["range"]["index"] == REVIEW_RANGE
    entries = work["slides"]
    assert len(entries) == run.slide_set.count()
    for entry in entries:
        assert entry["flagged"] == Region.objects.filter(run=run, run_range__index=REVIEW_RANGE, flagged=True,
                                                         run_slide__slide=entry["slide"]).count()
        assert entry["reviewed"] == 0 and entry["complete"] is False
    # Slides with regions to review first, the most uncertain first; those with none after.
    to_review = [e for e in entries if e["flagged"]]
    assert entries[:len(to_review)] == to_review
    assert [e["max_score"] for e in to_review] == sorted((e["max_score"] for e in to_review), reverse=True)
    first, second = to_review[0], to_review[1]
    assert work["resume"]["slide"]["slide"] == first["slide"]

    # The first slide's queue: its flagged regions, highest score first, none reviewed yet.
    queue = pathologist.get(f"{base}/queue/", {"slide": first["slide"]}).json()
    ids = [r["id"] for r in queue["regions"]]
    assert ids == [r.pk for r in flagged(run, slide=run.slide_set.get(slide=first["slide"]))]
    assert [r["score"] for r in queue["regions"]] == sorted((r["score"] for r in queue["regions"]), reverse=True)
    assert queue["resume"] == ids[0] == work["resume"]["region"]
    assert queue["slot"] == 1 and queue["complete"] is False and queue["reviewed"] == 0
    image = pathologist.get(queue["regions"][0]["image"])  # each region's small picture
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"

    # A verdict is saved at once, with who, when, which run and region, and the comment.
    saved = give(pathologist, ids[0], "tumor", "tumor cells at the edge")
    assert saved.status_code == 201, saved.content
    verdict = Verdict.objects.get()
    assert (verdict.reviewer, verdict.run, verdict.region_id, verdict.verdict, verdict.comment, verdict.slot) == (
        people["pathologist"], run, ids[0], "tumor", "tumor cells at the edge", 1)
    assert saved.json()["updated"] is not None
    # A double submit changes nothing and records nothing more.
    again = give(pathologist, ids[0], "tumor", "tumor cells at the edge")
    assert again.status_code == 200 and again.json()["id"] == verdict.pk
    assert Verdict.objects.count() == 1 and VerdictChange.objects.count() == 1
    # The verdict without a comment keeps the comment.
    assert give(pathologist, ids[0], "unsure").json()["comment"] == "tumor cells at the edge"

    queue = pathologist.get(f"{base}/queue/", {"slide": first["slide"]}).json()
    assert queue["regions"][0]["verdict"]["verdict"] == "unsure" and queue["reviewed"] == 1
    assert queue["resume"] == ids[1]
    # Stopped here: the worklist resumes on this slide at its next region, not at the most uncertain slide.
    for region in ids[1:-1]:
        assert give(pathologist, region, "not_tumor").status_code == 201
    work = pathologist.get(f"{base}/worklist/").json()
    assert work["resume"] == {"slide": work["slides"][0], "region": ids[-1]}
    assert work["slides"][0]["slide"] == first["slide"] and work["slides"][0]["reviewed"] == len(ids) - 1
    # The next slide for the reviewer: the next one with regions left, at its first region.
    following = pathologist.get(f"{base}/next-slide/", {"after": first["slide"]}).json()["next"]
    assert following["slide"]["slide"] == second["slide"]
    assert following["region"] == flagged(run, slide=run.slide_set.get(slide=second["slide"]))[0].pk

    # Complete only when every region has a verdict; then the slide is closed to verdicts until reopened.
    refused = pathologist.post(f"{base}/complete/", {"slide": first["slide"]}, format="json")
    assert refused.status_code == 409 and refused.json()["unreviewed"] == 1
    assert "1 flagged region of slide" in refused.json()["detail"]
    assert give(pathologist, ids[-1], "tumor").status_code == 201
    done = pathologist.post(f"{base}/complete/", {"slide": first["slide"]}, format="json")
    assert done.status_code == 200 and done.json()["complete"] is True
    assert SlideCompletion.objects.filter(reviewer=people["pathologist"]).count() == 1
    closed = give(pathologist, ids[0], "tumor")
    assert closed.status_code == 409 and "marked slide" in closed.json()["detail"]
    assert pathologist.post(f"{base}/undo/", {"slide": first["slide"]}, format="json").status_code == 409
    work = pathologist.get(f"{base}/worklist/").json()
    assert work["slides"][-1]["slide"] == first["slide"] and work["slides"][-1]["complete"] is True
    assert work["resume"]["slide"]["slide"] == second["slide"]
    assert pathologist.post(f"{base}/reopen/", {"slide": first["slide"]}, format="json").json()["complete"] is False
    assert give(pathologist, ids[0], "tumor").status_code == 200

    # The caller's verdicts, of the run and on one slide.
    mine = pathologist.get("/api/review/verdicts/", {"run": run.pk, "slide": first["slide"]}).json()
    assert mine["count"] == len(ids) and {v["region"] for v in mine["results"]} == set(ids)
    assert pathologist.get("/api/review/verdicts/", {"slide": second["slide"]}).json()["count"] == 0
    # Researchers read the queue but give no verdicts.
    researcher = api_for(people["researcher"])
    assert researcher.get(f"{base}/queue/", {"slide": first["slide"]}).json()["slot"] is None
    assert give(researcher, ids[0], "tumor").status_code == 403


def test_undo_takes_back_the_callers_last_verdict_on_the_slide_and_restores_the_one_before(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], second_pathologist: Any,
) -> None:
    run = review_run
    row = slides_with_flags(run)[0]
    a, b = (r.pk for r in flagged(run, slide=row)[:2])
    me, other = api_for(people["pathologist"]), api_for(second_pathologist)
    undo = f"/api/review/runs/{run.pk}/undo/"
    assert give(other, a, "unsure").status_code == 201
    for region, verdict in ((a, "tumor"), (a, "not_tumor"), (b, "unsure")):
        assert give(me, region, verdict).status_code in (200, 201)

    def mine() -> dict[int, str]:
        return dict(Verdict.objects.filter(reviewer=people["pathologist"]).values_list("region", "verdict"))

    first = me.post(undo, {"slide": row.slide_id}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["region"] == b and first.json()["undone"]["verdict"] == "unsure"
    assert first.json()["verdict"] is None and mine() == {a: "not_tumor"}
    second = me.post(undo, {"slide": row.slide_id}, format="json").json()
    assert second["region"] == a and second["verdict"]["verdict"] == "tumor" and mine() == {a: "tumor"}
    me.post(undo, {"slide": row.slide_id}, format="json")
    assert mine() == {}
    nothing = me.post(undo, {"slide": row.slide_id}, format="json")
    assert nothing.status_code == 409 and "no verdict" in nothing.json()["detail"]
    # The other reviewer's verdict was never touched, and every change stays on record.
    assert Verdict.objects.get().reviewer == second_pathologist
    assert VerdictChange.objects.filter(reviewer=people["pathologist"], undone__isnull=False).count() == 3


def test_bad_input_is_refused_by_name_and_stores_nothing(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    run, pathologist = review_run, api_for(people["pathologist"])
    region = flagged(run)[0]
    unknown = give(pathologist, region.pk, "maybe")
    assert unknown.status_code == 400
    assert unknown.json() == {"verdict": ['"maybe" is not a verdict: give one of tumor, not_tumor, unsure.']}
    too_long = give(pathologist, region.pk, "tumor", "x" * (settings.REVIEW_COMMENT_MAX + 1))
    assert too_long.status_code == 400 and "comment" in too_long.json()
    not_flagged = Region.objects.filter(run=run, flagged=False).first()
    assert not_flagged is not None
    refused = give(pathologist, not_flagged.pk, "tumor")
    assert refused.status_code == 400 and "not flagged in the review range" in refused.json()["detail"]
    # Another project's region does not exist for the caller (404, as every object of another project).
    assert give(api_for(people["outsider"]), region.pk, "tumor").status_code == 404
    assert api_for(people["outsider"]).get(f"/api/review/runs/{run.pk}/queue/",
                                           {"slide": region.run_slide.slide_id}).status_code == 404
    assert give(pathologist, 10**9, "tumor").status_code == 404
    # Researchers read; they give no verdicts.
    assert give(api_for(people["researcher"]), region.pk, "tumor").status_code == 403
    # Once another run is the review run, this one takes no verdicts, undo or completion: 409 naming it.
    other = Run.objects.create(project=run.project, name="Newer run", ensemble=run.ensemble,
                               ensemble_name=run.ensemble_name, settings=run.settings, status=Run.Status.DONE)
    choose_review_run(other)
    stale = give(pathologist, region.pk, "tumor")
    assert stale.status_code == 409
    assert stale.json()["detail"].startswith(f"{run.name} is no longer the review run")
    assert stale.json()["review_run"] == other.pk
    for action in ("undo", "complete"):
        answer = pathologist.post(f"/api/review/runs/{run.pk}/{action}/", {"slide": region.run_slide.slide_id},
                                  format="json")
        assert answer.status_code == 409 and "no longer the review run" in answer.json()["detail"]
    assert not Verdict.objects.exists() and not VerdictChange.objects.exists()
    assert not SlideCompletion.objects.exists()
    # A run still on its way has nothing to review yet.
    waiting = pathologist.get(f"/api/review/runs/{run_again(run).pk}/worklist/")
    assert waiting.status_code == 409 and "only a finished run's flags are reviewed" in waiting.json()["detail"]


def test_a_second_reviewer_is_blind_to_the_first_and_an_admin_settles_their_disagreements(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], second_pathologist: Any,
    make_user: Callable[..., Any],
) -> None:
    from sua_portal.accounts.models import Membership

    run = review_run
    row = slides_with_flags(run)[0]
    assert row.slide is not None
    cohort = row.slide.cohort
    admin, first, second = api_for(people["admin"]), api_for(people["pathologist"]), api_for(second_pathologist)
    reviewers = "/api/review/reviewers/"
    # Admins name the cohort's reviewers; the slot and the person are each taken once.
    assert first.post(reviewers, {"cohort": cohort.pk, "reviewer": people["pathologist"].pk, "slot": 1},
                      format="json").status_code == 403
    named = admin.post(reviewers, {"cohort": cohort.pk, "reviewer": people["pathologist"].pk, "slot": 1}, format="json")
    assert named.status_code == 201, named.content
    taken = admin.post(reviewers, {"cohort": cohort.pk, "reviewer": second_pathologist.pk, "slot": 1}, format="json")
    assert taken.status_code == 409 and "first reviewer already: pathologist" in taken.json()["detail"]
    not_a_reviewer = admin.post(reviewers, {"cohort": cohort.pk, "reviewer": people["researcher"].pk, "slot": 2},
                                format="json")
    assert not_a_reviewer.status_code == 400 and "neither a pathologist nor an admin" in not_a_reviewer.json()["detail"]
    assert admin.post(reviewers, {"cohort": cohort.pk, "reviewer": second_pathologist.pk, "slot": 2},
                      format="json").status_code == 201
    listed = first.get(reviewers, {"cohort": cohort.pk}).json()["results"]
    assert [(r["reviewer_name"], r["slot"]) for r in listed] == [("pathologist", 1), ("second-pathologist", 2)]
    # A pathologist the cohort does not name gives no verdicts on its slides.
    third = make_user("third", "pathologist")
    Membership.objects.create(project=run.project, user=third)
    a, b = (r.pk for r in flagged(run, slide=row)[:2])
    refused = give(api_for(third), a, "tumor")
    assert refused.status_code == 403 and "not a reviewer of cohort" in refused.json()["detail"]

    assert give(first, a, "tumor", "clearly tumor").status_code == 201
    assert give(first, b, "not_tumor").status_code == 201
    assert give(second, a, "not_tumor", "reactive cells").status_code == 201
    assert give(second, b, "not_tumor").status_code == 201
    assert dict(Verdict.objects.values_list("reviewer__username", "slot").distinct()) == {
        "pathologist": 1, "second-pathologist": 2}
    # Blind: nothing the second reviewer reads shows the first one's verdicts.
    seen = [
        second.get("/api/review/verdicts/", {"run": run.pk}).content,
        second.get(f"/api/review/runs/{run.pk}/queue/", {"slide": row.slide_id}).content,
        second.get(f"/api/review/runs/{run.pk}/export/", {"type": "csv"}).content,
        second.get(f"/api/review/runs/{run.pk}/export/", {"type": "geojson", "slide": row.slide_id}).content,
    ]
    assert all(b"clearly tumor" not in body for body in seen)
    queue = second.get(f"/api/review/runs/{run.pk}/queue/", {"slide": row.slide_id}).json()
    assert {r["id"]: (r["verdict"] or {}).get("verdict") for r in queue["regions"]}[a] == "not_tumor"
    assert queue["slot"] == 2
    summary = second.get(f"/api/review/runs/{run.pk}/summary/").json()
    assert summary["view"] == "own" and summary["total"]["confirmed"] == 0 and summary["total"]["rejected"] == 2
    assert second.get(f"/api/review/runs/{run.pk}/disagreements/").status_code == 403

    # The admin sees where they disagree, with each verdict and slot, and settles it.
    listing = admin.get(f"/api/review/runs/{run.pk}/disagreements/").json()
    assert [d["region"] for d in listing["results"]] == [a]
    assert [(v["reviewer"], v["slot"], v["verdict"]) for v in listing["results"][0]["verdicts"]] == [
        ("pathologist", 1, "tumor"), ("second-pathologist", 2, "not_tumor")]
    assert listing["results"][0]["settlement"] is None
    agreed = admin.post(f"/api/review/runs/{run.pk}/settle/", {"region": b, "verdict": "tumor"}, format="json")
    assert agreed.status_code == 409 and "do not disagree" in agreed.json()["detail"]
    settled = admin.post(f"/api/review/runs/{run.pk}/settle/", {"region": a, "verdict": "tumor", "comment": "seen"},
                         format="json")
    assert settled.status_code == 201 and settled.json()["settled_by"] == "admin"
    assert Settlement.objects.get().verdict == "tumor"
    changed = admin.post(f"/api/review/runs/{run.pk}/settle/", {"region": a, "verdict": "unsure"}, format="json")
    assert changed.status_code == 200 and Settlement.objects.get().verdict == "unsure"
    assert admin.get(f"/api/review/runs/{run.pk}/disagreements/", {"settled": "false"}).json()["count"] == 0
    assert admin.get(f"/api/review/runs/{run.pk}/disagreements/", {"settled": "true"}).json()["count"] == 1
    # Researchers (who do not review) see the outcome: the settlement, else the verdict both gave.
    outcome = api_for(people["researcher"]).get(f"/api/review/runs/{run.pk}/summary/").json()
    assert outcome["view"] == "all"
    assert {k: outcome["total"][k] for k in ("reviewed", "confirmed", "rejected", "unsure", "disputed", "settled")} == {
        "reviewed": 2, "confirmed": 0, "rejected": 1, "unsure": 1, "disputed": 0, "settled": 1}
    # An admin removes a reviewer; the cohort then names only the second.
    assert admin.delete(f"{reviewers}{named.json()['id']}/").status_code == 204
    assert list(CohortReviewer.objects.values_list("reviewer__username", flat=True)) == ["second-pathologist"]
