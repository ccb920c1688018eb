"""The GAS pipeline on generated files of the UCI layout: columns dropped, standardisation,
the paper's split arithmetic, and one-line errors for malformed files."""

import numpy as np
import pandas as pd
import pytest

from audioar.density.gas import (
    SENSOR_COLUMNS,
    drop_correlated,
    paper_split_sizes,
    prepare_gas,
    read_gas,
    save_gas,
)
from audioar.density.tables import load_table
from audioar.errors import ConfigError, DataError

HEADER = "Time (seconds), CO conc (ppm), Ethylene conc (ppm), Sensor readings (16 channels)"
# sensor_1~sensor_2, sensor_3~sensor_4~sensor_5, sensor_6~sensor_12 correlate above 0.98;
# sensor_7 = -sensor_8 (correlation -1: kept, the rule is signed); sensor_10 ~ sensor_11 at
# about 0.95 (kept). The first of each correlated group goes while a partner remains.
EXPECTED_DROPPED = ["sensor_1", "sensor_3", "sensor_4", "sensor_6"]


def gas_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 16)) * rng.uniform(1, 500, 16) + rng.uniform(-100, 3000, 16)

    def near(col, scale=1.3, noise=0.05):
        return s[:, col] * scale + 7 + noise * s[:, col].std() * rng.normal(size=n)

    s[:, 1] = near(0)
    s[:, 3] = near(2)
    s[:, 4] = near(2, 0.7)
    s[:, 11] = near(5, 2.0)
    s[:, 7] = -s[:, 6]
    s[:, 10] = near(9, 1.0, 0.33)
    time = np.arange(n) * 0.01
    conc = rng.uniform(0, 600, size=(n, 2))
    return np.column_stack([time, conc, s])


def write_gas(path, rows, header=True):
    with open(path, "w") as handle:
        if header:
            handle.write(HEADER + "\n")
        np.savetxt(handle, rows, fmt="%.6f", delimiter="   ")
    return path


@pytest.fixture(scope="module")
def gas_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gas") / "ethylene_CO.txt"
    return write_gas(path, gas_rows(2000))


def reference_preprocess(rows):
    """The authors' procedure, written with pandas (DataFrame.corr, re-computed each drop)."""
    frame = pd.DataFrame(rows[:, 3:], columns=list(SENSOR_COLUMNS))
    while True:
        counts = (frame.corr() > 0.98).to_numpy().sum(axis=1)
        if not (counts > 1).any():
            break
        frame = frame.drop(columns=frame.columns[int(np.flatnonzero(counts > 1)[0])])
    return ((frame - frame.mean()) / frame.std()).to_numpy(), list(frame.columns)


def test_paper_split_sizes_reproduce_the_authors_pickle():
    assert paper_split_sizes(1_052_065) == (852_174, 94_685, 105_206)
    for n in [10, 11, 99, 100, 101, 1_000, 12_345, 4_208_261]:
        train, val, test = paper_split_sizes(n)
        assert test == n // 10 and val == (n - test) // 10 and train + val + test == n


