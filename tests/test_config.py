"""Configuration: dataclass defaults, recipes, dict round trip, dotted overrides, errors."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.config.recipes import (
    FORMAT_VERSION,
    FeatureConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    load_recipe,
    run_config_from_dict,
    run_config_to_dict,
)
from audioar.errors import ConfigError
from audioar.models.build import family

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_design():
    cfg = RunConfig()
    assert FORMAT_VERSION == 2
    # target None: the class the data set implies (DCASE: normal), else "zero"
    assert (cfg.data.root, cfg.data.target, cfg.data.compare) == (None, None, [])
    assert (cfg.features.name, cfg.features.n_fft, cfg.features.segments) == ("segments", 512, 4)
    assert cfg.model.name == "maf" and cfg.score.method == "auto"
    assert (cfg.model.settings.num_flows, cfg.model.settings.hidden_features) == (5, (512, 512))
    assert (cfg.train.patience, cfg.train.grad_clip, cfg.train.device) == (30, 5.0, "auto")
    assert (cfg.calibration.target_fpr, cfg.calibration.method) == (0.05, "empirical")
    assert RunConfig().data.compare is not cfg.data.compare  # no shared mutable default


def test_shipped_recipes_load():
    zero = load_recipe(RECIPES / "zero_maf.toml")
    # the default experiment, written out: the defaults with the MAF's presets for segments
    presets = family("maf").presets["segments"]
    assert zero == apply_overrides(RunConfig(), [*presets, "data.target=zero"])
    assert zero.model.settings.conditional and zero.features.n_mfcc == 8
    blog = load_recipe(RECIPES / "original_blog.toml")
    assert (blog.features.mode, blog.features.sample_rate, blog.features.n_fft) == (
        "blog",
        16000,
        512,
    )
    m = blog.model.settings
    assert (m.num_flows, m.hidden_features, m.activation) == (
        10,
        (512, 512),
        "tanh",
    )
    assert m.batch_norm and m.permutation == "reverse"
    for name in ("zero_wavenet_frames.toml", "zero_wavenet_mulaw.toml"):
        wavenet = load_recipe(RECIPES / name)
        assert wavenet.model.name == "wavenet" and wavenet.score.method == "posterior"


def test_pixelcnn_recipe_is_the_presets_written_out():
    from audioar.models.build import family

    pixel = load_recipe(RECIPES / "zero_pixelcnn.toml")
    presets = family("pixelcnn").presets["stft"]
    cfg = apply_overrides(RunConfig(), ["model.name=pixelcnn", "features.name=stft", *presets])
    assert pixel.model == cfg.model and pixel.features == cfg.features
    assert pixel.train == cfg.train and pixel.score.method == "posterior"


def test_dict_round_trip_is_json_safe():
    cfg = apply_overrides(RunConfig(), ["data.compare=one,two", "model.hidden_features=[64]"])
    d = json.loads(json.dumps(run_config_to_dict(cfg)))
    assert d["model"]["hidden_features"] == [64]
    assert run_config_from_dict(d) == cfg


def test_recipe_errors_name_file_and_key(tmp_path):
    path = recipe(tmp_path, "[train]\nlr = 1e-3\nlearning_rate = 2\n")
    with pytest.raises(ConfigError, match=r"r\.toml: unknown key\(s\) train\.learning_rate"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"r\.toml: unknown section\(s\) optimizer"):
        load_recipe(recipe(tmp_path, "[optimizer]\nlr = 1\n"))
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number, got 'fast'"):
        load_recipe(recipe(tmp_path, '[train]\nlr = "fast"\n'))
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_recipe(recipe(tmp_path, "[train]\nepochs = 1.5\n"))
    with pytest.raises(ConfigError, match=r"model\.batch_norm: expected true or false"):
        load_recipe(recipe(tmp_path, "[model]\nbatch_norm = 1\n"))
    with pytest.raises(ConfigError, match=r"model\.hidden_features: expected a list of int"):
        load_recipe(recipe(tmp_path, '[model]\nhidden_features = ["a"]\n'))
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_recipe(recipe(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="choose one of mulaw, stft, fft, segments"):
        load_recipe(recipe(tmp_path, '[features]\nname = "mfcc"\n'))


def test_recipe_values_and_none(tmp_path):
    cfg = load_recipe(
        recipe(
            tmp_path,
            (
                '[train]\nlr = 1\ngrad_clip = "none"\n[features]\nname = "stft"\nhop_length = 128\n'
                '[data]\ncompare = ["one", "two"]\nroot = "/data"\n'
            ),
        )
    )
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.grad_clip is None
    assert cfg.features.hop_length == 128 and cfg.data.compare == ["one", "two"]
    assert cfg.data.root == "/data"


def test_overrides_parse_each_type():
    base = RunConfig()
    cfg = apply_overrides(
        base,
        [
            "train.lr=1e-4",
            "model.hidden_features=[256,256]",
            "data.compare=one,two",
            "train.amp=false",
            "train.max_minutes=none",
            "train.grad_clip=None",
            "features.hop_length=64",
            "data.root=/tmp/x y",
            "data.split=speaker:jackson",
            "model.num_flows=10",
            "data.target='one'",
        ],
    )
    assert cfg.train.lr == 1e-4 and cfg.model.settings.hidden_features == (256, 256)
    assert cfg.data.compare == ["one", "two"] and cfg.train.amp is False
    assert cfg.train.max_minutes is None and cfg.train.grad_clip is None
    assert cfg.features.hop_length == 64 and cfg.data.root == "/tmp/x y"
    assert cfg.data.split == "speaker:jackson" and cfg.model.settings.num_flows == 10
    assert cfg.data.target == "one"
    assert base == RunConfig()  # the input is not modified
    assert apply_overrides(base, ["data.compare=[]"]).data.compare == []
    tuple_form = apply_overrides(base, ["model.hidden_features=(32, 16)"])
    assert tuple_form.model.settings.hidden_features == (32, 16)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.lr", "expected section.field=value"),
        ("lr=1", "expected section.field=value"),
        ("optim.lr=1", "unknown section 'optim'"),
        ("train.learning_rate=1", "unknown key 'train.learning_rate'"),
        ("train.epochs=ten", r"train\.epochs: expected an integer, got 'ten'"),
        ("train.amp=maybe", r"train\.amp: expected true or false"),
        ("train.lr=none", r"train\.lr: expected a number, got 'none'"),
        ("model.hidden_features=[256,,256]", "empty item"),
        ("train.device=tpu", "choose one of auto, cpu, cuda"),
        ("train.lr=-1", "must be a positive number"),
        ("data.split=speaker:", "speaker:NAME"),
        ("calibration.target_fpr=1.5", "between 0 and 1"),
    ],
)
def test_override_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [item])


@settings(deadline=None, max_examples=30)
@given(
    epochs=st.integers(1, 10**6),
    lr=st.floats(1e-8, 10.0),
    hidden=st.lists(st.integers(1, 4096), min_size=1, max_size=4),
)
def test_overrides_round_trip_values(epochs, lr, hidden):
    cfg = apply_overrides(
        RunConfig(),
        [f"train.epochs={epochs}", f"train.lr={lr!r}", f"model.hidden_features={hidden}"],
    )
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.settings.hidden_features) == (
        epochs,
        lr,
        tuple(hidden),
    )


def test_featurizer_kwargs_per_name():
    assert FeatureConfig().featurizer_config() == {
        "name": "segments",
        "sample_rate": 8000,
        "n_fft": 512,
        "hop_length": 128,
        "n_mels": 32,
        "segments": 4,
        "normalize": True,
        "seconds": None,
    }
    assert FeatureConfig(name="fft", seconds=1.0).featurizer_config() == {
        "name": "fft",
        "sample_rate": 8000,
        "n_fft": 512,
        "seconds": 1.0,
        "mode": "welch",
        "hop_length": None,
    }
    stft = FeatureConfig(
        name="stft", n_fft=256, hop_length=64, n_mels=40, flatten=True, seconds=1.0
    )
    assert stft.featurizer_kwargs() == {
        "sample_rate": 8000,
        "n_fft": 256,
        "hop_length": 64,
        "n_mels": 40,
        "log": True,
        "seconds": 1.0,
        "flatten": True,
    }
    assert FeatureConfig(name="mulaw", bits=8, seconds=None).featurizer_kwargs() == {
        "sample_rate": 8000,
        "bits": 8,
        "seconds": None,
    }


def test_model_section_follows_the_family():
    from audioar.models import MADEConfig, MAFConfig, WaveNetConfig

    assert RunConfig().model.settings == MAFConfig()
    maf = apply_overrides(RunConfig(), ["model.num_flows=3"])
    cfg = apply_overrides(maf, ["model.name=wavenet"])
    assert cfg.model.settings == WaveNetConfig()  # another family: its own defaults
    cfg = apply_overrides(RunConfig(), ["model.output=gaussian", "model.name=made"])
    assert cfg.model.settings == MADEConfig(output="gaussian")  # the name is applied first
    with pytest.raises(ConfigError, match="the keys of model wavenet are name, residual_channels"):
        apply_overrides(RunConfig(), ["model.name=wavenet", "model.num_flows=3"])
    with pytest.raises(ConfigError, match="unknown model 'pixelcnn9'; choose one of maf"):
        apply_overrides(RunConfig(), ["model.name=pixelcnn9"])
    d = run_config_to_dict(apply_overrides(RunConfig(), ["model.name=wavenet"]))
    assert d["model"]["name"] == "wavenet" and "residual_channels" in d["model"]
    assert "num_flows" not in d["model"]
    assert run_config_from_dict(d).model.name == "wavenet"
    with pytest.raises(ConfigError, match=r"model\.num_flows"):
        run_config_from_dict({"model": {"name": "wavenet", "num_flows": 3}})
    with pytest.raises(ConfigError, match="patience"):
        TrainConfig(patience=0)


def test_score_method_is_checked_against_the_model_kind():
    assert apply_overrides(RunConfig(), []).score.resolve(conditional=False) == "raw"
    assert apply_overrides(RunConfig(), []).score.resolve(conditional=True) == "posterior"
    per_step = apply_overrides(RunConfig(), ["score.method=per_step"])
    assert per_step.score.resolve(conditional=True) == "per_step"
    with pytest.raises(ConfigError, match="need a class-conditional model"):
        apply_overrides(RunConfig(), ["score.method=posterior"]).score.resolve(False)
    with pytest.raises(ConfigError, match="choose one of auto"):
        apply_overrides(RunConfig(), ["score.method=bayes"])


def test_configs_build_the_real_featurizers_and_models():
    from audioar.features import featurizer_from_config
    from audioar.models import InputSpec
    from audioar.models.build import build_model

    for name in ("segments", "fft", "stft", "mulaw"):
        featurizer_from_config(FeatureConfig(name=name).featurizer_config())
    small = ["model.hidden_features=[8]", "model.num_flows=2"]
    vector = InputSpec("vector", (4,))
    for extra in ([], ["model.base=mog", "model.components=2"]):
        cfg = apply_overrides(RunConfig(), [*small, *extra])
        build_model(cfg.model.name, cfg.model.settings, vector)
    made = apply_overrides(RunConfig(), ["model.name=made", "model.hidden_features=[8]"])
    build_model("made", made.model.settings, vector)
    wavenet = apply_overrides(
        RunConfig(),
        ["model.name=wavenet", "model.residual_channels=4", "model.skip_channels=4",
         "model.max_dilation=2"],
    )  # fmt: skip
    codes = InputSpec("sequence", (None,), levels=16, classes=2)
    assert build_model("wavenet", wavenet.model.settings, codes).classes == 2
    with pytest.raises(ConfigError, match="takes sequences"):
        build_model("wavenet", wavenet.model.settings, vector)
