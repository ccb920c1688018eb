"""`audioar score` speed over FSDD (3,000 real clips) against the floor of reading them.

Run: ``.venv/bin/python benchmarks/score_speed.py [--run RUN_DIR] [--repeats 3]``. Without
``--run`` it first fits the default configuration on class "0" into a temporary folder (the
class-conditional MAF over MFCC segments, scored by the class posterior). On the same clips,
one round after another (the machine is shared: each figure is the best of ``--repeats``
rounds, and each ratio is also given as the median of its per-round ratios), it prints:

(a) the floor: reading and featurizing every clip, ``audioar.features.extract(featurizer,
    files, use_cache=False)`` timed in this process;
(a') the floor as a whole process: a fresh Python that imports the featurizer, reads and
    featurizes every clip (the least any process that scores them must do: start-up and
    ``import torch`` included);
(b) ``audioar score DATA --model RUN --out scores.csv`` as a whole process (start-up,
    imports, model load, decode, features, model, CSV) with a cold feature cache
    (``AUDIOAR_CACHE_DIR`` an empty folder);
(c) steady-state scoring in this process, ``audioar.pipeline.score_files.score_files`` over
    every clip with a cold feature cache (features computed and cached), after a warm-up;

and, to show where (c) goes beyond (a), (d) the model alone: ``score_features`` on the
clips' features (every class's log-likelihood, the scores). Targets: (b)/(a') >= 0.5 and
(c)/(a) >= 0.8 in clips/s. (b)/(a) is printed too: a whole process against the in-process
floor, which no process that imports torch can reach on a small machine (``import torch``
alone takes longer than twice the floor there).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None, help="a run directory from `fit`")
    parser.add_argument("--data", type=Path, default=FSDD)
    parser.add_argument("--repeats", type=int, default=3, help="rounds (best one reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    args = parser.parse_args()
    args.data = args.data.resolve()
    if not args.data.exists():
        sys.exit(f"no data at {args.data} (FSDD is expected at ../shared/data/fsdd)")
    # The child `audioar score` decides its OpenMP waiting itself, as for a user (it watches
    # the load for 0.1 s at start-up): it gets the environment as it was. This process waits
    # passively unless told otherwise (set before torch is imported): spinning threads are
    # several times slower whenever another job takes a core, which on a shared machine
    # would decide (a), (c) and (d) more than the code does.
    child_env = dict(os.environ)
    if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    waiting = {k: v for k, v in os.environ.items() if k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="audioar-score-bench-"))
    caches = iter(range(1_000_000))

    def cold_cache() -> str:
        return str(work / f"cache-{next(caches)}")  # a folder that does not exist yet

    cli = [sys.executable, "-m", "audioar_cli"]
    run = args.run.resolve() if args.run is not None else None
    if run is None:
        run = work / "run"
        print(f"fitting the default run on class 0 into {run} ...", flush=True)
        subprocess.run(
            [*cli, "fit", "--data", str(args.data), "--class", "0", "--out", str(run)],
            env={**child_env, "AUDIOAR_CACHE_DIR": cold_cache()},
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    import audioar
    from audioar.features import extract
    from audioar.pipeline.runs import load_trained
    from audioar.pipeline.score_files import score_files
    from audioar.pipeline.scoring import score_features

    files = sorted(args.data.glob("*.wav"))
    n = len(files)
    trained = load_trained(run)
    print(
        f"{n} clips; audioar from {Path(audioar.__file__).parent}; torch threads "
        f"{args.threads}; OpenMP waiting {waiting}; load average {os.getloadavg()[0]:.1f}"
    )

    def floor() -> float:
        start = time.perf_counter()
        extract(trained.featurizer, files, use_cache=False, on_error="skip")
        return time.perf_counter() - start

    floor_script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from audioar.features import extract, featurizer_from_config\n"
        "config = json.loads(Path(sys.argv[1], 'config.json').read_text())['featurizer']\n"
        "files = sorted(Path(sys.argv[2]).glob('*.wav'))\n"
        "extract(featurizer_from_config(config), files, use_cache=False, on_error='skip')\n"
    )

    def floor_process() -> float:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", floor_script, str(run), str(args.data)],
            env=child_env,
            cwd=work,
            check=True,
        )
        return time.perf_counter() - start

    def whole_process() -> float:
        env = {**child_env, "AUDIOAR_CACHE_DIR": cold_cache()}
        out = work / "scores.csv"
        start = time.perf_counter()
        subprocess.run(
            [*cli, "score", str(args.data), "--model", str(run), "--out", str(out)],
            env=env,
            cwd=work,  # not the checkout: `-m` puts the working folder first on sys.path
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start

    def steady() -> float:
        os.environ["AUDIOAR_CACHE_DIR"] = cold_cache()
        start = time.perf_counter()
        rows = sum(len(table) for table in score_files(trained, files, use_cache=True))
        seconds = time.perf_counter() - start
        assert rows == n
        return seconds

    features = extract(trained.featurizer, files, use_cache=False, on_error="skip").features
    clips = list(features) if not isinstance(features, list) else features

    def model_alone() -> float:
        start = time.perf_counter()
        score_features(trained, clips)
        return time.perf_counter() - start

    floor(), steady(), model_alone()  # warm-up: first calls, page cache
    times: dict[str, list[float]] = {"a": [], "a'": [], "b": [], "c": [], "d": []}
    for _ in range(args.repeats):
        rounds = (("a", floor), ("a'", floor_process), ("b", whole_process), ("c", steady))
        for key, measure in rounds:
            times[key].append(measure())
        times["d"].append(model_alone())
    labels = {
        "a": "(a) floor: read + featurize, no cache",
        "a'": "(a') the floor as a whole process",
        "b": "(b) `audioar score`, whole process",
        "c": "(c) score_files, steady state",
        "d": "(d) the model alone (score_features)",
    }
    for key, label in labels.items():
        best = min(times[key])
        rounds = " ".join(f"{t:.2f}" for t in times[key])
        print(f"{label:40s} {best:6.2f} s  {n / best:7.0f} clips/s   (rounds: {rounds} s)")
    for key, base, target in (("b", "a'", 0.5), ("c", "a", 0.8), ("b", "a", None)):
        best = min(times[base]) / min(times[key])
        pairs = zip(times[base], times[key], strict=True)
        per_round = statistics.median(a / t for a, t in pairs)
        goal = f"target >= {target}" if target else "no target: see the docstring"
        print(
            f"({key})/({base}) clips/s: {best:.2f} (best times), {per_round:.2f} "
            f"(median per round); {goal}"
        )


if __name__ == "__main__":
    main()
