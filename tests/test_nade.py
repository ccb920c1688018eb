"""NADE / RNADE: the cumulative recurrence, autoregressive structure, normalisation,
sampling, and fitting known densities through audioar.pipeline.train.fit."""

import inspect
import io
import itertools
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from audioar.config.recipes import TrainConfig
from audioar.errors import ConfigError, DataError
from audioar.layers.masks import input_degrees
from audioar.models.contract import DensityModel, InputSpec
from audioar.models.made import soft_clamp
from audioar.models.nade import NADE, NADEConfig
from audioar.pipeline.train import fit

ORDERS = ["natural", "reverse", "random", [2, 0, 4, 1, 3]]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.8)


def naive_steps(model, x):
    """Per-dimension log-likelihoods by an explicit loop: a_d = c + W[:, :d] x_<d from scratch."""
    xs = model.to_generation_order(x)
    out = []
    for d in range(model.features):
        a = model.hidden_bias + xs[:, :d] @ model.weight[:d]
        if model.rho is not None:
            a = a * model.rho[d]
        h = torch.sigmoid(a)
        params = h @ model.out_weight[d].T + model.out_bias[d]
        if model.output == "bernoulli":
            out.append(
                -F.binary_cross_entropy_with_logits(params[:, 0], xs[:, d], reduction="none")
            )
        else:
            k = model.components
            log_w = F.log_softmax(params[:, :k], -1)
            scale = soft_clamp(params[:, 2 * k :], model.log_scale_bound).exp()
            normal = torch.distributions.Normal(params[:, k : 2 * k], scale)
            out.append(torch.logsumexp(log_w + normal.log_prob(xs[:, d : d + 1]), -1))
    return model.from_generation_order(torch.stack(out, 1))


@pytest.mark.parametrize("output, rescale", [("bernoulli", True), ("mog", True), ("mog", False)])
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_cumulative_recurrence_equals_naive_loop(output, rescale, order):
    model = NADE(5, 7, output=output, components=3, order=order, rescale=rescale, seed=1)
    model.double()
    _randomize(model)
    x = torch.randn(11, 5, dtype=torch.float64)
    if output == "bernoulli":
        x = (x > 0).double()
    steps = model.log_prob_steps(x)
    torch.testing.assert_close(steps, naive_steps(model, x))
    torch.testing.assert_close(steps.sum(1), model.log_prob(x))


@pytest.mark.parametrize("output", ["bernoulli", "mog"])
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_autoregressive_by_autograd(output, order):
    """d log p_i / d x_j is zero for j not before i, and non-zero for every j before i."""
    model = NADE(5, 6, output=output, components=2, order=order, seed=9).double()
    _randomize(model)
    x = torch.rand(6, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: model.log_prob_steps(v).sum(0), x)
    dep = jac.abs().sum(1) > 0
    deg = input_degrees(5, order, torch.Generator().manual_seed(9))
    before = deg[None, :] < deg[:, None]
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    assert not (dep & ~before & off_diagonal).any(), "a conditional sees a later dimension"
    assert dep[before].all(), "a conditional ignores an earlier dimension"


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_bernoulli_sums_to_one_over_all_binary_vectors(order):
    model = NADE(5, 9, order=order, seed=2)
    _randomize(model)
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    total = torch.logsumexp(model.log_prob(every).double(), 0).exp()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_bernoulli_samples_follow_the_model():
    model = NADE(3, 5, order=[1, 2, 0])
    _randomize(model)
    torch.manual_seed(3)
    draws = model.sample(40_000)
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    exact = model.log_prob(every).exp().detach()
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    empirical = torch.bincount(codes, minlength=8).float() / len(draws)
    assert (empirical - exact).abs().max() < 0.012


def _mixture_cdf(params, x, model):
    k = model.components
    w = F.softmax(params[..., :k], -1)
    scale = soft_clamp(params[..., 2 * k :], model.log_scale_bound).exp()
    normal = torch.distributions.Normal(params[..., k : 2 * k], scale)
    return (w * normal.cdf(x.unsqueeze(-1))).sum(-1)


