"""Defects a new user meets, each pinned by a test: small data sets with official lists that
name absent clips, leftovers after failures, and errors that must stay one clean line."""

import json
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY, invoke, write_tone_dataset

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.errors import DataError, TrainingError
from audioar.pipeline.artifact import checkpoint_path_for
from audioar.pipeline.runs import fit_run

WORDS = {"zero": 440.0, "one": 880.0, "two": 1320.0}


def sets(*extra):
    return [x for item in [*TINY, *extra] for x in ("--set", item)]


def speech_commands_folder(root, clips_per_word=10):
    """``word/speaker_nohash_take.wav`` with 10 clips a word, and the data set's official
    lists, which name thousands of clips that are not there (and two that are)."""
    rng = np.random.default_rng(0)
    for word, f in WORDS.items():
        (root / word).mkdir(parents=True)
        for i in range(clips_per_word):
            t = np.arange(int(8000 * rng.uniform(0.25, 0.4))) / 8000
            wave = 0.4 * np.sin(2 * np.pi * f * (1 + 0.02 * i) * t) + 0.01 * rng.standard_normal(
                len(t)
            )
            sf.write(root / word / f"spk{i}_nohash_0.wav", wave.astype(np.float32), 8000)
    absent = [f"{w}/ghost{i}_nohash_0.wav" for w in WORDS for i in range(2000)]
    (root / "validation_list.txt").write_text("\n".join(absent[::2] + ["zero/spk0_nohash_0.wav"]))
    (root / "testing_list.txt").write_text("\n".join(absent[1::2] + ["zero/spk1_nohash_0.wav"]))
    return root


def test_official_lists_that_leave_too_few_clips_say_so_up_front(tmp_path):
    root = speech_commands_folder(tmp_path / "sc")
    out = tmp_path / "run"
    result = invoke("fit", "--data", root, "--class", "zero", "--out", out, *sets())
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "8 training, 1 validation and 1 test clips" in text
    assert "--split random" in text
    assert not out.exists() and not checkpoint_path_for(out).parent.exists()
    result = invoke(
        "fit", "--data", root, "--class", "zero", "--out", out, "--split", "random", *sets()
    )
    assert result.exit_code == 0, result.output
    assert (out / "config.json").exists() and not checkpoint_path_for(out).parent.exists()


def test_a_failure_a_resume_cannot_mend_removes_its_partial_directory(tmp_path):
    tones = write_tone_dataset(tmp_path / "tones")
    cfg = apply_overrides(
        RunConfig(),
        [f"data.root={tones}", "data.target=zero", *TINY, "train.lr=1e12", "train.grad_clip=none"],
    )
    with pytest.raises(TrainingError):
        fit_run(cfg, tmp_path / "r", use_cache=False)
    assert not (tmp_path / "r").exists()
    assert not checkpoint_path_for(tmp_path / "r").parent.exists()
    bad = apply_overrides(cfg, ["data.target=seven"])
    with pytest.raises(DataError):
        fit_run(bad, tmp_path / "s", use_cache=False)
    assert not checkpoint_path_for(tmp_path / "s").parent.exists()


class _Payload:
    """Code that a pickle would run on load; a weights file must never run it."""

    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-audioar-test",))


def test_tampered_weights_are_refused_in_one_clean_line(tmp_path):
    tones = write_tone_dataset(tmp_path / "tones")
    run = tmp_path / "run"
    assert invoke("fit", "--data", tones, "--out", run, "--no-cache", *sets()).exit_code == 0
    state = torch.load(run / "weights.pt", weights_only=True)
    state["evil"] = _Payload()
    with open(run / "weights.pt", "wb") as handle:
        torch.save(state, handle, pickle_module=pickle)
    result = invoke("score", tones, "--model", run)
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    assert "weights.pt: not a weights file written by audioar (refused to unpickle)" in lines[0]
    assert "Unpickler" not in result.output and "weights_only" not in result.output


# ------------------------------------------------- memory and the mix of clip lengths

_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import torch

    torch.set_num_threads(1)
    from audioar.pipeline.runs import load_trained
    from audioar.pipeline.score_files import score_files

    run, listing = sys.argv[1:3]
    paths = [Path(line) for line in Path(listing).read_text().splitlines()]
    trained = load_trained(run)
    tables = list(score_files(trained, paths, use_cache=False))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = sum(int((t["error"] != "").sum()) for t in tables)
    print(json.dumps({"start_kb": start_kb, "peak_kb": peak_kb, "rows": sum(map(len, tables)),
                      "errors": errors}))
    """
)
#: Runs its arguments as a child of this small process: a process started straight from
#: pytest inherits pytest's peak RSS in ``ru_maxrss`` (Linux keeps the maximum across fork
#: and exec), and both figures would read pytest's.
_LEAN = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def scoring_peak_mb(run, paths, listing):
    """Peak RSS (MB) of a fresh process that loads ``run`` and scores ``paths``."""
    listing.write_text("\n".join(str(p) for p in paths))
    done = subprocess.run(
        [sys.executable, "-c", _LEAN, sys.executable, "-c", _PEAK, run, listing],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak = json.loads(done.stdout.strip().splitlines()[-1])
    assert peak["start_kb"] < 100 * 1024, peak  # its own peak, not its parent's
    assert peak["rows"] == len(paths) and peak["errors"] == 0, peak
    return peak["peak_kb"] / 1024


@pytest.mark.slow
def test_one_long_clip_among_short_ones_does_not_raise_the_memory(tones, tmp_path):
    """Issue 26: a chunk was padded to its longest clip, so one 60-s clip among 255 FSDD
    clips took 5.89 GB instead of 0.73 GB. Clips are now featurized in blocks of similar
    lengths, bounded in samples."""
    run = tmp_path / "run"
    assert invoke("fit", "--data", tones, "--class", "zero", "--out", run, *sets()).exit_code == 0
    rng = np.random.default_rng(26)
    short = []
    for i in range(255):  # FSDD-like: 0.3-0.8 s at 8 kHz
        n = int(8000 * rng.uniform(0.3, 0.8))
        t = np.arange(n) / 8000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 900) * t) + 0.02 * rng.standard_normal(n)
        short.append(tmp_path / f"short_{i}.wav")
        sf.write(short[-1], wave.astype(np.float32), 8000)
    long = tmp_path / "long.wav"
    sf.write(long, (0.1 * rng.standard_normal(60 * 8000)).astype(np.float32), 8000)
    alone = scoring_peak_mb(run, short, tmp_path / "short.txt")
    mixed = scoring_peak_mb(run, [*short[:128], long, *short[128:]], tmp_path / "mixed.txt")
    print(
        f"\npeak RSS scoring (ru_maxrss): 255 short clips {alone:.1f} MB, the same with one "
        f"60-s clip among them {mixed:.1f} MB (x{mixed / alone:.2f})"
    )
    assert mixed <= 1.3 * alone
