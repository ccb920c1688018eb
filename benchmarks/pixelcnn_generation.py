"""PixelCNN generation speed: the cached generator against the naive full recompute.

One gated PixelCNN (the PixelCNNConfig defaults unless told otherwise; untrained weights:
speed does not depend on them), class-conditional over 10 classes, Bernoulli output, draws
``--batch`` images of ``--size x --size`` pixels (28 x 28 by default) from one seed, once
with ``sample(..., cached=True)`` (each row's vertical stack once, one column of the
horizontal stacks per pixel) and once with ``cached=False`` (the whole network for every
pixel). Prints images per second of both, their ratio, and whether both drew the same
images.

Usage:
    python benchmarks/pixelcnn_generation.py [--batch 1 16] [--size 28] [--hidden 32]
        [--layers 6] [--kernel 3] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stall shared CPUs

import torch  # noqa: E402

from audioar.models.pixelcnn import PixelCNN, PixelCNNConfig  # noqa: E402


def timed_sample(model, n, label, size, cached, seed):
    torch.manual_seed(seed)
    start = time.perf_counter()
    images = model.sample(n, label, cached=cached, size=(size, size))
    return time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--size", type=int, default=28)
    defaults = PixelCNNConfig()
    parser.add_argument("--hidden", type=int, default=defaults.hidden_channels)
    parser.add_argument("--layers", type=int, default=defaults.num_layers)
    parser.add_argument("--kernel", type=int, default=defaults.kernel_size)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = PixelCNN(
        1,
        classes=10,
        hidden_channels=args.hidden,
        num_layers=args.layers,
        kernel_size=args.kernel,
        output="bernoulli",
    ).eval()
    print(
        f"gated PixelCNN, {args.hidden} channels, {args.layers} blocks, kernel {args.kernel}, "
        f"{args.size} x {args.size} binary images, {args.threads} threads"
    )
    timed_sample(model, 1, 0, 4, True, args.seed)  # warm-up
    print(f"{'batch':>5}  {'cached img/s':>12}  {'naive img/s':>11}  {'ratio':>6}  same")
    for n in args.batch:
        t_cached, a = timed_sample(model, n, 3, args.size, True, args.seed)
        t_naive, b = timed_sample(model, n, 3, args.size, False, args.seed)
        print(
            f"{n:>5}  {n / t_cached:>12.3f}  {n / t_naive:>11.3f}  {t_naive / t_cached:>5.1f}x"
            f"  {torch.equal(a, b)}"
        )


if __name__ == "__main__":
    main()
