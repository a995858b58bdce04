"""The evaluation report: ``report.json``, CSV tables, figures and ``report.html``.

Tables follow the paper's layout (Pocevičiūtė et al. 2024):

* ``table1_segmentation.csv`` (Table 1): per dataset, FROC, ROC-AUC and Dice
  of the original segmentation, "mean (std)" over the bootstrap;
* ``table2_f_beta.csv`` (Table 2): F-beta of FN vs TN detection, rows
  dataset x method (Baseline, SUA), one column per candidate range;
* ``table3_dice.csv`` (Table 3): average Dice before (Original) and after
  refinement per range; ``table3_dice_tumor_slides.csv`` the same over tumor
  slides only (SPEC §6);
* ``table4_negative_slides.csv`` (Table 4): tumor-free slides in which
  refinement turned any pixel positive, with the number of tumor-free slides;
* ``fncr.csv`` (Fig. 6 in numbers): median FNCR [95 % interval];
* ``thresholds.csv``: the calibrated thresholds per range.

Figures (PNG and SVG, drawn with matplotlib's object API, no pyplot state):
``npr_scores`` (NPR scores, FN vs TN; paper Figs. 3-4), ``baseline_pixels``
(candidate-pixel uncertainty, FN vs TN; Fig. 5) and ``fncr_boxplots``
(bootstrap FNCR; Fig. 6).  ``report.html`` is one self-contained page with the
tables and the SVG figures inline; ``report.pdf`` holds the same (settings,
one page per table, one per figure), drawn by matplotlib's ``PdfPages``
without a browser.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from analysis.evaluation import PIXEL_BINS, DomainFigures, Evaluation, RangeFigures

__all__ = ["FIGURES", "TABLES", "TableCell", "report_table_cells", "report_tables", "write_report", "write_report_json"]

#: Table files, in the order the page shows them, with their captions.
TABLES: dict[str, str] = {
    "table1_segmentation": "Table 1. Segmentation: FROC, slide ROC-AUC and average Dice, mean (std) over the bootstrap.",
    "table2_f_beta": "Table 2. F-beta of FN versus TN differentiation, mean (std) over the bootstrap.",
    "table3_dice": "Table 3. Average Dice over all slides before and after refinement, mean (std).",
    "table3_dice_tumor_slides": "Table 3b. Average Dice over tumor slides only, mean (std).",
    "table4_negative_slides": "Table 4. Tumor-free slides in which refinement turned some pixel positive.",
    "fncr": "FNCR (Fig. 6 in numbers): median [2.5 %, 97.5 %] over the bootstrap.",
    "thresholds": "Thresholds calibrated on the validation slides (none = flag nothing).",
}
#: Figure files (each as .png and .svg) and their captions.
FIGURES: dict[str, str] = {
    "npr_scores": "NPR scores (aggregated uncertainty), FN versus TN, per range; dashed: SUA threshold.",
    "baseline_pixels": "Candidate-pixel uncertainty, FN versus TN, per range; dashed: baseline threshold.",
    "fncr_boxplots": "FNCR over the bootstrap resamples per range (red: median).",
}
_FN_COLOUR, _TN_COLOUR = "#d62728", "#1f77b4"
_PDF_PAGE = (11.69, 8.27)  # A4 landscape, inches
_SUMMARY_KEYS = ("aggregate", "uncertainty", "fn_fraction", "beta", "bootstrap", "seed")


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableCell:
    """One cell of a report table: its text and, for a metric, what a reader sees on hover."""

    text: str
    hint: str = ""

    def __str__(self) -> str:
        return self.text


def _cell(block: dict[str, Any] | None, *, digits: int = 3) -> TableCell:
    """``mean (std)`` of a metric block, its median and 95 % interval as the hint; "n/a" where undefined."""
    if block is None or block.get("mean") is None:
        return TableCell("n/a", "undefined in every bootstrap resample")
    low, high = block["ci95"]
    return TableCell(f"{block['mean']:.{digits}f} ({block['std']:.{digits}f})",
                     f"median {block['median']:.{digits}f}, 95 % interval [{low:.{digits}f}, {high:.{digits}f}]")


def _interval(block: dict[str, Any]) -> TableCell:
    if block.get("median") is None:
        return TableCell("n/a", "undefined in every bootstrap resample")
    low, high = block["ci95"]
    return TableCell(f"{block['median']:.3f} [{low:.3f}, {high:.3f}]", "median [95 % interval] over the bootstrap")


def _range_label(entry: dict[str, Any]) -> str:
    return f"{entry['lower']:g} to {entry['upper']:g}"


def report_tables(report: dict[str, Any], slide_counts: dict[str, dict[str, int]]) -> dict[str, list[list[str]]]:
    """The report's tables as rows of strings, header row first (see the module docstring)."""
    return {name: [[str(cell) for cell in row] for row in rows]
            for name, rows in report_table_cells(report, slide_counts).items()}


