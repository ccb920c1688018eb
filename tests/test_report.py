"""Tests of audioar.report.build: HTML/Markdown reports built from synthetic run directories."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioar.errors import RunFormatError
from audioar.evaluation.files import scores_frame, write_evaluation
from audioar.evaluation.metrics import evaluate_scores, summarize_folds
from audioar.report.build import MAX_EPOCH_ROWS, build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert('x')</script>"
WORDS = ["zero", "one", "two", EVIL]
#: The smallest config.json a report accepts.
MINIMAL = {"format_version": 2, "config": {}, "featurizer": {}, "calibration": {}}


def _make_run(run: Path, *, epochs: int = 60, best_epoch: int | None = 42) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    fit = {"stopped": "early stopping", "seconds": 12.5, "device": "cpu", "dims": 257}
    if best_epoch is not None:
        fit["best_epoch"] = best_epoch
    cfg = {
        "format_version": 2,
        "audioar_version": "0.1.0",
        "created": "2026-11-23T10:00:00",
        "config": {
            "data": {"root": "/data", "layout": "fsdd", "target": "zero"},
            "features": {"name": "fft", "n_fft": 512},
            "model": {"name": "maf", "num_flows": 5, "hidden_features": [512, 512]},
            "train": {"lr": 1e-4, "batch_size": 64},
            "calibration": {"method": "quantile", "target_fpr": 0.1},
        },
        "featurizer": {"type": "WholeWindowFFT", "sample_rate": 8000},
        "calibration": {
            "method": "empirical",
            "target_fpr": 0.1,
            "threshold": 2.5,
            "reference": [0.5 + 0.01 * i for i in range(200)],
            "gamma": None,
        },
        "extra": {
            "fit": fit,
            "data": {"split": "official", "classes": WORDS, "target": "zero"},
        },
    }
    (run / "config.json").write_text(json.dumps(cfg))
    ep = np.arange(1, epochs + 1)
    history = {
        "epoch": ep,
        "train_log_likelihood": -100 + 50 * (1 - np.exp(-ep / 10)),
        "val_log_likelihood": -110 + 50 * (1 - np.exp(-ep / 10)),
        "seconds": np.full(epochs, 0.5),
    }
    for i, w in enumerate(WORDS[1:]):
        history[f"ll_{w}"] = -120 + (40 - 5 * i) * (1 - np.exp(-ep / 10))
    pd.DataFrame(history).to_csv(run / "history.csv", index=False)
    return run


def _scores(seed: int):
    rng = np.random.default_rng(seed)
    ll = np.concatenate([rng.normal(-1 - 0.5 * i, 1.0, 15) for i in range(len(WORDS))])
    labels = [w for w in WORDS for _ in range(15)]
    return ll, labels


def _evaluate(run: Path) -> dict:
    ll, labels = _scores(0)
    m = evaluate_scores(ll, labels, "zero", threshold=2.5, dims=257)
    write_evaluation(run / "eval", m, scores_frame(ll, labels, dims=257))
    return m


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def _assert_self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//|file:)', text, re.I)
    assert "<link" not in text.lower()
    for m in re.finditer(r'src="([^"]*)"', text):
        assert m.group(1).startswith("data:image/png;base64,")


def test_report_with_evaluation(tmp_path):
    run = _make_run(tmp_path / "run")
    m = _evaluate(run)
    html_path, md_path = build_report(run)
    assert (html_path, md_path) == (run / "report.html", run / "report.md")
    text = html_path.read_text()
    _assert_self_contained(text)
    images = _images(text)
    assert len(images) == 4  # training curves, ROC, per-class box plot, histogram
    assert all(img[:8] == PNG_MAGIC for img in images)
    for key in ("auc", "pauc", "eer"):
        assert f"{m[key]:.3f}" in text
    assert f"{m['target_rank']} of 4" in text
    assert f"{m['precision']:.3f}" in text and f"{m['recall']:.3f}" in text
    assert "How to read this" in text and "nats" in text
    assert "ranks first" in text and "No class has a higher" in text
    assert "maf" in text and "WholeWindowFFT" in text and "early stopping" in text
    assert "200 values, 0.5 … 2.49" in text  # long lists (calibration reference) summarised
    # per-class table: target row highlighted, classes ordered by mean log-likelihood
    rows = re.findall(r'<tr class="hl">(.*?)</tr>', text)
    assert any(">zero<" in r for r in rows)
    # Markdown twin: same headline, figures as relative files that exist
    md = md_path.read_text()
    assert f"{m['auc']:.3f}" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(Path(p).name for p in links) == sorted(
        ["training_curves.png", "roc.png", "per_class_loglik.png", "score_hist.png"]
    )
    for link in links:
        assert not Path(link).is_absolute() and (md_path.parent / link).is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_report_escapes_user_strings(tmp_path):
    run = _make_run(tmp_path / "run")
    _evaluate(run)
    html_path, md_path = build_report(run)
    text = html_path.read_text()
    assert EVIL not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert EVIL not in md_path.read_text()


def test_report_without_evaluation(tmp_path):
    run = _make_run(tmp_path / "run")
    html_path, md_path = build_report(run)
    text = html_path.read_text()
    assert "Not evaluated yet" in text and "audioar evaluate --model" in text
    assert len(_images(text)) == 1  # the training curves only
    assert (run / "training_curves.png").read_bytes()[:8] == PNG_MAGIC
    assert "Not evaluated yet" in md_path.read_text()


def test_epoch_table_is_sampled_and_best_epoch_highlighted(tmp_path):
    run = _make_run(tmp_path / "run", epochs=100, best_epoch=42)
    text = build_report(run)[0].read_text()
    table = text.split("per epoch (")[1].split("</table>")[0]
    body_rows = re.findall(r"<tr( class=\"hl\")?><td", table)
    assert MAX_EPOCH_ROWS <= len(body_rows) <= MAX_EPOCH_ROWS + 1
    highlighted = re.findall(r'<tr class="hl"><td class=num>(\d+)</td>', table)
    assert highlighted == ["42"]
    assert "best epoch 42 highlighted" in text


def test_best_epoch_falls_back_to_best_validation(tmp_path):
    run = _make_run(tmp_path / "run", epochs=10, best_epoch=None)
    text = build_report(run)[0].read_text()
    assert "best epoch 10 highlighted" in text  # validation LL rises monotonically


def test_partial_run_without_history_and_optional_keys(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(MINIMAL))
    html_path, md_path = build_report(run)
    text = html_path.read_text()
    assert "No training history" in text and "Not evaluated yet" in text
    _assert_self_contained(text)


def test_loso_report(tmp_path):
    run = _make_run(tmp_path / "run")
    folds, frames = {}, []
    for i, speaker in enumerate(["george", "jackson", "theo"]):
        ll, labels = _scores(i)
        folds[speaker] = evaluate_scores(ll, labels, "zero", threshold=2.5)
        frames.append(scores_frame(ll, labels, folds=[speaker] * len(ll)))
    summary = summarize_folds(folds)
    out = tmp_path / "elsewhere"
    write_evaluation(run / "eval", summary, pd.concat(frames, ignore_index=True))
    html_path, md_path = build_report(run, out_dir=out)
    assert html_path.parent == out
    text = html_path.read_text()
    for speaker in folds:
        assert speaker in text
    assert "mean ± std" in text
    assert f"{summary['mean']['auc']:.3f} ± {summary['std']['auc']:.3f}" in text
    assert "every fold" in text
    # evaluation figures outside out_dir are copied next to the Markdown file
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text())
    assert len(links) == 4 and all((out / link).is_file() for link in links)


def test_custom_eval_dir(tmp_path):
    run = _make_run(tmp_path / "run")
    ll, labels = _scores(3)
    m = evaluate_scores(ll, labels, "zero")
    write_evaluation(tmp_path / "ev", m, scores_frame(ll, labels))
    text = build_report(run, eval_dir=tmp_path / "ev")[0].read_text()
    assert f"{m['auc']:.3f}" in text and "Not evaluated yet" not in text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "not an audioar run directory"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "no format_version"),
        (json.dumps({"format_version": 1}), "format version 1; this audioar reads version 2"),
        (json.dumps({"config": {}}), "no format_version"),
        (json.dumps({"format_version": 2, "config": {}}), "invalid 'featurizer'"),
        (
            json.dumps(
                {
                    "format_version": 2,
                    "config": {},
                    "featurizer": {},
                    "calibration": {},
                    "extra": [1],
                }
            ),
            "'extra' must be a JSON object",
        ),
    ],
)
def test_bad_config_raises_run_format_error(tmp_path, content, match):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "config.json").write_text(content)
    with pytest.raises(RunFormatError, match=match):
        build_report(run)
    assert not (run / "report.html").exists()


def test_corrupt_metrics_raises(tmp_path):
    run = _make_run(tmp_path / "run")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text("{")
    with pytest.raises(RunFormatError, match="metrics.json: not valid JSON"):
        build_report(run)


def test_partial_metrics_and_beaten_target(tmp_path):
    run = _make_run(tmp_path / "run")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({"target": "zero", "auc": 0.9}))
    text = build_report(run)[0].read_text()
    assert "0.900" in text and "rank first" not in text
    metrics = {
        "target": "zero",
        "auc": 0.7,
        "target_rank": 3,
        "num_classes": 4,
        "classes_beating_target": ["one", "two"],
        "per_class": {"one": {"mean_log_likelihood": -1.0, "rank": 1}},
    }
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    text = build_report(run)[0].read_text()
    assert "does not rank first" in text
    assert "<strong>2 of 3</strong>: one, two" in text
    assert "3 of 4" in text


def test_training_curves_focus_on_the_target_and_its_nearest_classes():
    from audioar.report.figures import training_curves_figure

    epochs = np.arange(1, 41)
    history = pd.DataFrame(
        {
            "epoch": epochs,
            "train_log_likelihood": -120 + 20 * (1 - np.exp(-epochs / 8)),
            "val_log_likelihood": -125 + 20 * (1 - np.exp(-epochs / 8)),
            "ll_near": -160 + 0 * epochs,  # close below the target: stays in view
            "ll_above": -90 + 0 * epochs,  # beats the target: stays in view
            **{f"ll_far{i}": -15000.0 - 100 * i + 0 * epochs for i in range(8)},
        }
    )
    fig = training_curves_figure(history, best_epoch=30, target="zero")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert -200 < low < -160 and high > -90  # the gap that matters fills the axis
    assert "classes fall below the axis" in ax.get_title()


def test_report_tables_wrap_long_values_and_scroll_in_their_own_box(tmp_path):
    text = build_report(_make_run(tmp_path / "run"))[0].read_text()
    assert ".grid td{overflow-wrap:anywhere}" in text  # setup values wrap, no sideways scroll
    assert ".scroll td:first-child{position:sticky" in text  # wide tables keep the epoch column


def _with_intervals(m: dict, ll, labels) -> dict:
    from audioar.evaluation.bootstrap import bootstrap_intervals

    m["score"] = "log_likelihood"
    m["ci"] = bootstrap_intervals(ll, labels, "zero")
    m["scores"] = {
        "log_likelihood": {**{k: m[k] for k in ("auc", "pauc", "eer")}, "target_first": True,
                           "ci": m["ci"]},
        "nats_per_step": {"auc": 0.5, "pauc": 0.5, "eer": 0.5, "target_first": False,
                          "ci": {"auc": [0.41, 0.59], "pauc": None, "eer": None}},
    }  # fmt: skip
    return m


def test_report_shows_confidence_intervals(tmp_path):
    run = _make_run(tmp_path / "run")
    ll, labels = _scores(0)
    m = _with_intervals(evaluate_scores(ll, labels, "zero", threshold=2.5), ll, labels)
    write_evaluation(run / "eval", m, scores_frame(ll, labels))
    html_path, md_path = build_report(run)
    lo, hi = m["ci"]["auc"]
    for text in (html_path.read_text(), md_path.read_text()):
        assert f"95% CI [{lo:.3f}, {hi:.3f}]" in text  # the headline card
        assert f"{m['auc']:.3f} [{lo:.3f}, {hi:.3f}]" in text  # the scores table
        assert "1000 resamples" in text and "target and other clips resampled" in text
        assert "0.500 [0.410, 0.590]" in text  # a score without pAUC/EER intervals
    assert "Where in the clip" not in html_path.read_text()  # no traces.npz, no note


def test_loso_report_shows_the_interval_of_the_mean(tmp_path):
    from audioar.evaluation.bootstrap import fold_mean_intervals

    run = _make_run(tmp_path / "run")
    folds, frames = {}, []
    for i, speaker in enumerate(["george", "jackson", "theo"]):
        ll, labels = _scores(i)
        folds[speaker] = evaluate_scores(ll, labels, "zero")
        folds[speaker]["ci"] = {"auc": [0.1, 0.9], "pauc": [0.2, 0.8], "eer": [0.3, 0.7],
                                "method": "clips", "resamples": 1000, "level": 0.95}  # fmt: skip
        frames.append(scores_frame(ll, labels, folds=[speaker] * len(ll)))
    summary = summarize_folds(folds)
    summary["ci"] = fold_mean_intervals(folds)
    summary["pooled"] = {"auc": 0.75, "pauc": 0.6, "eer": 0.3, "ci": {"auc": [0.7, 0.8],
                         "method": "speakers"}}  # fmt: skip
    write_evaluation(run / "eval", summary, pd.concat(frames, ignore_index=True))
    text = build_report(run)[0].read_text()
    lo, hi = summary["ci"]["auc"]
    assert "95% CI of the mean (speakers)" in text and f"[{lo:.3f}, {hi:.3f}]" in text
    assert text.count("[0.100, 0.900]") == 3  # every fold's own interval
    assert "pooled: AUC 0.750 [0.700, 0.800] (speakers resampled)" in text
    assert "3 held-out speakers drawn with replacement" in text


def _fake_examples(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        steps = 20 + 5 * i
        out.append(
            {
                "path": f"/data/{EVIL}/clip_{i}.wav", "label": WORDS[i % 4], "speaker": "spk",
                "fold": "", "kind": "typical" if i >= n - 2 else "anomalous",
                "anomaly_score": 10.0 - i, "log_likelihood": -float(steps),
                "trace": -rng.gamma(2.0, 1.0, steps), "spectrogram": rng.normal(size=(steps, 16)),
                "step_seconds": 0.016, "frame_seconds": 0.016,
            }
        )  # fmt: skip
    return out


def test_report_draws_the_traces_of_traces_npz(tmp_path):
    from audioar.pipeline.traces import trace_arrays

    run = _make_run(tmp_path / "run")
    ll, labels = _scores(0)
    m = evaluate_scores(ll, labels, "zero")
    m["score"] = "log_likelihood"
    arrays = trace_arrays(_fake_examples(5), score="log_likelihood")
    write_evaluation(run / "eval", m, scores_frame(ll, labels), traces=arrays)
    (run / "trace_9.png").write_bytes(b"an older report's figure")
    html_path, md_path = build_report(run)
    text = html_path.read_text()
    _assert_self_contained(text)
    assert "Where in the clip: per-step surprise" in text
    assert "The 3 test clips with the highest anomaly score" in text
    images = _images(text)
    assert len(images) == 4 + 5 and all(img[:8] == PNG_MAGIC for img in images)
    assert text.count('<div class="gallery">') == 1
    assert "1. most anomalous: " in text and "5. typical target: " in text
    assert EVIL not in text  # clip paths are escaped
    md = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\((trace_\d+\.png)\)", md)
    assert links == [f"trace_{i}.png" for i in range(1, 6)]
    assert all((run / link).is_file() for link in links)
    assert not (run / "trace_9.png").exists()
    assert "<script" not in md


def test_unreadable_traces_give_a_note(tmp_path):
    run = _make_run(tmp_path / "run")
    _evaluate(run)
    (run / "eval" / "traces.npz").write_bytes(b"garbage")
    text = build_report(run)[0].read_text()
    assert "The traces could not be read" in text


def _section_table(seed: int, groups: list[str], *, domains: bool) -> pd.DataFrame:
    """Scored clips of a few machine IDs / sections: anomalies score higher, on average."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, group in enumerate(groups):
        labels = ["normal"] * 12 + ["anomaly"] * 8
        part = pd.DataFrame(
            {
                "label": labels,
                "group": group,
                "anomaly_score": rng.normal(0, 1, 20) + (0.8 + 0.3 * i) * np.arange(20) / 20,
            }
        )
        if domains:
            part["domain"] = ["source", "target"] * 10
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _dcase_run(tmp_path: Path, sections: dict, *, by_group: bool) -> Path:
    run = _make_run(tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    cfg["extra"]["data"]["condition"] = "group" if by_group else "label"
    cfg["extra"]["model"] = {"conditional": True, "score": "log_likelihood"}
    (run / "config.json").write_text(json.dumps(cfg))
    ll, labels = _scores(0)
    m = evaluate_scores(ll, labels, "zero", threshold=2.5)
    m["score"] = "log_likelihood"
    m.update(sections)
    write_evaluation(run / "eval", m, scores_frame(ll, labels))
    return run


def test_report_shows_the_per_section_table_and_official_score(tmp_path):
    from audioar.evaluation.sections import section_metrics, section_table_rows

    groups = ["section_00", "section_01", "section_02"]
    sections = section_metrics(_section_table(0, groups, domains=True), year=2023, resamples=50)
    run = _dcase_run(tmp_path, sections, by_group=True)
    html_path, md_path = build_report(run)
    text, md = html_path.read_text(), md_path.read_text()
    _assert_self_contained(text)
    rows = section_table_rows(sections)
    assert [r["group"] for r in rows] == groups and all(r["auc_ci"] for r in rows)
    official = sections["official"]
    lo, hi = official["ci"]["score"]
    score_line = f"Official DCASE 2023 score: {official['score']:.3f} [{lo:.3f}, {hi:.3f}]"
    mean_lo, mean_hi = official["ci"]["mean_auc"]
    mean_auc = f"Mean AUC over the 3 sections: {official['mean_auc']:.3f} [{mean_lo:.3f}, "
    for doc in (text, md):
        # right after the headline cards, before the setup
        assert doc.index("Per machine ID / section") < doc.index("Setup")
        for header in ("ID / section", "anomalous", "AUC 95 % interval", "pAUC (FPR ≤ 0.1)",
                       "pAUC 95 % interval", "AUC source", "AUC target 95 % interval"):  # fmt: skip
            assert header in doc
        caption = "anomaly score = −log p(x | its own section)"
        assert caption in (doc if doc is text else doc.replace("\\|", "|"))  # md escapes |
        assert score_line in doc and mean_auc in doc
        assert "harmonic mean over sections of source AUC, target AUC" in doc
    table = text.split("Per machine ID / section</h2>")[1].split("</table>")[0]
    for r in rows:
        html_cells = [r["group"], r["n_normal"], r["n_anomaly"], f"{r['auc']:.3f}", r["auc_ci"],
                      f"{r['pauc']:.3f}", r["pauc_ci"], f"{r['auc_source']:.3f}"]  # fmt: skip
        assert (
            f"<td>{r['group']}</td>" + "".join(f"<td class=num>{c}</td>" for c in html_cells[1:])
            in table
        )
        assert "| " + " | ".join(str(c) for c in html_cells) + " |" in md


def test_report_section_table_without_intervals_escapes_group_names(tmp_path):
    from audioar.evaluation.sections import section_metrics

    groups = ["id_00", EVIL]
    sections = section_metrics(_section_table(1, groups, domains=False), year=2020, resamples=0)
    run = _dcase_run(tmp_path, sections, by_group=False)
    html_path, md_path = build_report(run)
    text, md = html_path.read_text(), md_path.read_text()
    assert EVIL not in text and EVIL not in md
    assert "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</td>" in text
    auc = sections["sections"]["id_00"]["auc"]
    official = sections["official"]
    for doc in (text, md):
        assert "Per machine ID / section" in doc
        caption = "anomaly score = −log p(x | zero)"  # not conditioned on groups
        assert caption in (doc if doc is text else doc.replace("\\|", "|"))
        assert "95 % interval" not in doc and "AUC source" not in doc  # no intervals, domains
        assert f"{auc:.3f}" in doc
        assert f"Official DCASE 2020 score: {official['score']:.3f}," in doc
        assert "arithmetic mean of the mean per-ID AUC and the mean per-ID pAUC" in doc
        assert f"mean pAUC: {official['mean_pauc']:.3f}." in doc


def test_report_without_sections_has_no_section_table(tmp_path):
    run = _make_run(tmp_path / "run")
    _evaluate(run)
    html_path, md_path = build_report(run)
    for doc in (html_path.read_text(), md_path.read_text()):
        assert "Per machine ID / section" not in doc and "Official DCASE" not in doc
