"""Tables, density recipes, the estimator, error bars and the ``audioar density`` commands."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke

from audioar.config.recipes import TrainConfig
from audioar.density import (
    DensityEstimator,
    load_density_recipe,
    load_table,
    paper_split_sizes,
    read_array,
    summarize,
)
from audioar.density.recipe import recipe_from_dict
from audioar.errors import ConfigError, DataError, RunFormatError
from audioar.models.nade import NADE, NADEConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = TrainConfig(epochs=3, batch_size=50, lr=3e-3, patience=3, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def gaussian_table(n, seed=0):
    """Correlated 3-D Gaussian rows in very different units, with their exact log-density."""
    g = np.random.default_rng(seed)
    a = np.array([[2.0, 0.0, 0.0], [30.0, 40.0, 0.0], [-0.01, 0.02, 0.005]])
    mean = np.array([100.0, -5.0, 0.3])
    x = g.normal(size=(n, 3)) @ a.T + mean
    cov = a @ a.T
    diff = x - mean
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    log_p = -0.5 * (maha + 3 * math.log(2 * math.pi) + math.log(np.linalg.det(cov)))
    return x.astype(np.float32), log_p


# ------------------------------------------------------------------------ tables
def test_tables_from_every_format(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    np.savez(
        tmp_path / "splits.npz",
        train=x,
        validation=x[:2],
        test=x[1:],
        metadata=json.dumps({"a": 1}),
    )
    table = load_table(tmp_path / "splits.npz")
    assert table.split and table.features == 3 and table.metadata == {"a": 1}
    np.testing.assert_allclose(table.test, x[1:].astype(np.float32))
    assert table.part("all").shape == (4 + 2 + 3, 3)
    np.savez(tmp_path / "one.npz", rows=x)
    assert not load_table(tmp_path / "one.npz").split
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "head.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in x))
    (tmp_path / "bare.csv").write_text("\n".join(",".join(map(str, r)) for r in x) + "\n")
    for name in ("x.npy", "head.csv", "bare.csv"):
        got = read_array(tmp_path / name)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, x, rtol=1e-6, err_msg=name)


def test_parquet_reads_or_says_pyarrow_is_needed(tmp_path):
    import pandas as pd

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "t.parquet").write_bytes(b"PAR1")
        with pytest.raises(DataError, match="needs pyarrow") as exc_info:
            read_array(tmp_path / "t.parquet")
        assert "\n" not in str(exc_info.value)
    else:
        pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_parquet(tmp_path / "t.parquet")
        np.testing.assert_array_equal(read_array(tmp_path / "t.parquet"), [[1, 3], [2, 4]])


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("text.csv", "a,b\n1,2\n3,oops\n", "column 'b', row 2: 'oops' is not a number"),
        ("hole.csv", "1,2\n3,\n", "row 2, column 2 is nan"),
        ("inf.npy", np.array([[1.0, np.inf]]), "row 1, column 2 is inf"),
        ("strings.npy", np.array([["a", "b"]]), "are not numbers"),
        ("cube.npy", np.zeros((2, 2, 2)), "3-D array"),
        ("empty.npy", np.zeros((0, 3)), "empty table"),
        ("table.xlsx", "x", "unsupported table format"),
        ("broken.npz", "not a zip", "not a readable numeric .npz"),
    ],
)
def test_bad_tables_are_one_line_errors_naming_the_file(tmp_path, name, content, needle):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    with pytest.raises(DataError) as exc_info:
        load_table(path)
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message and needle in message


def test_npz_layout_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"holds arrays \['a', 'b'\]"):
        load_table(tmp_path / "two.npz")
    np.savez(tmp_path / "widths.npz", train=np.zeros((3, 2)), test=np.zeros((3, 4)))
    with pytest.raises(DataError, match="different numbers of columns"):
        load_table(tmp_path / "widths.npz")
    with pytest.raises(DataError, match="no such table file"):
        load_table(tmp_path / "absent.npz")
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="no 'test' split"):
        load_table(tmp_path / "single.npy").part("test")


# ----------------------------------------------------------------------- recipes
def test_shipped_gas_recipes_are_the_papers():
    maf = load_density_recipe(ROOT / "recipes" / "gas_maf10.toml")
    cfg = maf.model_config
    assert maf.model == "maf" and cfg.num_flows == 10 and cfg.hidden_features == (100, 100)
    assert (cfg.activation, cfg.batch_norm, cfg.permutation) == ("tanh", True, "reverse")
    assert (maf.train.lr, maf.train.batch_size, maf.train.patience) == (1e-4, 100, 30)
    made = load_density_recipe(ROOT / "recipes" / "gas_made.toml")
    assert made.model == "made" and made.model_config.hidden_features == (100, 100)
    assert (made.model_config.output, made.train.lr) == ("gaussian", 1e-3)


def test_overrides_and_model_switch():
    recipe = load_density_recipe(
        ROOT / "recipes" / "gas_maf10.toml",
        ["train.lr=3e-4", "model.hidden_features=[8, 8]", "train.max_minutes=none"],
    )
    assert recipe.train.lr == 3e-4 and recipe.model_config.hidden_features == (8, 8)
    nade = load_density_recipe(None, ["model.hidden_features=20", "model.output=mog"], model="nade")
    assert isinstance(nade.model_config, NADEConfig)
    assert (nade.model_config.hidden_features, nade.model_config.output) == (20, "mog")
    assert recipe_from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"model": {"name": "maf", "num_layers": 3}}, "unknown key model.num_layers"),
        ({"train": {"learning_rate": 1.0}}, "unknown key train.learning_rate"),
        ({"data": {}}, "unknown section [data]"),
        ({"model": {"name": "pixelsnail"}}, "unknown model 'pixelsnail'"),
        ({"model": {"name": "maf", "num_flows": "ten"}}, "model.num_flows: 'ten' is not a int"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"estimator": {"shuffle": True}}, "unknown key estimator.shuffle"),
    ],
)
def test_recipe_errors_name_the_key(raw, needle):
    with pytest.raises(ConfigError) as exc_info:
        recipe_from_dict(raw)
    assert needle in str(exc_info.value)


def test_recipe_file_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("[model\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_density_recipe(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_density_recipe(None, ["lr=1"])


# --------------------------------------------------------------------- estimator
def test_estimator_scores_raw_units_against_the_truth():
    """A Gaussian FVSBN is a full-covariance Gaussian: on standardised columns it reaches
    the true density, and the log-likelihoods come back in the table's own units."""
    x, log_p = gaussian_table(3000)
    train = TrainConfig(epochs=25, batch_size=100, lr=0.03, patience=4, device="cpu")
    est = DensityEstimator("fvsbn", {"output": "gaussian"}, train).fit(x[:2500])
    ll = est.score_samples(x[2500:])
    assert ll.shape == (500,) and ll.dtype == np.float64
    assert abs(ll.mean() - log_p[2500:].mean()) < 0.05
    assert est.score(x[2500:]) == pytest.approx(ll.mean())
    # Validation ran on the last 10 % of the rows (early stopping had something to watch).
    assert all(math.isfinite(row["val_log_likelihood"]) for row in est.fit_result_.history)


