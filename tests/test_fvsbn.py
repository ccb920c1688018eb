"""FVSBN: autoregressive structure, normalisation, sampling, fitting a known density."""

import inspect
import io
import itertools
import math
from dataclasses import asdict

import pytest
import torch

from audioar.config.recipes import TrainConfig
from audioar.errors import ConfigError, DataError
from audioar.layers.masks import input_degrees
from audioar.models.contract import DensityModel, InputSpec
from audioar.models.fvsbn import FVSBN, FVSBNConfig
from audioar.pipeline.train import fit

ORDERS = ["natural", "reverse", "random", [2, 0, 4, 1, 3]]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _randomize(model):
    """Non-trivial weights everywhere the mask allows (biases too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
        model.linear.apply_mask_()


def markov_bits(n, features, flip=0.1, seed=0):
    """Binary Markov chain: x_0 ~ Bern(1/2), x_d = x_{d-1} flipped with prob ``flip``.

    Returns the rows and their exact log-likelihoods under the chain.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, features)
    x[:, 0] = torch.randint(0, 2, (n,), generator=g).float()
    for d in range(1, features):
        flips = (torch.rand(n, generator=g) < flip).float()
        x[:, d] = (x[:, d - 1] + flips) % 2
    changes = (x[:, 1:] != x[:, :-1]).sum(1)
    log_p = -math.log(2) + changes * math.log(flip) + (features - 1 - changes) * math.log1p(-flip)
    return x, log_p


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_autoregressive_by_autograd(output, order):
    """d log p_i / d x_j is zero for j not before i, and non-zero for every j before i."""
    model = FVSBN(5, output=output, order=order, seed=7).double()
    _randomize(model)
    x = torch.rand(6, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: model.log_prob_steps(v).sum(0), x)
    dep = jac.abs().sum(1) > 0  # (out dim i, in dim j)
    deg = input_degrees(5, order, torch.Generator().manual_seed(7))
    before = deg[None, :] < deg[:, None]
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    assert not (dep & ~before & off_diagonal).any(), "a conditional sees a later dimension"
    assert dep[before].all(), "a conditional ignores an earlier dimension"


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_bernoulli_sums_to_one_over_all_binary_vectors(order):
    model = FVSBN(5, order=order, seed=3)
    _randomize(model)
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    total = torch.logsumexp(model.log_prob(every).double(), 0).exp()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_steps_sum_to_log_prob_in_original_order(output):
    model = FVSBN(4, output=output, order=[3, 1, 0, 2])
    _randomize(model)
    x = torch.randint(0, 2, (9, 4)).float()
    steps = model.log_prob_steps(x)
    assert steps.shape == (9, 4)
    torch.testing.assert_close(steps.sum(1), model.log_prob(x))
    # x_3 is generated first: its conditional is the marginal sigmoid(b_0) / N(b_0, s_0).
    first = model.linear.bias[0]
    if output == "bernoulli":
        expected = -torch.nn.functional.binary_cross_entropy_with_logits(
            first.expand(9), x[:, 3], reduction="none"
        )
    else:
        s = model.log_scale[0]
        expected = -0.5 * (((x[:, 3] - first) / s.exp()) ** 2 + math.log(2 * math.pi)) - s
    torch.testing.assert_close(steps[:, 3], expected)


def test_bernoulli_samples_follow_the_model():
    model = FVSBN(3, order="reverse")
    _randomize(model)
    torch.manual_seed(1)
    draws = model.sample(40_000)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    exact = model.log_prob(every).exp().detach()
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    empirical = torch.bincount(codes, minlength=8).float() / len(draws)
    assert (empirical - exact).abs().max() < 0.012


def test_gaussian_fvsbn_fits_a_correlated_gaussian_to_its_entropy():
    """Through audioar.pipeline.train.fit: test NLL within a few hundredths of a nat of the
    truth."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.4, 0.3]])
    truth = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0, 0.5]), a @ a.T)
    x = truth.mean + torch.randn(4000, 3, generator=g) @ a.T
    train, val, test = x[:3000], x[3000:3500], x[3500:]
    model = FVSBN(3, output="gaussian", order="random", seed=2)
    result = fit(model, train, val, TrainConfig(epochs=40, batch_size=100, lr=0.03, patience=5))
    assert result.best_epoch >= 1
    with torch.no_grad():
        nll = -model.log_prob(test).mean().item()
        true_nll = -truth.log_prob(test).mean().item()
    assert nll - true_nll < 0.03
    # The fitted model's samples have the data's covariance.
    torch.manual_seed(0)
    cov = torch.cov(model.sample(20_000).T)
    torch.testing.assert_close(cov, a @ a.T, atol=0.05, rtol=0.05)


def test_bernoulli_fvsbn_learns_a_markov_chain():
    x, log_p = markov_bits(4000, 8)
    model = FVSBN(8)
    fit(model, x[:2400], x[2400:3000], TrainConfig(epochs=30, batch_size=100, lr=0.05, patience=5))
    with torch.no_grad():
        gap = (log_p[3000:] - model.log_prob(x[3000:])).mean().item()
    assert abs(gap) < 0.05  # a first-order chain is exactly a logistic regression on x_{d-1}


def test_state_dict_round_trip_weights_only():
    model = FVSBN(5, output="gaussian", order="random", seed=4)
    _randomize(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = FVSBN(5, output="gaussian", order="random", seed=4)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(7, 5)
    torch.testing.assert_close(clone.log_prob(x), model.log_prob(x))


def test_contract_config_defaults_and_from_spec():
    assert isinstance(FVSBN(2), DensityModel)
    params = inspect.signature(FVSBN.__init__).parameters
    for name, value in asdict(FVSBNConfig()).items():
        assert params[name].default == value, name
    model = FVSBN.from_spec(FVSBNConfig(output="gaussian"), InputSpec("vector", (6,)))
    assert (model.features, model.output) == (6, "gaussian")
    assert FVSBN.from_spec(FVSBNConfig(), InputSpec("vector", (6,), levels=2)).features == 6


@pytest.mark.parametrize(
    "spec, cfg",
    [
        (InputSpec("image", (1, 4, 4)), FVSBNConfig()),
        (InputSpec("vector", (4,), levels=256), FVSBNConfig()),
        (InputSpec("vector", (4,), levels=2), FVSBNConfig(output="gaussian")),
    ],
)
def test_from_spec_refuses_data_it_cannot_model(spec, cfg):
    with pytest.raises(ConfigError):
        FVSBN.from_spec(cfg, spec)


def test_bad_settings_and_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="output"):
        FVSBN(3, output="mog")
    with pytest.raises(ConfigError, match="order"):
        FVSBN(3, order="sideways")
    with pytest.raises(DataError, match=r"\(batch, 3\)"):
        FVSBN(3).log_prob(torch.zeros(2, 4))
    with pytest.raises(DataError, match="context"):
        FVSBN(3).log_prob(torch.zeros(2, 3), torch.zeros(2, 1))
