"""WaveNet speed: cached vs naive generation, training and scoring throughput on FSDD.

Default WaveNet configuration (10 classes, 256 μ-law codes, 64 residual / 128 skip channels,
kernel 2, two cycles of dilations 1..512: receptive field 2047 samples), untrained weights
(speed does not depend on them).

Generation of ``--seconds`` of audio at 8 kHz, batch 1 (and once with batch 10):

* cached: ``WaveNet.generate`` (fused incremental step with per-layer ring-buffer queues),
  timed over the whole length.
* step-ref: the layer-by-layer incremental reference path (``GatedResidualBlock.step``),
  teacher-forced over ``--ref-steps`` steps and extrapolated (no sampling: a lower bound).
* naive: the fair naive baseline recomputes the full forward pass over the *receptive-field
  window* (the last 2047 samples, not the whole prefix, which would be slower still) for
  every new sample. It is too slow to run to the end, so the cost of one step is measured at
  several window lengths, fitted as ``a + b * window`` and summed over the real windows of
  the whole clip (``min(t, 2047) + 1`` for step ``t``): an extrapolation, printed as such.
  A short real naive run checks that it draws the same samples as the cached one.

Training throughput: Adam steps on batches of ``--batch`` μ-law encoded FSDD clips (train
takes 5-49, padded with a length mask, at most ``--crop`` samples), valid samples per
second. Scoring throughput: ``log_prob`` and ``log_prob_all_classes`` (10 classes in one
batched pass) over test clips (takes 0-4) in length-sorted batches, clips per second.

Usage:
    python benchmarks/wavenet_speed.py [--threads 2] [--seconds 1.0] [--train-steps 3]
        [--score-clips 32] [--device cpu|cuda] [--data PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioar.models import WaveNet

SAMPLE_RATE = 8000
DEFAULT_DATA = Path("/work/shared/data/fsdd/recordings")


def timed(fn, repeats=1):
    """Fastest wall time of ``fn()`` over ``repeats`` runs (seconds; load from other jobs
    only ever adds time) and its last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def bench_generation(model, seconds, ref_steps, windows):
    length = int(seconds * SAMPLE_RATE)
    rf = model.receptive_field
    label = torch.tensor([3])
    model.generate(label, 50)  # warm-up

    torch.manual_seed(0)
    t_cached, cached = timed(lambda: model.generate(label, length))

    labels10 = torch.arange(10)
    t_batch, _ = timed(lambda: model.generate(labels10, length))

    codes = torch.randint(0, 256, (1, ref_steps))
    with torch.no_grad():
        t_ref, _ = timed(lambda: model.output_params(codes, label, path="step"))
    t_ref_total = t_ref / ref_steps * length

    # Naive: one full forward pass over a window of w inputs per new sample.
    per_window = {}
    with torch.no_grad():
        for w in windows:
            x = torch.randint(0, 256, (1, w))
            per_window[w], _ = timed(lambda x=x: model.output_params(x, label)[:, -1], 4)
    ws = np.array(list(per_window))
    b, a = np.polyfit(ws, np.array(list(per_window.values())), 1)
    steps_w = np.minimum(np.arange(length), rf) + 1
    t_naive_total = float(np.sum(a + b * steps_w))

    check = 24
    torch.manual_seed(0)
    naive_codes = model.generate(label, check, use_cache=False)
    same = torch.equal(naive_codes, cached[:, :check])

    print(f"== generation: {seconds:g} s at {SAMPLE_RATE} Hz = {length} samples, batch 1, ")
    print(f"   receptive field {rf} samples, {len(model.blocks)} layers")
    for w, t in per_window.items():
        print(f"   naive forward over a {w}-sample window: {t * 1e3:9.1f} ms")
    rows = [
        ("cached (fused queues)", t_cached, "measured"),
        ("step-ref (layer queues)", t_ref_total, f"from {ref_steps} steps"),
        ("cached, batch 10 (1/class)", t_batch / 10, "measured, per clip"),
        ("naive (RF window)", t_naive_total, "extrapolated"),
    ]
    print(f"   {'method':26s} {'total s':>10s} {'samples/s':>11s} {'RTF':>9s}  note")
    for name, t, note in rows:
        print(f"   {name:26s} {t:10.2f} {length / t:11.1f} {t / seconds:9.2f}  {note}")
    print(
        f"   speed-up cached vs naive: {t_naive_total / t_cached:.1f}x (target >= 20x); "
        f"cached vs step-ref: {t_ref_total / t_cached:.1f}x"
    )
    print(f"   naive run of {check} samples draws the same codes as cached: {same}")
    print("   (RTF = generation time / audio duration; < 1 is faster than real time)")


