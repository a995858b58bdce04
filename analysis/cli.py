"""The ``sua`` command-line tool.

``sua evaluate MANIFEST --out DIR`` calibrates SUA and the pixel baseline on
the manifest's validation slides and evaluates its test domains, writing
``report.json``, CSV tables laid out like the paper's Tables 1-4, figures
(PNG and SVG), a one-page ``report.html`` and ``report.pdf`` into DIR; with
``--bundle ZIP`` also a reproducibility bundle (:mod:`analysis.bundle`).

MANIFEST is JSON::

    {"slides": [{"id": "...", "split": "validation" | "test", "domain": "...",
                 "segmentation": PATH, "uncertainty": PATH?, "members": PATH?,
                 "truth": PATH | null, "mpp": NUMBER, "downsample": NUMBER}]}

Paths are relative to the manifest.  ``"truth": null`` marks a slide without
tumor (Camelyon's negative slides come without an annotation file).  A
heatmap may also be given as ``{"path": PATH, "key": NAME}`` for one array of
a multi-array ``.npz``.
Without ``uncertainty`` the uncertainty is computed from ``members`` (K, H, W)
by ``--uncertainty``, or else is the entropy of the segmentation; with
``members`` and no ``segmentation`` the segmentation is the members' mean.

Bad input (a missing file, NaN, values outside [0, 1], a shape that does not
match, a bad range or setting, no validation slide) exits with status 2 and
one line on stderr naming the slide and the problem, and writes nothing:
every slide is read and checked before anything is computed, and the outputs
are written into a temporary folder that is moved into place at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from analysis import defaults
from analysis.bundle import write_bundle
from analysis.evaluation import (
    EvaluationSettings,
)
from analysis.io import InputError
from analysis.manifest import evaluate_manifest, read_manifest
from analysis.sua import check_range, parse_aggregate
from analysis.uncertainty import UNCERTAINTY_METHODS

__all__ = ["main", "read_manifest"]

PROG = "sua"


# --------------------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (status 2), as the tool's contract says."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _range(text: str) -> tuple[float, float]:
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lower, upper = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOWER:UPPER") from None
    try:
        check_range(lower, upper)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return lower, upper


def _aggregate(text: str) -> str:
    try:
        parse_aggregate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def _positive(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Spatial uncertainty aggregation (SUA) for segmentation in pathology.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    evaluate = commands.add_parser(
        "evaluate",
        help="calibrate on validation slides and evaluate test domains",
        description="Calibrate SUA and the pixel baseline on the validation slides of MANIFEST and "
        "evaluate every test domain; write report.json, CSV tables, figures and report.html into DIR.",
    )
    evaluate.add_argument("manifest", type=Path, metavar="MANIFEST", help="cohort manifest (JSON)")
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    paper = " ".join(f"{lo:g}:{up:g}" for lo, up in defaults.PAPER_RANGES)
    evaluate.add_argument(
        "--range",
        dest="ranges",
        type=_range,
        action="append",
        metavar="LO:UP",
        help=f"candidate range lower < s < upper; repeat for several (default: the paper's {paper})",
    )
    evaluate.add_argument(
        "--aggregate",
        type=_aggregate,
        default=defaults.AGGREGATE,
        metavar="mean|pNN",
        help=f"NPR score: mean or a percentile such as p90 (default {defaults.AGGREGATE})",
    )
    evaluate.add_argument(
        "--uncertainty",
        choices=UNCERTAINTY_METHODS,
        default=defaults.UNCERTAINTY,
        help=f"uncertainty computed from ensemble members (default {defaults.UNCERTAINTY})",
    )
    evaluate.add_argument(
        "--fn-fraction",
        type=_fraction,
        default=defaults.FN_FRACTION,
        help=f"tumor fraction that makes an NPR a true false negative (default {defaults.FN_FRACTION:g})",
    )
    evaluate.add_argument(
        "--beta", type=_positive, default=defaults.BETA, help=f"beta of F-beta (default {defaults.BETA:g})"
    )
    evaluate.add_argument(
        "--bootstrap",
        type=_count(1),
        default=defaults.BOOTSTRAP,
        metavar="B",
        help=f"bootstrap resamples of slides (default {defaults.BOOTSTRAP})",
    )
    evaluate.add_argument(
        "--seed", type=_count(0), default=defaults.SEED, help=f"bootstrap seed (default {defaults.SEED})"
    )
    evaluate.add_argument(
        "--bundle",
        type=Path,
        metavar="ZIP",
        help="also write a zip of the manifest and every file it names, which reruns this evaluation",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return parser


# --------------------------------------------------------------------------- running


class _Bars:
    """tqdm bars on stderr, one per stage, fed by the evaluation's progress callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, tqdm[Any]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            # disable=None: bars only on a terminal, so logs and pipes stay clean.
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="slide", file=sys.stderr, disable=None)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, moved into place when the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        if not out.exists():
            staging.rename(out)
            return
        # An existing folder keeps its other files; each output replaces its namesake.
        for item in staging.iterdir():
            target = out / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _evaluate(args: argparse.Namespace) -> int:
    # Deferred: matplotlib is only needed once there is something to draw.
    from analysis.report import write_report

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a folder")
    settings = EvaluationSettings(
        ranges=tuple(args.ranges) if args.ranges else defaults.PAPER_RANGES,
        aggregate=args.aggregate,
        uncertainty=args.uncertainty,
        fn_fraction=args.fn_fraction,
        beta=args.beta,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    settings.check()
    bars = _Bars(enabled=not args.no_progress)
    try:
        evaluation = evaluate_manifest(args.manifest, settings, progress=bars)
    finally:
        bars.close()
    with _staging(args.out) as staging:
        write_report(evaluation, staging)
    print(f"wrote {args.out / 'report.json'}, {args.out / 'report.html'} and {args.out / 'report.pdf'}")
    if args.bundle is not None:

        print(f"wrote {write_bundle(args.manifest, args.bundle, settings=settings)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sua``; returns the exit status (0 ok, 2 bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): a status, not an exception
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "evaluate":
            return _evaluate(args)
    except InputError as exc:
        print(f"{PROG} {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
