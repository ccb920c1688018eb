"""The DCASE 2020 Task 2 baseline (dense autoencoder on stacked log-mel frames), in torch.

A peer for the DCASE benchmarks, not part of the library: ``benchmarks/dcase.py`` imports
it as ``from dcase_baseline import BaselineConfig, fit_baseline, score_baseline``.

Source: https://github.com/y-kawagu/dcase2020_task2_baseline at commit
``ebfcc2ae886511d074a4e746890c3ef877800de0`` (2020-05-24, its last; the code files last
changed 2020-02-28), read 2026-12: ``common.py``
(``file_load``, ``file_to_vector_array``), ``keras_model.py`` (``get_model``),
``00_train.py`` (``list_to_vector_array`` and ``model.fit``), ``01_test.py`` (scoring) and
``baseline.yaml`` (the settings, = ``BaselineConfig``'s defaults). Its pinned stack,
librosa 0.6.0, Keras 2.1.6 and TensorFlow 1.15, was read as well for the defaults that the
scripts leave implicit:

* features: ``librosa.load(path, sr=None, mono=False)`` (the file's own rate), then
  ``melspectrogram`` = ``|stft|**power`` (Hann window, ``center=True`` with *reflect*
  padding, the librosa 0.6 default; librosa >= 0.10 pads with zeros unless told) times a
  Slaney mel filterbank built in float64 (librosa 0.6 had no ``dtype`` and built it in
  float64, so the mel energies and log-mel values are float64), ``10 * log10(mel + eps)``,
  and ``frames`` consecutive frames concatenated, vector ``t`` = frames ``t .. t+frames-1``;
* model: ``Dense`` = glorot-uniform kernel, zero bias; ``BatchNormalization`` = momentum
  0.99, epsilon 1e-3, batch statistics (biased variance) in training, and moving
  statistics updated as TF 1's ``assign_moving_average(..., zero_debias=True)`` does
  (Keras 2.1.6's TF backend): a zero-started EMA divided by ``1 - 0.99**step``, of the batch
  mean and of the batch variance times ``n / (n - 1.001)``;
* optimiser: Keras 2.1.6 ``Adam`` (lr 1e-3, betas 0.9/0.999, epsilon ``K.epsilon()`` =
  1e-7 added to ``sqrt(v)`` with the bias correction folded into the step size, which is
  not torch's formula), MSE loss (mean over the features, then over the batch);
* ``fit``: ``validation_split`` holds out the *last* ``len - int(len * 0.9)`` stacked
  vectors (before any shuffling; they are only scored, never trained on), the rest is
  reshuffled every epoch into batches of 512, the last batch partial;
* score of a clip: the mean over its vectors of the per-vector mean squared error of the
  model in inference mode (the error taken in float64 against the float64 features).

Departures, none of which changes a result on the DCASE data:

* the framework (torch instead of Keras/TF 1), hence other random numbers for the same seed;
  the original sets no seed at all;
* the training clips' vectors are concatenated; the original pre-allocates
  ``len(files) * vectors of the first file`` and fails when the clips differ in length (the
  DCASE clips of a machine type all have the same length, where both agree);
* a multichannel file, a clip shorter than ``frames`` frames or an unreadable file raises
  ``ValueError`` (or the reader's error); the original's training crashes on them and its
  test script logs "file broken" and leaves the clip's score at 0.0.

The training paths are sorted by their string form, as the original's ``sorted(glob(...))``
orders ``<machine>/train/*.wav``; the order decides which vectors are the held-out 10 %.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import as_strided
from torch import nn


@dataclass
class BaselineConfig:
    """Settings of the baseline; every default is ``baseline.yaml``'s (the seed aside)."""

    n_mels: int = 128  # mel bands (feature.n_mels)
    frames: int = 5  # consecutive frames concatenated into one vector (feature.frames)
    n_fft: int = 1024  # STFT size, also the window length (feature.n_fft)
    hop_length: int = 512  # STFT hop in samples (feature.hop_length)
    power: float = 2.0  # exponent of |STFT| (feature.power); log-mel = 20 / power * log10
    epochs: int = 100  # passes over the training vectors (fit.epochs)
    batch_size: int = 512  # vectors per optimiser step (fit.batch_size)
    lr: float = 1e-3  # Adam learning rate (Keras 2.1.6's default for "adam")
    validation_split: float = 0.1  # last fraction of the vectors held out (fit.validation_split)
    seed: int = 0  # seeds the initial weights and the shuffling (the original sets none)