def report_table_cells(
    report: dict[str, Any], slide_counts: dict[str, dict[str, int]]
) -> dict[str, list[list[TableCell | str]]]:
    """The report's tables, header row first; metric cells carry their bootstrap interval as a hint."""

    ranges: list[dict[str, Any]] = report["ranges"]
    labels = [_range_label(entry) for entry in ranges]
    domains = list(ranges[0]["domains"]) if ranges else []
    beta = report["settings"]["beta"]
    methods = (("Baseline", "baseline"), ("SUA", "sua"))

    def block(k: int, domain: str) -> dict[str, Any]:
        return ranges[k]["domains"][domain]  # type: ignore[no-any-return]

    tables: dict[str, list[list[TableCell | str]]] = {}
    tables["table1_segmentation"] = [["Dataset", "FROC", "ROC-AUC", "Dice score", "Dice score (tumor slides)"]]
    for domain in domains:
        original = block(0, domain)["original"]
        tables["table1_segmentation"].append(
            [
                domain,
                _cell(original["froc"]),
                _cell(original["roc_auc"]),
                _cell(original["dice"]),
                _cell(original["dice_tumor_slides"]),
            ]
        )
    tables["table2_f_beta"] = [["Dataset", "Method", *[f"F{beta:g}, {label}" for label in labels]]]
    for key in ("table3_dice", "table3_dice_tumor_slides"):
        tables[key] = [["Dataset", "Method", "Original Dice", *[f"Dice after update, {label}" for label in labels]]]
    tables["table4_negative_slides"] = [
        ["Dataset", "Method", "Tumor-free WSIs", *[f"# WSIs, {label}" for label in labels]]
    ]
    tables["fncr"] = [["Dataset", "Method", *[f"FNCR, {label}" for label in labels]]]
    for domain in domains:
        for title, method in methods:
            k_all = range(len(ranges))
            tables["table2_f_beta"].append([domain, title, *[_cell(block(k, domain)[method]["f_beta"]) for k in k_all]])
            for key, name in (("table3_dice", "dice"), ("table3_dice_tumor_slides", "dice_tumor_slides")):
                tables[key].append(
                    [
                        domain,
                        title,
                        _cell(block(0, domain)["original"][name]),
                        *[_cell(block(k, domain)[method][name]) for k in k_all],
                    ]
                )
            tables["table4_negative_slides"].append(
                [
                    domain,
                    title,
                    str(slide_counts.get(domain, {}).get("tumor_free", "")),
                    *[str(block(k, domain)[method]["negative_slides_changed"]) for k in k_all],
                ]
            )
            tables["fncr"].append([domain, title, *[_interval(block(k, domain)[method]["fncr"]) for k in k_all]])
    tables["thresholds"] = [["Range", "SUA threshold", "Baseline threshold"]]
    for entry, label in zip(ranges, labels, strict=True):
        tables["thresholds"].append(
            [
                label,
                # Scores are float32: 6 significant digits, not 0.550000011920929.
                "none" if entry["sua_threshold"] is None else f"{entry['sua_threshold']:.6g}",
                "none" if entry["baseline_threshold"] is None else f"{entry['baseline_threshold']:.6g}",
            ]
        )
    return tables


def _write_csv(rows: list[list[str]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


# --------------------------------------------------------------------------- figures


def _parts(ranges: Sequence[RangeFigures]) -> list[str]:
    return list(ranges[0].parts) if ranges else []


def _panels(
    size: tuple[float, float], rows: int, cols: int, *, bottom: float = 0.45, between_rows: float = 0.75
) -> tuple[Figure, np.ndarray]:
    """A figure of ``size`` inches with rows x cols panels (an (rows, cols) array of Axes) at fixed margins.

    The margins and gaps are in inches, room for a suptitle, panel titles, tick labels and an x label
    (``bottom``: more under tick labels of two lines). Matplotlib's constrained layout found the same
    spacing but made each figure take twice as long to draw, in every format.
    """
    width, height = size
    left, right, top, between_cols = 0.6, 0.12, 0.6, 0.6
    figure = Figure(figsize=size)
    panel_w = max(0.1, (width - left - right - (cols - 1) * between_cols) / cols)
    panel_h = max(0.1, (height - top - bottom - (rows - 1) * between_rows) / rows)
    axes = figure.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "top": 1 - top / height, "bottom": bottom / height,
        "wspace": between_cols / panel_w, "hspace": between_rows / panel_h})
    return figure, np.asarray(axes)