def test_drops_the_known_columns_standardises_and_splits_in_file_order(gas_file):
    rows = np.loadtxt(gas_file, skiprows=1)
    data = prepare_gas(gas_file)
    meta = data.metadata
    assert meta["dropped_correlated"] == EXPECTED_DROPPED
    assert meta["dropped_columns"] == ["time", "co", "ethylene", *EXPECTED_DROPPED]
    kept = [c for c in SENSOR_COLUMNS if c not in EXPECTED_DROPPED]
    assert meta["columns"] == kept and len(kept) == 12
    assert meta["sizes"] == {"train": 1620, "validation": 180, "test": 200}
    assert (len(data.train), len(data.validation), len(data.test)) == (1620, 180, 200)
    assert data.train.dtype == np.float32
    whole = np.concatenate([data.train, data.validation, data.test]).astype(np.float64)
    np.testing.assert_allclose(whole.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(whole.std(0, ddof=1), 1, atol=1e-5)
    expected, names = reference_preprocess(rows)
    assert names == kept
    np.testing.assert_allclose(whole, expected, atol=1e-5)  # file order, the authors' numbers
    np.testing.assert_allclose(meta["mean"], rows[:, 3:][:, [int(c[7:]) - 1 for c in kept]].mean(0))


def test_drop_correlated_uses_the_signed_threshold():
    rng = np.random.default_rng(1)
    a = rng.normal(size=500)
    table = np.column_stack([a, -a, rng.normal(size=500), a + 0.01 * rng.normal(size=500)])
    _, kept, dropped = drop_correlated(table, ["a", "minus_a", "b", "a2"])
    assert dropped == ["a"] and kept == ["minus_a", "b", "a2"]


def test_rows_subsample_random_or_first(gas_file):
    rows = np.loadtxt(gas_file, skiprows=1)
    first = prepare_gas(gas_file, rows=500, subsample="first")
    assert first.metadata["rows"] == 500 and first.metadata["rows_in_file"] == 2000
    assert first.metadata["sizes"] == dict(
        zip(("train", "validation", "test"), paper_split_sizes(500), strict=True)
    )
    expected, _ = reference_preprocess(rows[:500])
    np.testing.assert_allclose(
        np.concatenate([first.train, first.validation, first.test]), expected, atol=1e-5
    )
    one = prepare_gas(gas_file, rows=500, seed=3)
    again = prepare_gas(gas_file, rows=500, seed=3)
    other = prepare_gas(gas_file, rows=500, seed=4)
    np.testing.assert_array_equal(one.train, again.train)
    assert not np.array_equal(one.train, other.train)
    assert one.metadata["subsample"] == "random" and first.metadata["subsample"] == "first"


def test_random_split_is_a_seeded_half(gas_file):
    data = prepare_gas(gas_file, split="random", seed=5)
    assert data.metadata["sizes"] == {"train": 900, "validation": 100, "test": 1000}
    paper = prepare_gas(gas_file)
    both = np.concatenate([data.train, data.validation, data.test])
    whole = np.concatenate([paper.train, paper.validation, paper.test])
    # The same standardised rows, permuted.
    np.testing.assert_allclose(np.sort(both, axis=0), np.sort(whole, axis=0), atol=1e-6)
    assert not np.allclose(data.test, whole[-1000:])
    np.testing.assert_array_equal(prepare_gas(gas_file, split="random", seed=5).test, data.test)


def test_npz_round_trip_with_metadata(gas_file, tmp_path):
    data = prepare_gas(gas_file, rows=300, subsample="first")
    out = save_gas(data, tmp_path / "gas.npz")
    table = load_table(out)
    np.testing.assert_array_equal(table.train, data.train)
    np.testing.assert_array_equal(table.validation, data.validation)
    np.testing.assert_array_equal(table.test, data.test)
    assert table.metadata["dropped_columns"] == data.metadata["dropped_columns"]
    assert table.metadata["source"].endswith("ethylene_CO.txt")
    assert table.metadata["split_rule"].startswith("row order")


def test_authors_pickle_layout_gives_the_same_table(gas_file, tmp_path):
    rows = np.loadtxt(gas_file, skiprows=1)
    names = ["Time", "Meth", "Eth"] + [f"S{i}" for i in range(1, 17)]
    pd.DataFrame(rows, columns=names).to_pickle(tmp_path / "ethylene_CO.pickle")
    data = prepare_gas(tmp_path / "ethylene_CO.pickle")
    text = prepare_gas(gas_file)
    assert data.metadata["dropped_columns"] == ["Time", "Meth", "Eth", "S1", "S3", "S4", "S6"]
    np.testing.assert_allclose(data.test, text.test, atol=1e-6)


def test_a_file_without_header_is_read_too(tmp_path):
    rows = gas_rows(200, seed=2)
    with_header = read_gas(write_gas(tmp_path / "a.txt", rows))[0]
    without = read_gas(write_gas(tmp_path / "b.txt", rows, header=False))[0]
    np.testing.assert_array_equal(with_header, without)
    assert with_header.shape == (200, 16)


def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def _set_token(lines, line, column, value):
    tokens = lines[line].split()
    tokens[column] = value
    lines[line] = "   ".join(tokens)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda lines: lines.__setitem__(5, lines[5] + " 1.0"), "line 6 has 20 columns"),
        (lambda lines: lines.__setitem__(7, lines[7].rsplit(" ", 1)[0]), "line 8 has 18 columns"),
        (lambda lines: _set_token(lines, 4, 6, "n/a"), "line 5: 'n/a' is not a number"),
        (lambda lines: _set_token(lines, 3, 9, "nan"), "line 4: non-finite value 'nan'"),
    ],
)
def test_malformed_files_are_one_line_errors_naming_file_and_line(tmp_path, mutate, needle):
    path = write_gas(tmp_path / "bad.txt", gas_rows(50))
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc_info:
        prepare_gas(path)
    message = _one_line(exc_info)
    assert str(path) in message and needle in message


def test_wrong_width_missing_empty_and_constant_files(tmp_path):
    narrow = tmp_path / "narrow.txt"
    np.savetxt(narrow, gas_rows(20)[:, :18], header=HEADER, comments="")
    with pytest.raises(DataError, match=r"18 columns; ethylene_CO.txt has 19"):
        read_gas(narrow)
    with pytest.raises(DataError, match="no such GAS file"):
        read_gas(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_gas(tmp_path / "empty.txt")
    (tmp_path / "header.txt").write_text(HEADER + "\n")
    with pytest.raises(DataError, match="no data rows"):
        read_gas(tmp_path / "header.txt")
    rows = gas_rows(40)
    rows[:, 9] = 3.0
    with pytest.raises(DataError, match=r"constant GAS column\(s\) \['sensor_7'\]"):
        prepare_gas(write_gas(tmp_path / "constant.txt", rows))
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read this pickle") as exc_info:
        read_gas(tmp_path / "junk.pickle")
    _one_line(exc_info)


def test_bad_options_are_config_errors(gas_file):
    with pytest.raises(ConfigError, match="split"):
        prepare_gas(gas_file, split="time")
    with pytest.raises(ConfigError, match="subsample"):
        prepare_gas(gas_file, rows=10, subsample="last")
