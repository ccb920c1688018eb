"""DCASE per-section metrics, official scores and official files (audioar.evaluation.sections)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from audioar.errors import ConfigError, DataError
from audioar.evaluation.sections import (
    official_files,
    section_metrics,
    section_table_rows,
    write_official_files,
)


def _rows(group, domain, normal, anomaly, prefix=""):
    """Rows of one group/domain: normal then anomalous clips with the given scores."""
    out = []
    for label, scores in (("normal", normal), ("anomaly", anomaly)):
        for i, s in enumerate(scores):
            name = f"{prefix}{group}_{domain or 'x'}_{label}_{i:04d}.wav"
            out.append(
                {
                    "path": f"/data/test/{name}",
                    "label": label,
                    "group": group,
                    "domain": domain,
                    "anomaly_score": float(s),
                    "is_anomaly": bool(s > 0.5),
                }
            )
    return out


def _random_table(seed=0, groups=3, n=40, domains=True, gap=1.0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        name = f"section_{g:02d}" if domains else f"id_{g:02d}"
        for d in ("source", "target") if domains else (None,):
            shift = 0.6 if d == "target" else 0.0
            rows += _rows(name, d, rng.normal(shift, 1.0, n), rng.normal(shift + gap, 1.0, n // 2))
    return pd.DataFrame(rows)


# A section where the 2021 and the 2022+ domain rules give different numbers.
# source: normals .1 .2 .3, anomalies .15 .6; target: normals .7 .8 .9, anomalies .75 1.0
_SHIFT = pd.DataFrame(
    _rows("section_00", "source", [0.1, 0.2, 0.3], [0.15, 0.6])
    + _rows("section_00", "target", [0.7, 0.8, 0.9], [0.75, 1.0])
)


def _pauc(area, max_fpr=0.1):
    """McClish standardisation of a raw partial area."""
    return 0.5 * (1 + (area - max_fpr**2 / 2) / (max_fpr - max_fpr**2 / 2))


# ----------------------------------------------------------------------------- per group


def test_group_auc_pauc_equal_sklearn():
    table = _random_table(seed=1, domains=False)
    m = section_metrics(table, year=2020, resamples=0)
    assert list(m["sections"]) == ["id_00", "id_01", "id_02"]
    for group, entry in m["sections"].items():
        part = table[table["group"] == group]
        y = (part["label"] == "anomaly").to_numpy()
        s = part["anomaly_score"].to_numpy()
        assert entry["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-15)
        assert entry["pauc"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1), abs=1e-15)
        assert (entry["n_normal"], entry["n_anomaly"], entry["n_unlabeled"]) == (40, 20, 0)
        assert "auc_source" not in entry


def test_domain_rule_2021_each_domain_alone():
    entry = section_metrics(_SHIFT, year=2021, resamples=0)["sections"]["section_00"]
    # source: .15 beats 1 of 3 normals, .6 beats 3 -> 4/6; target: .75 beats 1, 1.0 beats 3
    assert entry["auc_source"] == pytest.approx(4 / 6)
    assert entry["auc_target"] == pytest.approx(4 / 6)
    for d in ("source", "target"):
        part = _SHIFT[_SHIFT["domain"] == d]
        y, s = part["label"] == "anomaly", part["anomaly_score"]
        assert entry[f"pauc_{d}"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    y, s = _SHIFT["label"] == "anomaly", _SHIFT["anomaly_score"]
    assert entry["auc"] == pytest.approx(roc_auc_score(y, s))  # both domains together
    assert entry["counts"] == {
        "source": {"normal": 3, "anomaly": 2},
        "target": {"normal": 3, "anomaly": 2},
    }


@pytest.mark.parametrize("year", [2022, 2023, 2024])
def test_domain_rule_2022_on_normals_of_domain_and_all_anomalies(year):
    entry = section_metrics(_SHIFT, year=year, resamples=0)["sections"]["section_00"]
    # source normals .1 .2 .3 vs all anomalies .15 .6 .75 1.0: 1 + 3 + 3 + 3 of 12
    assert entry["auc_source"] == pytest.approx(10 / 12)
    # target normals .7 .8 .9 vs .15 .6 .75 1.0: 0 + 0 + 1 + 3 of 12
    assert entry["auc_target"] == pytest.approx(4 / 12)
    y, s = _SHIFT["label"] == "anomaly", _SHIFT["anomaly_score"]
    pauc_all = roc_auc_score(y, s, max_fpr=0.1)
    assert entry["pauc"] == pytest.approx(pauc_all)
    assert entry["pauc_source"] == entry["pauc_target"] == entry["pauc"]  # one pAUC per section


# ----------------------------------------------------------------------------- official score

# section_00: source normals .1 .2, target normals .3 .4; anomalies .35 (source), .5 (target)
_SMALL = pd.DataFrame(
    _rows("section_00", "source", [0.1, 0.2], [0.35])
    + _rows("section_00", "target", [0.3, 0.4], [0.5])
)
# pAUC over all clips: the ROC is at TPR 1/2 from FPR 0 to 1/4, so the area to 0.1 is 0.05.
_SMALL_PAUC = _pauc(0.05)


def test_official_2022_harmonic_mean_by_hand():
    official = section_metrics(_SMALL, year=2022, resamples=0)["official"]
    entry = section_metrics(_SMALL, year=2022, resamples=0)["sections"]["section_00"]
    assert (entry["auc_source"], entry["auc_target"]) == (1.0, 0.75)
    assert entry["pauc"] == pytest.approx(_SMALL_PAUC)
    assert official["score"] == pytest.approx(3 / (1 / 1.0 + 1 / 0.75 + 1 / _SMALL_PAUC))
    assert official["sections"] == 1 and official["year"] == 2022
    assert "harmonic" in official["formula"]


def test_official_2021_is_one_on_the_same_table():
    # each domain alone separates perfectly: AUC = pAUC = 1 for both domains
    m = section_metrics(_SMALL, year=2021, resamples=0)
    entry = m["sections"]["section_00"]
    keys = ("auc_source", "pauc_source", "auc_target", "pauc_target")
    assert [entry[k] for k in keys] == [1.0] * 4
    assert m["official"]["score"] == pytest.approx(1.0)


def test_official_2021_harmonic_mean_over_sections_and_domains():
    table = _random_table(seed=3, groups=2)
    m = section_metrics(table, year=2021, resamples=0)
    values = [
        m["sections"][g][k]
        for g in ("section_00", "section_01")
        for k in ("auc_source", "pauc_source", "auc_target", "pauc_target")
    ]
    assert m["official"]["score"] == pytest.approx(len(values) / sum(1 / v for v in values))
    assert m["official"]["score"] < np.mean(values)


def test_official_2020_arithmetic_mean_by_hand():
    table = pd.DataFrame(
        _rows("id_00", None, [0.1, 0.2], [0.8, 0.9])  # perfect: AUC = pAUC = 1
        + _rows("id_02", None, [0.1, 0.2, 0.3, 0.4], [0.35, 0.5])  # AUC 7/8, pAUC as _SMALL
    )
    m = section_metrics(table, year=2020, resamples=0)
    assert m["sections"]["id_02"]["auc"] == pytest.approx(7 / 8)
    assert m["sections"]["id_02"]["pauc"] == pytest.approx(_SMALL_PAUC)
    official = m["official"]
    assert official["mean_auc"] == pytest.approx((1 + 7 / 8) / 2)
    assert official["mean_pauc"] == pytest.approx((1 + _SMALL_PAUC) / 2)
    assert official["score"] == pytest.approx((1 + 7 / 8 + 1 + _SMALL_PAUC) / 4)
    assert official["sections"] == 2


def test_official_floors_zero_at_epsilon_like_the_evaluator():
    reversed_ = pd.DataFrame(
        _rows("section_01", "source", [0.8, 0.9], [0.1])
        + _rows("section_01", "target", [0.7, 0.95], [0.2])
    )
    table = pd.concat([_SMALL, reversed_], ignore_index=True)
    m = section_metrics(table, year=2023, resamples=0)
    assert m["sections"]["section_01"]["auc_source"] == 0.0
    assert 0.0 < m["official"]["score"] < 1e-14  # hmean(max(v, eps)): tiny, not 0 or NaN


# ----------------------------------------------------------------------------- edge cases


def test_unlabeled_rows_left_out_of_metrics_but_written(tmp_path):
    table = _random_table(seed=4, groups=2)
    extra = pd.DataFrame(
        _rows("section_01", "target", [100.0, -100.0], [], prefix="eval_")
        + _rows("section_00", None, [50.0], [], prefix="eval_")  # no domain, no label
    ).assign(label="")
    both = pd.concat([table, extra], ignore_index=True)
    m1 = section_metrics(table, year=2023, resamples=50)
    m2 = section_metrics(both, year=2023, resamples=50)
    for g in ("section_00", "section_01"):
        a, b = m1["sections"][g], m2["sections"][g]
        for key in ("auc", "pauc", "auc_source", "auc_target", "n_normal", "n_anomaly"):
            assert a[key] == b[key]
        assert a["ci"] == b["ci"]
    assert m2["sections"]["section_01"]["n_unlabeled"] == 2
    assert m2["official"]["score"] == m1["official"]["score"]
    files = official_files(both, machine="fan", year=2023)
    names = [n for n, _ in files["anomaly_score_fan_section_01_test.csv"]]
    assert "eval_section_01_target_normal_0000.wav" in names
    rows = dict(files["anomaly_score_fan_section_00_test.csv"])
    assert rows["eval_section_00_x_normal_0000.wav"] == 50.0


def test_group_without_both_labels_is_reported_not_fatal():
    table = pd.concat(
        [_SMALL, pd.DataFrame(_rows("section_01", "source", [0.1, 0.4], []))], ignore_index=True
    )
    m = section_metrics(table, year=2022, resamples=20)
    entry = m["sections"]["section_01"]
    assert (entry["n_normal"], entry["n_anomaly"]) == (2, 0)
    assert entry["auc"] is None and entry["pauc"] is None and entry["auc_target"] is None
    assert "no anomalous clips" in entry["note"]
    assert entry["ci"]["auc"] is None
    official = m["official"]
    assert official["sections"] == 1 and official["left_out"] == ["section_01"]
    assert official["score"] == pytest.approx(3 / (1 / 1.0 + 1 / 0.75 + 1 / _SMALL_PAUC))
    # only anomalies in a 2020 group; and a 2021 domain without normal clips
    lone = pd.DataFrame(_rows("id_00", None, [], [0.3, 0.4]))
    assert section_metrics(lone, year=2020)["official"]["score"] is None
    no_target_normal = pd.DataFrame(
        _rows("section_00", "source", [0.1], [0.9]) + _rows("section_00", "target", [], [0.8])
    )
    m = section_metrics(no_target_normal, year=2021, resamples=20)
    entry = m["sections"]["section_00"]
    assert entry["auc_source"] == 1.0 and entry["auc_target"] is None
    assert "target" in entry["note"] and m["official"]["score"] is None


def test_unknown_year_is_a_config_error():
    for year in (2019, 2025, "2022", 2022.0):
        with pytest.raises(ConfigError, match=str(year)):
            section_metrics(_SMALL, year=year)
        with pytest.raises(ConfigError):
            official_files(_SMALL, machine="fan", year=year)


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="domain"):
        section_metrics(_SMALL.assign(domain=None), year=2021)
    with pytest.raises(DataError, match="anomaly_score"):
        section_metrics(_SMALL.drop(columns="anomaly_score"), year=2022)
    with pytest.raises(DataError, match="not finite"):
        section_metrics(_SMALL.assign(anomaly_score=np.nan), year=2022)
    with pytest.raises(DataError, match="section"):
        official_files(_SMALL.assign(group="fan"), machine="fan", year=2022)
    with pytest.raises(DataError, match="id_XX"):
        official_files(_SMALL, machine="fan", year=2020)  # sections in a 2020 table
    with pytest.raises(ConfigError, match="machine"):
        official_files(_SMALL, machine="toy_car", year=2022)


# ----------------------------------------------------------------------------- files


def test_files_2020_names_and_rows(tmp_path):
    table = pd.DataFrame(
        _rows("id_04", None, [0.3, 0.1], [0.9]) + _rows("id_00", None, [0.2], [0.7])
    ).iloc[::-1]
    files = official_files(table, machine="fan", year=2020)
    assert list(files) == ["anomaly_score_fan_id_00.csv", "anomaly_score_fan_id_04.csv"]
    assert files["anomaly_score_fan_id_04.csv"] == [
        ("id_04_x_anomaly_0000.wav", 0.9),
        ("id_04_x_normal_0000.wav", 0.3),
        ("id_04_x_normal_0001.wav", 0.1),
    ]
    with_decisions = official_files(table, machine="fan", year=2020, decisions=True)
    assert with_decisions["decision_result_fan_id_04.csv"] == [
        ("id_04_x_anomaly_0000.wav", 1),
        ("id_04_x_normal_0000.wav", 0),
        ("id_04_x_normal_0001.wav", 0),
    ]
    paths = write_official_files(tmp_path, table, machine="fan", year=2020)
    assert [p.name for p in paths] == list(files)
    text = (tmp_path / "anomaly_score_fan_id_04.csv").read_text()
    assert text == "id_04_x_anomaly_0000.wav,0.9\nid_04_x_normal_0000.wav,0.3\n" + (
        "id_04_x_normal_0001.wav,0.1\n"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp debris


def test_files_2021_per_section_and_domain(tmp_path):
    paths = write_official_files(tmp_path, _SHIFT, machine="ToyCar", year=2021)
    assert [p.name for p in paths] == [
        "anomaly_score_ToyCar_section_00_source_test.csv",
        "anomaly_score_ToyCar_section_00_target_test.csv",
        "decision_result_ToyCar_section_00_source_test.csv",
        "decision_result_ToyCar_section_00_target_test.csv",
    ]
    lines = (tmp_path / "decision_result_ToyCar_section_00_target_test.csv").read_text()
    assert lines.splitlines() == [
        "section_00_target_anomaly_0000.wav,1",
        "section_00_target_anomaly_0001.wav,1",
        "section_00_target_normal_0000.wav,1",
        "section_00_target_normal_0001.wav,1",
        "section_00_target_normal_0002.wav,1",
    ]


@pytest.mark.parametrize("year", [2022, 2023, 2024])
def test_files_2022_on_one_pair_per_section(tmp_path, year):
    table = _random_table(seed=5, groups=2, n=6)
    table["is_anomaly"] = table["is_anomaly"].astype(int)  # 0/1 ints are fine too
    paths = write_official_files(tmp_path, table, machine="valve", year=year)
    assert [p.name for p in paths] == [
        "anomaly_score_valve_section_00_test.csv",
        "anomaly_score_valve_section_01_test.csv",
        "decision_result_valve_section_00_test.csv",
        "decision_result_valve_section_01_test.csv",
    ]
    scores = (tmp_path / "anomaly_score_valve_section_01_test.csv").read_text().splitlines()
    part = table[table["group"] == "section_01"]
    assert len(scores) == len(part)  # both domains in one file, no header
    names = [line.split(",")[0] for line in scores]
    assert names == sorted(names) and all("/" not in n for n in names)
    base = part["path"].str.rsplit("/", n=1).str[-1]
    expected = dict(zip(base, part["anomaly_score"], strict=True))
    assert {n: float(v) for n, v in (line.split(",") for line in scores)} == expected
    decisions = (tmp_path / "decision_result_valve_section_01_test.csv").read_text().splitlines()
    assert {line.split(",")[1] for line in decisions} <= {"0", "1"}


def test_duplicate_base_names_in_one_file_are_refused():
    table = pd.concat([_SMALL, _SMALL.assign(path=_SMALL["path"].str.replace("/data", "/b"))])
    with pytest.raises(DataError, match="base names"):
        official_files(table, machine="fan", year=2022)


# ----------------------------------------------------------------------------- intervals


def test_intervals_contain_the_point_estimates():
    table = _random_table(seed=6, groups=3, n=60)
    m = section_metrics(table, year=2023, resamples=400, seed=1)
    for entry in m["sections"].values():
        ci = entry["ci"]
        assert ci["method"] == "clips" and ci["strata"] == "label and domain"
        assert ci["resamples"] == 400 and ci["level"] == 0.95
        for key in ("auc", "pauc", "auc_source", "auc_target", "pauc_source", "pauc_target"):
            lo, hi = ci[key]
            assert lo <= entry[key] <= hi and hi - lo < 0.4
    official = m["official"]
    for key in ("score", "mean_auc", "mean_pauc"):
        lo, hi = official["ci"][key]
        assert lo <= official[key] <= hi
    again = section_metrics(table, year=2023, resamples=400, seed=1)
    assert again["official"]["ci"] == official["ci"]  # same seed, same resamples


def test_section_table_rows():
    m = section_metrics(_random_table(seed=7, groups=2), year=2021, resamples=100)
    rows = section_table_rows(m)
    assert [r["group"] for r in rows] == ["section_00", "section_01"]
    row = rows[0]
    assert row["n"] == 120 and row["auc"] == m["sections"]["section_00"]["auc"]
    lo, hi = m["sections"]["section_00"]["ci"]["pauc_target"]
    assert row["pauc_target_ci"] == f"{lo:.3f}–{hi:.3f}"
    assert row["note"] == ""
    rows_2022 = section_table_rows(section_metrics(_SMALL, year=2022, resamples=0))
    assert "auc_source" in rows_2022[0] and "pauc_source" not in rows_2022[0]
    assert rows_2022[0]["auc_ci"] is None
