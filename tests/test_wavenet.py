"""WaveNet: causality, receptive field, full == incremental paths, likelihoods, conditioning."""

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError, DataError
from audioar.models import WaveNet, WaveNetConfig
from audioar.models.wavenet import length_mask
from audioar.models.wavenet_outputs import LOG_SCALE_MIN, make_output

TINY = dict(residual_channels=8, skip_channels=12, max_dilation=4)
OUTPUT_KINDS = ["categorical", "gaussian", "logistic_mixture"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny tensors: extra threads only add synchronisation overhead (and noise on busy CPUs).
    torch.set_num_threads(1)


def _model(output="categorical", **kw):
    args = dict(TINY, classes=3, quantization=16, output=output, in_features=2)
    args.update(kw)
    return WaveNet(**args)


def _inputs(model, batch=2, time=30):
    if model.output == "categorical":
        return torch.randint(0, model.quantization, (batch, time))
    return torch.randn(batch, time, model.in_features)


# --------------------------------------------------------------------------- structure
def test_receptive_field_formula():
    assert WaveNet().receptive_field == 2047  # (2 - 1) * 2 * (1 + 2 + ... + 512) + 1
    for k, cycles, top in [(2, 1, 8), (3, 2, 4), (4, 1, 16), (2, 3, 1)]:
        wn = WaveNet(**dict(TINY, kernel_size=k, dilation_cycles=cycles, max_dilation=top))
        assert wn.receptive_field == (k - 1) * cycles * (2 * top - 1) + 1
        assert len(wn.blocks) == cycles * int(math.log2(top) + 1)


@pytest.mark.parametrize(("kernel_size", "cycles", "top"), [(2, 1, 8), (3, 2, 2), (2, 2, 4)])
def test_prediction_depends_on_exactly_receptive_field_past_steps(kernel_size, cycles, top):
    wn = WaveNet(
        classes=0,
        output="gaussian",
        in_features=1,
        residual_channels=6,
        skip_channels=6,
        kernel_size=kernel_size,
        dilation_cycles=cycles,
        max_dilation=top,
    )
    rf, t = wn.receptive_field, wn.receptive_field + 10
    x = torch.randn(1, t + 5, 1, requires_grad=True)
    wn.output_params(x)[0, t].sum().backward()
    touched = torch.nonzero(x.grad[0, :, 0]).flatten().tolist()
    assert touched == list(range(t - rf, t))  # x[t - rf], ..., x[t - 1]: never x[t] itself


@pytest.mark.parametrize("output", OUTPUT_KINDS)
@settings(deadline=None, max_examples=6)
@given(t0=st.integers(0, 29))
def test_causality_changing_step_t_onwards_keeps_earlier_predictions(output, t0):
    torch.manual_seed(0)
    wn = _model(output)
    x = _inputs(wn)
    x2 = x.clone()
    x2[:, t0:] = _inputs(wn)[:, t0:]
    labels = torch.tensor([0, 2])
    p, p2 = wn.output_params(x, labels), wn.output_params(x2, labels)
    torch.testing.assert_close(p[:, : t0 + 1], p2[:, : t0 + 1], rtol=0, atol=0)
    s, s2 = wn.log_prob_steps(x, labels), wn.log_prob_steps(x2, labels)
    torch.testing.assert_close(s[:, :t0], s2[:, :t0], rtol=0, atol=0)


# --------------------------------------------------------------------------- full == incremental
@pytest.mark.parametrize("output", OUTPUT_KINDS)
@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("upsample", ["none", "repeat", "transposed"])
def test_incremental_paths_equal_full_forward(output, kernel_size, upsample):
    local = dict(local_channels=3, hop_length=4, local_upsample=upsample)
    wn = _model(output, kernel_size=kernel_size, **(local if upsample != "none" else {}))
    x = _inputs(wn, time=40)  # longer than the receptive field: every queue wraps around
    assert wn.receptive_field < 40
    labels = torch.tensor([1, 2])
    feats = torch.randn(2, 10, 3) if upsample != "none" else None
    full = wn.output_params(x, labels, local_features=feats)
    for path in ("step", "fast"):
        inc = wn.output_params(x, labels, local_features=feats, path=path)
        torch.testing.assert_close(inc, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("output", OUTPUT_KINDS)
def test_cached_generation_equals_naive_recomputation(output):
    wn = _model(output, local_channels=2, hop_length=5)
    labels = torch.tensor([0, 2])
    feats = torch.randn(2, 8, 2)
    torch.manual_seed(3)
    cached = wn.generate(labels, 36, local_features=feats)
    torch.manual_seed(3)
    naive = wn.generate(labels, 36, local_features=feats, use_cache=False)
    expected = (2, 36) if output == "categorical" else (2, 36, 2)
    assert cached.shape == expected
    torch.testing.assert_close(cached, naive, rtol=1e-4, atol=1e-4)


def test_generation_restores_the_thread_count():
    torch.set_num_threads(2)
    _model().generate(torch.tensor([0]), 3)
    assert torch.get_num_threads() == 2


def test_generate_shapes_temperature_and_unconditional():
    wn = _model()
    codes = wn.generate(torch.tensor([0, 1, 2]), 10)
    assert codes.shape == (3, 10) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < 16
    wn.log_prob(codes, torch.tensor([0, 1, 2])).sum().backward()  # usable as training data
    greedy = [wn.generate(torch.tensor([1]), 12, temperature=0) for _ in range(2)]
    torch.testing.assert_close(greedy[0], greedy[1], rtol=0, atol=0)
    free = _model(classes=0).generate(None, 7, batch=4)
    assert free.shape == (4, 7)
    assert wn.sample(5, context=2, length=6).shape == (5, 6)
    assert _model("gaussian").sample(2, context=torch.tensor([0, 1]), length=4).shape == (2, 4, 2)
    with pytest.raises(DataError):
        wn.generate(torch.tensor([0]), 5, temperature=-1.0)


# --------------------------------------------------------------------------- likelihoods
def test_log_prob_is_sum_of_steps_and_all_classes_matches_loop():
    wn = _model()
    x = _inputs(wn, batch=3)
    labels = torch.tensor([0, 1, 2])
    steps = wn.log_prob_steps(x, labels)
    assert steps.shape == (3, 30) and (steps <= 0).all()
    torch.testing.assert_close(wn.log_prob(x, labels), steps.sum(1))
    lengths = torch.tensor([30, 17, 1])
    every = wn.log_prob_all_classes(x, lengths)
    assert every.shape == (3, 3)
    for c in range(3):
        loop = wn.log_prob(x, torch.full((3,), c), lengths)
        torch.testing.assert_close(every[:, c], loop, rtol=1e-5, atol=1e-4)
    for chunk in (1, 30, 61, 10**6):  # one row a pass, 1 row, 2 rows, everything at once
        chunked = wn.log_prob_all_classes(x, lengths, chunk_steps=chunk)
        torch.testing.assert_close(chunked, every, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("output", OUTPUT_KINDS)
def test_lengths_mask_padding_exactly(output):
    wn = _model(output)
    x = _inputs(wn, batch=2, time=25)
    labels = torch.tensor([2, 0])
    lengths = torch.tensor([25, 11])
    padded = x.clone()
    padded[1, 11:] = -1 if output == "categorical" else float("nan")  # garbage padding
    steps = wn.log_prob_steps(padded, labels, lengths)
    assert torch.isfinite(steps).all()
    assert (steps[1, 11:] == 0).all() and (steps[~length_mask(lengths, 25)] == 0).all()
    short = wn.log_prob(x[1:, :11], labels[1:])
    torch.testing.assert_close(wn.log_prob(padded, labels, lengths)[1], short[0])
    # the generic training loop calls model.log_prob(*batch)
    torch.testing.assert_close(wn.log_prob(*(padded, labels, lengths)), steps.sum(1))
    torch.testing.assert_close(wn.log_prob(x, context=labels), wn.log_prob(x, labels))


def test_first_step_has_a_proper_likelihood_from_the_class_alone():
    wn = _model()
    first = wn.output_params(torch.zeros(3, 1, dtype=torch.long), torch.tensor([0, 1, 2]))[:, 0]
    probs = torch.softmax(first, -1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert not torch.allclose(probs[0], probs[1])  # the class alone moves it


def test_tiny_model_overfits_a_short_sequence():
    torch.manual_seed(0)
    wn = WaveNet(
        classes=2,
        quantization=16,
        residual_channels=16,
        skip_channels=16,
        dilation_cycles=1,
        max_dilation=8,
    )
    pattern = torch.tensor([8, 11, 13, 15, 15, 13, 11, 8, 5, 3, 1, 0, 0, 1, 3, 5])
    x = pattern.repeat(4)[None]  # exactly periodic, period 16 = receptive field
    labels = torch.tensor([1])
    opt = torch.optim.Adam(wn.parameters(), lr=5e-3)
    for _ in range(150):
        loss = -wn.log_prob(x, labels).mean() / x.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    nll = -wn.log_prob(x, labels).item() / x.shape[1]
    assert nll < 0.02, nll  # from log(16) = 2.77 nats per step


def test_conditioning_changes_the_likelihood_and_learns_the_class():
    torch.manual_seed(0)
    wn = WaveNet(
        classes=2,
        quantization=8,
        residual_channels=8,
        skip_channels=8,
        dilation_cycles=1,
        max_dilation=4,
    )
    a = torch.tensor([0, 2, 4, 6, 4, 2] * 5)
    b = torch.tensor([7, 5, 1, 3, 1, 5] * 5)
    x, labels = torch.stack([a, b]), torch.tensor([0, 1])
    before = wn.log_prob_all_classes(x)
    assert not torch.allclose(before[:, 0], before[:, 1])  # labels change the likelihood
    opt = torch.optim.Adam(wn.parameters(), lr=1e-2)
    for _ in range(60):
        loss = -wn.log_prob(x, labels).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = wn.log_prob_all_classes(x)
    assert after.argmax(1).tolist() == [0, 1]
    assert (after[0, 0] - after[0, 1]) > 5 and (after[1, 1] - after[1, 0]) > 5


@pytest.mark.parametrize("upsample", ["repeat", "transposed"])
def test_local_features_are_used_and_stay_causal(upsample):
    wn = _model(classes=0, local_channels=2, hop_length=4, local_upsample=upsample)
    x = _inputs(wn, batch=1, time=24)
    feats = torch.randn(1, 6, 2)
    changed = feats.clone()
    changed[:, 3:] = torch.randn(1, 3, 2)  # frames 3.. cover steps 12..
    p, p2 = wn.output_params(x, local_features=feats), wn.output_params(x, local_features=changed)
    torch.testing.assert_close(p[:, :12], p2[:, :12], rtol=0, atol=0)
    assert not torch.allclose(p[:, 12:], p2[:, 12:])
    with pytest.raises(DataError):
        wn.log_prob(x, local_features=feats[:, :5])  # 5 * 4 < 24 steps


# --------------------------------------------------------------------------- output densities
def test_gaussian_output_matches_torch_normal():
    out = make_output("gaussian", in_features=3)
    params, x = torch.randn(5, 6), torch.randn(5, 3)
    scale = torch.exp(LOG_SCALE_MIN + torch.nn.functional.softplus(params[:, 3:] - LOG_SCALE_MIN))
    expected = torch.distributions.Normal(params[:, :3], scale).log_prob(x).sum(-1)
    torch.testing.assert_close(out.log_prob(params, x), expected)


@pytest.mark.parametrize("output", ["gaussian", "logistic_mixture"])
def test_continuous_outputs_integrate_to_one(output):
    out = make_output(output, in_features=1, components=3)
    params = torch.randn(4, out.size) * torch.tensor(
        [1.0] * (out.size // 2) + [0.3] * (out.size - out.size // 2)
    )
    grid = torch.linspace(-40, 40, 200_001)
    dens = out.log_prob(params[:, None, :], grid[None, :, None]).exp()
    mass = torch.trapezoid(dens, grid, dim=1)
    torch.testing.assert_close(mass, torch.ones(4), rtol=0, atol=1e-3)


def test_safe_log_scale_bounds_the_density():
    out = make_output("logistic_mixture", in_features=2, components=2)
    params = torch.full((1, out.size), -1e4)
    params[:, : 2 + 4] = 0.0  # logits and means
    lp = out.log_prob(params, torch.zeros(1, 2))
    assert torch.isfinite(lp).all() and lp.item() < 2 * (-LOG_SCALE_MIN)


# --------------------------------------------------------------------------- config and errors
def test_config_round_trip_and_validation():
    cfg = WaveNetConfig(residual_channels=8, skip_channels=8, max_dilation=2, output="gaussian")
    wn = WaveNet.from_config(cfg, classes=4, in_features=5)
    assert wn.config == cfg and wn.classes == 4 and wn.conditional
    again = WaveNet.from_config(wn.config, classes=4, in_features=5)
    again.load_state_dict(wn.state_dict())  # same architecture, same parameter shapes
    unconditional = WaveNet.from_config(replace(cfg, conditional=False), classes=4, in_features=5)
    assert unconditional.classes == 0 and not unconditional.conditional
    for bad in [
        dict(max_dilation=6),
        dict(output="laplace"),
        dict(kernel_size=0),
        dict(local_upsample="linear"),
        dict(output="gaussian", in_features=0),
    ]:
        with pytest.raises(ConfigError):
            WaveNet(**dict(TINY, **bad))


def test_bad_inputs_raise_data_errors():
    wn = _model()
    x = _inputs(wn)
    with pytest.raises(DataError):
        wn.log_prob(x)  # labels required
    with pytest.raises(DataError):
        wn.log_prob(x, torch.tensor([0, 3]))  # class out of range
    with pytest.raises(DataError):
        wn.log_prob(x + 100, torch.tensor([0, 1]))  # code out of range
    with pytest.raises(DataError):
        wn.log_prob(x.float(), torch.tensor([0, 1]))
    with pytest.raises(DataError):
        wn.log_prob(x, torch.tensor([0, 1]), torch.tensor([31, 2]))
    with pytest.raises(DataError):
        _model("gaussian").log_prob(torch.randn(2, 5, 3), torch.tensor([0, 1]))
