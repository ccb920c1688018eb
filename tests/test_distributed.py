"""Training on two processes (torchrun, gloo on the CPU) gives one run like a single fit."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from audioar_cli.common import resolve_config
from helpers import TINY, write_tone_dataset

from audioar.data.discovery import discover, split
from audioar.evaluation.experiment import score_test_part
from audioar.pipeline.runs import fit_run, load_trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_dataset(tmp_path_factory.mktemp("tones"), speakers=3, takes=20)


def _target_ll_and_auc(run_dir, tones):
    trained = load_trained(run_dir)
    parts = split(discover(tones), "official")
    metrics, table, _ = score_test_part(trained, parts, use_cache=False)
    return float(np.mean(table["log_likelihood"][table["label"] == "zero"])), metrics["auc"]


def test_two_gloo_processes_write_one_run_that_scores_like_one_process(tones, tmp_path):
    # Without batch norm the two processes' averaged gradient is the one-process gradient
    # (up to a last batch split unevenly), so the fits agree closely.
    sets = [*TINY, "train.epochs=8", "train.batch_size=32", "model.batch_norm=false"]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "audioar_cli", "fit", "--data", str(tones), "--class", "zero", "--out", str(out),
        "--no-cache", "--device", "cpu", *[x for s in sets for x in ("--set", s)],
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("run saved to") == 1  # rank 0 alone reports (and writes)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    assert siblings == ["ddp"]  # one run directory, no partial or temporary leftovers
    fit = json.loads((out / "config.json").read_text())["extra"]["fit"]
    assert fit["world_size"] == 2

    # the configuration `audioar fit` resolves (the family's presets, then the options)
    cfg = resolve_config(None, [f"data.root={tones}", "data.target=zero", "train.device=cpu"], sets)
    fit_run(cfg, tmp_path / "single", use_cache=False)
    ll_ddp, auc_ddp = _target_ll_and_auc(out, tones)
    ll_one, auc_one = _target_ll_and_auc(tmp_path / "single", tones)
    print(f"target mean log-likelihood: 2 processes {ll_ddp:.4f}, one {ll_one:.4f}")
    assert abs(ll_ddp - ll_one) < 0.01 * abs(ll_one) + 0.01
    assert abs(auc_ddp - auc_one) < 0.02
