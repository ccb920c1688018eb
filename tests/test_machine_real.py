"""Real machine sound in the DCASE 2020 layout (``../shared/data/dcase2020-machine-id00``):
the folder is read as it comes, a windowed MAF conditioned on its one machine ID is fitted,
saved, loaded and scores a long clip window by window."""

from pathlib import Path

import pytest

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides
from audioar.data.discovery import discover
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.score_files import score_files

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dcase2020-machine-id00"
pytestmark = pytest.mark.skipif(
    not ROOT.is_dir(), reason=f"{ROOT} is absent (real DCASE 2020 clips, see its README)"
)


def test_real_folder_is_read_as_dcase2020():
    dataset = discover(ROOT)
    assert dataset.layout == "dcase2020" and dataset.normal == "normal"
    assert dataset.groups == ["id_00"]
    assert {c.split for c in dataset.clips} == {"train", "test"}
    assert sum(c.label == "anomaly" for c in dataset.clips) == 1


@pytest.mark.slow
def test_one_machine_id_fits_loads_and_scores_windows(tmp_path):
    chosen = [
        f"data.root={ROOT}",
        "train.epochs=3",
        "model.hidden_features=[32]",
        "model.num_flows=2",
    ]
    cfg = apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=True), *chosen])
    trained, _ = fit_run(cfg, tmp_path / "run")
    # conditioned on its one machine ID: no posterior, and it loads back (it once did not)
    assert trained.classes == ["id_00"] and not trained.conditional
    loaded = load_trained(tmp_path / "run")
    clip = ROOT / "test" / "anomaly_id_00_00000000.wav"
    (table,) = score_files(loaded, [clip], trace_dir=tmp_path / "traces")
    assert table.loc[0, "error"] == ""
    assert table.loc[0, "windows"] == 19  # 10 s in 1-s windows every 0.5 s
    trace = (tmp_path / "traces" / table.loc[0, "trace"]).read_text().splitlines()
    assert len(trace) == 1 + 19 and trace[2].split(",")[1] == "0.5"