def _log_mel_vectors(path: str | Path, cfg: BaselineConfig) -> np.ndarray:
    """``file_to_vector_array`` in float64, as the original computes it.

    Returns:
        ``(frames_in_clip - cfg.frames + 1, cfg.n_mels * cfg.frames)`` float64; row ``t`` is
        log-mel frames ``t, t + 1, ..., t + frames - 1``, band-major within each frame.
    """
    y, sr = librosa.load(path, sr=None, mono=False)
    if y.ndim != 1:
        raise ValueError(f"{path}: {y.shape[0]} channels; the baseline reads mono files only")
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        power=cfg.power,
        pad_mode="reflect",  # librosa 0.6's stft default
        dtype=np.float64,  # librosa 0.6 built the mel filterbank in float64
    )
    log_mel = 20.0 / cfg.power * np.log10(mel + sys.float_info.epsilon)
    count = log_mel.shape[1] - cfg.frames + 1
    if count < 1:
        raise ValueError(f"{path}: {log_mel.shape[1]} frames, fewer than {cfg.frames}")
    # Frames as rows of one contiguous (time, n_mels) array: the frames * n_mels values that
    # start at row t are rows t .. t + frames - 1 end to end, i.e. vector t.
    rows = np.ascontiguousarray(log_mel.T)
    item = rows.itemsize
    view = as_strided(
        rows, shape=(count, cfg.frames * cfg.n_mels), strides=(cfg.n_mels * item, item)
    )
    return view.copy()


def file_vectors(path: str | Path, cfg: BaselineConfig = BaselineConfig()) -> np.ndarray:  # noqa: B008
    """The stacked log-mel vectors of one clip, like the original's ``file_to_vector_array``.

    Args:
        path: A mono audio file, read at its own sampling rate.
        cfg: Feature settings (``n_mels``, ``frames``, ``n_fft``, ``hop_length``, ``power``).

    Returns:
        ``(vectors, cfg.n_mels * cfg.frames)`` float32 with ``vectors = stft_frames -
        cfg.frames + 1``: the original's float64 values cast as Keras casts its input.

    Raises:
        ValueError: A multichannel file, or a clip of fewer than ``cfg.frames`` frames.
    """
    return _log_mel_vectors(path, cfg).astype(np.float32)


