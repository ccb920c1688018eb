"""Speed of audioar's MAF against zuko and nflows, measured interleaved in one process.

Same architecture everywhere: D=257, 10 affine MADE flows, 2 x 512 tanh hidden units, order
reversed between flows, standard normal base, batch 100. audioar and nflows put a batch-norm
bijector after every MADE; zuko's MAF has none (it is timed as shipped, which only helps
zuko). audioar is also timed with batch norm off ("audioar-nobn") and on its plain reference
path ("audioar-ref": masked dense matmuls, D full passes per flow to sample).

Rounds alternate the libraries so that load from other jobs on the machine hits all of them
alike; each figure is the median over rounds of samples per second. Before each timed run
of training steps or ``log_prob`` calls, ``--warmup`` untimed ones (default 2) warm the
model's code and memory up again: on the 2-core VMs these figures come from, memory and code
left untouched for a second or two cost the next step 50-100 ms for any library (measured:
the first training step after ``time.sleep(2)`` takes 7 ms -> 50-60 ms for a toy MAF of 8
features, audioar and zuko alike; for the MAF here, after 3 s, audioar's steps took 172,
41, then 37 ms and zuko's 203, 68, then 61 ms), so without it a round's first steps measure
how long the other libraries ran before it and which of them warmed the same code (with
5-step rounds and no warm-up, audioar with batch norm trained at 1.22x zuko when it ran
first in each round and at 1.59x when it ran after audioar without batch norm).

Usage:
    python benchmarks/maf_speed.py [--rounds 5] [--threads 2] [--warmup 2] [--device cpu|cuda]
        [--amp] [--fused-adam] [--train-steps 10] [--eval-steps 30] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from audioar.models import MAF

FEATURES, FLOWS, HIDDEN, BATCH = 257, 10, (512, 512), 100


def build(name, device, num_blocks=None):
    torch.manual_seed(0)
    if name.startswith("audioar"):
        blocks = {} if num_blocks is None else {"num_blocks": num_blocks}
        model = MAF(FEATURES, FLOWS, HIDDEN, "tanh", batch_norm=(name != "audioar-nobn"), **blocks)
        model.block_sparse = name != "audioar-ref"
        return model.to(device)
    if name == "zuko":
        import zuko

        return zuko.flows.MAF(
            FEATURES, 0, transforms=FLOWS, hidden_features=HIDDEN, activation=torch.nn.Tanh
        ).to(device)
    from nflows.flows.autoregressive import MaskedAutoregressiveFlow

    # num_blocks_per_layer=1: nflows' MADE = initial layer + 1 block + output = 2 hidden layers.
    return MaskedAutoregressiveFlow(
        FEATURES,
        HIDDEN[0],
        FLOWS,
        num_blocks_per_layer=1,
        use_residual_blocks=False,
        batch_norm_between_layers=True,
        activation=torch.tanh,
    ).to(device)


def log_prob(name, model, x):
    return model().log_prob(x) if name == "zuko" else model.log_prob(x)


def sample(name, model, n):
    if name == "zuko":
        return model().sample((n,))
    if name == "audioar-ref":
        z = torch.randn(n, FEATURES, device=x_device(model))
        return model.inverse(z, incremental=False)
    return model.sample(n)


def x_device(model):
    return next(model.parameters()).device


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train(name, model, opt, data, steps, device, amp):
    model.train()
    start = time.perf_counter()
    for i in range(steps):
        x = data[(i % (len(data) // BATCH)) * BATCH :][:BATCH]
        with torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
            loss = -log_prob(name, model, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * BATCH / (time.perf_counter() - start)


def time_log_prob(name, model, data, steps, device, amp):
    model.eval()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
        for i in range(steps):
            x = data[(i % (len(data) // BATCH)) * BATCH :][:BATCH]
            log_prob(name, model, x)
    sync(device)
    return steps * BATCH / (time.perf_counter() - start)


def time_sample(name, model, calls, device):
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(calls):
            sample(name, model, BATCH)
    sync(device)
    return calls * BATCH / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=30)
    parser.add_argument("--sample-calls", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps / calls before each timed run"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPU)")
    parser.add_argument("--fused-adam", action="store_true", help="Adam(fused=True) for all")
    parser.add_argument(
        "--num-blocks", type=int, default=None, help="audioar's row blocks per layer (MAF default)"
    )
    parser.add_argument(
        "--models", default="audioar,audioar-nobn,audioar-ref,zuko,nflows", help="comma list"
    )
    parser.add_argument("--tasks", default="train,log_prob,sample")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.models.split(",")
    tasks = args.tasks.split(",")
    torch.manual_seed(0)
    data = torch.randn(10 * BATCH, FEATURES, device=device) * 2.0 + 1.0
    models = {name: build(name, device, args.num_blocks) for name in names}
    opts = {
        name: torch.optim.Adam(m.parameters(), lr=1e-4, fused=args.fused_adam or None)
        for name, m in models.items()
    }
    results = {(name, task): [] for name in names for task in tasks}
    for name in names:  # warm-up (allocator, lazy init, first-call overheads)
        if "train" in tasks:
            time_train(name, models[name], opts[name], data, 2, device, args.amp)
        if "log_prob" in tasks:
            time_log_prob(name, models[name], data, 2, device, args.amp)
    for _ in range(args.rounds):
        for name in names:
            model = models[name]
            if "train" in tasks:
                if args.warmup:
                    time_train(name, model, opts[name], data, args.warmup, device, args.amp)
                r = time_train(name, model, opts[name], data, args.train_steps, device, args.amp)
                results[name, "train"].append(r)
            if "log_prob" in tasks:
                if args.warmup:
                    time_log_prob(name, model, data, args.warmup, device, args.amp)
                r = time_log_prob(name, model, data, args.eval_steps, device, args.amp)
                results[name, "log_prob"].append(r)
            if "sample" in tasks:
                results[name, "sample"].append(time_sample(name, model, args.sample_calls, device))
    amp = " + bf16 autocast" if args.amp else ""
    blocks = next(
        (len(m.mades[0].layers[0].blocks) for n, m in models.items() if n.startswith("audioar")),
        None,
    )
    adam = "fused Adam" if args.fused_adam else "Adam"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    omp = os.environ.get("OMP_WAIT_POLICY", "unset")
    if "GOMP_SPINCOUNT" in os.environ:
        omp += f", GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    print(
        f"MAF speed, D={FEATURES}, {FLOWS} flows, 2x{HIDDEN[0]} tanh, batch {BATCH}, {adam}, "
        f"device {args.device}{amp}, {args.threads} threads, median of {args.rounds} rounds "
        f"({args.warmup} untimed before each timed run) "
        f"(load average at the end: {load:.1f}; OMP_WAIT_POLICY={omp}"
        + (f"; audioar num_blocks={blocks})" if blocks is not None else ")")
    )
    print(f"{'model':<14}" + "".join(f"{t + ' /s':>14}{'x zuko':>8}" for t in tasks))
    for name in names:
        row = f"{name:<14}"
        for task in tasks:
            value = statistics.median(results[name, task])
            ref = results.get(("zuko", task))
            ratio = value / statistics.median(ref) if ref else float("nan")
            row += f"{value:>14,.1f}{ratio:>8.2f}"
        print(row)


if __name__ == "__main__":
    main()