def load_fsdd(folder, takes, limit, rng):
    files = sorted(p for p in folder.glob("*.wav") if int(p.stem.split("_")[2]) in takes)
    rng.shuffle(files)
    clips = []
    for path in files[:limit]:
        audio, sr = sf.read(path, dtype="float32")
        if sr != SAMPLE_RATE or audio.ndim != 1:
            continue
        codes = AF.mu_law_encoding(torch.from_numpy(audio), 256)
        clips.append((codes, int(path.stem.split("_")[0])))
    return clips


def collate(clips, crop, rng):
    pieces, labels = [], []
    for codes, label in clips:
        if len(codes) > crop:
            start = rng.randrange(len(codes) - crop + 1)
            codes = codes[start : start + crop]
        pieces.append(codes)
        labels.append(label)
    lengths = torch.tensor([len(p) for p in pieces])
    x = torch.zeros(len(pieces), int(lengths.max()), dtype=torch.long)
    for i, p in enumerate(pieces):
        x[i, : len(p)] = p
    return x, torch.tensor(labels), lengths


def bench_training(model, clips, batch, steps, crop, device, rng):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [collate(rng.sample(clips, batch), crop, rng) for _ in range(steps + 1)]

    def one(b):
        x, y, n = (t.to(device) for t in b)
        loss = -model.log_prob(x, y, n).sum() / n.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    one(batches[0])  # warm-up
    start, samples = time.perf_counter(), 0
    for b in batches[1:]:
        one(b)
        samples += int(b[2].sum())
    elapsed = time.perf_counter() - start
    mean_len = samples / (steps * batch)
    print(f"== training: {steps} Adam steps, batch {batch} clips (mean {mean_len:.0f} samples)")
    print(f"   {samples / elapsed:10.0f} samples/s  ({elapsed / steps:.2f} s per step)")


def bench_scoring(model, clips, batch, device):
    model.eval()
    clips = sorted(clips, key=lambda c: len(c[0]))
    batches = [collate(clips[i : i + batch], 10**9, None) for i in range(0, len(clips), batch)]
    with torch.no_grad():
        model.log_prob(*(t.to(device) for t in batches[0]))  # warm-up

        def score_one():
            for x, y, n in batches:
                model.log_prob(x.to(device), y.to(device), n.to(device))

        def score_all():
            for x, _, n in batches:
                model.log_prob_all_classes(x.to(device), n.to(device))

        t_one, _ = timed(score_one)
        t_all, _ = timed(score_all)
    n, c = len(clips), model.classes
    mean_len = sum(len(x[0]) for x in clips) / n
    print(f"== scoring: {n} test clips (mean {mean_len:.0f} samples), batch {batch}")
    print(f"   log_prob (own class)          {n / t_one:8.2f} clips/s")
    print(
        f"   log_prob_all_classes ({c} cls) {n / t_all:8.2f} clips/s  "
        f"({t_all / t_one:.1f}x the time of one class)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--ref-steps", type=int, default=500)
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=8000)
    parser.add_argument("--score-clips", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-generation", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = WaveNet().eval()
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}")
    if not args.skip_generation:
        bench_generation(model, args.seconds, args.ref_steps, args.windows)
    if not args.data.is_dir():
        print(f"FSDD not found at {args.data}: training and scoring benchmarks skipped")
        return
    model = model.to(args.device)
    train = load_fsdd(args.data, set(range(5, 50)), 400, rng)
    test = load_fsdd(args.data, set(range(5)), args.score_clips, rng)
    bench_training(model, train, args.batch, args.train_steps, args.crop, args.device, rng)
    bench_scoring(model, test, args.batch, args.device)


if __name__ == "__main__":
    main()
