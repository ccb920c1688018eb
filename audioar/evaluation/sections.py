"""DCASE task 2 metrics per machine ID / section, the year's official score and official files.

The input is a table of scored test clips of one machine type (columns ``path``, ``label``,
``group``, ``domain``, ``anomaly_score``, ``is_anomaly``). Positives are anomalies; clips with
an empty label (evaluation-set clips whose names carry none) are left out of every metric but
written to the official files. AUC is ``sklearn.metrics.roc_auc_score(y, s)`` and pAUC is
``roc_auc_score(y, s, max_fpr=0.1)`` (McClish-standardised), as every year's evaluator computes
them. The rules of each year, as its official evaluator computes them for one machine type:

* **2020** (machine IDs ``id_XX``, no domains): AUC and pAUC per ID; the evaluator reports the
  arithmetic mean over IDs of each (``mean_auc``, ``mean_pauc``). ``score`` here is the mean of
  the two. Verified against ``evaluator.py`` of github.com/y-kawagu/dcase2020_task2_evaluator
  (the ``Average`` row) and ``01_test.py`` of github.com/y-kawagu/dcase2020_task2_baseline.
* **2021** (sections, domains evaluated *separately*): each domain of a section gets its own
  AUC and pAUC from that domain's clips alone (the evaluator reads one ground-truth file per
  section and domain); ``score`` is the harmonic mean over sections and domains of AUC and pAUC,
  ``hmean(max(v, eps))`` over all of them at once. Verified against
  ``dcase2021_task2_evaluator.py`` of github.com/y-kawagu/dcase2021_task2_evaluator
  (``official_score = hmean(maximum(performance_over_all[:, 0:2], eps), axis=None)``).
* **2022-2024** (sections, domain generalisation): a domain's AUC uses that domain's normal
  clips and the anomalous clips of *both* domains (mask ``(domain == d) | (y_true != 0)``); the
  pAUC is over all clips of the section (one value, which the evaluator lists for both domains,
  so ``pauc_source`` and ``pauc_target`` equal ``pauc`` here); ``score`` is the harmonic mean over
  sections of source AUC, target AUC and pAUC, each floored at ``sys.float_info.epsilon``.
  Verified against ``dcase2022_task2_evaluator.py`` of github.com/Kota-Dohi/dcase2022_evaluator,
  ``dcase2023_task2_evaluator.py`` of github.com/nttcslab/dcase2023_task2_evaluator and
  ``dcase2024_task2_evaluator.py`` of github.com/nttcslab/dcase2024_task2_evaluator (same
  code), and ``01_test.py`` of github.com/Kota-Dohi/dcase2022_task2_baseline_ae.

Official files (no header, rows ``file name,value`` sorted by file name, as the evaluators
read them with ``sorted(csv.reader(...))``):

* 2020: ``anomaly_score_<machine>_id_<XX>.csv`` only; the 2020 evaluator and baseline have no
  decision files (``decisions=True`` adds ``decision_result_<machine>_id_<XX>.csv``).
* 2021: one pair per section *and domain*:
  ``anomaly_score_<machine>_section_<XX>_<source|target>_test.csv`` and
  ``decision_result_<machine>_section_<XX>_<source|target>_test.csv`` (2021 baseline
  ``01_test.py``, github.com/y-kawagu/dcase2021_task2_baseline_ae).
* 2022-2024: ``anomaly_score_<machine>_section_<XX>_test.csv`` and
  ``decision_result_<machine>_section_<XX>_test.csv``.

Intervals are percentile bootstrap intervals (the conventions and keys of
:mod:`audioar.evaluation.bootstrap`, whose vectorised resampled ROC metrics are reused): clips are
resampled within each group, stratified by label and, where there are domains, by domain, so
every resample keeps the counts of every stratum. The official score's interval recomputes the
score on the same resamples of every group at once.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.metrics import roc_auc_score

from audioar.atomic import atomic_write
from audioar.errors import ConfigError, DataError
from audioar.evaluation.bootstrap import (
    _CHUNK_CELLS,
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    _multiplicities,
    _percentiles,
    _resampled_roc_metrics,
)

__all__ = [
    "YEARS",
    "section_metrics",
    "official_files",
    "write_official_files",
    "section_table_rows",
]

#: DCASE task 2 editions whose rules are implemented.
YEARS = (2020, 2021, 2022, 2023, 2024)
#: The evaluators floor every value at this before the harmonic mean (a zero AUC stays finite).
_EPS = sys.float_info.epsilon
_DOMAINS = ("source", "target")
_FORMULAS = {
    2020: "arithmetic mean of the mean per-ID AUC and the mean per-ID pAUC",
    2021: "harmonic mean over sections and domains of AUC and pAUC, each domain evaluated on "
    "its own clips",
    2022: "harmonic mean over sections of source AUC, target AUC (each: that domain's normal "
    "clips and the anomalous clips of both domains) and pAUC (all clips of the section)",
}


def _check_year(year: Any) -> int:
    if isinstance(year, bool) or not isinstance(year, int | np.integer) or int(year) not in YEARS:
        raise ConfigError(
            f"year must be a DCASE task 2 edition in {YEARS[0]}-{YEARS[-1]}, got {year!r}"
        )
    return int(year)


def _frame(table: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of scored clips, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"the table lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, table))}"
        )
    if len(table) and table["group"].isna().any():
        raise DataError(f"{int(table['group'].isna().sum())} clip(s) have no group")
    return table


def _text(column: pd.Series) -> np.ndarray:
    """Strings of a column, with None/NaN as the empty string."""
    return np.asarray(["" if pd.isna(v) else str(v) for v in column], dtype=object)


def _domains(df: pd.DataFrame, need: np.ndarray, year: int) -> np.ndarray:
    """Domain of every clip ("" where none); DataError where ``need`` clips lack a known one."""
    dom = _text(df["domain"]) if "domain" in df.columns else np.full(len(df), "", dtype=object)
    bad = need & ~np.isin(dom, _DOMAINS)
    if bad.any():
        seen = sorted({repr(v) for v in dom[bad]})
        raise DataError(
            f"DCASE {year} evaluates domains: {int(bad.sum())} clip(s) have domain "
            f"{', '.join(seen)} instead of 'source' or 'target'"
        )
    return dom


def _scores(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    score = pd.to_numeric(df["anomaly_score"], errors="coerce").to_numpy(dtype=np.float64)
    bad = rows & ~np.isfinite(score)
    if bad.any():
        raise DataError(f"{int(bad.sum())} of {int(rows.sum())} anomaly scores are not finite")
    return score


# --------------------------------------------------------------------------- metrics


def _specs(year: int, domain: np.ndarray | None, positive: np.ndarray) -> list:
    """``(suffix, clip mask, with pAUC)`` of every ROC the year computes for one group."""
    specs = [("", np.ones(len(positive), dtype=bool), True)]
    if domain is None:
        return specs
    for d in _DOMAINS:
        if year == 2021:  # each domain alone (its own ground-truth file)
            specs.append((f"_{d}", domain == d, True))
        else:  # that domain's normal clips and every anomalous clip of the section
            specs.append((f"_{d}", (domain == d) | positive, False))
    return specs


def _resample(
    score: np.ndarray,
    positive: np.ndarray,
    strata: np.ndarray,
    specs: list,
    resamples: int,
    max_fpr: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """``(resamples,)`` AUCs and pAUCs of every spec, clips resampled within each stratum."""
    slots = [np.flatnonzero(strata == code) for code in np.unique(strata)]
    chunk = max(1, _CHUNK_CELLS // len(score))
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        weights = np.empty((b, len(score)), dtype=np.int64)
        for idx in slots:
            weights[:, idx] = _multiplicities(rng, b, len(idx))
        for suffix, mask, with_pauc in specs:
            got = _resampled_roc_metrics(score[mask], positive[mask], weights[:, mask], max_fpr)
            out.setdefault(f"auc{suffix}", []).append(got["auc"])
            if with_pauc:
                out.setdefault(f"pauc{suffix}", []).append(got["pauc"])
    return {key: np.concatenate(parts) for key, parts in out.items()}


def _interval(samples: Mapping[str, np.ndarray], level: float, extra: dict) -> dict[str, Any]:
    ci: dict[str, Any] = {}
    for key, values in samples.items():
        finite = values[np.isfinite(values)]
        ci[key] = _percentiles(finite, level) if finite.size else None
    ci.update(extra)
    return ci


def _no_interval(keys: list[str], level: float, note: str, extra: dict) -> dict[str, Any]:
    return {**{key: None for key in keys}, **extra, "resamples": 0, "level": level, "note": note}


def _group_metrics(
    score: np.ndarray,
    positive: np.ndarray,
    domain: np.ndarray | None,
    year: int,
    *,
    max_fpr: float,
    resamples: int,
    level: float,
    rng: np.random.Generator,
    n_unlabeled: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of one group's labelled clips and the bootstrap draws behind its intervals."""
    n_anomaly = int(positive.sum())
    entry: dict[str, Any] = {
        "n_normal": len(positive) - n_anomaly,
        "n_anomaly": n_anomaly,
        "n_unlabeled": n_unlabeled,
    }
    if domain is not None:
        entry["counts"] = {
            d: {
                "normal": int(np.sum((domain == d) & ~positive)),
                "anomaly": int(np.sum((domain == d) & positive)),
            }
            for d in _DOMAINS
        }
    specs = _specs(year, domain, positive)
    keys = [f"{k}{s}" for s, _, with_pauc in specs for k in ("auc", "pauc")[: 1 + with_pauc]]
    if domain is not None and year >= 2022:
        keys += ["pauc_source", "pauc_target"]
    extra = {
        "method": "clips",
        "strata": "label" if domain is None else "label and domain",
    }
    if entry["n_normal"] == 0 or n_anomaly == 0:
        missing = "normal" if entry["n_normal"] == 0 else "anomalous"
        note = f"no {missing} clips: no AUC or pAUC"
        entry.update({key: None for key in keys})
        entry["note"] = note
        entry["ci"] = _no_interval(keys, level, note, extra)
        return entry, {}
    notes = []
    valid = []
    for suffix, mask, with_pauc in specs:
        y, s = positive[mask], score[mask]
        if y.all() or not y.any():
            entry[f"auc{suffix}"] = None
            if with_pauc:
                entry[f"pauc{suffix}"] = None
            what = "normal" if y.all() else "anomalous"
            notes.append(f"no {what} clips for the {suffix[1:]} domain: its AUC is None")
            continue
        entry[f"auc{suffix}"] = float(roc_auc_score(y, s))
        if with_pauc:
            entry[f"pauc{suffix}"] = float(roc_auc_score(y, s, max_fpr=max_fpr))
        valid.append((suffix, mask, with_pauc))
    if domain is not None and year >= 2022:  # one pAUC per section, listed for both domains
        entry["pauc_source"] = entry["pauc_target"] = entry["pauc"]
    if notes:
        entry["note"] = "; ".join(notes)
    if resamples == 0:
        entry["ci"] = _no_interval(keys, level, "resamples=0: no interval", extra)
        return entry, {}
    strata = positive.astype(np.int64)
    if domain is not None:
        strata = strata + 2 * (domain == "target")
    draws = _resample(score, positive, strata, valid, resamples, max_fpr, rng)
    if domain is not None and year >= 2022:
        draws["pauc_source"] = draws["pauc_target"] = draws["pauc"]
    ci = {key: None for key in keys}
    ci.update(_interval(draws, level, extra))
    ci.update({"resamples": resamples, "level": level})
    entry["ci"] = ci
    return entry, draws