def _grid(rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    return _panels((3.2 * cols, 2.4 * rows + 0.4), rows, cols)


def _threshold_line(axes: Axes, threshold: float | None) -> None:
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1)


def _histogram_panels(
    ranges: Sequence[RangeFigures],
    *,
    title: str,
    empty: str,
    has_data: Callable[[DomainFigures], bool],
    draw: Callable[[Axes, RangeFigures, DomainFigures], None],
) -> Figure:
    """One panel per (part, range): ``draw`` where ``has_data``, else the words ``empty``."""
    parts = _parts(ranges)
    figure, grid = _grid(len(parts), len(ranges))
    for col, entry in enumerate(ranges):
        for row, part in enumerate(parts):
            axes: Axes = grid[row, col]
            data = entry.parts.get(part)
            axes.set_title(f"{part}, {entry.lower:g}-{entry.upper:g}", fontsize=9)
            if data is None or not has_data(data):
                axes.text(0.5, 0.5, empty, ha="center", va="center", transform=axes.transAxes)
                continue
            draw(axes, entry, data)
            axes.legend(fontsize=7)
    figure.suptitle(title)
    return figure


def _npr_figure(ranges: Sequence[RangeFigures]) -> Figure:
    def draw(axes: Axes, entry: RangeFigures, data: DomainFigures) -> None:
        low, high = float(data.npr_scores.min()), float(data.npr_scores.max())
        bins = np.linspace(low, high if high > low else low + 1e-3, 31).tolist()
        # One filled step outline per histogram (Axes.stairs) instead of a patch per bin: the same picture,
        # drawn several times faster in each of the PNG, SVG and PDF.
        for chosen, colour, label in ((data.npr_is_fn, _FN_COLOUR, "FN"), (~data.npr_is_fn, _TN_COLOUR, "TN")):
            counts, _ = np.histogram(data.npr_scores[chosen], bins=bins)
            axes.stairs(counts, bins, color=colour, fill=True, alpha=0.6, label=label)
        _threshold_line(axes, entry.sua_threshold)
        axes.set_xlabel("NPR score", fontsize=8)

    return _histogram_panels(
        ranges, title="Aggregated uncertainty of NPRs", empty="no NPR",
        has_data=lambda data: data.npr_scores.size > 0, draw=draw,
    )


def _pixel_figure(ranges: Sequence[RangeFigures]) -> Figure:
    def draw(axes: Axes, entry: RangeFigures, data: DomainFigures) -> None:
        axes.stairs(data.pixel_fn, PIXEL_BINS, color=_FN_COLOUR, fill=True, alpha=0.6, label="FN")
        axes.stairs(data.pixel_tn, PIXEL_BINS, color=_TN_COLOUR, fill=True, alpha=0.6, label="TN")
        used = np.flatnonzero(data.pixel_fn + data.pixel_tn)
        axes.set_xlim(0.0, float(PIXEL_BINS[used[-1] + 1]))
        _threshold_line(axes, entry.baseline_threshold)
        axes.set_xlabel("pixel uncertainty", fontsize=8)

    return _histogram_panels(
        ranges, title="Baseline: uncertainty of candidate pixels", empty="no candidate pixel",
        has_data=lambda data: (data.pixel_fn.sum() + data.pixel_tn.sum()) != 0, draw=draw,
    )


def _fncr_figure(ranges: Sequence[RangeFigures]) -> Figure:
    domains = [part for part in _parts(ranges) if part != "validation"]
    figure, grid = _panels((max(6.4, 0.55 * 2 * len(ranges) * max(1, len(domains))), 3.2), 1, max(1, len(domains)),
                           bottom=0.55)
    for col, domain in enumerate(domains):
        axes: Axes = grid[0, col]
        samples, labels, colours = [], [], []
        for entry in ranges:
            for method, colour in (("sua", _FN_COLOUR), ("baseline", _TN_COLOUR)):
                values = entry.parts[domain].fncr_samples.get(method, np.zeros(0))
                samples.append(values[~np.isnan(values)])
                labels.append(f"{'SUA' if method == 'sua' else 'BL'}\n{entry.lower:g}")
                colours.append(colour)
        positions = np.arange(1, len(samples) + 1)
        drawn = [i for i, values in enumerate(samples) if values.size]
        if drawn:
            boxes = axes.boxplot(
                [samples[i] for i in drawn],
                positions=positions[drawn],
                widths=0.6,
                patch_artist=True,
                medianprops={"color": "red"},
                flierprops={"markersize": 2},
            )
            for patch, i in zip(boxes["boxes"], drawn, strict=True):
                patch.set_facecolor(colours[i])
                patch.set_alpha(0.35)
        axes.set_xticks(positions, labels, fontsize=7)
        axes.set_xlim(0.5, len(samples) + 0.5)
        axes.set_ylim(-0.02, 1.02)
        axes.set_title(domain, fontsize=9)
        axes.set_ylabel("FNCR", fontsize=8)
    figure.suptitle("FNCR over the bootstrap resamples (SUA, BL = baseline; by lower bound)")
    return figure


