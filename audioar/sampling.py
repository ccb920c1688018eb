"""Generate clips of one class from a class-conditional run and write them as WAV files.

A μ-law run generates codes with WaveNet's cached (incremental) path and decodes them with
:meth:`audioar.features.MuLaw.decode`. A frames run generates log-mel (or log-magnitude)
frames; they carry no phase, so the waveform is a Griffin-Lim reconstruction
(``librosa.feature.inverse.mel_to_audio`` with the featurizer's own ``n_fft``,
``hop_length`` and Slaney mel filters): it shows what the model learnt, but sounds rough.
"""

import logging
import os
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from audioar.errors import ConfigError, DataError
from audioar.features.base import LOG_FLOOR, seconds_to_samples
from audioar.pipeline import TrainedModel

__all__ = ["generate_waveforms", "frames_to_waveform", "write_wavs"]

logger = logging.getLogger(__name__)


def generate_waveforms(
    trained: TrainedModel,
    label: str,
    n: int,
    seconds: float,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    griffin_lim_iters: int = 32,
) -> list[np.ndarray]:
    """Sample ``n`` clips of class ``label`` from a conditional run.

    Args:
        trained: A class-conditional run (:func:`audioar.pipeline.load_trained`).
        label: The class to generate (one of ``trained.classes``).
        n: Number of clips.
        seconds: Length of each clip; the result has ``round(seconds * sample_rate)``
            samples at the featurizer's sample rate.
        temperature: Sampling temperature (default 1.0; 0 = most likely step).
        seed: Seeds torch's RNG (default 0), so the same call gives the same clips.
        griffin_lim_iters: Griffin-Lim iterations for a frames run (default 32).

    Returns:
        ``n`` float32 waveforms ``(samples,)`` in ``[-1, 1]``.

    Raises:
        ConfigError: Not a conditional run, or an unknown class.
        DataError: ``n`` or ``seconds`` not positive.
    """
    if trained.classes is None:
        raise ConfigError(
            f"model {trained.config.model.name!r} is not a class-conditional sequence model; "
            "only wavenet runs can generate audio"
        )
    if label not in trained.classes:
        raise ConfigError(f"unknown class {label!r}; this run knows: {', '.join(trained.classes)}")
    if n < 1 or not seconds > 0:
        raise DataError(f"need n >= 1 and seconds > 0, got n={n}, seconds={seconds}")
    featurizer = trained.featurizer
    samples = seconds_to_samples(seconds, featurizer.sample_rate)
    labels = torch.full((n,), trained.classes.index(label), dtype=torch.long)
    torch.manual_seed(seed)
    if featurizer.name == "mulaw":
        codes = trained.model.generate(labels, samples, temperature)
        return [w.numpy().astype(np.float32) for w in featurizer.decode(codes)]
    frames = trained.model.generate(
        labels, 1 + samples // featurizer.config.hop_length, temperature
    )
    return [frames_to_waveform(f, trained, samples, griffin_lim_iters) for f in frames]


def frames_to_waveform(
    frames: Tensor, trained: TrainedModel, samples: int, n_iter: int = 32
) -> np.ndarray:
    """Griffin-Lim waveform of STFT-featurizer frames ``(time, bins)`` (log-mel or log-linear).

    Args:
        frames: Frames in the featurizer's units.
        trained: The run (its featurizer's ``n_fft``, ``hop_length``, ``n_mels`` are used).
        samples: Length of the waveform to return.
        n_iter: Griffin-Lim iterations. Default 32.

    Returns:
        float32 ``(samples,)`` in ``[-1, 1]``.
    """
    import librosa

    c = trained.featurizer.config
    values = frames.double().numpy().T  # (bins, time)
    magnitude = (
        np.clip(np.exp(values) - LOG_FLOOR, 0.0, None) if c.log else np.clip(values, 0, None)
    )
    common = {
        "n_fft": c.n_fft,
        "hop_length": c.hop_length,
        "win_length": c.win_length,
        "n_iter": n_iter,
        "length": samples,
    }
    if c.n_mels is not None:
        wave = librosa.feature.inverse.mel_to_audio(
            magnitude, sr=c.sample_rate, power=c.power, pad_mode="constant", **common
        )
    else:
        wave = librosa.griffinlim(magnitude ** (1.0 / c.power), pad_mode="constant", **common)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def write_wavs(
    waveforms: list[np.ndarray], sample_rate: int, out_dir: str | Path, prefix: str
) -> list[Path]:
    """Write 16-bit PCM WAV files ``{prefix}_{i}.wav``, each whole or not at all.

    Args:
        waveforms: float waveforms in ``[-1, 1]``.
        sample_rate: Their rate in Hz.
        out_dir: Folder (created if missing).
        prefix: File name prefix, e.g. the class.

    Returns:
        The written paths, in order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, wave in enumerate(waveforms):
        path = out / f"{prefix}_{i}.wav"
        tmp = out / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            sf.write(tmp, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    logger.info("wrote %d clips to %s", len(paths), out)
    return paths