def test_estimator_builds_every_family_saves_and_loads(tmp_path):
    x, _ = gaussian_table(600, seed=1)
    cases = [
        ("maf", {"num_flows": 2, "hidden_features": [8, 8]}, "MAF"),
        ("made", {"hidden_features": [8, 8], "output": "mog", "components": 2}, "MADE"),
        ("nade", {"hidden_features": 8, "output": "mog", "components": 2}, "NADE"),
        ("fvsbn", {"output": "gaussian"}, "FVSBN"),
    ]
    for name, params, cls_name in cases:
        est = DensityEstimator(name, params, FAST).fit(x[:500])
        assert type(est.model_.model).__name__ == cls_name
        est.save(tmp_path / name)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            "config.json",
            "history.csv",
            "weights.pt",
        ]
        back = DensityEstimator.load(tmp_path / name)
        np.testing.assert_allclose(
            back.score_samples(x[500:]), est.score_samples(x[500:]), rtol=1e-6
        )
        rows = back.sample(5, seed=0)
        assert rows.shape == (5, 3) and np.isfinite(rows).all()
        np.testing.assert_array_equal(rows, back.sample(5, seed=0))


def test_estimator_takes_a_class_and_binary_data(tmp_path):
    g = np.random.default_rng(0)
    bits = (g.random((800, 6)) < np.linspace(0.1, 0.9, 6)).astype(np.float32)
    train = TrainConfig(epochs=15, batch_size=50, lr=0.03, patience=3, device="cpu")
    est = DensityEstimator(NADE, NADEConfig(hidden_features=8), train).fit(bits[:600])
    assert isinstance(est.model_.model, NADE)
    p = np.linspace(0.1, 0.9, 6)
    entropy = -(p * np.log(p) + (1 - p) * np.log1p(-p)).sum()
    assert abs(-est.score(bits[600:]) - entropy) < 0.15  # independent bits: their entropy
    assert set(np.unique(est.sample(50, seed=1))) <= {0.0, 1.0}
    est.save(tmp_path / "nade")
    back = DensityEstimator.load(tmp_path / "nade")
    assert json.loads((tmp_path / "nade" / "config.json").read_text())["model"] == (
        "audioar.models.nade:NADE"
    )
    np.testing.assert_allclose(back.score_samples(bits[600:]), est.score_samples(bits[600:]))
    with pytest.raises(DataError, match="needs values in"):
        DensityEstimator("fvsbn", None, FAST).fit(bits + 0.5)
    with pytest.raises(DataError, match="7 columns"):
        est.score_samples(np.zeros((2, 7)))


