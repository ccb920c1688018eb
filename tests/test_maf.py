"""MAF: invertibility, exact log-determinants, fast paths, a known density, serialisation."""

import io
import math
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError, TrainingError
from audioar.models import MAF, MAFConfig
from audioar.models.maf import BatchNormBijector
from audioar.pipeline.train import optimizer_step


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second thread only adds synchronisation (and stalls on a busy machine)."""
    torch.set_num_threads(1)


def _warm(maf, x, context=None):
    """One training-mode pass so that batch-norm running statistics are not trivial."""
    maf.train()
    with torch.no_grad():
        maf(x, context)
    return maf.eval()


@settings(deadline=None, max_examples=20)
@given(
    features=st.integers(1, 6),
    flows=st.integers(1, 4),
    permutation=st.sampled_from(["reverse", "random", "none"]),
    base=st.sampled_from(["normal", "mog"]),
    context=st.integers(0, 2),
    batch_norm=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_inverse_and_log_det(features, flows, permutation, base, context, batch_norm, seed):
    torch.manual_seed(seed)
    maf = MAF(
        features,
        flows,
        (12, 12),
        "tanh",
        batch_norm,
        permutation,
        context,
        base,
        components=3,
        seed=seed,
    )
    maf.double()
    x = torch.randn(16, features, dtype=torch.float64) * 1.5 + 0.5
    c = torch.randn(16, context, dtype=torch.float64) if context else None
    _warm(maf, x, c)
    z, log_det = maf(x, c)
    # inverse(forward(x)) recovers x, on both inversion paths.
    torch.testing.assert_close(maf.inverse(z, c), x, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(maf.inverse(z, c, incremental=False), x, rtol=1e-7, atol=1e-8)
    # log_det = log|det dz/dx| from autograd, sample by sample.
    for i in range(3):
        ci = None if c is None else c[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v, ci=ci: maf(v[None], ci)[0][0], x[i])
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)


def test_log_det_is_exact_in_training_mode():
    """Training mode normalises with batch statistics; with momentum 1 the running statistics
    become those batch statistics, so the evaluation-mode map *is* the training-mode map."""
    torch.manual_seed(0)
    maf = MAF(4, 3, (16, 16), momentum=1.0).double().train()
    x = torch.randn(64, 4, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.2, 1.0]) + 2.0
    z_train, ld_train = maf(x)
    maf.eval()
    z_eval, ld_eval = maf(x)
    torch.testing.assert_close(z_eval, z_train)
    torch.testing.assert_close(ld_eval, ld_train)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: maf(v[None])[0][0], x[i])
        assert ld_train[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)
    # Batch-normalised output of the last bijector has zero mean, unit variance per feature.
    bn = BatchNormBijector(4).double().train()
    y, _ = bn(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(
        y.var(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-3, rtol=0
    )


@pytest.mark.parametrize("base", ["normal", "mog"])
def test_one_dimensional_density_integrates_to_one(base):
    torch.manual_seed(0)
    maf = MAF(1, 3, (8, 8), base=base, components=3).double()
    _warm(maf, torch.randn(32, 1, dtype=torch.float64) * 2)
    grid = torch.linspace(-40, 40, 40001, dtype=torch.float64)[:, None]
    total = maf.log_prob(grid).exp().sum().item() * (grid[1, 0] - grid[0, 0]).item()
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("context", "permutation", "batch_norm", "degrees"),
    [
        (0, "random", True, "equal"),
        (3, "random", True, "equal"),
        (0, "reverse", True, "equal"),
        (2, "reverse", False, "equal"),
        (2, "reverse", True, "random"),
    ],
)
def test_fast_paths_match_reference(context, permutation, batch_norm, degrees):
    """The fast path (all flows as one node; with equal hidden degrees every MADE has the same
    masks, the weight blocks of all flows are stacked and their gradients computed together)
    against the reference."""
    torch.manual_seed(0)
    maf = MAF(
        11,
        3,
        (24, 24),
        context_features=context,
        permutation=permutation,
        batch_norm=batch_norm,
        hidden_degrees=degrees,
        num_blocks=3,
    )
    assert maf._fast.shared == (degrees == "equal")
    x = torch.randn(32, 11)
    c = torch.randn(32, context) if context else None
    outs = {}
    state = {k: v.clone() for k, v in maf.state_dict().items()}
    for fast in (True, False):
        maf.load_state_dict(state)
        maf.block_sparse = fast
        maf.zero_grad()
        maf.train()
        lp = maf.log_prob(x, c)
        (-lp.mean()).backward()
        grads = [p.grad.clone() for p in maf.parameters()]
        buffers = [b.clone() for b in maf.buffers()]  # running statistics after one batch
        maf.eval()
        xe = x.clone().requires_grad_()
        ce = c.clone().requires_grad_() if context else None
        lp_eval = maf.log_prob(xe, ce)
        grad_x = torch.autograd.grad(lp_eval.sum(), [xe, ce] if context else [xe])
        with torch.no_grad():  # the no-autograd evaluation path gives the same numbers
            torch.testing.assert_close(maf.log_prob(x, c), lp_eval.detach())
        outs[fast] = (lp.detach(), grads, lp_eval.detach(), buffers, grad_x)
    fast, ref = outs[True], outs[False]
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fast[2], ref[2], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fast[3], ref[3], rtol=1e-5, atol=1e-6)
    for a, b in zip(fast[4], ref[4], strict=True):  # gradients of the data and the context
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (maf._fast.stacks is not None) == (degrees == "equal")  # weight blocks stacked
    masks = {  # a block's mask, by its own parameter or by the stack it borrows a row of
        id(w if w._base is None else w._base): m
        for made in maf.mades
        for layer in made.layers
        for w, m in zip(layer.stored_weights(), layer.block_masks(), strict=True)
    }
    for p, a, b in zip(maf.parameters(), fast[1], ref[1], strict=True):
        mask = masks.get(id(p))
        if mask is not None:
            assert (a.masked_fill(mask, 0) == 0).all()
            a, b = a * mask, b * mask
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    cs = torch.randn(5, context) if context else None
    torch.manual_seed(1)
    quick = maf.sample(5, cs)
    torch.manual_seed(1)
    z = torch.randn(5, 11)
    torch.testing.assert_close(quick, maf.inverse(z, cs, incremental=False), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_evaluation_matches_reference(activation):
    """Evaluation without autograd folds batch norm into each flow's affine map and a tanh
    into the next layer's product: the same numbers as the reference, at any batch size."""
    torch.manual_seed(0)
    maf = MAF(13, 3, (40, 40), activation, context_features=2, num_blocks=3)
    _warm(maf, torch.randn(64, 13), torch.randn(64, 2))
    for n in (1, 7, 300):
        x, c = torch.randn(n, 13) * 2, torch.randn(n, 2)
        with torch.no_grad():
            fast = maf.log_prob(x, c)
            maf.block_sparse = False
            ref = maf.log_prob(x, c)
            maf.block_sparse = True
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_fast_path_with_dropout_matches_reference(batch_norm):
    """Dropout on the MADEs' hidden units: the fast path draws its masks like F.dropout, so
    from the same seed both paths give the same numbers and gradients."""
    torch.manual_seed(0)
    maf = MAF(9, 3, (20, 20), batch_norm=batch_norm, dropout=0.3).train()
    x = torch.randn(16, 9)
    state = {k: v.clone() for k, v in maf.state_dict().items()}
    outs = {}
    for fast in (True, False):
        maf.load_state_dict(state)
        maf.block_sparse = fast
        maf.zero_grad()
        torch.manual_seed(1)
        lp = maf.log_prob(x)
        (-lp.mean()).backward()
        outs[fast] = (lp.detach(), [p.grad.clone() for p in maf.parameters()])
    torch.testing.assert_close(outs[True][0], outs[False][0], rtol=1e-5, atol=1e-4)
    for a, b in zip(outs[True][1], outs[False][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    maf.block_sparse = True
    torch.manual_seed(2)
    other = maf.log_prob(x)  # other draws, other numbers: dropout is in use
    assert not torch.allclose(other, outs[True][0].detach())


def test_fits_a_banana_close_to_its_entropy():
    """x1 ~ N(0, 1), x2 | x1 ~ N(x1^2 / 2, 0.5^2): entropy known in closed form."""
    torch.manual_seed(0)

    def banana(n):
        x1 = torch.randn(n)
        return torch.stack([x1, 0.5 * x1**2 + 0.5 * torch.randn(n)], dim=1)

    entropy = 0.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(2 * math.pi * math.e * 0.25)
    train, test = banana(5000), banana(5000)
    maf = MAF(2, 3, (32, 32))
    opt = torch.optim.Adam(maf.parameters(), lr=5e-3)
    for _ in range(300):
        loss = -maf.log_prob(train[torch.randint(0, 5000, (256,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    maf.eval()
    with torch.no_grad():
        nll = -maf.log_prob(test).mean().item()
    assert (nll - entropy) / 2 < 0.05, (nll, entropy)  # the 0.05 nats/dim
    assert (nll - entropy) / 2 > -0.05  # a held-out NLL cannot beat the entropy by much
    samples = maf.sample(2000)
    assert abs(samples[:, 1].mean().item() - 0.5) < 0.15


def test_conditional_maf_prefers_the_right_class():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (2000,))
    x = torch.randn(2000, 3) * 0.5 + torch.where(labels[:, None] == 1, 2.0, -2.0)
    onehot = torch.nn.functional.one_hot(labels, 2).float()
    maf = MAF(3, 2, (16, 16), context_features=2)
    opt = torch.optim.Adam(maf.parameters(), lr=1e-2)
    for _ in range(150):
        idx = torch.randint(0, 2000, (200,))
        loss = -maf.log_prob(x[idx], onehot[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    maf.eval()
    with torch.no_grad():
        right = maf.log_prob(x, onehot)
        wrong = maf.log_prob(x, 1 - onehot)
        assert (right > wrong).float().mean() > 0.99
        sample = maf.sample(500, torch.tensor([[0.0, 1.0]]))
    assert sample.shape == (500, 3)
    assert sample.mean().item() > 1.0


def test_config_and_weights_only_round_trip():
    cfg = MAFConfig(num_flows=2, hidden_features=[16, 16], base="mog", components=2)
    maf = MAF.from_config(cfg, features=5)
    _warm(maf, torch.randn(40, 5) * 3)
    state = maf.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    buffers = dict(maf.named_buffers())
    assert "norms.0.running_mean" in buffers and "norms.0.running_var" in buffers
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    clone = MAF.from_config(cfg, features=5)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    clone.eval()
    x = torch.randn(6, 5)
    torch.testing.assert_close(clone.log_prob(x), maf.log_prob(x))


def test_errors():
    with pytest.raises(ConfigError):
        MAF(4, permutation="shuffle")
    with pytest.raises(ConfigError):
        MAF(4, base="student")
    with pytest.raises(ConfigError):
        MAF(4, num_flows=0)
    with pytest.raises(TrainingError):
        MAF(4, 1, (8,)).train().log_prob(torch.randn(1, 4))


def test_state_dict_holds_dense_weights_and_round_trips():
    """Saved models keep the dense ``weight`` keys (stored blocks are an in-memory layout)."""
    torch.manual_seed(0)
    maf = MAF(5, num_flows=2, hidden_features=(8, 8))
    state = maf.state_dict()
    assert state["mades.0.layers.0.weight"].shape == (8, 5)
    assert not any("weight_blocks" in key for key in state)
    other = MAF(5, num_flows=2, hidden_features=(8, 8)).eval()  # other initial weights
    maf.eval()
    x = torch.randn(6, 5)
    assert not torch.allclose(other.log_prob(x), maf.log_prob(x))
    other.load_state_dict(state)
    torch.testing.assert_close(other.log_prob(x), maf.log_prob(x))


def test_flows_keep_their_weight_blocks_stacked():
    """With shared masks the flows' weight blocks are stacked, one tensor per layer block; each
    flow still reads, saves, loads and differentiates its own rows."""
    torch.manual_seed(0)
    maf = MAF(6, num_flows=3, hidden_features=(12, 12), num_blocks=2)
    stacks = [w for layer in maf._fast.stacks for w in layer]
    assert len(stacks) == 3 * 2 and all(w.shape[0] == 3 for w in stacks)  # 3 layers, 2 blocks
    assert len(list(maf.parameters())) == len(stacks) + 3 * 3 + 3 * 2  # + biases, norms
    assert [name for name, _ in maf.mades[1].named_parameters()] == [
        f"layers.{i}.bias" for i in range(3)
    ]
    row = maf.mades[1].layers[2].stored_weights()[1]
    assert row.data_ptr() == stacks[5][1].data_ptr()
    # The state dict is the per-flow one, and loads into a MAF that does not stack.
    state = maf.state_dict()
    unstacked = MAF(6, num_flows=3, hidden_features=(12, 12), hidden_degrees="random")
    assert unstacked._fast.stacks is None
    assert sorted(state) == sorted(unstacked.state_dict())
    assert not any("stacks" in key or "weight_blocks" in key for key in state)
    other = MAF(6, num_flows=3, hidden_features=(12, 12), num_blocks=2, seed=5)
    bad = dict(state, **{"mades.1.layers.0.weight": torch.zeros(12, 5)})
    with pytest.raises(RuntimeError, match="mades.1.layers.0.weight"):
        other.load_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "mades.2.layers.1.weight"}
    with pytest.raises(RuntimeError, match="mades.2.layers.1.weight"):
        other.load_state_dict(missing)
    x = torch.randn(16, 6)
    other.load_state_dict(state)
    maf.eval(), other.eval()
    torch.testing.assert_close(other.log_prob(x), maf.log_prob(x))
    with torch.no_grad():
        other.mades[2].layers[0].stored_weights()[1].add_(1.0)  # a row: writes reach the stack
    assert not torch.allclose(other.log_prob(x), maf.log_prob(x))
    copy = __import__("copy").deepcopy(maf)  # independent stacks, rows read from them
    with torch.no_grad():
        copy._fast.stacks[0][0].add_(0.5)
    assert torch.equal(copy.mades[0].layers[0].stored_weights()[0], stacks[0][0] + 0.5)
    # Reference path: the rows of one stack come from one unbind that later passes reuse
    # while the stack is unchanged; two passes without a step accumulate twice the gradient.
    maf.train().block_sparse = False
    (-maf.log_prob(x).mean()).backward()
    once = [p.grad.clone() for p in maf.parameters()]
    (-maf.log_prob(x).mean()).backward()
    for p, g in zip(maf.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)
    maf.zero_grad()
    maf.block_sparse = True
    (-maf.log_prob(x).mean()).backward()
    for p, g in zip(maf.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    maf.double()  # new storage: rows and views are taken again
    maf.block_sparse = False
    ref = maf.log_prob(x.double())
    maf.block_sparse = True
    torch.testing.assert_close(maf.log_prob(x.double()), ref)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_evaluation_without_autograd_follows_changes(batch_norm):
    """Evaluation without autograd folds each batch norm into its flow's affine map and keeps
    the folded columns between calls: they must follow every parameter and statistic change."""
    torch.manual_seed(0)
    maf = MAF(7, num_flows=3, hidden_features=(16, 16), batch_norm=batch_norm)
    x = torch.randn(20, 7)
    maf.train()
    maf.log_prob(x)  # running statistics move off their initial values

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        maf.eval()
        with torch.no_grad():
            fast = maf.log_prob(x)
            maf.block_sparse = False
            ref = maf.log_prob(x)
            maf.block_sparse = True
        return fast, ref

    first = both()
    torch.testing.assert_close(*first, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        maf.mades[1].layers[2].bias.add_(0.2)
        if batch_norm:
            maf.norms[1].beta.add_(0.3)
            maf.norms[2].log_gamma.sub_(0.1)
    second = both()
    torch.testing.assert_close(*second, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(first[0], second[0])
    if batch_norm:
        maf.train()
        maf.log_prob(x * 2.0)  # new running statistics only
        third = both()
        torch.testing.assert_close(*third, rtol=1e-5, atol=1e-4)
        assert not torch.allclose(second[0], third[0])


def test_pooled_buffers_never_overwrite_what_is_still_held():
    """The fast path hands its large buffers back to a pool after use and reuses them: the
    gradients a caller keeps, accumulated gradients and the saved inputs of a graph not yet
    run backward (or kept for a second backward) must keep their values."""
    torch.manual_seed(0)
    maf = MAF(6, num_flows=3, hidden_features=(12, 12))
    fresh = MAF(6, num_flows=3, hidden_features=(12, 12), block_sparse=False)  # reference
    fresh.load_state_dict(maf.state_dict())
    xs = [torch.randn(16, 6) for _ in range(4)]

    def grads(model: MAF, x: torch.Tensor, keep: bool = False) -> list[torch.Tensor]:
        if not keep:
            model.zero_grad(set_to_none=True)
        (-model.log_prob(x).mean()).backward()
        return [p.grad for p in model.parameters()]

    def reference(x: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in grads(fresh, x)]

    def close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    held = grads(maf, xs[0])  # held by the caller, not cloned
    values = [g.clone() for g in held]
    for x in xs[1:]:
        close(grads(maf, x), reference(x))
    for g, v in zip(held, values, strict=True):
        assert torch.equal(g, v)
    # Accumulation: the first step's gradients stay the parameters' and take the sums.
    maf.zero_grad(set_to_none=True)
    grads(maf, xs[0], keep=True)
    total = grads(maf, xs[1], keep=True)
    close(total, [a + b for a, b in zip(reference(xs[0]), reference(xs[1]), strict=True)])
    # Graphs alive at once (one of them run backward twice): each keeps its own inputs.
    maf.zero_grad(set_to_none=True)
    first = -maf.log_prob(xs[2]).mean()
    second = -maf.log_prob(xs[3]).mean()
    first.backward(retain_graph=True)
    third = -maf.log_prob(xs[0]).mean()
    (first + second + third).backward()
    sums = [
        2 * a + b + c
        for a, b, c in zip(reference(xs[2]), reference(xs[3]), reference(xs[0]), strict=True)
    ]
    close([p.grad for p in maf.parameters()], sums)
    # Nothing held between calls: one buffer of each kind serves them all.
    reused = MAF(6, num_flows=3, hidden_features=(12, 12))
    for x in xs:
        grads(reused, x)
    reused.eval()
    with torch.no_grad():
        for x in xs:
            reused.log_prob(x)
    kinds = sorted(buffer.key[0] for buffer in reused._fast._pool._free)
    assert kinds == ["eval", "grads", "inputs"], kinds


def test_threads_evaluating_one_model_keep_their_own_buffers():
    """Evaluation and incremental sampling write into buffers kept between calls; threads
    scoring or sampling with one model at once (a scoring service) must not write into
    each other's."""
    torch.manual_seed(0)
    maf = MAF(16, num_flows=4, hidden_features=(64, 64)).eval()
    batches = [torch.randn(32, 16) for _ in range(8)]
    with torch.no_grad():
        expected = [maf.log_prob(x) for x in batches]
        drawn = [maf.inverse(z) for z in batches]
    failures: list[str] = []

    def score(offset: int) -> None:
        with torch.no_grad():
            for r in range(30):
                i = (offset + r) % len(batches)
                if not torch.allclose(maf.log_prob(batches[i]), expected[i], atol=1e-4):
                    failures.append(f"log_prob: thread {offset}, batch {i}")
                if r % 6 == 0 and not torch.allclose(maf.inverse(batches[i]), drawn[i]):
                    failures.append(f"inverse: thread {offset}, batch {i}")

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def test_caches_follow_fused_optimiser_steps():
    """Fused optimisers write parameters without bumping their version counters, on which
    the evaluation and sampling caches are keyed; audioar.pipeline.train.optimizer_step bumps them
    (with a bare ``opt.step()`` this test fails: the caches serve the old weights)."""
    torch.manual_seed(0)
    maf = MAF(6, num_flows=3, hidden_features=(16, 16))
    opt = torch.optim.Adam(maf.parameters(), lr=1e-2, fused=True)
    x = torch.randn(64, 6)

    def fast_and_reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        maf.eval()
        with torch.no_grad():
            fast = maf.log_prob(x)
            torch.manual_seed(3)
            drawn = maf.sample(4)
            maf.block_sparse = False
            ref = maf.log_prob(x)
            maf.block_sparse = True
            torch.manual_seed(3)
            z = torch.randn(4, 6)
            drawn_ref = maf.inverse(z, incremental=False)
        maf.train()
        return fast, ref, drawn, drawn_ref

    fast_and_reference()  # fills the caches
    versions = [p._version for p in maf.parameters()]
    for _ in range(20):
        loss = -maf.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        optimizer_step(opt)
    assert all(p._version > v for p, v in zip(maf.parameters(), versions, strict=True))
    fast, ref, drawn, drawn_ref = fast_and_reference()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(drawn, drawn_ref, rtol=1e-4, atol=1e-4)