def _save(figure: Figure, folder: Path, name: str) -> None:
    figure.savefig(folder / f"{name}.png", dpi=100)
    # No date in the SVG, so that a rerun gives the same file.
    figure.savefig(folder / f"{name}.svg", metadata={"Date": None})


# --------------------------------------------------------------------------- HTML


def _html_table(rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows[1:])
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _inline_svg(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.index("<svg") :]


def _html(report: dict[str, Any], tables: dict[str, list[list[str]]], folder: Path) -> str:
    settings = report["settings"]
    summary = html.escape(_settings_summary(settings))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>SUA evaluation report</title>',
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0 2em}caption{text-align:left;font-weight:600;padding:.3em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child,"
        "td:nth-child(2){text-align:left}figure{margin:1em 0 2em}svg{max-width:100%;height:auto}"
        "figcaption{font-size:.9em;color:#555}</style></head><body>",
        "<h1>SUA evaluation report</h1>",
        f"<p>{summary}. Metrics: value on each test domain, mean (std) over the bootstrap of slides.</p>",
    ]
    parts.extend(_html_table(tables[name], caption) for name, caption in TABLES.items() if name in tables)
    for name, caption in FIGURES.items():
        parts.append(
            f"<figure>{_inline_svg(folder / f'{name}.svg')}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(settings, indent=2)) + "</pre></body></html>")
    return "\n".join(parts)


def _settings_summary(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {settings[key]}" for key in _SUMMARY_KEYS if key in settings)


# --------------------------------------------------------------------------- PDF


def _text_page(report: dict[str, Any]) -> Figure:
    figure = Figure(figsize=_PDF_PAGE)
    figure.text(0.05, 0.93, "SUA evaluation report", fontsize=18, weight="bold")
    figure.text(
        0.05,
        0.88,
        _settings_summary(report["settings"]) + ". Metrics: value on each test domain, mean (std) over the bootstrap.",
        fontsize=9,
    )
    figure.text(0.05, 0.84, json.dumps(report["settings"], indent=2), fontsize=7, family="monospace", va="top")
    return figure


def _table_page(rows: list[list[str]], caption: str) -> Figure:
    figure = Figure(figsize=_PDF_PAGE)
    axes = figure.add_axes((0.04, 0.04, 0.92, 0.86))
    axes.axis("off")
    figure.text(0.04, 0.94, caption, fontsize=10, weight="bold")
    body = rows[1:] or [[""] * len(rows[0])]
    table = axes.table(cellText=body, colLabels=rows[0], loc="upper left", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(rows[0]))))
    return figure


def _write_pdf(
    report: dict[str, Any], tables: dict[str, list[list[str]]], figures: dict[str, Figure], path: Path
) -> None:
    # No creation date, so that a rerun gives the same file.
    with PdfPages(path, metadata={"Title": "SUA evaluation report", "CreationDate": None}) as pdf:
        pdf.savefig(_text_page(report))
        for name, caption in TABLES.items():
            if name in tables:
                pdf.savefig(_table_page(tables[name], caption))
        for name, caption in FIGURES.items():
            figure = figures[name]
            figure.text(0.01, 0.005, caption, fontsize=8, color="#555")
            pdf.savefig(figure)


# --------------------------------------------------------------------------- all together


def write_report_json(report: dict[str, Any], path: Path) -> Path:
    """``report.json`` as ``sua evaluate`` writes it (2-space indent, no NaN, a final newline)."""
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_report(evaluation: Evaluation, folder: Path) -> list[Path]:
    """Write every output of an evaluation into ``folder`` (which must exist).

    Returns
    -------
    list[Path]
        The files written.
    """
    folder = Path(folder)
    report = evaluation.report
    write_report_json(report, folder / "report.json")
    tables = report_tables(report, evaluation.slide_counts)
    for name, rows in tables.items():
        _write_csv(rows, folder / f"{name}.csv")
    figures: dict[str, Figure] = {}
    for name, draw in (
        ("npr_scores", _npr_figure),
        ("baseline_pixels", _pixel_figure),
        ("fncr_boxplots", _fncr_figure),
    ):
        figures[name] = draw(evaluation.ranges)
        _save(figures[name], folder, name)
    (folder / "report.html").write_text(_html(report, tables, folder), encoding="utf-8")
    _write_pdf(report, tables, figures, folder / "report.pdf")
    return sorted(folder.iterdir())
