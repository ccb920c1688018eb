"""Detection that travels: fit on one corpus's "zero", score another corpus's ten words.

Both directions, every score a run has (raw, per step, class posterior, likelihood ratio,
complexity-corrected, typicality), one table: AUC of zero vs the other nine words and the
rank of zero by mean score (1 = zero looks the most normal).

* FSDD -> synthetic: fit on FSDD "0" (its official split), score every clip of the embedded
  synthetic set;
* synthetic -> FSDD: fit on the synthetic "zero", score every FSDD clip;
* and each model on its own corpus's test split ("-> ... test"), for comparison.

Sequence and image families get their registry presets for ``stft`` frames (as ``audioar
fit --model NAME`` without a recipe).

Digits are matched by name ("0" <-> "zero"). Also with ``--loso``: FSDD leave-one-speaker-out
per score (a refit per speaker).

Usage::

    python benchmarks/cross_corpus.py [--fsdd PATH] [--model maf|wavenet|pixelcnn|...]
        [--set score.background=perturbed ...] [--loso] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides
from audioar.data.discovery import discover, split
from audioar.data.synth import default_dataset
from audioar.evaluation.experiment import evaluate_run
from audioar.evaluation.metrics import evaluate_scores
from audioar.models.build import FAMILIES, family
from audioar.pipeline.featurize import featurize
from audioar.pipeline.fit import train_model
from audioar.pipeline.scoring import SCORE_COLUMN, score_features

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TO_DIGIT = {w: str(i) for i, w in enumerate(WORDS)}
TO_WORD = {d: w for w, d in TO_DIGIT.items()}


def presets(model: str) -> list[str]:
    """The family on its natural features (segments for vector families, stft frames
    otherwise) with its presets first, as `audioar fit --model` applies them."""
    chosen = [f"model.name={model}"]
    if "vector" not in family(model).inputs:
        chosen.append("features.name=stft")
    return [*preset_overrides(chosen), *chosen]


def fit(root: Path, target: str, overrides: list[str]) -> tuple:
    """The trained model, its test clips (the corpus's official split) and the fit's seconds."""
    cfg = apply_overrides(RunConfig(), [f"data.root={root}", f"data.target={target}", *overrides])
    dataset = discover(root)
    parts = split(dataset, "official", validation_fraction=cfg.data.validation_fraction)
    start = time.perf_counter()
    trained, _ = train_model(cfg, dataset, parts)
    return trained, parts.test, time.perf_counter() - start


def score_other(trained, root: Path, relabel: dict[str, str]) -> dict[str, tuple[float, int]]:
    """{score column: (AUC, rank of the target)} on every clip of the other corpus."""
    clips = [c for c in discover(root).clips if c.label in relabel]
    return score_clips(trained, [dataclasses.replace(c, label=relabel[c.label]) for c in clips])


def score_clips(trained, clips: list) -> dict[str, tuple[float, int]]:
    """{score column: (AUC, rank of the target)} on ``clips``."""
    features, kept, _ = featurize(trained.featurizer, clips)
    scores = score_features(trained, features)
    labels = [c.label for c in kept]
    out = {}
    for name in scores.available:
        m = evaluate_scores(scores.score(name), labels, trained.config.data.target)
        out[SCORE_COLUMN[name]] = (m["auc"], m["target_rank"])
    return out


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fsdd", type=Path, default=here.parent / "shared/data/fsdd/recordings")
    parser.add_argument("--model", choices=list(FAMILIES), default="maf")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--loso", action="store_true", help="also FSDD leave-one-speaker-out")
    args = parser.parse_args()
    if not args.fsdd.exists():
        raise SystemExit(f"skipped: FSDD not found at {args.fsdd} (pass --fsdd PATH)")
    overrides = [*presets(args.model), *args.sets]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    synth = default_dataset()
    print(f"model {args.model}; overrides: {' '.join(overrides) or '(none)'}")

    rows: dict[str, dict[str, tuple[float, int]]] = {}
    fsdd_model, fsdd_test, seconds = fit(args.fsdd, "0", overrides)
    print(f"fit on FSDD '0': {seconds:.0f} s")
    rows["FSDD -> FSDD test"] = score_clips(fsdd_model, fsdd_test)
    rows["FSDD -> synthetic"] = score_other(fsdd_model, synth, TO_DIGIT)
    trained, synth_test, seconds = fit(synth, "zero", overrides)
    print(f"fit on synthetic 'zero': {seconds:.0f} s")
    rows["synthetic -> test"] = score_clips(trained, synth_test)
    rows["synthetic -> FSDD"] = score_other(trained, args.fsdd, TO_WORD)

    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    print()
    print(f"{'direction':<20}" + "".join(f"{c:>24}" for c in columns))
    for direction, r in rows.items():
        cells = [f"{r[c][0]:>16.3f} (rank {r[c][1]})" if c in r else f"{'':>24}" for c in columns]
        print(f"{direction:<20}" + "".join(cells))

    if args.loso:
        start = time.perf_counter()
        # evaluate_run refits per fold from the run's config; the FSDD model gives it that
        m = evaluate_run(fsdd_model, scheme="loso", out_dir="/tmp/cross_corpus_loso")
        metrics = m.metrics
        print(f"\nFSDD leave-one-speaker-out ({time.perf_counter() - start:.0f} s):")
        for column, row in (metrics.get("scores") or {metrics["score"]: metrics}).items():
            folds = row.get("folds", {})
            first = row.get("target_first_in_all_folds")
            detail = ", ".join(f"{k} {v:.3f}" for k, v in folds.items())
            print(
                f"  {column:<24} {row['auc']:.3f} ± {row.get('auc_std', 0.0):.3f}"
                f"  first in every fold: {first}  ({detail})"
            )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
