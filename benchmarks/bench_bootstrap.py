"""Benchmark: vectorised bootstrap of every SUA/baseline metric vs a Python loop.

A synthetic cohort of per-slide sufficient statistics (300 slides by default,
for each of the paper's 4 candidate ranges: NPR tp/fp/fn for SUA, pixel
tp/fp/fn for the baseline, Dice before and after each refinement, pixels
turned positive (and how many of them tumor) by each refinement, and whether
a tumor-free slide changed; once per cohort: FROC statistics and the maximum
of ``s`` for ROC-AUC), bootstrapped B = 1000 times:

- vectorised: the ``analysis.metrics.bootstrap_*`` helpers;
- naive: a Python loop over resamples calling the scalar metrics.

Both must agree; the script prints both times and the ratio.

Run::

    .venv/bin/python benchmarks/bench_bootstrap.py --slides 300 --resamples 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import defaults
from analysis.metrics import (
    SlideFROC,
    bootstrap_count,
    bootstrap_f_beta,
    bootstrap_fn_conversion_rate,
    bootstrap_froc,
    bootstrap_indices,
    bootstrap_mean,
    bootstrap_roc_auc,
    f_beta,
    fn_conversion_rate,
    froc_score,
    roc_auc,
)


@dataclass(frozen=True)
class Cohort:
    tumor: np.ndarray
    dice_original: np.ndarray
    max_s: np.ndarray
    ranges: list[dict[str, np.ndarray]]
    froc: list[SlideFROC]


def synthetic_cohort(n: int, seed: int) -> Cohort:
    """Per-slide statistics shaped like a real cohort's (about 40 % tumor slides)."""
    rng = np.random.default_rng(seed)
    tumor = rng.random(n) < 0.4
    ranges = []
    for _ in defaults.PAPER_RANGES:
        per_range: dict[str, np.ndarray] = {}
        for method, scale in (("sua", 3), ("baseline", 4000)):
            per_range[f"{method}_tp"] = rng.poisson(scale, n) * tumor
            per_range[f"{method}_fp"] = rng.poisson(scale / 3, n)
            per_range[f"{method}_fn"] = rng.poisson(scale / 2, n) * tumor
            turned = rng.poisson(scale * 50, n) * (rng.random(n) < 0.6)
            per_range[f"{method}_turned"] = turned
            per_range[f"{method}_turned_tumor"] = np.where(tumor, (turned * rng.random(n)).astype(int), 0)
            per_range[f"{method}_dice"] = np.where(tumor, rng.uniform(0.5, 0.9, n), rng.random(n) < 0.8)
            per_range[f"{method}_changed"] = ~tumor & (rng.random(n) < 0.2)
        ranges.append(per_range)
    slides = []
    for is_tumor in tumor:
        n_fp = rng.poisson(2.0)
        lesions = rng.uniform(0.5, 1.0, rng.integers(1, 6)) if is_tumor else np.zeros(0)
        lesions[rng.random(lesions.size) < 0.2] = 0.0  # missed lesions
        slides.append(
            SlideFROC(
                np.round(rng.uniform(0.5, 1.0, n_fp), 3),
                np.round(lesions, 3),
                int(rng.integers(0, 3)) if is_tumor else 0,
            )
        )
    return Cohort(
        tumor=tumor,
        dice_original=np.where(tumor, rng.uniform(0.5, 0.9, n), rng.random(n) < 0.8),
        max_s=np.round(np.where(tumor, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.9, n)), 2),
        ranges=ranges,
        froc=slides,
    )


def vectorised(cohort: Cohort, idx: np.ndarray) -> dict[str, np.ndarray]:
    tumor = cohort.tumor
    out = {
        "dice_original": bootstrap_mean(cohort.dice_original, idx),
        "dice_original_tumor": bootstrap_mean(cohort.dice_original, idx, where=tumor),
        "roc_auc": bootstrap_roc_auc(cohort.max_s, tumor, idx),
        "froc": bootstrap_froc(cohort.froc, idx),
    }
    for r, stats in enumerate(cohort.ranges):
        for m in ("sua", "baseline"):
            out[f"{r}_{m}_f"] = bootstrap_f_beta(stats[f"{m}_tp"], stats[f"{m}_fp"], stats[f"{m}_fn"], idx)
            out[f"{r}_{m}_fncr"] = bootstrap_fn_conversion_rate(stats[f"{m}_turned_tumor"], stats[f"{m}_turned"], idx)
            out[f"{r}_{m}_dice"] = bootstrap_mean(stats[f"{m}_dice"], idx)
            out[f"{r}_{m}_dice_tumor"] = bootstrap_mean(stats[f"{m}_dice"], idx, where=tumor)
            out[f"{r}_{m}_changed"] = bootstrap_count(stats[f"{m}_changed"], idx)
    return out


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def naive(cohort: Cohort, idx: np.ndarray) -> dict[str, np.ndarray]:
    tumor, dice0, max_s, slides = cohort.tumor, cohort.dice_original, cohort.max_s, cohort.froc
    rows: dict[str, list[float]] = {}

    def put(key: str, value: float | None) -> None:
        rows.setdefault(key, []).append(_nan(value))

    for draw in idx:
        t = tumor[draw]
        put("dice_original", float(np.mean(dice0[draw])))
        put("dice_original_tumor", float(np.mean(dice0[draw][t])) if t.any() else None)
        put("roc_auc", roc_auc(max_s[draw], t))
        put("froc", froc_score([slides[i] for i in draw]))
        for r, stats in enumerate(cohort.ranges):
            for m in ("sua", "baseline"):
                put(
                    f"{r}_{m}_f",
                    f_beta(stats[f"{m}_tp"][draw].sum(), stats[f"{m}_fp"][draw].sum(), stats[f"{m}_fn"][draw].sum()),
                )
                put(f"{r}_{m}_fncr", fn_conversion_rate(stats[f"{m}_turned_tumor"][draw], stats[f"{m}_turned"][draw]))
                dice_m = stats[f"{m}_dice"][draw].astype(float)
                put(f"{r}_{m}_dice", float(np.mean(dice_m)))
                put(f"{r}_{m}_dice_tumor", float(np.mean(dice_m[t])) if t.any() else None)
                put(f"{r}_{m}_changed", float(np.sum(stats[f"{m}_changed"][draw])))
    return {k: np.array(v) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=defaults.BOOTSTRAP)
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    args = parser.parse_args(argv)

    cohort = synthetic_cohort(args.slides, args.seed)
    idx = bootstrap_indices(args.slides, resamples=args.resamples, seed=args.seed)

    start = time.perf_counter()
    fast = vectorised(cohort, idx)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive(cohort, idx)
    t_slow = time.perf_counter() - start

    assert fast.keys() == slow.keys()
    for key in fast:
        np.testing.assert_allclose(fast[key], slow[key], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=key)

    start = time.perf_counter()
    bootstrap_froc(cohort.froc, idx)
    t_froc = time.perf_counter() - start

    print(
        f"{args.slides} slides, B = {args.resamples}, {len(defaults.PAPER_RANGES)} ranges, "
        f"{len(fast)} metric sample arrays (agree: yes)"
    )
    print(f"vectorised bootstrap: {t_fast:8.3f} s  (of which FROC {t_froc:.3f} s, a loop over resamples)")
    print(f"naive Python loop:    {t_slow:8.3f} s")
    print(f"speed-up:             {t_slow / t_fast:8.1f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
