"""Machine-condition monitoring: audioar against the DCASE 2020 Task 2 baseline, per machine ID.

On one DCASE machine folder (``<machine>/{train,test}``; default: the embedded synthetic
machine set), both detectors train on the normal training clips and score the test clips:

* **baseline**: the DCASE 2020 Task 2 autoencoder (:mod:`dcase_baseline`, a faithful
  reimplementation: 128 log-mel bands, 5 stacked frames, dense 640-128x4-8-128x4-640, MSE,
  100 epochs);
* **audioar**: ``audioar fit`` on the folder with its presets (a MAF conditioned on the
  machine ID over 1-s windows; each clip scored against its own ID), ``--set`` overrides
  applied on top.

It prints AUC and pAUC (max FPR 0.1) per ID with 95 % bootstrap intervals (clips resampled
within each ID), the means over IDs with their intervals, and whether audioar's means beat
the baseline's by more than the intervals' half-width.

Usage::

    python benchmarks/dcase.py [DIR] [--set key=value ...] [--baseline-epochs 100]
        [--resamples 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dcase_baseline import BaselineConfig, fit_baseline, score_baseline  # noqa: E402

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides  # noqa: E402
from audioar.data.discovery import discover, split  # noqa: E402
from audioar.evaluation.experiment import score_test_part  # noqa: E402
from audioar.evaluation.sections import section_metrics  # noqa: E402
from audioar.pipeline.fit import train_model  # noqa: E402


def audioar_table(root: Path, sets: list[str], seed: int) -> tuple[pd.DataFrame, float]:
    """audioar's per-clip test table (``path, label, group, anomaly_score``) and fit seconds."""
    chosen = [f"data.root={root}", f"train.seed={seed}", *sets]
    cfg = apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=True), *chosen])
    dataset = discover(root)
    parts = split(dataset, "official", seed=seed)
    start = time.perf_counter()
    trained, _ = train_model(cfg, dataset, parts)
    seconds = time.perf_counter() - start
    _, table, _ = score_test_part(trained, parts, resamples=0)
    return table, seconds


def baseline_table(root: Path, epochs: int, seed: int) -> tuple[pd.DataFrame, float]:
    """The baseline autoencoder's per-clip test table and its fit seconds."""
    dataset = discover(root)
    train = [str(c.path) for c in dataset.clips if c.split == "train" and c.label == "normal"]
    test = [c for c in dataset.clips if c.split == "test"]
    cfg = BaselineConfig(epochs=epochs, seed=seed)
    start = time.perf_counter()
    model = fit_baseline(train, cfg)
    seconds = time.perf_counter() - start
    scores = score_baseline(model, [str(c.path) for c in test], cfg)
    table = pd.DataFrame(
        {
            "path": [str(c.path) for c in test],
            "label": [c.label for c in test],
            "group": [c.group for c in test],
            "domain": [c.domain for c in test],
            "anomaly_score": scores,
            "is_anomaly": False,
        }
    )
    return table, seconds


def interval(ci: dict | None, key: str) -> tuple[float, float]:
    bounds = (ci or {}).get(key) or [np.nan, np.nan]
    return float(bounds[0]), float(bounds[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, help="DCASE machine folder")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--baseline-epochs", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--year", type=int, default=2020)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = args.root
    if root is None:
        from audioar.data.synth import default_machine_dataset

        root = default_machine_dataset()
    print(f"data: {root}")
    results = {}
    for name, make in (
        ("audioar", lambda: audioar_table(root, args.sets, args.seed)),
        ("baseline", lambda: baseline_table(root, args.baseline_epochs, args.seed)),
    ):
        table, seconds = make()
        metrics = section_metrics(table, year=args.year, resamples=args.resamples, seed=args.seed)
        results[name] = metrics
        print(f"{name}: fitted in {seconds:.0f} s", flush=True)

    groups = list(results["audioar"]["sections"])
    header = f"{'ID':<12}" + "".join(
        f"{name + ' ' + k:>30}" for name in results for k in ("AUC", "pAUC")
    )
    print(header)
    for group in groups:
        cells = []
        for metrics in results.values():
            row = metrics["sections"][group]
            for key in ("auc", "pauc"):
                low, high = interval(row.get("ci"), key)
                cells.append(f"{row[key]:.3f} [{low:.3f}, {high:.3f}]".rjust(30))
        print(f"{group:<12}" + "".join(cells))
    cells, means = [], {}
    for name, metrics in results.items():
        official = metrics["official"]
        for key in ("mean_auc", "mean_pauc"):
            low, high = interval(official.get("ci"), key)
            means[(name, key)] = (official[key], (high - low) / 2)
            cells.append(f"{official[key]:.3f} [{low:.3f}, {high:.3f}]".rjust(30))
    print(f"{'mean':<12}" + "".join(cells))
    for name, metrics in results.items():
        official = metrics["official"]
        low, high = interval(official.get("ci"), "score")
        score = official["score"]
        print(f"official score ({args.year}) {name}: {score:.3f} [{low:.3f}, {high:.3f}]")
    for key in ("mean_auc", "mean_pauc"):
        (ours, half_ours), (theirs, half_theirs) = means[("audioar", key)], means[("baseline", key)]
        margin = ours - theirs
        beats = margin > max(half_ours, half_theirs)
        print(
            f"{key}: audioar - baseline = {margin:+.3f} (half-widths {half_ours:.3f} / "
            f"{half_theirs:.3f}): {'beats' if beats else 'does not beat'} the baseline"
        )


if __name__ == "__main__":
    main()