class KerasBatchNorm1d(nn.Module):
    """Keras 2.1.6's ``BatchNormalization()`` on a TF 1 backend, for ``(batch, features)``.

    Training mode normalises with the batch mean and biased variance; the moving statistics
    used in inference mode are zero-debiased EMAs (TF 1's ``zero_debias=True``) of the batch
    mean and of the batch variance times ``n / (n - (1 + eps))``, as Keras computes them.
    """

    def __init__(self, features: int, momentum: float = 0.99, eps: float = 1e-3) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))  # gamma
        self.bias = nn.Parameter(torch.zeros(features))  # beta
        self.register_buffer("moving_mean", torch.zeros(features))
        self.register_buffer("moving_variance", torch.ones(features))
        # TF's zero-debias shadows: the zero-started EMAs and their update count.
        self.register_buffer("biased_mean", torch.zeros(features))
        self.register_buffer("biased_variance", torch.zeros(features))
        self.register_buffer("local_step", torch.zeros(()))  # float32, as in TF

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``: ``(batch, features)`` -> ``(batch, features)``."""
        if not self.training:
            return F.batch_norm(
                x, self.moving_mean, self.moving_variance, self.weight, self.bias, False, 0.0,
                self.eps,
            )  # fmt: skip
        n = x.shape[0]
        if n > 1:
            # torch's fused kernel; with momentum 1 the two scratch buffers come back as the
            # batch mean and variance (the variance with Bessel's correction).
            mean, var = torch.zeros_like(self.moving_mean), torch.ones_like(self.moving_variance)
            out = F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, self.eps)
            keras_var = var * ((n - 1) / (n - (1.0 + self.eps)))
        else:  # which refuses one row; TF's formula gives beta there (and x no gradient)
            var, mean = torch.var_mean(x, dim=0, correction=0)
            out = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
            mean, keras_var = mean.detach(), torch.zeros_like(var)
        with torch.no_grad():
            decay = 1.0 - self.momentum
            self.local_step += 1
            debias = 1.0 - torch.pow(self.momentum, self.local_step)
            self.biased_mean.sub_((self.biased_mean - mean) * decay)
            self.biased_variance.sub_((self.biased_variance - keras_var) * decay)
            torch.div(self.biased_mean, debias, out=self.moving_mean)
            torch.div(self.biased_variance, debias, out=self.moving_variance)
        return out


class BaselineAutoencoder(nn.Module):
    """``keras_model.get_model``: 4 x 128, 8, 4 x 128 hidden units, each Dense -> BN -> ReLU.

    ``history`` holds Keras' ``History.history`` of the fit: ``loss`` (per epoch, the
    sample-weighted mean of the training batches' losses) and ``val_loss`` (the held-out
    vectors in inference mode).
    """

    def __init__(self, input_dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        widths = [input_dim, 128, 128, 128, 128, 8, 128, 128, 128, 128]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [self._dense(fan_in, fan_out, generator), KerasBatchNorm1d(fan_out)]
            layers.append(nn.ReLU())
        layers.append(self._dense(widths[-1], input_dim, generator))
        self.net = nn.Sequential(*layers)
        self.history: dict[str, list[float]] = {"loss": [], "val_loss": []}

    @staticmethod
    def _dense(fan_in: int, fan_out: int, generator: torch.Generator | None) -> nn.Linear:
        """Keras ``Dense``: glorot-uniform kernel, limit ``sqrt(6 / (fan_in + fan_out))``."""
        layer = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            layer.bias.zero_()
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``: ``(batch, input_dim)`` -> ``(batch, input_dim)``."""
        return self.net(x)


