"""MADE: autoregressive structure, normalisation, fast paths, training, serialisation."""

import io
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError, DataError
from audioar.layers import input_degrees
from audioar.models import MADE, MADEConfig

OUTPUT_KW = {
    "gaussian": {},
    "mog": {"components": 3},
    "bernoulli": {},
    "categorical": {"categories": 3},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second thread only adds synchronisation (and stalls on a busy machine)."""
    torch.set_num_threads(1)


def _data(output, n, features, generator=None):
    if output == "categorical":
        return torch.randint(0, 3, (n, features), generator=generator)
    if output == "bernoulli":
        return torch.randint(0, 2, (n, features), generator=generator).float()
    return torch.randn(n, features, generator=generator)


def _order(order, features, seed):
    if order == "explicit":
        return torch.randperm(features, generator=torch.Generator().manual_seed(seed)).tolist()
    return order


@settings(deadline=None, max_examples=30)
@given(
    features=st.integers(1, 7),
    extra=st.integers(1, 8),
    layers=st.integers(1, 3),
    output=st.sampled_from(["gaussian", "mog", "bernoulli"]),
    order=st.sampled_from(["natural", "reverse", "random", "explicit"]),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 2**16),
)
def test_jacobian_is_autoregressive_and_complete(
    features, extra, layers, output, order, activation, seed
):
    """d out_i / d x_j is zero iff x_j is not before x_i in the order (autograd)."""
    torch.manual_seed(seed)
    hidden = (features + extra,) * layers
    order = _order(order, features, seed)
    made = MADE(
        features,
        hidden,
        output,
        order,
        activation=activation,
        seed=seed,
        **OUTPUT_KW.get(output, {}),
    )
    made.double()
    x = torch.randn(8, features, dtype=torch.float64)
    # Rows are independent, so the Jacobian of the batch sum holds every per-row Jacobian.
    jac = torch.autograd.functional.jacobian(lambda v: made(v).sum(0), x)
    dep = jac.abs().sum(dim=(1, 2)) > 0  # (D out, D in); jac is (D, P, 8, D)
    degrees = input_degrees(features, order, torch.Generator().manual_seed(seed))
    allowed = degrees[:, None] > degrees[None, :]
    assert not (dep & ~allowed).any(), "an output depends on a later input"
    if activation == "tanh":  # relu units may all be off on 8 samples: no completeness claim
        assert torch.equal(dep, allowed), "dead connectivity: an allowed dependency is missing"


@settings(deadline=None, max_examples=15)
@given(
    features=st.integers(1, 5),
    order=st.sampled_from(["natural", "reverse", "random"]),
    seed=st.integers(0, 999),
)
def test_categorical_outputs_only_see_earlier_inputs(features, order, seed):
    """Changing x_j changes exactly the logits of the features after j in the order."""
    torch.manual_seed(seed)
    # tanh: no unit is ever "off" (relu units can be dead on 16 rows and hide a dependency)
    made = MADE(
        features, (features + 4,), "categorical", order, categories=3, activation="tanh", seed=seed
    )
    degrees = input_degrees(features, order, torch.Generator().manual_seed(seed))
    x = torch.randint(0, 3, (16, features))
    base = made(x)
    for j in range(features):
        changed = x.clone()
        changed[:, j] = (changed[:, j] + 1) % 3
        moved = (made(changed) - base).abs().amax(dim=(0, 2)) > 0
        assert torch.equal(moved, degrees > degrees[j])


def test_context_reaches_every_output_including_the_first():
    made = MADE(4, (16, 16), "gaussian", "reverse", context_features=3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    c = torch.randn(5, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: made(x, v), c)
    dep = torch.stack([jac[b, :, :, b] for b in range(5)]).abs().sum(dim=(0, 2, 3))
    assert (dep > 0).all()


@pytest.mark.parametrize(
    "output, features, values",
    [("bernoulli", 3, [0.0, 1.0]), ("categorical", 2, [0, 1, 2])],
)
def test_discrete_log_prob_sums_to_one(output, features, values):
    made = MADE(features, (12,), output, "random", context_features=2, **OUTPUT_KW[output])
    grid = torch.tensor(list(itertools.product(values, repeat=features)))
    context = torch.randn(1, 2).expand(len(grid), 2)
    total = made.log_prob(grid, context).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("output", ["gaussian", "mog"])
def test_continuous_log_prob_integrates_to_one(output):
    torch.manual_seed(1)
    made = MADE(2, (16, 16), output, "reverse", **OUTPUT_KW[output]).double()
    ticks = torch.linspace(-12, 12, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(ticks, ticks)
    step = (ticks[1] - ticks[0]).item()
    total = made.log_prob(grid).exp().sum().item() * step**2
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("output", list(OUTPUT_KW))
@pytest.mark.parametrize("context", [0, 2])
def test_fast_paths_match_reference(output, context):
    torch.manual_seed(0)
    made = MADE(
        9, (20, 20), output, "random", context_features=context, num_blocks=3, **OUTPUT_KW[output]
    )
    x = _data(output, 6, 9)
    c = torch.randn(6, context) if context else None
    fast = made._params_sorted(x, c, fast=True)
    ref = made._params_sorted(x, c, fast=False)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    # Gradients agree too.
    params = list(made.parameters())
    g_fast = torch.autograd.grad(made._params_sorted(x, c, fast=True).square().sum(), params)
    g_ref = torch.autograd.grad(made._params_sorted(x, c, fast=False).square().sum(), params)
    masks = {
        id(w): m
        for layer in made.layers
        for w, m in zip(layer.weight_blocks, layer.block_masks(), strict=True)
    }
    for p, a, b in zip(params, g_fast, g_ref, strict=True):
        mask = masks.get(id(p))
        if mask is not None:  # weight blocks: zero where masked on both paths
            assert (a[~mask] == 0).all() and (b[~mask] == 0).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Incremental sampling draws the same numbers as D full passes.
    cs = torch.randn(4, context) if context else None
    torch.manual_seed(3)
    quick = made.sample(4, cs)
    torch.manual_seed(3)
    slow = made.autoregress(4, lambda k, p: made._draw(p), cs, incremental=False)
    torch.testing.assert_close(quick.to(slow.dtype), slow, rtol=1e-5, atol=1e-5)
    assert quick.shape == (4, 9)
    assert quick.dtype == (torch.long if output == "categorical" else torch.float32)


def test_cached_fast_path_views_follow_the_parameters():
    """The views kept between calls see in-place updates and are remade after .double()."""
    torch.manual_seed(0)
    made = MADE(6, (16, 16), "gaussian", "random", activation="tanh", num_blocks=3)
    x = torch.randn(5, 6)
    with torch.no_grad():
        made(x)  # builds the cached views (evaluation and sampling)
        made.sample(3)
        for layer in made.layers:
            for w in layer.weight_blocks:
                w.mul_(1.5)
            layer.bias.add_(0.25)
        # A copy that never cached anything: its slow path is the truth after the update.
        fresh = MADE(6, (16, 16), "gaussian", "random", activation="tanh", num_blocks=3)
        fresh.load_state_dict(made.state_dict())
        for n in (3, 7):  # and a batch size the cache has not seen
            torch.manual_seed(1)
            quick = made.sample(n)
            torch.manual_seed(1)
            slow = fresh.autoregress(n, lambda k, p: fresh._draw(p), incremental=False)
            torch.testing.assert_close(quick, slow, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            made._params_sorted(x, fast=True), made._params_sorted(x, fast=False)
        )
    made.double()
    xd = x.double()
    with torch.no_grad():
        fast = made._params_sorted(xd, fast=True)
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, made._params_sorted(xd, fast=False))


def test_log_prob_features_sum_to_log_prob():
    made = MADE(5, (16,), "mog", "reverse", components=2)
    x = torch.randn(3, 5)
    per = made.log_prob_features(x)
    assert per.shape == (3, 5)
    torch.testing.assert_close(per.sum(-1), made.log_prob(x))


def test_gaussian_made_fits_a_correlated_gaussian():
    """Trained on samples of N(0, S), the test NLL approaches the entropy."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
    true = torch.distributions.MultivariateNormal(torch.zeros(3), cov)
    train, test = true.sample((4000,)), true.sample((4000,))
    made = MADE(3, (32, 32), "gaussian", "natural", activation="tanh")
    opt = torch.optim.Adam(made.parameters(), lr=1e-2)
    for _ in range(400):
        batch = train[torch.randint(0, 4000, (256,))]
        loss = -made.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll = -made.log_prob(test).mean().item()
    entropy = true.entropy().item()
    assert abs(nll - entropy) / 3 < 0.05
    # Samples reproduce the covariance.
    torch.testing.assert_close(torch.cov(made.sample(4000).T), cov, atol=0.12, rtol=0)


def test_config_state_dict_round_trip(tmp_path):
    cfg = MADEConfig(hidden_features=[16, 16], output="mog", order="random", components=2)
    made = MADE.from_config(cfg, features=6, context_features=2)
    state = made.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.endswith("mask") for k in state)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    clone = MADE.from_config(cfg, features=6, context_features=2)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    x, c = torch.randn(4, 6), torch.randn(4, 2)
    torch.testing.assert_close(clone.log_prob(x, c), made.log_prob(x, c))


def test_errors():
    with pytest.raises(ConfigError):
        MADE(4, output="poisson")
    with pytest.raises(ConfigError):
        MADE(4, output="categorical")
    with pytest.raises(ConfigError):
        MADE(4, activation="swish9")
    made = MADE(4, (8,), context_features=2)
    with pytest.raises(DataError):
        made.log_prob(torch.randn(3, 4))
    with pytest.raises(DataError):
        made.log_prob(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(DataError):
        MADE(4, (8,)).log_prob(torch.randn(3, 4), torch.randn(3, 2))


def test_log_prob_is_in_nats_for_a_fresh_gaussian():
    """With all weights zero the model is N(0, 1) per dimension: check the constant."""
    made = MADE(3, (8,))
    for p in made.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(5, 3)
    expected = (-0.5 * x.square() - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(made.log_prob(x), expected)
