"""`sua evaluate` end to end on the generated cohort, and its bad-input contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import defaults
from analysis.bundle import write_bundle
from analysis.cli import main
from analysis.evaluation import EvaluationSettings, SlideInput, evaluate_cohort
from analysis.io import InputError, read_heatmap
from analysis.metrics import f_beta
from analysis.uncertainty import binary_entropy

from .conftest import DOWNSAMPLE, FN_BAND, LESION, MPP, SLIDES, Cohort, slide_arrays

ROOT = Path(__file__).resolve().parents[2]
B = 50
M_KEYS = {"value", "mean", "std", "median", "ci95"}
FILE_KEYS = ("segmentation", "uncertainty", "members", "truth")
OUTPUTS = [
    "report.json",
    "report.html",
    "report.pdf",
    "table1_segmentation.csv",
    "table2_f_beta.csv",
    "table3_dice.csv",
    "table3_dice_tumor_slides.csv",
    "table4_negative_slides.csv",
    "fncr.csv",
    "thresholds.csv",
    *[f"{name}.{ext}" for name in ("npr_scores", "baseline_pixels", "fncr_boxplots") for ext in ("png", "svg")],
]


@pytest.fixture(scope="module")
def run(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One in-process run with the defaults (bar the bootstrap size)."""
    out = tmp_path_factory.mktemp("run") / "out"
    bundle = out.parent / "cohort.zip"
    command = ["evaluate", str(cohort.manifest), "--out", str(out), "--bootstrap", str(B), "--no-progress"]
    assert main([*command, "--bundle", str(bundle)]) == 0
    return out


@pytest.fixture(scope="module")
def report(run: Path) -> dict[str, Any]:
    return json.loads((run / "report.json").read_text())


# --------------------------------------------------------------------------- expected numbers, by hand


