"""Fit MAF to samples of analytic densities and compare its test NLL with the true entropy.

Two targets with exactly known log-densities:

* ``gmm8``: an 8-D mixture of 4 full-covariance Gaussians (entropy by Monte Carlo on 400k
  samples of the exact log-density; its standard error is printed);
* ``banana``: x1 ~ N(0, 1), x2 | x1 ~ N(x1^2 / 2, 0.5^2) (entropy in closed form).

Training draws fresh samples every step (no overfitting), so the gap "test NLL - entropy"
measures what the model and optimiser miss; the target is < 0.05 nats per dimension.

Usage:
    python benchmarks/known_density.py [--steps 4000] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from audioar.models import MAF


def gmm8(seed):
    g = torch.Generator().manual_seed(seed)
    d, k = 8, 4
    means = torch.randn(k, d, generator=g) * 2.0
    covs = []
    for _ in range(k):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        scales = 0.3 + 1.2 * torch.rand(d, generator=g)
        covs.append(q @ torch.diag(scales**2) @ q.T)
    mix = torch.distributions.Categorical(torch.tensor([0.4, 0.3, 0.2, 0.1]))
    comp = torch.distributions.MultivariateNormal(means, torch.stack(covs))
    dist = torch.distributions.MixtureSameFamily(mix, comp)
    mc = -dist.log_prob(dist.sample((400_000,)))
    return d, dist.sample, mc.mean().item(), mc.std().item() / math.sqrt(len(mc))


def banana(seed):
    def sample(shape):
        x1 = torch.randn(shape)
        return torch.stack([x1, 0.5 * x1**2 + 0.5 * torch.randn(shape)], dim=-1)

    entropy = 0.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(2 * math.pi * math.e * 0.25)
    return 2, sample, entropy, 0.0


def fit(name, target, args):
    torch.manual_seed(args.seed)
    d, sample, entropy, entropy_se = target(args.seed)
    maf = MAF(d, num_flows=args.flows, hidden_features=(args.hidden, args.hidden), base=args.base)
    opt = torch.optim.Adam(maf.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = -maf.log_prob(sample((args.batch,))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    maf.eval()
    with torch.no_grad():
        nll = torch.cat([-maf.log_prob(sample((10_000,))) for _ in range(5)])
    gap = (nll.mean().item() - entropy) / d
    print(
        f"{name:<7} D={d}  entropy {entropy:8.4f} (+-{entropy_se:.4f})  test NLL {nll.mean():8.4f} "
        f"(+-{nll.std() / math.sqrt(len(nll)):.4f})  gap {gap:+.4f} nats/dim  "
        f"[{'ok' if gap < 0.05 else 'MISSED'} < 0.05]  {time.perf_counter() - start:5.0f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--flows", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--base", default="normal", choices=["normal", "mog"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="gmm8,banana")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"MAF ({args.flows} flows, 2x{args.hidden} tanh, batch norm, {args.base} base), Adam "
        f"lr {args.lr} cosine, {args.steps} steps of {args.batch} fresh samples; test 50k"
    )
    targets = {"gmm8": gmm8, "banana": banana}
    for name in args.targets.split(","):
        fit(name, targets[name], args)


if __name__ == "__main__":
    main()
