"""A run's life under stress (issue 26): resume over nothing or with other settings, two fits
of one --out, a full disk, NaN weights, a killed score, refused checkpoints and settings.
Every failure is one line naming the user's file, and leaves the files as they were."""

import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from audioar_cli.common import resolve_config
from helpers import TINY, invoke

import audioar.atomic
import audioar.pipeline.score_files
import audioar.pipeline.train
from audioar.errors import ConfigError
from audioar.models import MADE, MAF
from audioar.pipeline.artifact import checkpoint_path_for, hold_run_lock, lock_path_for
from audioar.pipeline.runs import fit_run


def sets(*extra):
    return [x for item in [*TINY, *extra] for x in ("--set", item)]


def fit(tones, out, *extra):
    return invoke("fit", "--data", tones, "--out", out, "--no-cache", *extra)


def one_line_error(result, *needles, code=None):
    """The single ``error:`` line of a failed command (no traceback, no other output)."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert result.output.strip().splitlines()[-1] == errors[0], result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def leftovers(folder):
    """Hidden temporaries and locks anywhere under ``folder``."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".lock")) or ".tmp-" in p.name
    )


@pytest.fixture(scope="module")
def finished(tones, tmp_path_factory):
    """A finished run; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = fit(tones, out, *sets())
    assert result.exit_code == 0, result.output
    return out


def interrupted(tones, out, monkeypatch, *extra, after=2):
    """Fit ``out`` and stop it (like Ctrl-C) once epoch ``after`` is checkpointed."""
    real = audioar.pipeline.train.save_checkpoint

    def save_then_stop(path, model, optimizer, state, *args):
        real(path, model, optimizer, state, *args)
        if state.epoch == after:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(audioar.pipeline.train, "save_checkpoint", save_then_stop)
        result = fit(tones, out, *sets(*extra))
    one_line_error(result, "interrupted; the last finished epoch is kept", code=130)
    checkpoint = checkpoint_path_for(out)
    assert checkpoint.exists() and not out.exists()
    assert not lock_path_for(out).exists()
    return checkpoint


# ----------------------------------------------------------------------------- item 2


def test_resume_with_nothing_to_resume_is_refused_and_keeps_the_finished_run(
    finished, tones, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    weights = (run / "weights.pt").read_bytes()
    history = (run / "history.csv").read_text()
    result = fit(tones, run, "--resume", *sets())
    one_line_error(
        result,
        f"{run}: nothing to resume (no checkpoint at {run}.partial/)",
        "it is a finished run: pass --overwrite",
    )
    assert (run / "weights.pt").read_bytes() == weights
    assert (run / "history.csv").read_text() == history
    assert not checkpoint_path_for(run).parent.exists() and leftovers(tmp_path) == []

    fresh = tmp_path / "fresh"
    result = fit(tones, fresh, "--resume", *sets())
    one_line_error(result, f"{fresh}: nothing to resume", "drop --resume to start a new fit")
    assert not fresh.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- item 3


def test_a_resume_with_other_settings_is_refused_and_keeps_the_checkpoint(
    tones, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    checkpoint = interrupted(tones, run, monkeypatch)
    saved = checkpoint.read_bytes()

    result = fit(tones, run, "--resume", *sets("model.num_flows=3"))
    line = one_line_error(
        result,
        f"{run}: cannot resume with other settings than the checkpoint's",
        "model.num_flows (was 2, now 3)",
        f"the checkpoint in {run}.partial/ is kept",
    )
    assert "delete it" not in line and "state_dict" not in result.output
    assert checkpoint.read_bytes() == saved

    result = fit(tones, run, "--resume", "--seed", "5", *sets())
    one_line_error(result, "data.seed (was 0, now 5)", "train.seed (was 0, now 5)")
    result = fit(tones, run, "--resume", "--split", "random", *sets())
    one_line_error(result, "data.split (was official, now random)", "split.name")
    assert checkpoint.read_bytes() == saved

    # the same settings resume (more epochs are allowed) and say from where
    result = fit(tones, run, "--resume", *sets("train.epochs=7"))
    assert result.exit_code == 0, result.output
    assert f"resuming from epoch 2 (the last one finished; checkpoint {run}.partial/)" in (
        " ".join(result.output.split())
    )
    assert len(pd.read_csv(run / "history.csv")) > 2
    assert not checkpoint.parent.exists() and leftovers(tmp_path) == []


def test_the_library_refuses_a_changed_split_and_returns_the_resumed_epoch(
    tones, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    interrupted(tones, run, monkeypatch)
    cfg = resolve_config(None, [f"data.root={tones}"], TINY)  # as `fit` resolves it
    (tones.parent / "extra").mkdir(exist_ok=True)
    moved = tones / "zero_spk0_19.wav"  # a training clip less: another split
    parked = tones.parent / "extra" / moved.name
    shutil.move(moved, parked)
    try:
        with pytest.raises(ConfigError, match=r"split\.train \(was \d+ clips"):
            fit_run(cfg, run, use_cache=False, resume=True)
    finally:
        shutil.move(parked, moved)
    seen = []
    _, summary = fit_run(cfg, run, use_cache=False, resume=True, on_resume=seen.append)
    assert seen == [2] and summary.result.resumed_from == 2


# ----------------------------------------------------------------------------- item 4


def test_a_fit_over_a_checkpoint_needs_resume_or_overwrite(tones, tmp_path, monkeypatch):
    run = tmp_path / "run"
    checkpoint = interrupted(tones, run, monkeypatch)
    saved = checkpoint.read_bytes()
    result = fit(tones, run, *sets())
    one_line_error(
        result,
        f"{run}: an interrupted fit left a checkpoint at {run}.partial/ (epoch 2)",
        "add --resume to continue it, or --overwrite to discard it and start afresh",
    )
    assert checkpoint.read_bytes() == saved and not run.exists()

    result = fit(tones, run, "--overwrite", *sets())
    assert result.exit_code == 0, result.output
    assert "resuming" not in result.output
    assert (run / "weights.pt").exists() and not checkpoint.parent.exists()
    assert leftovers(tmp_path) == []


def test_a_second_fit_of_the_same_out_fails_at_once_and_a_stale_lock_is_taken_over(tones, tmp_path):
    run = tmp_path / "run"
    lock = lock_path_for(run)
    with hold_run_lock(run):  # a fit of this process holds the run
        assert lock.read_text().strip() == str(os.getpid())
        result = fit(tones, run, *sets())
        one_line_error(
            result, f"{run}: another fit (pid {os.getpid()}) is writing this run", str(lock)
        )
        assert "fitting" not in result.output  # refused before reading any data
        assert lock.exists() and not run.exists()
        assert not checkpoint_path_for(run).parent.exists()
    assert not lock.exists()

    # a lock left by a process that was killed outright is taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")
    result = fit(tones, run, *sets())
    assert result.exit_code == 0, result.output
    assert (run / "weights.pt").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
            "file data/0: No space left on device"
        ),
    ],
    ids=["oserror", "torch"],
)
def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_nothing(
    tones, tmp_path, monkeypatch, error
):
    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    result = fit(tones, run, *sets())
    line = one_line_error(
        result,
        f"error: {run}.partial/checkpoint.pt: no space left on device; nothing was kept",
        "free some space",
    )
    assert ".tmp" not in line and "inline_container" not in result.output
    assert not run.exists() and not checkpoint_path_for(run).parent.exists()
    assert leftovers(tmp_path) == []


def test_a_full_disk_while_saving_the_run_keeps_the_finished_fit_for_resume(
    tones, tmp_path, monkeypatch
):
    real = torch.save

    def full_for_weights(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike) and os.fspath(f).endswith("weights.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(f))  # the hidden
        return real(obj, f, *args, **kwargs)

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full_for_weights)
        result = fit(tones, run, *sets())
    line = one_line_error(
        result,
        f"error: {run}: no space left on device; the finished fit is kept in {run}.partial/",
        "add --resume to save it",
    )
    assert ".tmp" not in line
    assert not run.exists() and checkpoint_path_for(run).exists()
    assert leftovers(tmp_path) == []

    result = fit(tones, run, "--resume", *sets())  # space freed: saved without training
    assert result.exit_code == 0, result.output
    assert (run / "weights.pt").exists() and not checkpoint_path_for(run).parent.exists()


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __iter__(self):
        return iter(self.handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_full_disk_while_scoring_names_the_output_file(finished, tones, tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    monkeypatch.setattr(
        audioar.atomic, "open", lambda *a, **k: _FullDisk(open(*a, **k)), raising=False
    )
    result = invoke("score", tones, "--model", finished, "--out", out, "--no-cache")
    one_line_error(result, f"error: {out}: no space left on device; free some space")
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- item 6


def test_a_non_finite_score_is_an_error_not_a_verdict(finished, tones, tmp_path):
    run = tmp_path / "nan"
    shutil.copytree(finished, run)
    state = torch.load(run / "weights.pt", weights_only=True)
    state = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in state.items()
    }
    torch.save(state, run / "weights.pt")

    out = tmp_path / "scores.csv"
    result = invoke("score", tones, "--model", run, "--out", out)
    assert result.exit_code == 1, result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 180
    assert table["error"].str.startswith("the model gave a non-finite score (NaN/inf): ").all()
    assert (table["p_value"] == "").all() and (table["is_anomaly"] == "").all()
    text = " ".join(result.output.split())
    assert "scored 0 clip(s), 180 error(s)" in text
    assert "error: no clip could be scored" in text

    result = invoke("score", tones, "--model", run, "--strict")
    one_line_error(result, "the model gave a non-finite score (NaN/inf)", "(--strict)", code=1)


# ----------------------------------------------------------------------------- item 7


def test_a_terminated_score_removes_its_temporary(finished, tones, tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    real, calls = audioar.pipeline.score_files.score_features, []

    def terminate_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(
        audioar.pipeline.score_files, "score_features", terminate_on_the_second_batch
    )
    before = signal.getsignal(signal.SIGTERM)
    result = invoke("score", tones, "--model", finished, "--out", out, "--batch-size", "40")
    one_line_error(result, "error: interrupted", code=130)
    assert len(calls) == 2 and not out.exists() and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_stale_temporaries_of_dead_scores_are_removed(finished, tones, tmp_path):
    out = tmp_path / "scores.csv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".scores.csv.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".scores.csv.{os.getpid()}.89abcdef.tmp"  # a score still running
    other = tmp_path / f".other.csv.{dead.pid}.0123abcd.tmp"
    for path in (stale, live, other):
        path.write_text("half a table")
    result = invoke("score", tones, "--model", finished, "--out", out)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists() and other.exists()


class _Payload:
    """Code that a pickle would run on load; a checkpoint must never run it."""

    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-audioar-test",))


def test_a_refused_checkpoint_says_why_without_torch_advice(tones, tmp_path, monkeypatch):
    run = tmp_path / "run"
    checkpoint = interrupted(tones, run, monkeypatch)
    payload = torch.load(checkpoint, weights_only=True)
    payload["evil"] = _Payload()
    with open(checkpoint, "wb") as handle:
        torch.save(payload, handle, pickle_module=pickle)
    saved = checkpoint.read_bytes()
    result = fit(tones, run, "--resume", *sets())
    one_line_error(
        result,
        f"{checkpoint}: the file holds code or objects other than tensors and is refused",
        "pass --overwrite to start afresh",
    )
    assert "weights_only" not in result.output and "Unpickler" not in result.output
    assert checkpoint.read_bytes() == saved


def test_settings_errors_are_one_clean_line(tones, tmp_path):
    run = tmp_path / "run"
    result = fit(tones, run, "--set", "model.nosuch=1")
    one_line_error(
        result,
        "error: override 'model.nosuch=1': unknown key 'model.nosuch'; the keys of model maf "
        "are name, num_flows, hidden_features, activation,",
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text("model = 3\n")
    result = fit(tones, run, "--recipe", recipe)
    one_line_error(result, "[model] must be a table of settings")  # brackets kept

    result = fit(tones, run, *sets("model.hidden_features=[]"))
    one_line_error(result, "error: model.hidden_features: needs at least one hidden layer")
    assert not run.exists() and not checkpoint_path_for(run).parent.exists()
    assert leftovers(tmp_path) == []
    for family in (MAF, MADE):
        with pytest.raises(ConfigError, match="needs at least one hidden layer"):
            family(4, hidden_features=())
        with pytest.raises(ConfigError, match="at least one unit"):
            family(4, hidden_features=(8, 0))
