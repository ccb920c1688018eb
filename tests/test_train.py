"""The one training loop: learning, early stopping, checkpoints and resume, failures."""

import math

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from audioar.config.recipes import TrainConfig
from audioar.errors import ConfigError, DataError, TrainingError
from audioar.pipeline.batches import log_likelihoods
from audioar.pipeline.train import EpochStats, FitResult, fit

LOG_2PI = math.log(2 * math.pi)


class DiagGaussian(nn.Module):
    """Learnable diagonal Gaussian; context (optional) shifts the mean linearly.

    ``noise`` adds Gaussian jitter to x in train mode (draws from the torch RNG, so resume
    must restore the RNG state to reproduce a fit exactly).
    """

    def __init__(
        self, features: int, context_features: int = 0, init_mean: float = 0.0, noise: float = 0.0
    ) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.full((features,), init_mean))
        self.log_std = nn.Parameter(torch.zeros(features))
        self.context = nn.Linear(context_features, features) if context_features else None
        self.noise = noise
        self.calls: list[tuple[bool, bool, bool]] = []  # (training, grad enabled, autocast)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self.calls.append(
            (self.training, torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"))
        )
        if self.training and self.noise:
            x = x + self.noise * torch.randn_like(x)
        mean = self.mean if self.context is None else self.mean + self.context(context)
        z = (x - mean) * torch.exp(-self.log_std)
        return (-0.5 * z**2 - self.log_std - 0.5 * LOG_2PI).sum(dim=-1)


class BatchNormGaussian(DiagGaussian):
    """A Gaussian on batch-normalized inputs: fails on a training batch of one item."""

    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.norm = nn.BatchNorm1d(features)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().log_prob(self.norm(x))


