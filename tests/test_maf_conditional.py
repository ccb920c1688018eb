"""The class-conditional MAF: the model (labels as one-hot context, fast = reference path) and
in the one pipeline (every class fitted, a class posterior; one class: a one-class model)."""

import shutil

import numpy as np
import pytest
import torch
from helpers import TINY, write_tone_dataset

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.data.discovery import discover, split
from audioar.errors import ConfigError, DataError
from audioar.models import MAF
from audioar.pipeline.featurize import featurize
from audioar.pipeline.fit import train_model
from audioar.pipeline.scoring import score_features


def test_labels_enter_as_one_hot_and_the_fast_path_agrees():
    torch.manual_seed(0)
    maf = MAF(5, num_flows=3, hidden_features=(24, 24), classes=3)
    assert maf.conditional and maf.context_features == 3 and not MAF.conditional
    x, labels = torch.randn(7, 5), torch.tensor([0, 1, 2, 2, 1, 0, 1])
    fast = maf.log_prob(x, labels)
    maf.block_sparse = False
    reference = maf.log_prob(x, labels)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    # the same weights as a MAF with a 3-vector context, given the one-hot labels
    plain = MAF(5, num_flows=3, hidden_features=(24, 24), context_features=3)
    plain.load_state_dict(maf.state_dict())
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    torch.testing.assert_close(plain.log_prob(x, one_hot), reference)
    # the class changes the density; one label broadcasts over the batch
    assert not torch.allclose(maf.log_prob(x, 0), maf.log_prob(x, 1))
    torch.testing.assert_close(maf.log_prob(x, 2), maf.log_prob(x, torch.full((7,), 2)))
    maf.eval()
    samples = maf.sample(4, torch.tensor([0, 0, 2, 2]))
    torch.testing.assert_close(maf(samples, torch.tensor([0, 0, 2, 2]))[0].shape, (4, 5))


@pytest.mark.parametrize(
    "bad, match",
    [(None, "class labels are required"), (torch.tensor([0.5]), "integers"), (3, r"\[0, 3\)")],
)
def test_bad_labels_are_refused(bad, match):
    maf = MAF(4, num_flows=1, hidden_features=(8,), classes=3)
    with pytest.raises(DataError, match=match):
        maf.log_prob(torch.randn(2, 4), bad)
    with pytest.raises(ConfigError, match="context_features must be 0"):
        MAF(4, context_features=2, classes=3)


def _config(root, *extra):
    return apply_overrides(
        RunConfig(),
        [f"data.root={root}", "data.target=zero", *TINY, "model.conditional=true", *extra],
    )


def test_a_conditional_maf_fits_every_class_and_scores_the_posterior(tmp_path):
    root = write_tone_dataset(tmp_path / "tones")
    cfg = _config(root, "features.trim_db=30", "features.n_mfcc=6", "train.epochs=15")
    dataset = discover(root)
    parts = split(dataset, "official")
    trained, _ = train_model(cfg, dataset, parts, use_cache=False)
    assert trained.conditional and trained.classes == ["one", "two", "zero"]
    assert trained.score == "posterior"  # auto: the posterior of a conditional model
    features, kept, _ = featurize(trained.featurizer, parts.test, use_cache=False)
    scores = score_features(trained, features)
    assert "posterior" in scores.available
    posterior = scores.score("posterior")
    assert (posterior <= 1e-6).all()
    labels = np.array([c.label for c in kept])
    # the tones are easy: zero's clips have the highest posterior of zero
    assert posterior[labels == "zero"].min() > np.median(posterior[labels != "zero"])


def test_on_the_normal_class_alone_it_is_a_one_class_model(tmp_path):
    root = write_tone_dataset(tmp_path / "tones", takes=12)
    for path in root.glob("*.wav"):
        if not path.name.startswith("zero_"):
            path.unlink()
    cfg = _config(root)
    dataset = discover(root)
    parts = split(dataset, "official")
    trained, _ = train_model(cfg, dataset, parts, use_cache=False)
    assert not trained.conditional and trained.score == "raw"
    features, _, _ = featurize(trained.featurizer, parts.test, use_cache=False)
    assert "posterior" not in score_features(trained, features).available
    with pytest.raises(ConfigError, match="posterior"):
        train_model(_config(root, "score.method=posterior"), dataset, parts, use_cache=False)
    shutil.rmtree(root)