def _pixels(split: str, domain: str | None, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate-pixel uncertainties and truth of a split, recomputed from the generator."""
    values, truths = [], []
    for spec in SLIDES:
        if spec.split != split or (domain is not None and spec.domain != domain):
            continue
        s, u, truth = slide_arrays(spec)
        if spec.uncertainty == "none":
            u = binary_entropy(s)
        candidates = (s > lower) & (s < upper)
        values.append(u[candidates])
        truths.append(truth[candidates])
    return np.concatenate(values), np.concatenate(truths)


def _brute_force_threshold(values: np.ndarray, positive: np.ndarray) -> float | None:
    """SPEC §6 calibration by trying every distinct value (ties to the higher one)."""
    best, chosen = 0.0, None
    for t in np.unique(values):
        flagged = values >= t
        score = f_beta(
            int((flagged & positive).sum()), int((flagged & ~positive).sum()), int((~flagged & positive).sum())
        )
        if score >= best and score > 0:
            best, chosen = score, float(t)
    return chosen


def _lesion_dice() -> float:
    r0, r1, c0, c1 = LESION
    band = (FN_BAND[1] - FN_BAND[0]) * (FN_BAND[3] - FN_BAND[2])
    core = (r1 - r0) * (c1 - c0) - band
    return 2 * core / (2 * core + band)


# --------------------------------------------------------------------------- the report


def test_it_writes_every_output(run: Path) -> None:
    assert sorted(p.name for p in run.iterdir()) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert (run / name).stat().st_size > 0
    assert (run / "npr_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 3 and page.count("<table>") == 7
    # Self-contained: no file or URL is referenced, only fragments inside the inline SVGs.
    assert "src=" not in page and re.findall(r'href="([^#][^"]*)"', page) == []
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".out.")]  # staging removed


def test_it_writes_the_report_as_a_pdf_too(run: Path) -> None:
    pdf = (run / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    # A settings page, one page per table (7) and one per figure (3).
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 11
    assert b"/CreationDate" not in pdf  # a rerun gives the same file


def test_its_bundle_reruns_to_the_same_report(run: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    with zipfile.ZipFile(run.parent / "cohort.zip") as archive:
        names = archive.namelist()
        archive.extractall(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    named = {
        e[k] if isinstance(e[k], str) else e[k]["path"]
        for e in manifest["slides"]
        for k in e
        if k in FILE_KEYS and e[k]
    }
    assert sorted(names) == sorted(["manifest.json", *named])  # exactly the files it names
    assert f"--bootstrap {B}" in manifest["command"] and manifest["settings"]["bootstrap"] == B
    out = tmp_path / "again"
    assert (
        main(["evaluate", str(bundle / "manifest.json"), "--out", str(out), "--bootstrap", str(B), "--no-progress"])
        == 0
    )
    first = json.loads((run / "report.json").read_text())
    again = json.loads((out / "report.json").read_text())
    assert again["settings"].pop("manifest") == str(bundle / "manifest.json")
    first["settings"].pop("manifest")
    assert again == first


def test_a_bundle_of_a_manifest_naming_a_missing_file_is_refused(cohort: Cohort, tmp_path: Path) -> None:
    manifest = _manifest(cohort, tmp_path, lambda entries: entries[0].update(truth=str(tmp_path / "gone.png")))
    with pytest.raises(InputError, match=r"truth file .*gone.png not found"):
        write_bundle(manifest, tmp_path / "b.zip")
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*partial"))


def test_report_json_has_the_documented_structure(report: dict[str, Any]) -> None:
    assert set(report) == {"settings", "ranges"}
    settings = report["settings"]
    assert settings["ranges"] == [list(r) for r in defaults.PAPER_RANGES]
    assert (settings["aggregate"], settings["uncertainty"], settings["bootstrap"]) == ("mean", "entropy", B)
    assert (settings["fn_fraction"], settings["beta"], settings["seed"]) == (0.9, 0.5, 0)
    assert settings["uncertainty_sources"] == {"file": 10, "members": 1, "segmentation entropy": 1}
    assert [(r["lower"], r["upper"]) for r in report["ranges"]] == list(defaults.PAPER_RANGES)
    for entry in report["ranges"]:
        assert set(entry) == {"lower", "upper", "sua_threshold", "baseline_threshold", "domains"}
        assert list(entry["domains"]) == ["camelyon", "sentinel"]
        for domain in entry["domains"].values():
            assert set(domain) == {"npr_count", "fn_npr_count", "sua", "baseline", "original"}
            for method in ("sua", "baseline"):
                block = domain[method]
                assert set(block) == {"f_beta", "dice", "dice_tumor_slides", "fncr", "negative_slides_changed"}
                assert isinstance(block["negative_slides_changed"], int)
            assert set(domain["original"]) == {"dice", "dice_tumor_slides", "froc", "roc_auc"}
            for metric in [
                *domain["original"].values(),
                *[domain[m][k] for m in ("sua", "baseline") for k in ("f_beta", "dice", "dice_tumor_slides", "fncr")],
            ]:
                assert set(metric) == M_KEYS and len(metric["ci95"]) == 2


def test_in_domain_numbers_by_hand(report: dict[str, Any]) -> None:
    widest = report["ranges"][0]
    # Validation FN NPRs score 0.55, 0.65, 0.7 and TN at most 0.35: the lowest FN score wins.
    assert widest["sua_threshold"] == pytest.approx(0.55, abs=1e-6)
    camelyon = widest["domains"]["camelyon"]
    assert (camelyon["npr_count"], camelyon["fn_npr_count"]) == (7, 3)
    sua = camelyon["sua"]
    assert sua["f_beta"]["value"] == 1.0 and sua["fncr"]["value"] == 1.0
    assert sua["dice"]["value"] == 1.0 and sua["negative_slides_changed"] == 0
    assert sua["f_beta"]["ci95"] == [1.0, 1.0]
    lesion = _lesion_dice()
    original = camelyon["original"]
    assert original["dice"]["value"] == pytest.approx((3 * lesion + 1) / 4)
    assert original["dice_tumor_slides"]["value"] == pytest.approx(lesion)
    assert original["froc"]["value"] == 1.0 and original["roc_auc"]["value"] == 1.0


def test_shifted_domain_numbers_by_hand(report: dict[str, Any]) -> None:
    sentinel = report["ranges"][0]["domains"]["sentinel"]
    assert (sentinel["npr_count"], sentinel["fn_npr_count"]) == (6, 2)
    sua = sentinel["sua"]
    # Flagged: sen-1's FN (60 px) and sen-2's very uncertain TN (100 px); missed: sen-3's FN.
    assert sua["f_beta"]["value"] == pytest.approx(0.5)
    assert sua["fncr"]["value"] == pytest.approx(60 / 160)
    assert sua["negative_slides_changed"] == 1


def test_the_baseline_matches_a_brute_force_calibration(report: dict[str, Any]) -> None:
    for entry in report["ranges"]:
        values, positive = _pixels("validation", None, entry["lower"], entry["upper"])
        expected = _brute_force_threshold(values, positive) if values.size else None
        assert entry["baseline_threshold"] == expected
    widest = report["ranges"][0]
    values, positive = _pixels("test", "camelyon", widest["lower"], widest["upper"])
    flagged = values >= widest["baseline_threshold"]
    tp, fp, fn = (flagged & positive).sum(), (flagged & ~positive).sum(), (~flagged & positive).sum()
    assert widest["domains"]["camelyon"]["baseline"]["f_beta"]["value"] == pytest.approx(f_beta(tp, fp, fn))


def test_a_range_without_candidates_reports_nothing_flagged(report: dict[str, Any]) -> None:
    narrow = report["ranges"][3]  # 0.85-0.95: s = 0.8 is not a candidate
    assert narrow["sua_threshold"] is None and narrow["baseline_threshold"] is None
    camelyon = narrow["domains"]["camelyon"]
    assert camelyon["npr_count"] == 0
    assert camelyon["sua"]["fncr"] == dict.fromkeys(M_KEYS) | {"ci95": [None, None]}
    assert camelyon["sua"]["f_beta"]["value"] == 0.0


def test_tables_are_laid_out_like_the_paper(run: Path) -> None:
    table4 = (run / "table4_negative_slides.csv").read_text().splitlines()
    assert table4[0].startswith("Dataset,Method,Tumor-free WSIs,")
    assert table4[1:] == [
        "camelyon,Baseline,1,0,0,0,0",
        "camelyon,SUA,1,0,0,0,0",
        "sentinel,Baseline,2,1,1,1,0",
        "sentinel,SUA,2,1,1,1,0",
    ]
    table2 = (run / "table2_f_beta.csv").read_text().splitlines()
    assert (
        table2[0]
        == 'Dataset,Method,"F0.5, 0.55 to 0.95","F0.5, 0.65 to 0.95","F0.5, 0.75 to 0.95","F0.5, 0.85 to 0.95"'
    )
    assert table2[2].startswith("camelyon,SUA,1.000 (0.000),")
    table1 = (run / "table1_segmentation.csv").read_text().splitlines()
    assert table1[0] == "Dataset,FROC,ROC-AUC,Dice score,Dice score (tumor slides)"


def test_the_library_gives_the_same_report_and_is_repeatable(cohort: Cohort, report: dict[str, Any]) -> None:
    slides = []
    for spec in SLIDES:
        s, u, truth = slide_arrays(spec)
        if spec.uncertainty == "members":
            u = binary_entropy(s)  # the members' mean is s, so the entropy is H(s)
        elif spec.uncertainty == "none":
            u = binary_entropy(s)
        slides.append(SlideInput(spec.id, spec.split, spec.domain, MPP, DOWNSAMPLE, s, u, truth))
    settings = EvaluationSettings(bootstrap=B)
    first = evaluate_cohort(slides, settings)
    assert first == evaluate_cohort(slides, settings)
    for got, want in zip(first["ranges"], report["ranges"], strict=True):
        assert got["sua_threshold"] == want["sua_threshold"]
        for domain in ("camelyon", "sentinel"):
            for method in ("sua", "baseline"):
                mine, theirs = got["domains"][domain][method], want["domains"][domain][method]
                assert mine["negative_slides_changed"] == theirs["negative_slides_changed"]
                for metric in ("f_beta", "dice", "fncr"):
                    expected = theirs[metric]["value"]
                    assert mine[metric]["value"] == (None if expected is None else pytest.approx(expected, rel=1e-6))
    seen: list[tuple[str, int, int]] = []
    evaluate_cohort(slides, EvaluationSettings(bootstrap=3), progress=lambda *a: seen.append(a))
    assert seen[0] == ("validation", 1, 4) and seen[-1] == ("bootstrap", 2, 2)


def test_the_library_names_the_slide_on_bad_arrays() -> None:
    s, u, truth = slide_arrays(SLIDES[0])
    s = s.copy()
    s[3, 3] = np.nan
    slides = [SlideInput("val-x", "validation", "d", MPP, DOWNSAMPLE, s, u, truth)]
    with pytest.raises(ValueError, match=r"^slide val-x: segmentation: contains NaN$"):
        evaluate_cohort(slides, EvaluationSettings(bootstrap=2))


def test_the_module_runs_as_a_program_into_an_existing_folder(cohort: Cohort, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    command = [sys.executable, "-m", "analysis.cli", "evaluate", str(cohort.manifest), "--out", str(out)]
    command += ["--range", "0.55:0.95", "--range", "0.6:0.9", "--aggregate", "p90", "--bootstrap", "20", "--seed", "3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["ranges"] == [[0.55, 0.95], [0.6, 0.9]]
    assert (report["settings"]["aggregate"], report["settings"]["seed"]) == ("p90", 3)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS, "keep.txt"])


# --------------------------------------------------------------------------- bad input


def _manifest(cohort: Cohort, folder: Path, edit: Callable[[list[dict[str, Any]]], object]) -> Path:
    """A copy of the cohort's manifest (absolute paths) after ``edit``."""
    entries = json.loads(cohort.manifest.read_text())["slides"]
    for entry in entries:
        for key in ("segmentation", "uncertainty", "members", "truth"):
            if entry.get(key) is not None:
                entry[key] = str(cohort.manifest.parent / entry[key])
    edit(entries)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"slides": entries}))
    return path


