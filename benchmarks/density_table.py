"""One table of every tabular family on three data sets, in the MAF paper's format.

Rows: FVSBN, NADE / RNADE, MADE, MADE MoG, MAF (5), MAF (10), MAF MoG (5). Columns:

* ``mog8``: an 8-D mixture of 4 correlated Gaussians whose log-density is exact; the figure
  is the gap in nats per dimension, mean test NLL minus the true mean NLL on the same test
  rows (0 is perfect; it can dip below 0 by chance on a finite test set).
* ``digits``: scikit-learn's bundled 8 x 8 digits (1,797 images), binarised at 8 (pixel
  value >= 8 -> 1), seeded split 1,200 / 200 / 397; test NLL in nats per image. Binary
  families only (FVSBN, NADE, MADE with Bernoulli outputs); the continuous-only rows are n/a.
* ``gas`` (with ``--gas PATH``): the MAF paper's GAS (``ethylene_CO.txt``, the authors'
  pickle or a table written by ``audioar density prepare``); test log-likelihood in nats,
  ± 2 standard errors (the paper: MADE 3.56, MADE MoG 8.47, MAF (5) 9.07, MAF (10) 10.08,
  MAF MoG (5) 9.59, after full training).

Every model is fit by :class:`audioar.density.DensityEstimator` (so
:func:`audioar.pipeline.train.fit`:
Adam, early stopping on the validation rows) with the sizes of the MAF paper's GAS models
(2 x 100 tanh hidden units; 10 mixture components), at ``--lr`` (default 1e-3 for all, to
make short runs count) and at most ``--epochs`` epochs.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/density_table.py [--epochs 20] [--rows 10000]
        [--digits-epochs 300]
        [--gas PATH] [--gas-rows 50000] [--models fvsbn,nade,...] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from audioar.config.recipes import TrainConfig
from audioar.density import DensityEstimator, load_table, prepare_gas, summarize

H = (100, 100)
# name: (label, family, continuous settings, binary settings or None)
MODELS = {
    "fvsbn": ("FVSBN", "fvsbn", {"output": "gaussian"}, {"output": "bernoulli"}),
    "nade": (
        "NADE / RNADE",
        "nade",
        {"hidden_features": 100, "output": "mog", "components": 10},
        {"hidden_features": 100, "output": "bernoulli"},
    ),
    "made": (
        "MADE",
        "made",
        {"hidden_features": H, "activation": "tanh"},
        {"hidden_features": H, "activation": "tanh", "output": "bernoulli"},
    ),
    "made_mog": (
        "MADE MoG",
        "made",
        {"hidden_features": H, "activation": "tanh", "output": "mog", "components": 10},
        None,
    ),
    "maf5": ("MAF (5)", "maf", {"num_flows": 5, "hidden_features": H}, None),
    "maf10": ("MAF (10)", "maf", {"num_flows": 10, "hidden_features": H}, None),
    "maf_mog": (
        "MAF MoG (5)",
        "maf",
        {"num_flows": 5, "hidden_features": H, "base": "mog", "components": 10},
        None,
    ),
}


def mixture8(rows, seed):
    """Train / validation / test rows of an 8-D 4-component Gaussian mixture, and the exact
    log-density of the test rows."""
    g = torch.Generator().manual_seed(seed)
    d, k = 8, 4
    means = torch.randn(k, d, generator=g) * 2.0
    covs = []
    for _ in range(k):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        covs.append(q @ torch.diag((0.3 + 1.2 * torch.rand(d, generator=g)) ** 2) @ q.T)
    dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([0.4, 0.3, 0.2, 0.1])),
        torch.distributions.MultivariateNormal(means, torch.stack(covs)),
    )
    torch.manual_seed(seed)
    n_val, n_test = rows // 10, rows // 4
    x = dist.sample((rows + n_val + n_test,))
    test = x[rows + n_val :]
    parts = x[:rows].numpy(), x[rows : rows + n_val].numpy(), test.numpy()
    return parts, dist.log_prob(test).double().numpy()


def digits(seed):
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order]
    return x[:1200], x[1200:1400], x[1400:]


def gas(path, rows, seed):
    path = Path(path)
    if path.suffix == ".npz":
        table = load_table(path)
        return table.train, table.validation, table.test
    data = prepare_gas(path, rows=rows, seed=seed)
    return data.train, data.validation, data.test


def run(family, params, parts, args, standardize=True, epochs=None):
    train, val, test = parts
    cfg = TrainConfig(
        epochs=epochs or args.epochs,
        batch_size=100,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device="cpu",
        grad_clip=None,
    )
    est = DensityEstimator(family, params, cfg, standardize=standardize)
    start = time.perf_counter()
    est.fit(train, val)
    seconds = time.perf_counter() - start
    ll = est.score_samples(test)
    return ll, seconds, est.fit_result_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="most epochs (mog8, gas)")
    parser.add_argument(
        "--digits-epochs", type=int, default=300, help="most epochs on digits (12 steps each)"
    )
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rows", type=int, default=10_000, help="mog8 training rows")
    parser.add_argument("--gas", type=Path, default=None)
    parser.add_argument("--gas-rows", type=int, default=50_000, help="rows of a raw GAS file")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")

    data = {"mog8": mixture8(args.rows, args.seed), "digits": digits(args.seed)}
    if args.gas is not None:
        data["gas"] = gas(args.gas, args.gas_rows, args.seed)
    cells = {}
    for name in names:
        label, family, continuous, binary = MODELS[name]
        parts, truth = data["mog8"]
        ll, s, res = run(family, continuous, parts, args)
        gap = (truth - ll).mean() / parts[0].shape[1]
        cells[name, "mog8"] = f"{gap:+.3f} ({s:.0f} s, ep {res.best_epoch})"
        if binary is not None:
            ll, s, res = run(
                family, binary, data["digits"], args, standardize=False, epochs=args.digits_epochs
            )
            summary = summarize(-ll, 64)
            cells[name, "digits"] = (
                f"{summary.mean:.2f} ± {summary.error:.2f} ({s:.0f} s, ep {res.best_epoch})"
            )
        else:
            cells[name, "digits"] = "n/a"
        if "gas" in data:
            ll, s, res = run(family, continuous, data["gas"], args, standardize=False)
            summary = summarize(ll, data["gas"][0].shape[1])
            cells[name, "gas"] = (
                f"{summary.mean:.2f} ± {summary.error:.2f} ({s:.0f} s, ep {res.best_epoch})"
            )
        else:
            cells[name, "gas"] = "skipped: pass --gas PATH"
        print(f"  done {label}", flush=True)

    print(
        f"\nDensity table: at most {args.epochs} epochs ({args.digits_epochs} on digits; "
        f"patience {args.patience}), Adam lr "
        f"{args.lr:g}, batch 100, {args.threads} threads, seed {args.seed}; "
        f"mog8 {args.rows:,} training rows" + (f"; gas from {args.gas}" if args.gas else "")
    )
    print("(seconds of training and the best epoch in brackets)")
    heads = (
        "model",
        "mog8 gap to truth (nats/dim)",
        "digits test NLL (nats/image)",
        "gas test LL (nats)",
    )
    widths = (14, 32, 34, 34)
    print("".join(f"{h:<{w}}" for h, w in zip(heads, widths, strict=True)))
    for name in names:
        row = [MODELS[name][0]] + [cells[name, c] for c in ("mog8", "digits", "gas")]
        print("".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
