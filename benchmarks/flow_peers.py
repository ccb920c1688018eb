"""What the MAF speed benchmarks share: the peer libraries' MAFs and the timed training loop.

``peer(name, features, flows, hidden, device)`` builds zuko's or nflows' MAF of the same
architecture as audioar's (2 tanh hidden layers, order reversed between flows; nflows with
batch norm between flows, zuko as shipped, without). ``log_prob`` and ``time_train`` take
any of the three by name.
"""

from __future__ import annotations

import time

import torch

from audioar.pipeline.train import optimizer_step


def peer(name, features, flows, hidden, device):
    """zuko's (``name == "zuko"``) or nflows' MAF, seeded like audioar's."""
    torch.manual_seed(0)
    if name == "zuko":
        import zuko

        return zuko.flows.MAF(
            features, 0, transforms=flows, hidden_features=hidden, activation=torch.nn.Tanh
        ).to(device)
    from nflows.flows.autoregressive import MaskedAutoregressiveFlow

    # num_blocks_per_layer=1: nflows' MADE = initial layer + 1 block + output = 2 hidden layers.
    return MaskedAutoregressiveFlow(
        features,
        hidden[0],
        flows,
        num_blocks_per_layer=1,
        use_residual_blocks=False,
        batch_norm_between_layers=True,
        activation=torch.tanh,
    ).to(device)


def log_prob(name, model, x):
    return model().log_prob(x) if name == "zuko" else model.log_prob(x)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train(name, model, opt, data, steps, device, batch, amp=False):
    """Training samples per second over ``steps`` steps of ``batch`` rows of ``data``."""
    model.train()
    start = time.perf_counter()
    for i in range(steps):
        x = data[(i % (len(data) // batch)) * batch :][:batch]
        with torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
            loss = -log_prob(name, model, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt)
    sync(device)
    return steps * batch / (time.perf_counter() - start)
