"""Small synthetic data sets for pipeline and CLI tests (tones per class, FSDD names), and
the command line run in-process."""

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


def invoke(*args: object) -> Any:
    """Run ``audioar ARGS...`` in-process (typer's CliRunner); returns its ``Result``."""
    from audioar_cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


#: Base frequency (Hz) of each class's tone pair.
CLASS_TONES = {"zero": 440.0, "one": 880.0, "two": 1320.0}


def write_tone_dataset(
    root: Path, *, speakers: int = 3, takes: int = 20, sample_rate: int = 8000, seed: int = 0
) -> Path:
    """FSDD-style flat folder ``{label}_{speaker}_{take}.wav`` of noisy two-tone clips.

    Takes 0-4 are the data set's test split; each class is a distinct tone pair, each
    speaker shifts the pitch a little.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for label, base in CLASS_TONES.items():
        for s in range(speakers):
            for take in range(takes):
                n = int(sample_rate * rng.uniform(0.25, 0.4))
                t = np.arange(n) / sample_rate
                f = base * (1 + 0.03 * s) * rng.uniform(0.98, 1.02)
                wave = 0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 2.5 * f * t)
                wave += 0.02 * rng.standard_normal(n)
                sf.write(root / f"{label}_spk{s}_{take}.wav", wave.astype(np.float32), sample_rate)
    return root


#: Overrides that make a fit take a second or two.
TINY = [
    "model.num_flows=2",
    "model.hidden_features=[32,32]",
    "train.epochs=6",
    "train.batch_size=16",
    "train.patience=3",
    "features.n_mels=8",
    "features.segments=2",
]

#: A WaveNet of a few seconds' fit (add WAVENET_FRAMES or mu-law settings).
WAVENET_SMALL = [
    "model.name=wavenet",
    "model.residual_channels=8",
    "model.skip_channels=8",
    "model.max_dilation=4",
    "model.dilation_cycles=1",
    "train.epochs=3",
    "train.batch_size=32",
]
#: Small log-mel frames for a sequence model.
WAVENET_FRAMES = [
    "features.name=stft",
    "features.n_fft=128",
    "features.hop_length=64",
    "features.n_mels=8",
    "model.output=gaussian",
]