def gaussian_data(n: int, features: int = 3, mean: float = 1.5, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return mean + 0.5 * torch.randn(n, features, generator=g)


def quick(**kwargs) -> TrainConfig:
    base = {"epochs": 6, "batch_size": 16, "lr": 0.05, "patience": 100, "device": "cpu"}
    return TrainConfig(**(base | kwargs))


def same_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            if key != "seconds":
                assert row_a[key] == pytest.approx(row_b[key], rel=1e-6, abs=1e-9), key


def same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_fit_learns_and_restores_best_weights():
    train, val = gaussian_data(200), gaussian_data(60, seed=1)
    model = DiagGaussian(3)
    before = float(log_likelihoods(model, val).mean())
    result = fit(model, train, val, quick(epochs=20))
    assert isinstance(result, FitResult)
    assert result.stopped == "epochs" and result.device == "cpu"
    assert [row["epoch"] for row in result.history] == list(range(1, 21))
    assert result.best_val_log_likelihood > before + 1.0
    assert float(log_likelihoods(model, val).mean()) == pytest.approx(
        result.best_val_log_likelihood, rel=1e-6
    )
    best_row = result.history[result.best_epoch - 1]
    assert best_row["val_log_likelihood"] == max(r["val_log_likelihood"] for r in result.history)
    assert torch.allclose(model.mean, torch.full((3,), 1.5), atol=0.2)


def test_early_stopping_keeps_the_best_epoch():
    # The model starts at the validation data and training pulls it away: epoch 1 is best.
    train, val = gaussian_data(200, mean=0.0), gaussian_data(60, mean=2.0, seed=1)
    model = DiagGaussian(3, init_mean=2.0)
    result = fit(model, train, val, quick(epochs=50, patience=3, lr=0.1))
    assert result.stopped == "early_stopping"
    assert result.best_epoch == 1
    assert len(result.history) == 1 + 3
    assert float(log_likelihoods(model, val).mean()) == pytest.approx(
        result.history[0]["val_log_likelihood"], rel=1e-6
    )


def test_on_epoch_columns_and_progress():
    train, val, other = gaussian_data(50), gaussian_data(20, seed=1), gaussian_data(20, mean=-3)
    model = DiagGaussian(3)
    seen: list[EpochStats] = []
    steps: list[tuple[int, int]] = []

    def on_epoch(stats: EpochStats) -> dict[str, float]:
        seen.append(stats)
        return {"ll_other": float(log_likelihoods(model, other).mean())}

    result = fit(
        model,
        train,
        val,
        quick(epochs=3),
        on_epoch=on_epoch,
        progress=lambda done, total: steps.append((done, total)),
    )
    assert [s.epoch for s in seen] == [1, 2, 3]
    assert all(isinstance(s.best, bool) and s.seconds >= 0 for s in seen)
    assert set(result.history[0]) == {
        "epoch",
        "train_log_likelihood",
        "val_log_likelihood",
        "seconds",
        "ll_other",
    }
    assert result.history[1]["ll_other"] < result.history[1]["val_log_likelihood"]
    # 50 items / 16 per batch -> 4 steps per epoch, 12 in all.
    assert [d for d, _ in steps] == list(range(1, 13)) and {t for _, t in steps} == {12}


def test_evaluation_runs_in_eval_mode_without_grad_and_no_amp_on_cpu():
    model = DiagGaussian(3)
    fit(model, gaussian_data(32), gaussian_data(8, seed=1), quick(epochs=1, amp=True))
    train_calls = [c for c in model.calls if c[0]]
    eval_calls = [c for c in model.calls if not c[0]]
    assert train_calls and all(grad for _, grad, _ in train_calls)
    assert eval_calls and not any(grad for _, grad, _ in eval_calls)
    assert not any(amp for _, _, amp in model.calls)
    assert model.training  # fit leaves the model's mode as training set it


def test_context_tuples_and_datasets_of_single_tensors():
    x = gaussian_data(64, features=2)
    c = torch.randn(64, 1, generator=torch.Generator().manual_seed(3))
    model = DiagGaussian(2, context_features=1)
    result = fit(model, (x, c), (x[:16], c[:16]), quick(epochs=2))
    assert len(result.history) == 2

    class Items(Dataset):
        def __len__(self) -> int:
            return 40

        def __getitem__(self, i: int) -> Tensor:
            return x[i]

    result = fit(DiagGaussian(2), Items(), Items(), quick(epochs=2))
    assert math.isfinite(result.best_val_log_likelihood)


def test_last_batch_of_one_is_dropped_for_batch_norm():
    model = BatchNormGaussian(3)
    result = fit(model, gaussian_data(33), gaussian_data(10, seed=1), quick(epochs=2))
    assert len(result.history) == 2


def test_no_validation_keeps_the_last_weights():
    result = fit(DiagGaussian(3), gaussian_data(40), None, quick(epochs=3, patience=1))
    assert result.stopped == "epochs" and result.best_epoch == 3
    assert math.isnan(result.best_val_log_likelihood)


def test_time_limit_stops_after_the_current_epoch():
    result = fit(DiagGaussian(3), gaussian_data(40), gaussian_data(10), quick(max_minutes=1e-9))
    assert result.stopped == "time_limit" and len(result.history) == 1


def test_non_finite_loss_raises_and_keeps_finite_weights():
    train = gaussian_data(64)
    train[40, 1] = math.nan
    model = DiagGaussian(3)
    with pytest.raises(TrainingError, match=r"epoch 1, step \d+.*lower train.lr"):
        fit(model, train, gaussian_data(10), quick(epochs=3))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_empty_training_data_and_missing_cuda_are_clear_errors():
    with pytest.raises(DataError, match="no training items"):
        fit(DiagGaussian(3), torch.empty(0, 3), None, quick())
    with pytest.raises(DataError, match="no validation items"):
        fit(DiagGaussian(3), gaussian_data(8), torch.empty(0, 3), quick())
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            fit(DiagGaussian(3), gaussian_data(8), None, quick(device="cuda"))


def test_checkpoint_is_weights_only_loadable(tmp_path):
    path = tmp_path / "run.partial" / "checkpoint.pt"
    fit(
        DiagGaussian(3), gaussian_data(40), gaussian_data(10), quick(epochs=2), checkpoint_path=path
    )
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 2 and len(payload["history"]) == 2
    assert payload["stopped"] == "epochs"
    assert not list(path.parent.glob(".*tmp*"))


def test_extending_a_finished_fit_equals_one_long_fit(tmp_path):
    train, val = gaussian_data(70), gaussian_data(20, seed=1)
    config = quick(epochs=6, seed=7)
    torch.manual_seed(1)
    full = DiagGaussian(3, noise=0.1)
    expected = fit(full, train, val, config)

    torch.manual_seed(1)
    model = DiagGaussian(3, noise=0.1)
    path = tmp_path / "ck.pt"
    fit(model, train, val, quick(epochs=2, seed=7), checkpoint_path=path)
    torch.manual_seed(99)  # resume must not depend on the global RNG state
    model = DiagGaussian(3, noise=0.1)
    got = fit(model, train, val, config, checkpoint_path=path, resume=True)
    same_history(got.history, expected.history)
    same_weights(model, full)
    assert got.best_epoch == expected.best_epoch


def test_interrupted_fit_resumes_to_the_same_result(tmp_path):
    train, val = gaussian_data(70), gaussian_data(20, seed=1)
    config = quick(epochs=5, seed=3)
    torch.manual_seed(1)
    full = DiagGaussian(3, noise=0.1)
    expected = fit(full, train, val, config)

    def interrupt(stats: EpochStats) -> None:
        if stats.epoch == 3:
            raise KeyboardInterrupt

    path = tmp_path / "ck.pt"
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fit(
            DiagGaussian(3, noise=0.1), train, val, config, checkpoint_path=path, on_epoch=interrupt
        )
    assert torch.load(path, weights_only=True)["epoch"] == 2  # lost at most one epoch
    model = DiagGaussian(3, noise=0.1)
    got = fit(model, train, val, config, checkpoint_path=path, resume=True)
    same_history(got.history, expected.history)
    same_weights(model, full)

    # Resuming a finished fit is a no-op that loads the best weights.
    calls: list[int] = []
    again = DiagGaussian(3, noise=0.1)
    result = fit(
        again,
        train,
        val,
        config,
        checkpoint_path=path,
        resume=True,
        on_epoch=lambda s: calls.append(s.epoch),
    )
    assert calls == [] and result.history == got.history
    same_weights(again, full)


def test_resume_without_checkpoint_starts_afresh_and_bad_checkpoint_fails(tmp_path):
    path = tmp_path / "ck.pt"
    result = fit(
        DiagGaussian(3), gaussian_data(40), None, quick(epochs=1), checkpoint_path=path, resume=True
    )
    assert len(result.history) == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="cannot resume"):
        fit(
            DiagGaussian(3),
            gaussian_data(40),
            None,
            quick(epochs=3),
            checkpoint_path=path,
            resume=True,
        )


