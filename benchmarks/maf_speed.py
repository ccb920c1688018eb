"""Speed of audioar's MAF against zuko and nflows, measured interleaved in one process.

Same architecture everywhere: D=257, 10 affine MADE flows, 2 x 512 tanh hidden units, order
reversed between flows, standard normal base; training batch 100, ``log_prob`` at every
``--eval-batch`` size (default 100 and 2000), sampling 100. audioar and nflows put a batch-norm
bijector after every MADE; zuko's MAF has none (it is timed as shipped, which only helps
zuko). audioar is also timed with batch norm off ("audioar-nobn") and on its plain reference
path ("audioar-ref": masked dense matmuls, D full passes per flow to sample).

Rounds alternate the libraries so that load from other jobs on the machine hits all of them
alike; each figure is the median over rounds of samples per second, and each ratio to zuko
the median of the rounds' ratios. Before each timed run of training steps or ``log_prob``
calls, ``--warmup`` untimed ones (default 2) warm the model's code and memory up again:
memory and code left untouched for a second or two make the next steps slower for any
library, so without them a round's first steps measure how long the other libraries ran
before it (see the README's benchmarks). Training steps go through
:func:`audioar.pipeline.train.optimizer_step`, as :func:`audioar.pipeline.train.fit` does.
``log_prob`` at a
batch of ``B`` runs ``--eval-steps * 100 / B`` calls (at least 4).

Usage:
    python benchmarks/maf_speed.py [--rounds 9] [--threads 2] [--warmup 2] [--device cpu|cuda]
        [--amp] [--fused-adam] [--train-steps 10] [--eval-steps 30] [--eval-batch 100,2000]
        [--models ...] [--tasks train,log_prob,sample]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import flow_peers
import torch
from flow_peers import log_prob, peer, sync

from audioar.models import MAF

FEATURES, FLOWS, HIDDEN, BATCH = 257, 10, (512, 512), 100


def build(name, device, num_blocks=None):
    torch.manual_seed(0)
    if name.startswith("audioar"):
        blocks = {} if num_blocks is None else {"num_blocks": num_blocks}
        model = MAF(FEATURES, FLOWS, HIDDEN, "tanh", batch_norm=(name != "audioar-nobn"), **blocks)
        model.block_sparse = name != "audioar-ref"
        return model.to(device)
    return peer(name, FEATURES, FLOWS, HIDDEN, device)


def sample(name, model, n):
    if name == "zuko":
        return model().sample((n,))
    if name == "audioar-ref":
        z = torch.randn(n, FEATURES, device=x_device(model))
        return model.inverse(z, incremental=False)
    return model.sample(n)


def x_device(model):
    return next(model.parameters()).device


def time_train(name, model, opt, data, steps, device, amp):
    return flow_peers.time_train(name, model, opt, data, steps, device, BATCH, amp)


def time_log_prob(name, model, data, steps, device, amp, batch=BATCH):
    model.eval()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
        for i in range(steps):
            x = data[(i % (len(data) // batch)) * batch :][:batch]
            log_prob(name, model, x)
    sync(device)
    return steps * batch / (time.perf_counter() - start)


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
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=30, help="log_prob calls at batch 100")
    parser.add_argument(
        "--eval-batch", default="100,2000", help="comma list of log_prob batch sizes"
    )
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
    batches = [int(b) for b in args.eval_batch.split(",")]
    # One column per timed task: log_prob once per batch size.
    tasks = [
        task
        for t in args.tasks.split(",")
        for task in ([f"log_prob@{b}" for b in batches] if t == "log_prob" else [t])
    ]
    torch.manual_seed(0)
    rows = max(10 * BATCH, 4 * max(batches))
    data = torch.randn(rows, FEATURES, device=device) * 2.0 + 1.0
    models = {name: build(name, device, args.num_blocks) for name in names}
    opts = {
        name: torch.optim.Adam(m.parameters(), lr=1e-4, fused=args.fused_adam or None)
        for name, m in models.items()
    }
    results = {(name, task): [] for name in names for task in tasks}

    def eval_steps(batch):
        return max(4, round(args.eval_steps * BATCH / batch))

    for name in names:  # warm-up (allocator, lazy init, first-call overheads)
        if "train" in tasks:
            time_train(name, models[name], opts[name], data, 2, device, args.amp)
        for b in batches if any(t.startswith("log_prob") for t in tasks) else []:
            time_log_prob(name, models[name], data, 2, device, args.amp, b)
    for _ in range(args.rounds):
        for name in names:
            model = models[name]
            for task in tasks:
                if task == "train":
                    if args.warmup:
                        time_train(name, model, opts[name], data, args.warmup, device, args.amp)
                    steps = args.train_steps
                    r = time_train(name, model, opts[name], data, steps, device, args.amp)
                elif task.startswith("log_prob@"):
                    b = int(task.partition("@")[2])
                    if args.warmup:
                        time_log_prob(name, model, data, args.warmup, device, args.amp, b)
                    r = time_log_prob(name, model, data, eval_steps(b), device, args.amp, b)
                else:
                    r = time_sample(name, model, args.sample_calls, device)
                results[name, task].append(r)
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
        f"MAF speed, D={FEATURES}, {FLOWS} flows, 2x{HIDDEN[0]} tanh, train batch {BATCH}, "
        f"log_prob batch {'/'.join(map(str, batches))}, {adam}, "
        f"device {args.device}{amp}, {args.threads} threads, median of {args.rounds} rounds "
        f"({args.warmup} untimed before each timed run) "
        f"(load average at the end: {load:.1f}; OMP_WAIT_POLICY={omp}"
        + (f"; audioar num_blocks={blocks})" if blocks is not None else ")")
    )
    print(f"{'model':<14}" + "".join(f"{t + ' /s':>19}{'x zuko':>8}" for t in tasks))
    for name in names:
        row = f"{name:<14}"
        for task in tasks:
            value = statistics.median(results[name, task])
            ref = results.get(("zuko", task))
            ratios = [a / b for a, b in zip(results[name, task], ref, strict=True)] if ref else []
            ratio = statistics.median(ratios) if ratios else float("nan")
            row += f"{value:>19,.1f}{ratio:>8.2f}"
        print(row)
    if "zuko" in names and names[0] != "zuko":
        spread = {
            task: [
                a / b for a, b in zip(results[names[0], task], results["zuko", task], strict=True)
            ]
            for task in tasks
        }
        print(
            f"{names[0]} / zuko per round (min-max): "
            + ", ".join(f"{t} {min(r):.2f}-{max(r):.2f}" for t, r in spread.items())
        )


if __name__ == "__main__":
    main()