def _components(year: int) -> tuple[str, ...]:
    """The per-group values the year's official score is made of."""
    if year == 2020:
        return ("auc", "pauc")
    if year == 2021:
        return ("auc_source", "pauc_source", "auc_target", "pauc_target")
    return ("auc_source", "auc_target", "pauc")


def _score(year: int, values: np.ndarray) -> dict[str, np.ndarray]:
    """Official score of ``values`` ``(groups, components, draws)``; means of AUCs and pAUCs."""
    keys = _components(year)
    auc = values[:, [i for i, k in enumerate(keys) if k.startswith("auc")]]
    pauc = values[:, [i for i, k in enumerate(keys) if k.startswith("pauc")]]
    mean_auc = auc.reshape(-1, values.shape[-1]).mean(axis=0)
    mean_pauc = pauc.reshape(-1, values.shape[-1]).mean(axis=0)
    if year == 2020:
        score = (mean_auc + mean_pauc) / 2.0
    else:
        flat = np.maximum(values.reshape(-1, values.shape[-1]), _EPS)
        score = scipy.stats.hmean(flat, axis=0)
    return {"score": score, "mean_auc": mean_auc, "mean_pauc": mean_pauc}


def _official(
    year: int,
    sections: Mapping[str, Mapping[str, Any]],
    draws: Mapping[str, Mapping[str, np.ndarray]],
    resamples: int,
    level: float,
    strata: str,
) -> dict[str, Any]:
    keys = _components(year)
    used = [g for g, e in sections.items() if all(e.get(k) is not None for k in keys)]
    left_out = [g for g in sections if g not in used]
    official: dict[str, Any] = {
        "year": year,
        "score": None,
        "mean_auc": None,
        "mean_pauc": None,
        "formula": _FORMULAS[min(year, 2022)],
        "sections": len(used),
    }
    extra = {"method": "clips", "strata": f"{strata}, within every group"}
    names = ["score", "mean_auc", "mean_pauc"]
    if left_out:
        official["left_out"] = left_out
        official["note"] = f"left out (missing {' or '.join(keys)}): {', '.join(left_out)}"
    if not used:
        official["note"] = "no group has every value the score needs: no official score"
        official["ci"] = _no_interval(names, level, official["note"], extra)
        return official
    point = np.asarray([[[sections[g][k]] for k in keys] for g in used], dtype=np.float64)
    official.update({k: float(v[0]) for k, v in _score(year, point).items()})
    if resamples == 0:
        official["ci"] = _no_interval(names, level, "resamples=0: no interval", extra)
        return official
    stacked = np.stack([np.stack([draws[g][k] for k in keys]) for g in used])
    official["ci"] = _interval(_score(year, stacked), level, extra)
    official["ci"].update({"resamples": resamples, "level": level})
    return official