def _entry(entries: list[dict[str, Any]], slide_id: str) -> dict[str, Any]:
    return next(e for e in entries if e["id"] == slide_id)


def _bad_heatmap(folder: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> str:
    s, _, _ = slide_arrays(SLIDES[5])
    path = folder / name
    np.save(path, change(s.copy()))
    return str(path)


def _with_nan(a: np.ndarray) -> np.ndarray:
    a[5, 5] = np.nan
    return a


def _too_high(a: np.ndarray) -> np.ndarray:
    a[5, 5] = 1.5
    return a


BAD_MANIFESTS: dict[str, tuple[Callable[[list[dict[str, Any]], Path], object], str]] = {
    "missing file": (
        lambda e, f: _entry(e, "cam-2").update(segmentation=str(f / "nope.npy")),
        r"slide cam-2: .*nope\.npy: file not found",
    ),
    "NaN": (
        lambda e, f: _entry(e, "cam-2").update(segmentation=_bad_heatmap(f, "nan.npy", _with_nan)),
        r"slide cam-2: .*nan\.npy: contains NaN",
    ),
    "outside [0, 1]": (
        lambda e, f: _entry(e, "sen-4").update(segmentation=_bad_heatmap(f, "high.npy", _too_high)),
        r"slide sen-4: .*high\.npy: values outside \[0, 1\] \(min 0\.0117647, max 1\.5\)",
    ),
    "truth of another shape": (
        lambda e, f: _entry(e, "cam-1").update(truth=_bad_heatmap(f, "mask.npy", lambda a: a[:32] > 0.5)),
        r"slide cam-1: .*mask\.npy: mask shape \(32, 64\) matches neither the heatmap shape \(64, 64\) "
        r"nor its level-0 size at downsample 16",
    ),
    "uncertainty of another shape": (
        lambda e, f: _entry(e, "val-2").update(uncertainty=_bad_heatmap(f, "small.npy", lambda a: a[:32, :32])),
        r"slide val-2: uncertainty shape \(32, 32\) != segmentation shape \(64, 64\)",
    ),
    "no validation slides": (
        lambda e, f: [x.update(split="test", domain="camelyon") for x in e if x["split"] == "validation"],
        r"no validation slides",
    ),
    "truth missing": (
        lambda e, f: _entry(e, "cam-1").pop("truth"),
        r"slide cam-1: 'truth' is missing \(a path, or null for a slide without tumor\)",
    ),
    "bad split": (lambda e, f: _entry(e, "val-1").update(split="train"), r"slide val-1: 'split' must be"),
    "bad mpp": (lambda e, f: _entry(e, "val-1").update(mpp=-1), r"slide val-1: 'mpp' must be a positive number"),
    "duplicate id": (lambda e, f: _entry(e, "val-2").update(id="val-1"), r"slide val-1: id used twice"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifests_exit_2_with_one_line_and_write_nothing(
    case: str, cohort: Cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, message = BAD_MANIFESTS[case]
    manifest = _manifest(cohort, tmp_path, lambda entries: edit(entries, tmp_path))
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out"
    assert main(["evaluate", str(manifest), "--out", str(out), "--bootstrap", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sua evaluate: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert sorted(tmp_path.iterdir()) == before  # nothing written, not even the out folder


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--range", "0.9:0.5"], r"argument --range: range 0\.9:0\.5: lower must be below upper"),
        (["--range", "0.5"], r"argument --range: '0\.5' is not LOWER:UPPER"),
        (["--aggregate", "median"], r"argument --aggregate: unknown aggregate 'median'"),
        (["--fn-fraction", "1.5"], r"argument --fn-fraction: 1\.5 is not in \(0, 1\]"),
        (["--bootstrap", "0"], r"argument --bootstrap: 0 is below 1"),
        (["--uncertainty", "variance"], r"slide sen-4: --uncertainty variance needs ensemble 'members'"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(
    arguments: list[str], message: str, cohort: Cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["evaluate", str(cohort.manifest), "--out", str(out), *arguments]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_manifest_and_a_file_in_the_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cohort: Cohort
) -> None:
    assert main(["evaluate", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith("none.json: manifest not found")
    (tmp_path / "file").write_text("")
    assert main(["evaluate", str(cohort.manifest), "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main([]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_heatmaps_read_by_the_cli_are_the_generated_ones(cohort: Cohort) -> None:
    # The PNG slide decodes to exactly the float32 values the .npy slides hold.
    spec = next(s for s in SLIDES if s.heatmap == "png")
    s, _, _ = slide_arrays(spec)
    np.testing.assert_array_equal(read_heatmap(cohort.manifest.parent / "data" / f"{spec.id}-segmentation.png"), s)
