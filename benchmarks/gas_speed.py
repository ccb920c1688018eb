"""Training speed of the MAF paper's GAS model: audioar against zuko and nflows, interleaved.

The model: 8 features, MAF (10) of 2 x 100 tanh units, order reversed between flows, batch
100, Adam. audioar and nflows put a batch-norm bijector after every MADE (the paper's
model); zuko's MAF has none (timed as shipped, which only helps zuko). Rounds alternate the
libraries so that load from other jobs hits all of them alike, ``--warmup`` untimed steps
before each timed run (see benchmarks/maf_speed.py for why); each figure is the median over
rounds of training samples per second, and the ratio the median of the per-round ratios.

Then one epoch of :func:`audioar.pipeline.train.fit` (the project's loop: data loading, gradient
clipping, validation pass) on ``--fit-rows`` rows is timed and extrapolated to the paper's
GAS split (852,174 training and 94,685 validation rows).

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/gas_speed.py [--rounds 5] [--steps 50]
        [--warmup 5] [--threads 2] [--fit-rows 50000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import flow_peers
import torch
from flow_peers import peer

from audioar.models import MAF

FEATURES, FLOWS, HIDDEN, BATCH = 8, 10, (100, 100), 100
GAS_TRAIN, GAS_VALIDATION = 852_174, 94_685


def build(name, device):
    if name == "audioar":
        torch.manual_seed(0)
        return MAF(FEATURES, FLOWS, HIDDEN, "tanh", batch_norm=True).to(device)
    return peer(name, FEATURES, FLOWS, HIDDEN, device)


def time_train(name, model, opt, data, steps, device):
    return flow_peers.time_train(name, model, opt, data, steps, device, BATCH)


def time_fit_epoch(rows, device, threads):
    """Seconds of one audioar.pipeline.train.fit epoch on ``rows`` rows (validation timed apart)."""
    from audioar.config.recipes import TrainConfig
    from audioar.pipeline.batches import log_likelihoods
    from audioar.pipeline.train import fit

    torch.manual_seed(1)
    train = torch.randn(rows, FEATURES)
    val = torch.randn(max(rows // 10, 1000), FEATURES)
    model = MAF(FEATURES, FLOWS, HIDDEN, "tanh", batch_norm=True)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-4, device=device.type, grad_clip=None)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fit(model, train, val, cfg)
    total = time.perf_counter() - start
    start = time.perf_counter()
    log_likelihoods(model, val, batch_size=512, device=device)
    val_s = time.perf_counter() - start
    return total - val_s, val_s, len(val)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-rows", type=int, default=50_000)
    parser.add_argument("--models", default="audioar,zuko,nflows")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.models.split(",")
    torch.manual_seed(0)
    data = torch.randn(100 * BATCH, FEATURES, device=device)
    models = {name: build(name, device) for name in names}
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    results = {name: [] for name in names}
    for name in names:
        time_train(name, models[name], opts[name], data, 3, device)
    for _ in range(args.rounds):
        for name in names:
            if args.warmup:
                time_train(name, models[name], opts[name], data, args.warmup, device)
            results[name].append(
                time_train(name, models[name], opts[name], data, args.steps, device)
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"GAS MAF training speed: D={FEATURES}, {FLOWS} flows, 2x{HIDDEN[0]} tanh, batch "
        f"{BATCH}, Adam, {args.threads} threads, device {args.device}, median of "
        f"{args.rounds} rounds of {args.steps} steps ({args.warmup} untimed before each); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {load:.1f}"
    )
    print(f"{'library':<10}{'samples/s':>12}{'ms/step':>10}{'x zuko':>9}{'x nflows':>10}")
    for name in names:
        value = statistics.median(results[name])
        row = f"{name:<10}{value:>12,.0f}{1000 * BATCH / value:>10.2f}"
        for ref in ("zuko", "nflows"):
            if ref in results:
                ratios = [a / b for a, b in zip(results[name], results[ref], strict=True)]
                row += f"{statistics.median(ratios):>{9 if ref == 'zuko' else 10}.2f}"
        print(row)

    if args.fit_rows:
        train_s, val_s, n_val = time_fit_epoch(args.fit_rows, device, args.threads)
        per_epoch = train_s * GAS_TRAIN / args.fit_rows + val_s * GAS_VALIDATION / n_val
        print(
            f"audioar.pipeline.train.fit, one epoch on {args.fit_rows:,} rows: "
            f"{train_s:.1f} s training "
            f"({args.fit_rows / train_s:,.0f} samples/s), {val_s:.2f} s to score {n_val:,} "
            f"validation rows"
        )
        print(
            f"-> a GAS epoch ({GAS_TRAIN:,} + {GAS_VALIDATION:,} rows): {per_epoch:.0f} s "
            f"= {per_epoch / 60:.1f} min; "
            + ", ".join(f"{n} epochs {per_epoch * n / 3600:.1f} h" for n in (100, 300, 1000))
        )


if __name__ == "__main__":
    main()
