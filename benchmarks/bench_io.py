"""Loading and resampling speed: clips/s of load_audio, and the resamplers side by side.

Run: ``.venv/bin/python benchmarks/bench_io.py``. Uses FSDD when present
(/work/shared/data/fsdd/recordings), else 500 generated 1 s clips at 8 kHz.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioar.data.discovery import discover, loso_folds, split
from audioar.data.io import load_audio, resample, resample_reference

FSDD = Path("/work/shared/data/fsdd/recordings")


def per_call(fn, repeat: int, rounds: int = 5) -> float:
    """Seconds per call, best of ``rounds`` (the machine is shared: the minimum is stablest)."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main() -> None:
    torch.set_num_threads(2)
    tmp = tempfile.TemporaryDirectory()
    if FSDD.is_dir():
        start = time.perf_counter()
        ds = discover(FSDD)
        parts = split(ds)
        folds = loso_folds(ds)
        took = time.perf_counter() - start
        print(f"discover + official split + {len(folds)} LOSO folds on FSDD: {took * 1e3:.0f} ms")
        print(f"  {parts.describe()}")
        paths = [c.path for c in ds.clips]
    else:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(500):
            p = Path(tmp.name, f"{i}.wav")
            sf.write(p, 0.1 * rng.standard_normal(8000), 8000, subtype="PCM_16")
            paths.append(p)
    for rate in (None, 16000, 22050):
        for p in paths[:50]:
            load_audio(p, rate)  # warm the page cache
        start = time.perf_counter()
        for p in paths:
            load_audio(p, rate)
        speed = len(paths) / (time.perf_counter() - start)
        print(f"load_audio(sample_rate={rate}): {speed:,.0f} clips/s over {len(paths)} clips")

    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32)  # 1 s at 8 kHz
    for orig, target in ((8000, 16000), (8000, 22050), (16000, 8000)):
        y = x if orig == 8000 else resample(x, 8000, orig)
        tx = torch.from_numpy(y)
        soxr_t = per_call(lambda y=y, o=orig, t=target: resample(y, o, t), 100)
        librosa_t = per_call(lambda y=y, o=orig, t=target: resample_reference(y, o, t), 100)
        ta_t = per_call(lambda tx=tx, o=orig, t=target: AF.resample(tx, o, t), 100)
        print(
            f"resample 1 s {orig}->{target} Hz, ms/clip: soxr {soxr_t * 1e3:.3f}, "
            f"librosa soxr_hq {librosa_t * 1e3:.3f}, torchaudio {ta_t * 1e3:.3f}"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