def test_without_validation_the_last_epoch_is_kept():
    x, _ = gaussian_table(300)
    est = DensityEstimator("made", {"hidden_features": [4, 4]}, FAST, validation_fraction=0)
    est.fit(x)
    assert est.fit_result_.best_epoch == 3 and est.fit_result_.stopped == "epochs"


def test_estimator_errors(tmp_path):
    with pytest.raises(ConfigError, match="not fitted"):
        DensityEstimator().score_samples(np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="unknown key model.depth"):
        DensityEstimator("made", {"depth": 3}, FAST).fit(np.zeros((10, 2)) + np.arange(10)[:, None])
    with pytest.raises(DataError, match="X: row 2, column 1 is nan"):
        DensityEstimator("made", None, FAST).fit(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(RunFormatError, match="no config.json"):
        DensityEstimator.load(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"format": "audioar-density", "version": 1, "model": "os:system"})
    )
    with pytest.raises(RunFormatError, match="outside audioar"):
        DensityEstimator.load(tmp_path)


def test_error_bars_are_two_standard_errors():
    ll = np.random.default_rng(0).normal(3.0, 2.0, size=400)
    summary = summarize(ll, features=4)
    assert summary.mean == pytest.approx(ll.mean())
    assert summary.error == pytest.approx(2 * ll.std() / 20)
    assert summary.per_dim == pytest.approx(ll.mean() / 4)
    assert summary.format().startswith(f"{ll.mean():.2f} ± {summary.error:.2f} nats")
    with pytest.raises(DataError, match="row 2"):
        summarize([1.0, -np.inf], 1)


# --------------------------------------------------------------------------- CLI


def assert_one_line_error(result, *needles):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture(scope="module")
def gas_npz(tmp_path_factory):
    import test_gas

    folder = tmp_path_factory.mktemp("density_cli")
    source = test_gas.write_gas(folder / "ethylene_CO.txt", test_gas.gas_rows(1200))
    out = folder / "gas.npz"
    result = invoke("density", "prepare", "gas", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "dropped correlated sensor_1, sensor_3, sensor_4, sensor_6" in result.output
    sizes = paper_split_sizes(1200)
    assert f"{sizes[0]:,} train / {sizes[1]:,} validation / {sizes[2]:,} test" in result.output
    return out


def test_cli_prepare_fit_evaluate(gas_npz, tmp_path):
    run = tmp_path / "run"
    result = invoke(
        "density",
        "fit",
        gas_npz,
        "--recipe",
        ROOT / "recipes" / "gas_made.toml",
        "--out",
        run,
        "--epochs",
        "2",
        "--set",
        "model.hidden_features=[16,16]",
        "--set",
        "train.batch_size=50",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "run saved to" in result.output and "best epoch" in result.output
    result = invoke("density", "evaluate", run, gas_npz)
    assert result.exit_code == 0, result.output
    match = re.search(
        r"test log-likelihood: (-?[\d.]+) ± ([\d.]+) nats \((-?[\d.]+) ± ", result.output
    )
    assert match, result.output
    table = load_table(gas_npz)
    expected = summarize(DensityEstimator.load(run).score_samples(table.test), table.features)
    assert float(match.group(1)) == pytest.approx(expected.mean, abs=0.006)
    assert float(match.group(2)) == pytest.approx(expected.error, abs=0.006)
    assert float(match.group(3)) == pytest.approx(expected.per_dim, abs=6e-4)
    assert f"{len(table.test):,} test rows" in result.output
    again = invoke("density", "fit", gas_npz, "--out", run, "--model", "fvsbn")
    assert_one_line_error(again, "exists", "--overwrite")


def test_cli_bad_input_is_one_line(gas_npz, tmp_path):
    assert_one_line_error(
        invoke("density", "fit", gas_npz, "--out", tmp_path / "r", "--set", "model.depth=2"),
        "unknown key model.depth",
    )
    assert_one_line_error(
        invoke("density", "fit", tmp_path / "absent.csv", "--out", tmp_path / "r"),
        "no such table file",
    )
    assert_one_line_error(
        invoke("density", "prepare", "power", gas_npz, "--out", tmp_path / "p.npz"),
        "unknown data set 'power'",
    )
    assert_one_line_error(
        invoke("density", "prepare", "gas", tmp_path / "none.txt", "--out", tmp_path / "p.npz"),
        "no such GAS file",
    )
    assert_one_line_error(invoke("density", "evaluate", tmp_path, gas_npz), "no config.json")
    assert not (tmp_path / "p.npz").exists() and not (tmp_path / "r").exists()