def test_resume_with_other_training_settings_is_refused_and_keeps_the_checkpoint(tmp_path):
    from audioar.pipeline.checkpoints import CheckpointError

    path, train = tmp_path / "ck.pt", gaussian_data(40)
    fit(DiagGaussian(3), train, None, quick(epochs=2), checkpoint_path=path)
    saved = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"train\.lr \(was 0\.05, now 0\.5\)"):
        fit(
            DiagGaussian(3), train, None, quick(epochs=4, lr=0.5), checkpoint_path=path, resume=True
        )
    assert path.read_bytes() == saved  # kept: it still serves the fit it was made for
    result = fit(DiagGaussian(3), train, None, quick(epochs=4), checkpoint_path=path, resume=True)
    assert result.resumed_from == 2 and len(result.history) == 4


def test_fits_a_real_maf_with_batch_norm_and_resumes(tmp_path):
    models = pytest.importorskip("audioar.models")
    train, val = gaussian_data(120, features=4), gaussian_data(30, features=4, seed=1)

    def make():
        torch.manual_seed(0)
        return models.MAF(features=4, num_flows=2, hidden_features=(16,), batch_norm=True)

    full = make()
    expected = fit(full, train, val, quick(epochs=4, lr=1e-2))
    path = tmp_path / "ck.pt"
    fit(make(), train, val, quick(epochs=2, lr=1e-2), checkpoint_path=path)
    model = make()
    got = fit(model, train, val, quick(epochs=4, lr=1e-2), checkpoint_path=path, resume=True)
    same_history(got.history, expected.history)
    same_weights(model, full)
    assert expected.history[-1]["val_log_likelihood"] > expected.history[0]["val_log_likelihood"]


def test_epoch_batches_are_those_of_a_shuffling_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    from audioar.pipeline.train import _epoch_batches

    for n, size, drop in ((229, 100, False), (201, 100, True), (7, 3, False)):
        loader = DataLoader(
            TensorDataset(torch.arange(n)),
            batch_size=size,
            shuffle=True,
            generator=torch.Generator().manual_seed(11),
            drop_last=drop,
        )
        expected = [b[0].tolist() for b in loader]
        got = _epoch_batches(n, size, torch.Generator().manual_seed(11), drop, None)
        assert got == expected