class KerasAdam(torch.optim.Optimizer):
    """Keras 2.1.6's ``Adam`` (``amsgrad=False``, no decay).

    ``m, v`` as usual; ``p -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``:
    epsilon is added to the uncorrected ``sqrt(v)``, unlike ``torch.optim.Adam``.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.iterations = 0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        """One update of every parameter that has a gradient."""
        self.iterations += 1
        t = self.iterations
        for group in self.param_groups:
            b1, b2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if not self.state[p]:
                    self.state[p]["m"] = torch.zeros_like(p)
                    self.state[p]["v"] = torch.zeros_like(p)
            ms = [self.state[p]["m"] for p in params]
            vs = [self.state[p]["v"] for p in params]
            lr_t = group["lr"] * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
            torch._foreach_mul_(ms, b1)
            torch._foreach_add_(ms, grads, alpha=1.0 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, value=1.0 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, ms, denom, value=-lr_t)


def _stack(paths: Sequence[str | Path], cfg: BaselineConfig) -> np.ndarray:
    """``list_to_vector_array``: every clip's vectors, in the order of ``paths``, float32.

    Returns:
        ``(total vectors, n_mels * frames)``. Filled in place like the original (room for
        ``len(paths)`` clips as long as the first), growing only if the clips are longer.
    """
    out = np.empty((0, cfg.n_mels * cfg.frames), np.float32)
    filled = 0
    for path in paths:
        vectors = file_vectors(path, cfg)
        if filled + len(vectors) > len(out):
            grown = np.empty(
                (max(len(vectors) * len(paths), 2 * len(out), filled + len(vectors)), out.shape[1]),
                np.float32,
            )
            grown[:filled] = out[:filled]
            out = grown
        out[filled : filled + len(vectors)] = vectors
        filled += len(vectors)
    return out[:filled] if filled == len(out) else out[:filled].copy()


@torch.no_grad()
def _mean_loss(model: nn.Module, data: torch.Tensor, batch_size: int) -> float:
    """Mean squared error over ``data`` ``(n, dims)``, in batches, as Keras evaluates it."""
    total = 0.0
    for start in range(0, len(data), batch_size):
        x = data[start : start + batch_size]
        total += F.mse_loss(model(x), x, reduction="sum").item() / data.shape[1]
    return total / len(data)


def fit_baseline(
    train_paths: Sequence[str | Path],
    cfg: BaselineConfig = BaselineConfig(),  # noqa: B008
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> BaselineAutoencoder:
    """Train one baseline autoencoder (one per machine type) on normal training clips.

    Args:
        train_paths: The machine type's normal training clips, every ID; sorted here by
            their string form (as the original's ``sorted(glob)``), which decides the
            held-out last ``cfg.validation_split`` of the stacked vectors.
        cfg: Features and training settings.
        device: Where to train; the returned model stays there, in inference mode.
        progress: Called with ``(epochs done, cfg.epochs)`` after each epoch.

    Returns:
        The trained model, ``(batch, n_mels * frames)`` -> same, in ``eval()`` mode, with the
        per-epoch ``loss`` and ``val_loss`` in ``model.history``.
    """
    paths = sorted(train_paths, key=str)
    if not paths:
        raise ValueError("no training clips")
    data = _stack(paths, cfg)
    split_at = int(len(data) * (1.0 - cfg.validation_split))  # Keras' slice, before shuffling
    device = torch.device(device)
    train = torch.from_numpy(data[:split_at]).to(device)
    val = torch.from_numpy(data[split_at:]).to(device)
    if len(train) == 0:
        raise ValueError(f"no training vectors left after validation_split={cfg.validation_split}")

    generator = torch.Generator().manual_seed(cfg.seed)
    model = BaselineAutoencoder(data.shape[1], generator).to(device)
    opt = KerasAdam(model.parameters(), lr=cfg.lr)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(train), cfg.batch_size):
            x = train[order[start : start + cfg.batch_size]]
            loss = F.mse_loss(model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        model.eval()
        model.history["loss"].append(total / len(train))
        if len(val):
            model.history["val_loss"].append(_mean_loss(model, val, cfg.batch_size))
        if progress is not None:
            progress(epoch + 1, cfg.epochs)
    model.eval()
    return model


@torch.no_grad()
def score_baseline(
    model: nn.Module,
    paths: Sequence[str | Path],
    cfg: BaselineConfig = BaselineConfig(),  # noqa: B008
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Anomaly scores as ``01_test.py``: per clip, the mean over its vectors of the MSE.

    Args:
        model: A model from ``fit_baseline`` (run in inference mode here).
        paths: The clips to score, in the order wanted.
        cfg: The feature settings the model was trained with.
        device: Where to run the model.

    Returns:
        ``(len(paths),)`` float64, higher = more anomalous.
    """
    model.eval()
    device = torch.device(device)
    model.to(device)
    scores = np.empty(len(paths))
    for i, path in enumerate(paths):
        data = _log_mel_vectors(path, cfg)
        x = torch.from_numpy(data.astype(np.float32)).to(device)
        pred = model(x).cpu().numpy().astype(np.float64)
        scores[i] = np.mean(np.mean(np.square(data - pred), axis=1))
    return scores
