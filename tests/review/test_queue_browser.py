"""The review workspace in headless Chromium on a real run: the viewer's review panel by keyboard (verdicts
saved at once, the view moving on, undo, comments, overlays hidden while H is held, the keys overlay), the
worklist page, the reviewed layer, a reader's panel, the run page's review summary, and who sees what."""

from __future__ import annotations

import io
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sua_portal.review.models import SlideCompletion, Verdict
from sua_portal.runs.models import Region, Run, RunSlide
from tests.review.conftest import flagged, slides_with_flags

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    """Where screenshots go: $SUA_SCREENSHOTS (to look at them) or the test's temporary directory."""
    folder = Path(os.environ.get("SUA_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def osd_pixels(page: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#osd").screenshot())).convert("RGB")).astype(float)


def changed(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that differ between two screenshots."""
    return int((np.abs(a - b).sum(axis=2) > 24).sum())


def open_slide(page: Any, url: str) -> None:
    """The viewer at ``url``, its review panel loaded, the view at the first region and its tiles drawn."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(url)
    try:
        page.wait_for_function("window.suaReview && window.suaReview.loaded", timeout=30_000)
    except Exception as exc:
        message = page.locator("#queue-message").text_content() if page.locator("#queue-message").count() else ""
        raise AssertionError(f"the review panel did not load: {message!r}; page errors: {problems}") from exc
    settle(page)


def settle(page: Any) -> None:
    """Writes answered, the view where it goes, the slide's tiles drawn."""
    page.wait_for_function("window.suaReview.saving === 0 && !window.suaReview.flying", timeout=20_000)
    page.wait_for_function("window.suaViewer.world.getItemAt(0) && window.suaViewer.world.getItemAt(0).getFullyLoaded()",
                           timeout=20_000)


def verdicts(user: Any, regions: list[Region]) -> dict[int, str]:
    return dict(Verdict.objects.filter(reviewer=user, region__in=regions).values_list("region", "verdict"))


def current(page: Any) -> int:
    return int(page.evaluate("window.suaReview.current"))


def press(page: Any, key: str) -> float:
    """Press a moving key; the milliseconds from the key to the next region shown with its tiles drawn."""
    moves = page.evaluate("window.suaReview.moves")
    page.keyboard.press(key)
    page.wait_for_function(f"window.suaReview.moves > {moves} && window.suaReview.drawnAt !== null", timeout=20_000)
    return float(page.evaluate("window.suaReview.drawnAt - window.suaReview.keyAt"))


def test_a_pathologist_reviews_a_slide_by_keyboard(
    review_run: Run, people: dict[str, Any], signed_in_page: Callable[[str], Any], live_server: Any, screens: Path,
) -> None:
    run, pathologist = review_run, people["pathologist"]
    row = slides_with_flags(run)[0]
    regions = flagged(run, slide=row)
    ids = [r.pk for r in regions]
    assert len(ids) >= 4
    page = signed_in_page("pathologist")
    open_slide(page, f"{live_server.url}/slides/{row.slide_id}/?run={run.pk}")

    # Real tile pixels: the slide, not an empty canvas.
    pixels = osd_pixels(page)
    assert pixels.std() > 10
    # The queue: every flagged region, highest score first, each with its small image and no verdict yet;
    # the view at the first one (the queue's resume), marked in the list and on the canvas.
    assert page.locator("#queue-list li").count() == len(ids)
    assert [int(i) for i in page.locator("#queue-list li").evaluate_all("els => els.map(e => e.dataset.id)")] == ids
    scores = [float(t.split()[1]) for t in page.locator("#queue-list li .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    assert "/region.jpeg?" in (page.locator("#queue-list li img").first.get_attribute("src") or "")
    assert page.locator("#queue-list .verdict-none").count() == len(ids)
    assert current(page) == ids[0] and page.locator("#queue-list li.current").get_attribute("data-id") == str(ids[0])
    assert page.evaluate("window.suaViewerLayers.active && window.suaViewerLayers.active.set") == "regions"
    assert f"0 of {len(ids)} reviewed" in page.locator("#queue-progress").inner_text()
    assert page.locator("#npr-list").is_hidden()  # the plain list of flagged regions gives way to the queue
    page.screenshot(path=str(screens / "queue-pathologist.png"))

    # T: tumor, saved at once; the view flies to the next region without a verdict.
    times = [press(page, "t")]
    settle(page)
    assert verdicts(pathologist, regions) == {ids[0]: "tumor"}
    assert current(page) == ids[1]
    assert page.locator(f'#queue-list li[data-id="{ids[0]}"] .verdict-badge').inner_text() == "Tumor"
    assert f"1 of {len(ids)} reviewed" in page.locator("#queue-progress").inner_text()
    # F and U, then Z takes the last one back and the view returns to its region.
    times.append(press(page, "f"))
    settle(page)
    times.append(press(page, "u"))
    settle(page)
    assert verdicts(pathologist, regions) == {ids[0]: "tumor", ids[1]: "not_tumor", ids[2]: "unsure"}
    page.keyboard.press("z")
    page.wait_for_function(f"window.suaReview.current === {ids[2]}", timeout=10_000)
    settle(page)
    assert verdicts(pathologist, regions) == {ids[0]: "tumor", ids[1]: "not_tumor"}
    assert page.locator(f'#queue-list li[data-id="{ids[2]}"] .verdict-badge').inner_text() == "no verdict"
    # N and P move without writing.
    times.append(press(page, "n"))
    assert current(page) == ids[3]
    times.append(press(page, "p"))
    assert current(page) == ids[2]
    settle(page)

    # H hides every overlay while held: the regions' outlines and the heatmap go, and come back on release.
    page.wait_for_function("window.suaViewer.world.getItemCount() >= 2 && window.suaViewer.world.getItemAt(1).getFullyLoaded()",
                           timeout=20_000)
    page.wait_for_timeout(300)
    shown = osd_pixels(page)
    page.keyboard.down("h")
    page.wait_for_function("window.suaViewerState.overlaysHidden === true", timeout=5_000)
    page.wait_for_timeout(300)
    hidden = osd_pixels(page)
    page.screenshot(path=str(screens / "queue-overlays-hidden.png"))
    page.keyboard.up("h")
    page.wait_for_function("window.suaViewerState.overlaysHidden === false", timeout=5_000)
    page.wait_for_timeout(300)
    back = osd_pixels(page)
    assert changed(shown, hidden) > 2000
    assert changed(shown, back) < changed(shown, hidden) / 20

    # ? shows the keys; Esc closes them.
    page.keyboard.press("?")
    assert page.locator("#queue-keys").is_visible()
    assert "not tumor" in page.locator("#queue-keys").inner_text()
    page.screenshot(path=str(screens / "queue-keys.png"))
    page.keyboard.press("Escape")
    assert page.locator("#queue-keys").is_hidden()

    # C: a comment. Typing in it (letters that are keys too) gives no verdict and moves nothing.
    moves = page.evaluate("window.suaReview.moves")
    page.keyboard.press("c")
    assert page.evaluate("document.activeElement.id") == "queue-comment-text"
    page.keyboard.type("tufz npch: atypical nuclei")
    assert page.evaluate("window.suaReview.moves") == moves and current(page) == ids[2]
    assert verdicts(pathologist, regions) == {ids[0]: "tumor", ids[1]: "not_tumor"}
    assert page.evaluate("window.suaViewerState.overlaysHidden") is False and page.locator("#queue-keys").is_hidden()
    page.select_option("#queue-comment-verdict", "tumor")
    page.locator("#queue-comment-text").press("Enter")
    page.wait_for_function(f"window.suaReview.current === {ids[3]}", timeout=10_000)
    settle(page)
    saved = Verdict.objects.get(reviewer=pathologist, region=ids[2])
    assert (saved.verdict, saved.comment) == ("tumor", "tufz npch: atypical nuclei")
    # Keys with Ctrl, Meta or Alt are the browser's.
    page.keyboard.press("Control+t")
    page.wait_for_timeout(300)
    assert ids[3] not in verdicts(pathologist, regions)

    # The rest by key; then the slide is done: marked complete, and on to the next slide.
    for _ in ids[3:-1]:
        times.append(press(page, "f"))
    page.keyboard.press("f")  # the last one: nothing is left to move on to
    page.wait_for_function("window.suaReview.saving === 0", timeout=20_000)
    assert len(verdicts(pathologist, regions)) == len(ids)
    assert page.locator("#queue-done").is_visible()
    page.screenshot(path=str(screens / "queue-done.png"))
    page.locator("#queue-complete").click()
    page.wait_for_function("window.suaReview.saving === 0", timeout=10_000)
    assert SlideCompletion.objects.filter(run_slide=row, reviewer=pathologist).exists()
    assert page.locator("#queue-reopen").is_visible() and page.locator('button[data-key="t"]').is_disabled()
    page.keyboard.press("t")  # complete: the panel says why nothing changes
    page.wait_for_function("window.suaReview.error !== ''", timeout=5_000)
    assert "reopen" in page.locator("#queue-message").inner_text()
    nxt = slides_with_flags(run)[1]
    page.locator("#queue-next-slide").click()
    page.wait_for_url(f"**/slides/*/?run={run.pk}*", timeout=10_000)
    page.wait_for_function("window.suaReview && window.suaReview.loaded", timeout=30_000)
    assert page.evaluate("window.suaReview.slide") != row.slide_id
    assert RunSlide.objects.filter(run=run, slide=page.evaluate("window.suaReview.slide")).exists()
    assert nxt.slide_id is not None

    # The figure the brief asks for: milliseconds from a key to the next region shown with its tiles drawn.
    report = f"key to next region shown: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms over {len(times)}"
    print(report)
    (screens / "queue-timing.txt").write_text(report + "\n" + " ".join(f"{t:.0f}" for t in times) + "\n")
    assert statistics.median(times) < 3000
