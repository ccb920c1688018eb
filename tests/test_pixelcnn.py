"""PixelCNN: receptive field and blind spot, causality, normalisation, cached == naive
generation, training through train.fit, conditioning, errors, state dict."""

import inspect
import io
import itertools
import math
from dataclasses import asdict

import pytest
import torch

from audioar.config.recipes import TrainConfig
from audioar.errors import ConfigError, DataError
from audioar.models.contract import DensityModel, InputSpec
from audioar.models.pixelcnn import PixelCNN, PixelCNNConfig, resolve_output
from audioar.models.pixelcnn_outputs import (
    BernoulliPixels,
    CategoricalPixels,
    ContinuousLogisticMixture,
    DiscretizedLogisticMixture,
)
from audioar.models.standardize import Standardized, feature_statistics
from audioar.pipeline.train import fit

TINY = dict(hidden_channels=8, num_layers=2, kernel_size=3)
# (output, levels): every output distribution the model has.
OUTPUT_KINDS = [
    ("bernoulli", 2),
    ("categorical", 4),
    ("logistic_mixture", 4),
    ("logistic_mixture", 0),
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second thread only adds synchronisation."""
    torch.set_num_threads(1)


def _model(output="logistic_mixture", levels=0, **kw):
    args = dict(TINY, classes=3, output=output, levels=levels, components=2)
    args.update(kw)
    return PixelCNN(1, **args)


def _images(model, batch=2, height=5, width=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.in_channels, height, width)
    if model.output == "bernoulli":
        return torch.randint(0, 2, shape, generator=g).float()
    if model.levels:
        return torch.randint(0, model.levels, shape, generator=g)
    return torch.randn(shape, generator=g)


def _before(height, width, i, j):
    """Pixels strictly before (i, j) in raster order, (height, width) bool."""
    return torch.arange(height * width).view(height, width) < i * width + j


def _gated_field(height, width, i, j, layers, kernel_size):
    """The gated model's receptive field (see audioar.layers.pixelcnn_blocks)."""
    r = layers * (kernel_size // 2)
    field = torch.zeros(height, width, dtype=torch.bool)
    field[max(0, i - 1 - r) : i, max(0, j - r) : j + r + 1] = True
    field[i, max(0, j - r - 1) : j] = True
    return field


def _seen(model, height, width, i, j):
    """Input pixels the parameters predicted at (i, j) have a non-zero gradient on, for
    any of three random images (one image could meet a head whose ReLUs are all off)."""
    x = torch.randn(3, model.in_channels, height, width, dtype=torch.float64, requires_grad=True)
    model(x)[:, :, i, j].sum().backward()
    return x.grad.abs().sum(dim=(0, 1)) > 0


# --------------------------------------------------------------------------- receptive field
@pytest.mark.parametrize(
    ("height", "width", "layers", "kernel_size", "pixels"),
    [
        (4, 4, 2, 3, [(0, 0), (0, 3), (2, 1), (3, 3)]),  # the field covers the whole image
        (5, 6, 3, 5, [(1, 5), (4, 0), (4, 5)]),  # here too
        (9, 10, 2, 3, [(0, 9), (5, 0), (6, 5), (8, 9)]),  # clipped by the field
        (12, 12, 3, 3, [(7, 2), (11, 11)]),
    ],
)
def test_gated_receptive_field_has_no_blind_spot(height, width, layers, kernel_size, pixels):
    model = PixelCNN(1, hidden_channels=12, num_layers=layers, kernel_size=kernel_size).double()
    for i, j in pixels:
        seen = _seen(model, height, width, i, j)
        field = _gated_field(height, width, i, j, layers, kernel_size)
        assert torch.equal(seen, field & _before(height, width, i, j)), (i, j)
        if layers * (kernel_size // 2) + 1 >= max(height, width):
            assert torch.equal(seen, _before(height, width, i, j)), (i, j)  # every earlier pixel


@pytest.mark.parametrize(("layers", "kernel_size"), [(3, 3), (4, 3), (3, 5)])
def test_plain_model_has_a_blind_spot(layers, kernel_size):
    model = PixelCNN(1, hidden_channels=12, num_layers=layers, kernel_size=kernel_size, gated=False)
    model = model.double()
    size, i, j = 11, 7, 4
    seen = _seen(model, size, size, i, j)
    before = _before(size, size, i, j)
    assert not (seen & ~before).any()  # causal
    field = _gated_field(size, size, i, j, layers, kernel_size) & before
    blind = field & ~seen
    assert blind.any()  # earlier pixels the gated model sees and the plain one never does
    half = kernel_size // 2
    assert blind[i - 1, j + half + 1]  # one row up, just past the kernel: the blind wedge


@pytest.mark.parametrize("gated", [True, False])
def test_changing_a_pixel_never_changes_earlier_predictions(gated):
    model = _model(gated=gated, num_layers=3).double()
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64)
    labels = torch.tensor([0, 2])
    base = model(x, labels)
    for i, j in [(0, 0), (2, 3), (3, 6), (5, 6)]:
        y = x.clone()
        y[:, :, i, j] += 3.0
        changed = (model(y, labels) - base).abs().amax(dim=(0, 1)) > 0
        assert not (changed & ~_after(6, 7, i, j)).any(), (i, j)  # at or before (i, j)
        if (i, j) != (5, 6):
            assert changed.any()  # a later pixel does react


def _after(height, width, i, j):
    return torch.arange(height * width).view(height, width) > i * width + j


# --------------------------------------------------------------------------- likelihoods
@pytest.mark.parametrize(("output", "levels"), OUTPUT_KINDS)
@pytest.mark.parametrize("gated", [True, False])
def test_log_prob_steps_sum_to_log_prob(output, levels, gated):
    model = _model(output, levels, gated=gated)
    x, labels = _images(model), torch.tensor([1, 0])
    steps = model.log_prob_steps(x, labels)
    assert steps.shape == (2, 5, 6)
    torch.testing.assert_close(steps.sum(dim=(1, 2)), model.log_prob(x, labels))
    if levels:
        assert (steps <= 0).all()  # probabilities
    # Valid columns: padded ones count zero.
    lengths = torch.tensor([6, 3])
    expected = torch.stack([steps[0].sum(), steps[1, :, :3].sum()])
    torch.testing.assert_close(model.log_prob(x, labels, lengths), expected)


def _all_images(model, height, width):
    values = [0.0, 1.0] if model.output == "bernoulli" else list(range(model.levels))
    shape = (model.in_channels, height, width)
    grid = torch.tensor(list(itertools.product(values, repeat=math.prod(shape))))
    grid = grid.view(-1, *shape)
    return grid if model.output == "bernoulli" else grid.long()


@pytest.mark.parametrize(
    ("output", "levels", "channels", "size"),
    [
        ("bernoulli", 2, 1, (2, 2)),  # the 16 binary 2 x 2 images
        ("bernoulli", 2, 2, (1, 2)),  # two channels per pixel
        ("categorical", 3, 1, (2, 2)),  # 81 images
        ("logistic_mixture", 4, 1, (1, 3)),  # discretised mixture, 64 images
        ("logistic_mixture", 3, 2, (1, 2)),  # 2 channels sharing the component, 81 images
    ],
)
@pytest.mark.parametrize("gated", [True, False])
def test_discrete_probabilities_sum_to_one(output, levels, channels, size, gated):
    model = PixelCNN(channels, 2, **TINY, output=output, levels=levels, gated=gated).double()
    with torch.no_grad():
        images = _all_images(model, *size)
        for label in (0, 1):
            labels = torch.full((len(images),), label)
            total = model.log_prob(images, labels).exp().sum()
            assert abs(float(total) - 1.0) < 1e-9


def test_continuous_density_integrates_to_one():
    model = PixelCNN(1, **TINY, output="logistic_mixture", components=3).double()
    step = 0.1  # a Riemann sum of a smooth density: accurate far beyond the tolerance
    grid = torch.arange(-12.0, 12.0, step, dtype=torch.float64)
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    images = torch.stack([a.flatten(), b.flatten()], dim=1).view(-1, 1, 1, 2)
    with torch.no_grad():
        mass = model.log_prob(images).exp().sum() * step * step
    assert abs(float(mass) - 1.0) < 2e-3


def test_log_prob_all_classes_matches_per_class_and_chunks():
    model = _model("categorical", 4)
    x = _images(model, batch=3)
    with torch.no_grad():
        every = model.log_prob_all_classes(x)
        per_class = torch.stack([model.log_prob(x, torch.full((3,), c)) for c in range(3)], dim=1)
        torch.testing.assert_close(every, per_class)
        torch.testing.assert_close(model.log_prob_all_classes(x, chunk_size=2), every)
        lengths = torch.tensor([6, 2, 4])
        torch.testing.assert_close(
            model.log_prob_all_classes(x, lengths)[:, 1],
            model.log_prob(x, torch.ones(3, dtype=torch.long), lengths),
        )
    assert every.shape == (3, 3)


# --------------------------------------------------------------------------- generation
@pytest.mark.parametrize(("output", "levels"), OUTPUT_KINDS)
def test_cached_path_equals_full_path_and_draws_the_same_samples(output, levels):
    model = _model(output, levels, num_layers=3, image_size=(5, 7))
    x, labels = _images(model, height=5, width=7), torch.tensor([2, 0])
    with torch.no_grad():
        torch.testing.assert_close(
            model.output_params_cached(x, labels), model(x, labels), rtol=1e-5, atol=1e-5
        )
    torch.manual_seed(11)
    cached = model.sample(3, 1, cached=True)
    torch.manual_seed(11)
    naive = model.sample(3, 1, cached=False)
    assert cached.shape == (3, 1, 5, 7)
    if levels:
        assert torch.equal(cached, naive)
        assert cached.dtype == (torch.float32 if output == "bernoulli" else torch.long)
        assert ((cached >= 0) & (cached < levels)).all()
    else:  # real values: float rounding differs in the last digits only
        torch.testing.assert_close(cached, naive, rtol=1e-4, atol=1e-4)
    torch.manual_seed(11)
    assert torch.equal(model.sample(3, torch.tensor([1, 1, 1])), cached)  # cached by default
    model.log_prob(cached, torch.ones(3, dtype=torch.long))  # samples are valid inputs


def test_sampling_is_seeded_and_has_a_size():
    model = _model("bernoulli", 2, classes=0)
    torch.manual_seed(4)
    a = model.sample(2, size=(3, 4))
    torch.manual_seed(4)
    assert torch.equal(model.sample(2, size=(3, 4)), a) and a.shape == (2, 1, 3, 4)
    plain = _model("bernoulli", 2, classes=0, gated=False, image_size=(3, 3))
    assert plain.sample(2).shape == (2, 1, 3, 3)  # the plain model samples the naive way


# --------------------------------------------------------------------------- training
def _two_class_patterns():
    """Class c: four random 6 x 6 binary patterns of its own, each repeated 8 times."""
    g = torch.Generator().manual_seed(0)
    patterns = (torch.rand(2, 4, 1, 6, 6, generator=g) < 0.5).float()
    images = patterns.repeat_interleave(8, dim=1).reshape(-1, 1, 6, 6)
    return images, torch.arange(2).repeat_interleave(32)


def test_tiny_conditional_model_overfits_and_conditioning_matters():
    images, labels = _two_class_patterns()
    model = PixelCNN(1, 2, hidden_channels=16, num_layers=3, kernel_size=3, output="bernoulli")
    config = TrainConfig(epochs=30, batch_size=16, lr=1e-2, device="cpu", seed=0)
    result = fit(model, (images, labels), None, config)
    assert result.best_epoch == 30
    model.eval()
    with torch.no_grad():
        right = model.log_prob(images, labels)
        wrong = model.log_prob(images, 1 - labels)
        every = model.log_prob_all_classes(images)
    uniform = 36 * math.log(2.0)  # 24.95 nats per image
    assert -float(right.mean()) < 0.25 * uniform
    assert (right > wrong + 5.0).all()  # the class changes the likelihood, in its favour
    assert torch.equal(every.argmax(dim=1), labels)


def test_unconditional_fit_on_real_values_beats_a_standard_normal():
    g = torch.Generator().manual_seed(1)
    # Smooth images: each row a noisy copy of the row above (strong spatial dependence).
    base = torch.randn(64, 1, 1, 5, generator=g)
    images = (base + 0.1 * torch.randn(64, 1, 5, 5, generator=g).cumsum(dim=2)).float()
    model = PixelCNN(1, None, hidden_channels=8, num_layers=2, kernel_size=3, components=2)
    fit(model, images, None, TrainConfig(epochs=15, batch_size=16, lr=1e-2, device="cpu"))
    with torch.no_grad():
        nll = -float(model.eval().log_prob(images).mean())
    gaussian = -float(torch.distributions.Normal(0.0, images.std()).log_prob(images).sum() / 64)
    assert nll < gaussian - 10.0  # per image of 25 values (measured: 16.3 vs 36.9)


def test_pipeline_wrapper_drives_a_spectrogram_model():
    # What the pipeline does: log-mel images (1, bands, frames) padded to one width,
    # standardised per band, scored per valid column and under every class.
    spec = InputSpec("image", (1, 6, 5), levels=0, classes=3)
    model = PixelCNN.from_spec(PixelCNNConfig(**TINY, components=2), spec)
    g = torch.Generator().manual_seed(2)
    items = [torch.randn(1, 6, 5, generator=g) * 3 + 1 for _ in range(4)]
    lengths = torch.tensor([5, 3, 4, 5])
    for item, width in zip(items, lengths, strict=True):
        item[..., width:] = 0.0  # padding
    wrapped = Standardized(model, spec, *feature_statistics(items, spec, lengths.tolist()))
    x, labels = torch.stack(items), torch.tensor([0, 1, 2, 1])
    ll = wrapped.log_prob(x, labels, lengths)
    torch.testing.assert_close(wrapped.log_prob_steps(x, labels, lengths).sum(dim=1), ll)
    every = wrapped.log_prob_all_classes(x, lengths)
    torch.testing.assert_close(every.gather(1, labels[:, None]).squeeze(1), ll)
    assert wrapped.sample(2, torch.tensor([0, 2])).shape == (2, 1, 6, 5)


def test_dropout_acts_in_training_only():
    model = _model("bernoulli", 2, dropout=0.5, image_size=(4, 4))
    x, labels = _images(model, height=4, width=4), torch.tensor([0, 1])
    model.train()
    assert not torch.equal(model.log_prob(x, labels), model.log_prob(x, labels))
    torch.manual_seed(5)
    cached = model.sample(2, 0, cached=True)
    torch.manual_seed(5)
    assert torch.equal(model.sample(2, 0, cached=False), cached)  # sampling: no dropout
    assert model.training  # and the mode is restored
    model.eval()
    torch.testing.assert_close(model.log_prob(x, labels), model.log_prob(x, labels))


# --------------------------------------------------------------------------- build, errors
def test_config_defaults_equal_constructor_defaults_and_from_spec():
    defaults = {
        k: v.default
        for k, v in inspect.signature(PixelCNN).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    for name, value in asdict(PixelCNNConfig()).items():
        if name != "conditional":
            assert defaults[name] == value, name
    assert PixelCNN.Config is PixelCNNConfig and PixelCNN.inputs == ("image",)
    cfg = PixelCNNConfig(**TINY)
    model = PixelCNN.from_spec(cfg, InputSpec("image", (1, 8, 9), levels=0, classes=4))
    assert isinstance(model, DensityModel)
    assert model.conditional and model.classes == 4 and model.image_size == (8, 9)
    assert isinstance(model.distribution, ContinuousLogisticMixture)
    kinds = {2: BernoulliPixels, 17: CategoricalPixels}
    for levels, kind in kinds.items():
        built = PixelCNN.from_spec(cfg, InputSpec("image", (1, 4, 4), levels=levels))
        assert isinstance(built.distribution, kind) and not built.conditional
    mixture = PixelCNNConfig(**TINY, output="logistic_mixture", conditional=False)
    built = PixelCNN.from_spec(mixture, InputSpec("image", (3, 4, 4), levels=256, classes=5))
    assert isinstance(built.distribution, DiscretizedLogisticMixture) and not built.conditional
    assert (
        resolve_output("auto", 0) == "logistic_mixture" and resolve_output("auto", 2) == "bernoulli"
    )
    assert not PixelCNN.from_spec(
        PixelCNNConfig(**TINY, gated=False), InputSpec("image", (1, 4, 4))
    ).gated


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kernel_size=4), "kernel_size"),
        (dict(kernel_size=1), "kernel_size"),
        (dict(output="gaussian"), "output"),
        (dict(output="categorical", levels=0), "levels"),
        (dict(output="bernoulli", levels=5), "levels"),
        (dict(output="logistic_mixture", components=0), "components"),
        (dict(hidden_channels=0), "hidden_channels"),
        (dict(num_layers=0), "num_layers"),
        (dict(classes=-1), "classes"),
        (dict(image_size=(0, 4)), "image_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=0.2, gated=False), "dropout"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PixelCNN(1, **{**TINY, **kwargs})


def test_from_spec_rejects_what_does_not_fit():
    with pytest.raises(ConfigError, match="image"):
        PixelCNN.from_spec(PixelCNNConfig(), InputSpec("vector", (16,)))
    with pytest.raises(ConfigError, match="real-valued"):
        PixelCNN.from_spec(PixelCNNConfig(output="bernoulli"), InputSpec("image", (1, 4, 4)))


def test_bad_inputs_raise_data_error():
    binary = _model("bernoulli", 2)
    x, labels = _images(binary), torch.tensor([0, 1])
    cases = [
        (binary, x[0], labels, "images must be"),
        (binary, x.repeat(1, 2, 1, 1), labels, "images must be"),
        (binary, x * 2, labels, "0 or 1"),
        (binary, x, None, "labels are required"),
        (binary, x, torch.tensor([0, 3]), "labels"),
        (binary, x, torch.tensor([0]), "labels"),
        (binary, x, torch.tensor([0.0, 1.0]), "integers"),
        (_model("categorical", 4), x, labels, "integer tensor"),
        (_model("categorical", 4), x.long() * 4, labels, r"\[0, 4\)"),
        (_model(), torch.full((2, 1, 5, 6), math.nan), labels, "NaN"),
        (_model(), x.long(), labels, "float"),
    ]
    for model, images, context, message in cases:
        with pytest.raises(DataError, match=message):
            model.log_prob(images, context)
    with pytest.raises(DataError, match="lengths"):
        binary.log_prob(x, labels, torch.tensor([3]))
    with pytest.raises(DataError, match="labels are required"):
        binary.sample(2, size=(3, 3))
    with pytest.raises(DataError, match="n must be"):
        binary.sample(0, 1, size=(3, 3))
    # An unconditional model ignores labels (the pipeline's batches always carry them).
    free = _model("bernoulli", 2, classes=0)
    torch.testing.assert_close(free.log_prob(x, labels), free.log_prob(x))
    with pytest.raises(ConfigError, match="class-conditional"):
        free.log_prob_all_classes(x)


def test_generation_errors():
    with pytest.raises(ConfigError, match="size"):
        _model().sample(1, 0)
    plain = _model(gated=False, image_size=(3, 3))
    with pytest.raises(ConfigError, match="gated"):
        plain.sample(1, 0, cached=True)
    with pytest.raises(ConfigError, match="cached path"):
        plain.output_params_cached(torch.randn(1, 1, 3, 3), torch.tensor([0]))


@pytest.mark.parametrize("gated", [True, False])
def test_state_dict_round_trip_loads_with_weights_only(gated):
    model = _model("categorical", 4, gated=gated)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(123)
    fresh = _model("categorical", 4, gated=gated)
    x, labels = _images(model), torch.tensor([0, 2])
    assert not torch.equal(fresh.log_prob(x, labels), model.log_prob(x, labels))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.log_prob(x, labels), model.log_prob(x, labels))
