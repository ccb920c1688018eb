"""Featurize all of FSDD (3,000 clips) with each featurizer, cold and warm cache.

Usage: ``.venv/bin/python benchmarks/featurize.py [--data DIR] [--repeat 3] [--threads 2]``

For each featurizer: "cold" is a fresh temporary cache folder (load + featurize + write the
cache), "warm" re-reads the same paths from that cache, "nocache" is ``use_cache=False``.
Also compares decode threads (``num_workers`` 1 vs 2) on the cold WholeWindowFFT run.
Figures are the best of ``--repeat`` runs, in clips per second.

On a machine shared with other jobs (load above the core count), torch's OpenMP threads spin
and wait on each other at every parallel op; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python
starts) or ``--threads 1`` avoids that. The header prints the load average and the policy.
"""

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from audioar.features import STFT, MuLaw, WholeWindowFFT, extract

DEFAULT_DATA = Path("/work/shared/data/fsdd/recordings")


def best_rate(run, repeat: int, n: int) -> float:
    """Best clips/s over ``repeat`` calls of ``run()`` (each may set up its own state)."""
    times = []
    for _ in range(repeat):
        times.append(run())
    return n / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    paths = sorted(args.data.glob("*.wav"))
    if not paths:
        raise SystemExit(f"no .wav files under {args.data}")
    n = len(paths)
    featurizers = {
        "mulaw (8 bit, 1 s)": MuLaw(sample_rate=8000, bits=8, seconds=1.0),
        "mulaw (8 bit, variable)": MuLaw(sample_rate=8000, bits=8),
        "stft (n_fft 256, 1 s, flat)": STFT(sample_rate=8000, n_fft=256, seconds=1.0, flatten=True),
        "stft (n_fft 256, variable)": STFT(sample_rate=8000, n_fft=256),
        "stft log-mel (40, 1 s)": STFT(sample_rate=8000, n_fft=256, n_mels=40, seconds=1.0),
        "fft welch (512, 1 s)": WholeWindowFFT(sample_rate=8000, n_fft=512, seconds=1.0),
        "fft blog (512, 1 s)": WholeWindowFFT(sample_rate=8000, n_fft=512, mode="blog"),
    }
    # Warm the OS page cache and the imports once, so the first row is not penalised.
    extract(featurizers["fft welch (512, 1 s)"], paths, use_cache=False)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    omp = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"{n} clips from {args.data}; torch threads {args.threads}; best of {args.repeat}")
    print(f"load average {load} on {os.cpu_count()} cores; OMP_WAIT_POLICY={omp}")
    print(f"{'featurizer':30s} {'cold':>9s} {'warm':>9s} {'nocache':>9s}  (clips/s)")
    for label, featurizer in featurizers.items():
        root = Path(tempfile.mkdtemp(prefix="audioar-bench-"))

        def cold(featurizer=featurizer, root=root) -> float:
            shutil.rmtree(root / "features", ignore_errors=True)
            t0 = time.perf_counter()
            extract(featurizer, paths, cache_dir=root / "features")
            return time.perf_counter() - t0

        def warm(featurizer=featurizer, root=root) -> float:
            t0 = time.perf_counter()
            result = extract(featurizer, paths, cache_dir=root / "features")
            assert result.cache_hits == n
            return time.perf_counter() - t0

        def nocache(featurizer=featurizer) -> float:
            t0 = time.perf_counter()
            extract(featurizer, paths, use_cache=False)
            return time.perf_counter() - t0

        rates = [best_rate(f, args.repeat, n) for f in (cold, warm, nocache)]
        print(f"{label:30s} {rates[0]:9.0f} {rates[1]:9.0f} {rates[2]:9.0f}")
        shutil.rmtree(root, ignore_errors=True)

    fft = featurizers["fft welch (512, 1 s)"]
    print("decode threads, fft welch cold:")
    for workers in (0, 1, 2, 4):
        root = Path(tempfile.mkdtemp(prefix="audioar-bench-"))

        def cold_workers(workers=workers, root=root) -> float:
            shutil.rmtree(root / "features", ignore_errors=True)
            t0 = time.perf_counter()
            extract(fft, paths, cache_dir=root / "features", num_workers=workers)
            return time.perf_counter() - t0

        print(f"  num_workers={workers}: {best_rate(cold_workers, args.repeat, n):7.0f} clips/s")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