def section_metrics(
    table: pd.DataFrame,
    *,
    year: int,
    normal: str = "normal",
    max_fpr: float = 0.1,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC and pAUC per machine ID / section, and the DCASE year's official score.

    Args:
        table: Scored test clips of one machine type: columns ``label`` (``normal``, any other
            label is an anomaly, "" or None = unlabelled: left out), ``group`` (``id_XX`` or
            ``section_XX``), ``anomaly_score`` (higher = more unusual) and, from 2021,
            ``domain`` (``"source"`` / ``"target"``, needed on every labelled clip).
        year: DCASE edition, 2020-2024: decides the domain rules and the official score.
        normal: Label of normal clips. Default ``"normal"``.
        max_fpr: FPR limit of the pAUC. Default 0.1 (every year).
        resamples: Bootstrap resamples; 0 for no intervals. Default 1000.
        level: Coverage of the intervals, in ``(0, 1)``. Default 0.95.
        seed: Seed of the resampling. Default 0.

    Returns:
        ``{"sections": {group: {...}}, "official": {...}}``. Per group (sorted by name):
        ``n_normal``, ``n_anomaly``, ``n_unlabeled``, ``auc`` and ``pauc`` (all labelled clips
        of the group, both domains); for 2021+ also ``counts`` (``{domain: {"normal",
        "anomaly"}}``), ``auc_source``, ``auc_target``, ``pauc_source``, ``pauc_target`` by
        the year's rule (module docstring; 2022+: the domain pAUCs equal ``pauc``); ``ci``
        (``{metric: [lo, hi], "method": "clips", "strata", "resamples", "level"}``); ``note``
        where something is None. ``official``: ``year``, ``score``, ``mean_auc``,
        ``mean_pauc`` (arithmetic means of the AUCs and pAUCs in the score), ``formula``,
        ``sections`` (groups in the score), ``ci`` (``{"score", "mean_auc", "mean_pauc":
        [lo, hi], ...}``) and, when groups lack a value, ``left_out`` and ``note``.

    Raises:
        ConfigError: ``year`` is not 2020-2024.
        DataError: Missing columns, clips without a group, non-finite scores of labelled
            clips, labelled 2021+ clips without a source/target domain, bad ``max_fpr``,
            ``resamples`` or ``level``.

    Example:
        >>> t = pd.DataFrame({"label": ["normal", "anomaly"] * 2, "group": ["id_00"] * 4,
        ...                   "anomaly_score": [0.1, 0.9, 0.2, 0.8]})
        >>> m = section_metrics(t, year=2020, resamples=0)
        >>> m["sections"]["id_00"]["auc"], m["official"]["score"]
        (1.0, 1.0)
    """
    year = _check_year(year)
    if not 0.0 < max_fpr <= 1.0:
        raise DataError(f"max_fpr must be in (0, 1], got {max_fpr}")
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 0:
        raise DataError(f"resamples must be a whole number >= 0, got {resamples!r}")
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be in (0, 1), got {level}")
    df = _frame(table, ("label", "group", "anomaly_score"))
    labels = _text(df["label"])
    labeled = labels != ""
    score = _scores(df, labeled)
    positive = labeled & (labels != normal)
    domain = _domains(df, labeled, year) if year >= 2021 else None
    groups = np.asarray([str(g) for g in df["group"]], dtype=object)
    names = sorted(set(groups.tolist()))
    streams = np.random.SeedSequence(seed).spawn(len(names))
    sections: dict[str, dict[str, Any]] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    for name, stream in zip(names, streams, strict=True):
        in_group = groups == name
        rows = in_group & labeled
        sections[name], draws[name] = _group_metrics(
            score[rows],
            positive[rows],
            None if domain is None else domain[rows],
            year,
            max_fpr=max_fpr,
            resamples=int(resamples),
            level=level,
            rng=np.random.default_rng(stream),
            n_unlabeled=int(np.sum(in_group & ~labeled)),
        )
    strata = "label" if domain is None else "label and domain"
    official = _official(year, sections, draws, int(resamples), level, strata)
    return {"sections": sections, "official": official}


# --------------------------------------------------------------------------- report rows


def _span(ci: Mapping[str, Any] | None, key: str) -> str | None:
    pair = (ci or {}).get(key)
    if not pair or any(v is None or not math.isfinite(v) for v in pair):
        return None
    return f"{pair[0]:.3f}–{pair[1]:.3f}"


def section_table_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a per-section table for a report, from :func:`section_metrics`.

    Args:
        metrics: The result of :func:`section_metrics`.

    Returns:
        One dict per group, in the order of ``metrics["sections"]``: ``group``, ``n``
        (labelled clips), ``n_normal``, ``n_anomaly``, ``auc``, ``auc_ci``, ``pauc``,
        ``pauc_ci``; with domains also ``auc_source``, ``auc_source_ci``, ``auc_target``,
        ``auc_target_ci`` and, for 2021 (where each domain has its own pAUC),
        ``pauc_source``, ``pauc_source_ci``, ``pauc_target``, ``pauc_target_ci``; then
        ``note`` ("" if none). Metrics are floats (None where undefined); intervals are
        strings ``"low–high"`` with three decimals and an en dash (None without an interval).
    """
    year = (metrics.get("official") or {}).get("year")
    rows = []
    for group, entry in metrics["sections"].items():
        ci = entry.get("ci")
        keys = ["auc", "pauc"]
        if "auc_source" in entry:
            keys += ["auc_source", "auc_target"]
            if year == 2021:
                keys += ["pauc_source", "pauc_target"]
        row: dict[str, Any] = {
            "group": group,
            "n": entry["n_normal"] + entry["n_anomaly"],
            "n_normal": entry["n_normal"],
            "n_anomaly": entry["n_anomaly"],
        }
        for key in keys:
            row[key] = entry.get(key)
            row[f"{key}_ci"] = _span(ci, key)
        row["note"] = entry.get("note", "")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- official files


def _check_machine(machine: Any) -> str:
    # The evaluators take the machine type as the 3rd "_"-separated part of a file name.
    if not isinstance(machine, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*", machine):
        raise ConfigError(
            "machine must be a machine type name of letters, digits, '.' or '-' (no '_', which "
            f"the evaluators split file names on, and no path), e.g. 'fan', got {machine!r}"
        )
    return machine


def _group_id(group: str, year: int) -> str:
    prefix = "id" if year == 2020 else "section"
    match = re.fullmatch(rf"(?:{prefix}_)?(\d+)", group)
    if match is None:
        raise DataError(
            f"group {group!r} is not a DCASE {year} {'machine ID' if year == 2020 else 'section'}"
            f" ({prefix}_XX)"
        )
    return f"{prefix}_{int(match.group(1)):02d}"


def _flags(column: pd.Series) -> np.ndarray:
    seen = sorted(set(map(repr, column)))[:5]
    bad = f"is_anomaly must be 0/1 or True/False on every clip, got values among {seen}"
    if column.isna().any():
        raise DataError(bad)
    try:
        values = column.to_numpy().astype(np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(bad) from err
    if not np.all((values == 0.0) | (values == 1.0)):
        raise DataError(bad)
    return values.astype(np.int64)


def official_files(
    table: pd.DataFrame, *, machine: str, year: int, decisions: bool | None = None
) -> dict[str, list[tuple[str, float | int]]]:
    """The rows of the official challenge files of one machine type, by file name.

    Every clip is written, labelled or not; its file comes from its ``group`` (and, in 2021,
    its ``domain``). Names per year are in the module docstring.

    Args:
        table: Scored clips: ``path``, ``group``, ``anomaly_score``; ``is_anomaly`` (bool or
            0/1) when decision files are written; ``domain`` in 2021.
        machine: Machine type as in the file names (``"fan"``, ``"ToyCar"``).
        year: DCASE edition, 2020-2024.
        decisions: Also write ``decision_result_*`` files. Default None: as the year did
            (2021+ yes; 2020 no, the 2020 challenge took anomaly scores only).

    Returns:
        ``{file name: [(clip base name, value), ...]}``, files sorted by name, rows sorted by
        clip name; the value is the anomaly score (float) or the decision (0/1 int).

    Raises:
        ConfigError: Bad ``year`` or ``machine``.
        DataError: Missing columns, a group that is not ``id_XX`` (2020) / ``section_XX``
            (2021+), a 2021 clip without domain, non-finite scores, bad ``is_anomaly``, or two
            clips of one file with the same base name.
    """
    year = _check_year(year)
    _check_machine(machine)
    decisions = year >= 2021 if decisions is None else bool(decisions)
    needed = ("path", "group", "anomaly_score") + (("is_anomaly",) if decisions else ())
    df = _frame(table, needed)
    every = np.ones(len(df), dtype=bool)
    score = _scores(df, every)
    flags = _flags(df["is_anomaly"]) if decisions else None
    names = [re.split(r"[\\/]", str(p))[-1] for p in df["path"]]
    stems = [f"{machine}_{_group_id(str(g), year)}" for g in df["group"]]
    if year == 2021:
        domain = _domains(df, every, year)
        stems = [f"{stem}_{d}_test" for stem, d in zip(stems, domain, strict=True)]
    elif year >= 2022:
        stems = [f"{stem}_test" for stem in stems]
    files: dict[str, list[tuple[str, float | int]]] = {}
    for stem in sorted(set(stems)):
        rows = sorted((names[i], i) for i, s in enumerate(stems) if s == stem)
        clip_names = [name for name, _ in rows]
        if len(set(clip_names)) < len(clip_names):
            dup = sorted({n for n in clip_names if clip_names.count(n) > 1})
            raise DataError(f"clips of {stem} share base names: {', '.join(dup[:5])}")
        files[f"anomaly_score_{stem}.csv"] = [(name, float(score[i])) for name, i in rows]
        if flags is not None:
            files[f"decision_result_{stem}.csv"] = [(name, int(flags[i])) for name, i in rows]
    return dict(sorted(files.items()))


def write_official_files(
    out_dir: str | os.PathLike,
    table: pd.DataFrame,
    *,
    machine: str,
    year: int,
    decisions: bool | None = None,
) -> list[Path]:
    """Write :func:`official_files` into ``out_dir``, each file whole or not at all.

    Rows are ``name,value`` lines (``\\n`` endings, no header, full float precision), as the
    baselines' ``csv.writer(f, lineterminator="\\n")`` writes them.

    Args:
        out_dir: Folder of the files (created when missing).
        table: Scored clips, as :func:`official_files`.
        machine: Machine type.
        year: DCASE edition, 2020-2024.
        decisions: As :func:`official_files`.

    Returns:
        The paths written, sorted by name.
    """
    files = official_files(table, machine=machine, year=year, decisions=decisions)
    paths = []
    for name, rows in files.items():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        paths.append(atomic_write(Path(out_dir) / name, buffer.getvalue()))
    return paths
