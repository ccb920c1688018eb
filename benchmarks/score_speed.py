"""`audioar score` speed over FSDD (3,000 real clips): steady state and whole process.

Run: ``.venv/bin/python benchmarks/score_speed.py [--run RUN_DIR]``. Without ``--run`` it first
fits the default configuration on class "0" into a temporary folder. Prints clips/s for
(a) the whole `audioar score` process (start-up, model load, decode, features, model, CSV)
with a cold feature cache, (b) the same with a warm cache, and (c) steady-state in-process
scoring (features + model, cold cache, excluding start-up). Target: >= 1,000 clips/s.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=FSDD)
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"no data at {args.data} (FSDD is expected at ../shared/data/fsdd)")
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="audioar-score-bench-"))
    env = {**os.environ, "AUDIOAR_CACHE_DIR": str(work / "cache")}
    cli = [sys.executable, "-m", "audioar_cli"]
    run = args.run
    if run is None:
        run = work / "run"
        print(f"fitting the default run on class 0 into {run} ...", flush=True)
        subprocess.run(
            [*cli, "fit", "--data", str(args.data), "--class", "0", "--out", str(run)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    files = sorted(args.data.glob("*.wav"))
    n = len(files)
    print(f"{n} clips; torch threads 2; load average {os.getloadavg()[0]:.1f}")

    env_cold = {**env, "AUDIOAR_CACHE_DIR": str(work / "cold-cache")}
    for label, extra_env in (
        ("whole process, cold cache", env_cold),
        ("whole process, warm cache", env_cold),
    ):
        start = time.perf_counter()
        subprocess.run(
            [*cli, "score", str(args.data), "--model", str(run), "--out", str(work / "s.csv")],
            env=extra_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        print(f"{label:28s} {seconds:6.2f} s  {n / seconds:8.0f} clips/s")

    from audioar.pipeline import load_trained
    from audioar.scorer import score_files

    trained = load_trained(run)
    for repeat in range(2):
        start = time.perf_counter()
        rows = sum(len(t) for t in score_files(trained, files, use_cache=False))
        seconds = time.perf_counter() - start
        print(
            f"in-process, no cache (#{repeat + 1})  {seconds:6.2f} s  {rows / seconds:8.0f} clips/s"
        )


if __name__ == "__main__":
    main()