def test_mog_samples_follow_the_model_conditionals():
    """The incremental sampler draws from the conditionals the likelihood uses: each
    dimension's conditional CDF at the samples is uniform (probability integral transform)."""
    model = NADE(3, 8, output="mog", components=3, order="reverse")
    _randomize(model)
    torch.manual_seed(5)
    draws = model.sample(5000)
    with torch.no_grad():
        xs = model.to_generation_order(draws)
        u = _mixture_cdf(model.conditionals(model.hidden(xs)), xs, model)  # (n, D)
    grid = torch.linspace(0, 1, 201)
    ecdf = (u.unsqueeze(-1) <= grid).float().mean(0)  # (D, grid)
    assert (ecdf - grid).abs().max() < 0.03  # Kolmogorov-Smirnov distance per dimension


def _two_moons_of_gaussians(n, seed):
    """x_0 ~ 0.4 N(-2, 0.5^2) + 0.6 N(1.5, 0.3^2); x_1 | x_0 ~ N(x_0^2 / 4, 0.4^2)."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.rand(n, generator=g) < 0.4
    x0 = torch.where(
        pick, -2 + 0.5 * torch.randn(n, generator=g), 1.5 + 0.3 * torch.randn(n, generator=g)
    )
    x1 = x0**2 / 4 + 0.4 * torch.randn(n, generator=g)
    first = torch.stack(
        [
            math.log(0.4) + torch.distributions.Normal(-2.0, 0.5).log_prob(x0),
            math.log(0.6) + torch.distributions.Normal(1.5, 0.3).log_prob(x0),
        ]
    )
    log_p = torch.logsumexp(first, 0) + torch.distributions.Normal(x0**2 / 4, 0.4).log_prob(x1)
    return torch.stack([x0, x1], 1), log_p


def test_rnade_fits_a_known_mixture_close_to_its_entropy():
    x, log_p = _two_moons_of_gaussians(6000, 0)
    model = NADE(2, 32, output="mog", components=4)
    cfg = TrainConfig(epochs=30, batch_size=100, lr=0.02, patience=5)
    fit(model, x[:4000], x[4000:5000], cfg)
    with torch.no_grad():
        gap = (log_p[5000:] - model.log_prob(x[5000:])).mean().item()
    assert gap < 0.08  # nats above the truth's NLL on the same test points


def test_nade_learns_a_markov_chain():
    g = torch.Generator().manual_seed(0)
    n, d, flip = 4000, 8, 0.1
    x = torch.empty(n, d)
    x[:, 0] = torch.randint(0, 2, (n,), generator=g).float()
    for j in range(1, d):
        x[:, j] = (x[:, j - 1] + (torch.rand(n, generator=g) < flip).float()) % 2
    changes = (x[:, 1:] != x[:, :-1]).sum(1)
    log_p = -math.log(2) + changes * math.log(flip) + (d - 1 - changes) * math.log1p(-flip)
    model = NADE(8, 16)
    fit(model, x[:2400], x[2400:3000], TrainConfig(epochs=30, batch_size=100, lr=0.03, patience=5))
    with torch.no_grad():
        gap = (log_p[3000:] - model.log_prob(x[3000:])).mean().item()
    assert abs(gap) < 0.06


def test_state_dict_round_trip_weights_only():
    model = NADE(4, 6, output="mog", components=2, order="random", seed=4)
    _randomize(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = NADE(4, 6, output="mog", components=2, order="random", seed=4)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(7, 4)
    torch.testing.assert_close(clone.log_prob(x), model.log_prob(x))


def test_contract_config_defaults_and_from_spec():
    assert isinstance(NADE(2, 3), DensityModel)
    params = inspect.signature(NADE.__init__).parameters
    for name, value in asdict(NADEConfig()).items():
        assert params[name].default == value, name
    model = NADE.from_spec(NADEConfig(hidden_features=20, output="mog"), InputSpec("vector", (6,)))
    assert (model.features, model.hidden_features, model.output) == (6, 20, "mog")
    with pytest.raises(ConfigError):
        NADE.from_spec(NADEConfig(), InputSpec("sequence", (None, 4)))
    with pytest.raises(ConfigError):
        NADE.from_spec(NADEConfig(), InputSpec("vector", (4,), levels=256))
    with pytest.raises(ConfigError):
        NADE.from_spec(NADEConfig(output="mog"), InputSpec("vector", (4,), levels=2))


def test_bad_settings_and_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="output"):
        NADE(3, output="gaussian")
    with pytest.raises(ConfigError, match="hidden_features"):
        NADE(3, 0)
    with pytest.raises(DataError, match=r"\(batch, 3\)"):
        NADE(3, 4).log_prob(torch.zeros(2, 5))
    with pytest.raises(DataError, match="context"):
        NADE(3, 4).sample(2, torch.zeros(2, 1))
