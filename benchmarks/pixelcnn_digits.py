"""Test NLL of autoregressive image models on scikit-learn's 8 x 8 digits (offline).

Data: ``sklearn.datasets.load_digits`` (1,797 images of 8 x 8 pixels, values 0..16), one
fixed seeded split into 1,000 training, 297 validation and 500 test images, in two
versions: binarised (pixel >= 8) and the 17 raw levels.

Models (each trained by ``audioar.pipeline.train.fit``: Adam, early stopping on the validation NLL,
best weights restored): the plain masked-convolution PixelCNN and the gated PixelCNN (same
channels, layers and kernel; Bernoulli / categorical output), the gated one again with
dropout (``--dropout``: 1,000 images overfit it within ~15 epochs), MADE (Bernoulli /
categorical over 17), and NADE and FVSBN (binary only) when their modules import. The last
row is the class-conditional gated PixelCNN, ``-log p(x | digit)``: it is told the label,
so it is not comparable with the rest. Prints one table of test NLL in nats per image
(lower is better; the uniform baseline is ``64 log 2`` = 44.4 and ``64 log 17`` = 181.3)
with the fit time and best epoch of each model.

Usage:
    python benchmarks/pixelcnn_digits.py [--epochs 60] [--patience 10] [--hidden 32]
        [--layers 5] [--kernel 3] [--dropout 0.3] [--made-hidden 256] [--nade-hidden 128]
        [--threads 2] [--seed 0] [--skip-levels]
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stall shared CPUs

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from audioar.config.recipes import TrainConfig  # noqa: E402
from audioar.models import MADE  # noqa: E402
from audioar.models.pixelcnn import PixelCNN  # noqa: E402
from audioar.pipeline.batches import log_likelihoods  # noqa: E402
from audioar.pipeline.train import fit  # noqa: E402

SPLIT = (1000, 297, 500)


def digits(seed):
    """(images long (n, 1, 8, 8) in 0..16, labels (n,)) split into train/val/test."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.long).unsqueeze(1)
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for size in SPLIT:
        ids = order[start : start + size]
        parts.append((images[ids], labels[ids]))
        start += size
    return parts


def optional(module, name):
    """The class ``name`` of ``audioar.models.<module>``, or the reason it is missing."""
    try:
        return getattr(importlib.import_module(f"audioar.models.{module}"), name), ""
    except (ImportError, AttributeError) as error:
        return None, f"{name} skipped: {error}"


MODELS = (
    "FVSBN",
    "NADE",
    "MADE",
    "plain PixelCNN",
    "gated PixelCNN",
    "gated PixelCNN + dropout",
    "gated PixelCNN + dropout | digit",
)


def build(name, levels, args, classes):
    """The untrained model ``name`` for pixels of ``levels`` values, or why there is none."""
    output = "bernoulli" if levels == 2 else "categorical"
    if name in ("FVSBN", "NADE"):
        cls, note = classes[name]
        if cls is None:
            return "     skipped"
        if levels != 2:
            return "     n/a (binary only)"
        return cls(64, output="bernoulli") if name == "FVSBN" else cls(64, args.nade_hidden)
    if name == "MADE":
        return MADE(64, (args.made_hidden,) * 2, output=output, categories=levels * (levels > 2))
    return PixelCNN(
        1,
        classes=10 if "digit" in name else 0,
        hidden_channels=args.hidden,
        num_layers=args.layers,
        kernel_size=args.kernel,
        output=output,
        levels=levels,
        gated=name.startswith("gated"),
        dropout=args.dropout if "dropout" in name else 0.0,
    )


def run(model, train, val, test, config):
    """Fit ``model`` on the datasets (tuples of tensors); test NLL (nats) and seconds."""
    start = time.perf_counter()
    result = fit(model, train, val, config)
    seconds = time.perf_counter() - start
    nll = -float(log_likelihoods(model, test, batch_size=500).mean())
    return nll, seconds, result.best_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--made-hidden", type=int, default=256)
    parser.add_argument("--nade-hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-levels", action="store_true", help="binary data only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch,
        lr=args.lr,
        device="cpu",
        seed=args.seed,
        log_every=10**6,
    )
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = digits(args.seed)
    classes = {
        name: optional(module, name) for module, name in (("fvsbn", "FVSBN"), ("nade", "NADE"))
    }
    notes = [note for _, note in classes.values() if note]
    versions = {"binary": 2} if args.skip_levels else {"binary": 2, "17 levels": 17}
    rows: dict[str, dict[str, str]] = {"uniform": {}}
    for version, levels in versions.items():
        rows["uniform"][version] = f"{64 * math.log(levels):8.2f}"
        if levels == 2:
            images = [(x >= 8).float() for x in (x_tr, x_va, x_te)]
        else:
            images = [x_tr, x_va, x_te]
        for name in MODELS:
            torch.manual_seed(args.seed)
            model = build(name, levels, args, classes)
            if isinstance(model, str):
                rows.setdefault(name, {})[version] = model
                continue
            if "PixelCNN" not in name:  # vector models: 64 features
                data = [(x.flatten(1).to(images[0].dtype),) for x in images]
            elif model.conditional:
                data = list(zip(images, (y_tr, y_va, y_te), strict=True))
            else:
                data = [(x,) for x in images]
            nll, seconds, epoch = run(model, *data, config)
            rows.setdefault(name, {})[version] = f"{nll:8.2f} ({seconds:5.0f} s, ep {epoch})"

    print(
        f"8 x 8 digits, split {SPLIT[0]}/{SPLIT[1]}/{SPLIT[2]}; test NLL in nats per image "
        f"(fit seconds, best epoch); epochs<={args.epochs}, patience {args.patience}, "
        f"batch {args.batch}, lr {args.lr:g}; PixelCNNs {args.hidden} channels x "
        f"{args.layers} layers, kernel {args.kernel} (dropout {args.dropout:g}); "
        f"MADE 2 x {args.made_hidden}; NADE {args.nade_hidden} hidden"
    )
    header = f"{'model':<32}" + "".join(f"{v:>28}" for v in versions)
    print(header)
    print("-" * len(header))
    for name, cells in rows.items():
        print(f"{name:<32}" + "".join(f"{cells.get(v, ''):>28}" for v in versions))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
