"""A synthetic machine-sound data set in the DCASE 2020 Task 2 layout (offline, deterministic).

``synthesize_machine_dataset`` writes ``OUT/<machine>/train/normal_id_XX_NNNNNNNN.wav`` and
``OUT/<machine>/test/{normal,anomaly}_id_XX_NNNNNNNN.wav`` (mono int16 WAV), a README.md
and the metadata file ``MARKER_FILE`` (one record per clip: ID, label, anomaly type,
severity, onset, SNR) in ``OUT``; ``default_machine_dataset`` makes the default set once in
the cache folder. Either appears whole or not at all.

The sound, per machine ID a fixed character (``machine_character``):

- rotation at 15-50 Hz (IDs spread over the type's range) and its first harmonics;
- blade (vane) count, hence a blade-pass tone ``blades x rotation`` and its harmonics;
- 2-3 structural resonances that colour the flow noise and the tones near them;
- broadband flow noise, coloured (power ~ f^-slope), modulated at the blade-pass rate.

Per clip: speed jitter (+-2 %) and a slow wander within the clip (under 1 %), level +-2 dB,
and a factory background at an SNR of 0-15 dB: pink to brown noise, a distant mains hum and
occasional soft knocks (present in normal and anomalous clips alike: not anomalies).

Anomalies (test clips only; one type per clip, severity drawn from ``_SEVERITY_RANGE``
times ``ANOMALY_SEVERITY``): ``bearing`` (impulses at a bearing defect rate ringing a high
resonance), ``imbalance`` (amplitude modulation at the rotation rate, stronger 1x tone),
``rubbing`` (a broadband friction burst once per rotation), ``clogging`` (flow noise and
blade-pass level change, slightly lower speed). About half of them last the whole clip,
the others start part-way (at 10-60 % of the clip, so covering at least 40 % of it).

References:
    Koizumi et al., "Description and Discussion on DCASE2020 Challenge Task2: Unsupervised
    Anomalous Sound Detection for Machine Condition Monitoring", DCASE 2020 Workshop.
    Purohit et al., "MIMII Dataset: Sound Dataset for Malfunctioning Industrial Machine
    Investigation and Inspection", DCASE 2019 Workshop.
    Randall & Antoni, "Rolling element bearing diagnostics - a tutorial", Mechanical Systems
    and Signal Processing 25(2), 2011.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audioar.data.synth.dataset import MARKER_FILE, _write_once, _write_wav, _write_whole
from audioar.data.synth.dsp import _bandpass, _signal
from audioar.errors import ConfigError, DataError
from audioar.paths import cache_root

__all__ = [
    "MACHINE_TYPES",
    "ANOMALY_TYPES",
    "ANOMALY_SEVERITY",
    "MACHINE_SAMPLE_RATES",
    "DEFAULT_MACHINE_IDS",
    "MachineCharacter",
    "machine_character",
    "synthesize_machine_dataset",
    "default_machine_dataset",
    "default_machine_dataset_name",
    "read_machine_metadata",
]

logger = logging.getLogger(__name__)

#: Difficulty knob: every anomaly's strength is multiplied by it (0: anomalous clips sound
#: normal; larger: easier). Read at generation time from this module, so set
#: ``audioar.data.synth.machine.ANOMALY_SEVERITY`` (not the re-export in
#: ``audioar.data.synth``); bump
#: ``_VERSION`` when changing the default (the cached default set is reused by version).
ANOMALY_SEVERITY = 1.0
ANOMALY_TYPES = ("bearing", "imbalance", "rubbing", "clogging")
MACHINE_SAMPLE_RATES = (8_000, 16_000)
DEFAULT_MACHINE_IDS = (0, 2, 4, 6)  # as DCASE 2020's development set
_DEFAULT_COUNTS = (30, 20, 20)  # per ID: normal training, normal test, anomalous test clips
_DEFAULT_SECONDS = 3.0
_DEFAULT_RATE = 16_000
_VERSION = 1  # of the sound and the layout: part of the cached default set's name
_FORMAT = "audioar-synth-machine"
_SEVERITY_RANGE = (0.3, 1.0)  # per-clip severity, uniform, before ANOMALY_SEVERITY
_SNR_DB = (0.0, 15.0)  # machine over factory background, per clip
#: Strength of each anomaly at severity 1, calibrated so that a Gaussian per ID on mean
#: log-mel spectra scores a mean AUC of about 0.8 (seeds 0-5: 0.79-0.87). bearing, rubbing:
#: RMS of the added sound over the normal machine's RMS in the same band; imbalance:
#: modulation depth and extra 1x amplitude (x the 1x tone's); clogging: flow noise and
#: blade-pass level changes (dB, opposite signs), slowdown (share of the speed).
_STRENGTH = {
    "bearing": {"rms": 0.45},
    "imbalance": {"am": 0.26, "one_x": 1.6},
    "rubbing": {"rms": 0.32},
    "clogging": {"flow_db": 2.5, "blade_db": 2.5, "slowdown": 0.03},
}
_PARTIAL = 0.5  # share of anomalies starting part-way (at 10-60 % of the clip)


@dataclass(frozen=True)
class _MachineType:
    """What every ID of a machine type shares: the ranges its IDs are drawn from."""

    rotation_hz: tuple[float, float]  # shaft speed range the IDs spread over
    blades: tuple[int, int]  # blade / vane count range (inclusive)
    resonance_hz: tuple[float, float]  # structural resonances, log-uniform
    flow_slope: tuple[float, float]  # flow noise power ~ f^-slope
    tonal_share: tuple[float, float]  # share of the machine's power in tones
    blade_mod: float  # depth of the flow noise's modulation at the blade-pass rate


MACHINE_TYPES = {
    "fan": _MachineType((15.0, 40.0), (5, 9), (250.0, 4000.0), (0.6, 1.2), (0.25, 0.45), 0.3),
    "pump": _MachineType((25.0, 50.0), (3, 7), (150.0, 2500.0), (1.0, 1.6), (0.35, 0.6), 0.15),
}


@dataclass(frozen=True)
class MachineCharacter:
    """The fixed sound of one machine ID (drawn by ``machine_character``)."""

    machine: str  # machine type, a key of MACHINE_TYPES
    id: int  # machine ID
    rotation_hz: float  # nominal shaft speed
    blades: int  # blade-pass tone = blades * rotation
    rotation_harmonics: tuple[float, ...]  # amplitudes of 1x, 2x, ... (before resonances)
    blade_harmonics: tuple[float, ...]  # amplitudes of the blade-pass harmonics
    blade_share: float  # share of the tonal power in blade-pass tones
    tonal_share: float  # share of the machine's power in tones
    resonances: tuple[tuple[float, float, float], ...]  # (Hz, bandwidth Hz, peak gain)
    flow_slope: float  # flow noise power ~ f^-slope
    bearing_ratio: float  # bearing defect rate / rotation rate (anomaly "bearing")
    bearing_hz: float  # resonance the bearing impacts ring
    hum_hz: float  # mains hum of the machine's hall (50 or 60 Hz)


def _stable(text: str) -> int:
    """A seed word for a name (stable across runs, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 4) for v in values)


def machine_character(machine: str = "fan", machine_id: int = 0, seed: int = 0) -> MachineCharacter:
    """The fixed character of one machine ID; the same arguments give the same machine.

    Args:
        machine: Machine type, a key of ``MACHINE_TYPES``; default ``"fan"``.
        machine_id: ID (0-99); IDs spread over the type's speed range (golden-ratio steps).
        seed: Data set seed; default 0.

    Returns:
        The ``MachineCharacter``.
    """
    kind = MACHINE_TYPES[machine]
    rng = np.random.default_rng([seed, _stable(machine), machine_id, 1])
    offset = np.random.default_rng([seed, _stable(machine), 0]).random()
    place = (offset + 0.618034 * machine_id + rng.uniform(-0.04, 0.04)) % 1.0
    lo, hi = np.log(kind.resonance_hz)
    resonances = sorted(float(np.exp(v)) for v in rng.uniform(lo, hi, int(rng.integers(2, 4))))

    def u(low: float, high: float, size: int | None = None):  # noqa: ANN202 - float or array
        return float(rng.uniform(low, high)) if size is None else rng.uniform(low, high, size)

    return MachineCharacter(
        machine=machine,
        id=machine_id,
        rotation_hz=round(float(kind.rotation_hz[0] + place * np.ptp(kind.rotation_hz)), 3),
        blades=int(rng.integers(kind.blades[0], kind.blades[1] + 1)),
        rotation_harmonics=_floats(np.exp(-u(0.3, 0.9) * np.arange(6)) * u(0.4, 1.0, 6)),
        blade_harmonics=_floats(0.5 ** np.arange(4) * u(0.5, 1.0, 4)),
        blade_share=round(u(0.4, 0.8), 4),
        tonal_share=round(u(*kind.tonal_share), 4),
        resonances=tuple(
            (round(f, 1), round(f * u(0.1, 0.3), 1), round(u(2.0, 6.0), 3)) for f in resonances
        ),
        flow_slope=round(u(*kind.flow_slope), 4),
        bearing_ratio=round(u(3.1, 5.4), 4),
        bearing_hz=round(u(2500.0, 5500.0), 1),
        hum_hz=float(rng.choice([50.0, 60.0])),
    )


# --------------------------------------------------------------------------- sound
def _response(char: MachineCharacter, f: np.ndarray) -> np.ndarray:
    """Amplitude response of the machine's structure at ``f`` (Hz): 1 plus resonance peaks."""
    h = np.ones_like(f, dtype=np.float64)
    for hz, bandwidth, gain in char.resonances:
        h += gain / (1.0 + ((f - hz) / (bandwidth / 2)) ** 2)
    return h


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, envelope: np.ndarray) -> np.ndarray:
    """White noise through an amplitude ``envelope`` on ``rfftfreq(n, 1 / sr)``, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n)) * envelope
    return np.fft.irfft(spectrum, n) / max(float(np.sqrt(np.mean(envelope**2))), 1e-12)  # ~unit


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit RMS (left alone when silent)."""
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _coloured(f: np.ndarray, slope: float, corner: float = 50.0) -> np.ndarray:
    """Amplitude of noise with power ~ f^-slope above ``corner``, high-passed below 20 Hz."""
    return (np.maximum(f, corner) / corner) ** (-slope / 2) * np.minimum(f / 20.0, 1.0)


def _tones(
    phase: np.ndarray, amps: np.ndarray, orders: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sum of ``amps[k] * sin(orders[k] * phase + random phase)``, shape of ``phase``."""
    out = np.zeros_like(phase)
    for amp, order in zip(amps, orders, strict=True):
        out += amp * np.sin(order * phase + rng.uniform(0, 2 * np.pi))
    return out


def _machine(
    char: MachineCharacter, rng: np.random.Generator, speed: np.ndarray, sr: int, mods: dict
) -> np.ndarray:
    """The machine alone (about unit RMS when normal), shape (time,).

    ``mods`` holds per-sample gain tracks set by anomalies: ``flow``, ``blade`` (level
    factors), ``one_x`` (extra 1x amplitude), ``am`` (amplitude modulation depth).
    """
    n = speed.size
    f0 = char.rotation_hz
    phase = 2 * np.pi * np.cumsum(speed) / sr
    nyquist = 0.45 * sr
    rot_orders = np.arange(1, len(char.rotation_harmonics) + 1)
    blade_orders = char.blades * np.arange(1, len(char.blade_harmonics) + 1)
    rot = np.array(char.rotation_harmonics) * _response(char, rot_orders * f0)
    blade = np.array(char.blade_harmonics) * _response(char, blade_orders * f0)
    rot *= (rot_orders * f0 < nyquist) * np.sqrt(
        2 * char.tonal_share * (1 - char.blade_share) / np.sum(rot**2)
    )
    blade *= (blade_orders * f0 < nyquist) * np.sqrt(
        2 * char.tonal_share * char.blade_share / np.sum(blade**2)
    )
    f = np.fft.rfftfreq(n, 1 / sr)
    envelope = _coloured(f, char.flow_slope) * _response(char, f) / (1 + (f / 6000.0) ** 4)
    flow = _shaped_noise(rng, n, sr, envelope)
    flow *= 1 + MACHINE_TYPES[char.machine].blade_mod * np.sin(
        char.blades * phase + rng.uniform(0, 2 * np.pi)
    )
    flow *= np.sqrt(1 - char.tonal_share) / np.sqrt(
        1 + MACHINE_TYPES[char.machine].blade_mod ** 2 / 2
    )
    one_x = rot[0] * np.sin(phase + rng.uniform(0, 2 * np.pi))
    x = _tones(phase, rot[1:], rot_orders[1:], rng) + one_x * (1 + mods.get("one_x", 0.0))
    x = x + mods.get("blade", 1.0) * _tones(phase, blade, blade_orders, rng)
    x = x + mods.get("flow", 1.0) * flow
    return x * (1 + mods.get("am", 0.0) * np.sin(phase + rng.uniform(0, 2 * np.pi)))


def _background(char: MachineCharacter, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Factory background, unit RMS: pink-brown noise, mains hum, soft knocks."""
    f = np.fft.rfftfreq(n, 1 / sr)
    x = _shaped_noise(rng, n, sr, _coloured(f, rng.uniform(1.0, 2.0), corner=30.0))
    t = np.arange(n) / sr
    hum = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * char.hum_hz * t + rng.uniform(0, 6.3))
        for k in (1, 2, 3)
    )
    x += 10 ** (rng.uniform(-12.0, -3.0) / 20) * hum
    for _ in range(rng.poisson(0.5 * n / sr)):  # soft knocks, doors, distant tools
        length = int(rng.uniform(0.05, 0.3) * sr)
        start = int(rng.integers(0, max(1, n - length)))
        b, a = _bandpass(rng.uniform(200.0, 3000.0), rng.uniform(100.0, 1500.0), sr)
        burst = _signal().lfilter(b, a, rng.standard_normal(length))
        burst *= np.exp(-np.arange(length) / (rng.uniform(0.01, 0.06) * sr))
        burst *= rng.uniform(1.0, 3.0) / max(float(np.max(np.abs(burst))), 1e-12)
        x[start : start + length] += burst[: n - start]
    return _unit(x)


def _gate(n: int, sr: int, onset_s: float) -> np.ndarray:
    """0 before ``onset_s``, then a 0.2 s raised-cosine rise to 1 (all ones for onset 0)."""
    if onset_s <= 0:
        return np.ones(n)
    t = np.arange(n) / sr - onset_s
    return np.where(t < 0, 0.0, 0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.2, 0.0, 1.0)))


def _band_rms(x: np.ndarray, sr: int, low: float, high: float) -> float:
    """RMS of ``x`` between ``low`` and ``high`` Hz."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(np.sqrt(2 * np.sum(np.abs(spectrum[(f >= low) & (f < high)]) ** 2)) / x.size)


def _anomaly(
    char: MachineCharacter,
    rng: np.random.Generator,
    kind: str,
    severity: float,
    gate: np.ndarray,
    speed: np.ndarray,
    sr: int,
) -> tuple[dict, np.ndarray, tuple[float, float]]:
    """An anomaly: modulation tracks for ``_machine``, an added sound and its band.

    Returns:
        ``(mods, extra, band)``: ``extra`` (time,) is in units of the normal machine's RMS
        within ``band`` (Hz), so an anomaly is about as audible on every ID; it is zero for
        the anomalies that only modulate the machine (``speed`` is changed in place).
    """
    n = speed.size
    mods: dict = {}
    extra = np.zeros(n)
    band = (0.0, sr / 2)
    phase = np.cumsum(speed) / sr  # in rotations
    k = _STRENGTH[kind]
    if kind == "bearing":
        defect = np.floor(phase * char.bearing_ratio)
        hits = np.flatnonzero(np.diff(defect, prepend=defect[0]))
        pulses = np.zeros(n)
        load = 0.75 + 0.25 * np.cos(2 * np.pi * phase[hits])  # load zone: stronger hits
        pulses[hits] = load * rng.uniform(0.7, 1.3, hits.size)
        r = np.exp(-1.0 / (rng.uniform(0.001, 0.003) * sr))
        hz = min(char.bearing_hz, 0.42 * sr)
        w = 2 * np.pi * hz / sr
        ring = _signal().lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], pulses)
        extra, band = k["rms"] * severity * _unit(ring), (0.7 * hz, 1.3 * hz)
    elif kind == "imbalance":
        mods = {"am": k["am"] * severity * gate, "one_x": k["one_x"] * severity * gate}
    elif kind == "rubbing":
        width = rng.uniform(0.1, 0.25)  # share of a rotation the contact lasts
        frac = (phase + rng.random()) % 1.0
        window = np.where(frac < width, np.sin(np.pi * frac / width) ** 2, 0.0)
        low = min(1000.0, 0.2 * sr)
        sos = _signal().butter(2, low, btype="highpass", fs=sr, output="sos")
        burst = _signal().sosfilt(sos, rng.standard_normal(n)) * window
        extra, band = k["rms"] * severity * _unit(burst), (low, sr / 2)
    else:  # clogging: flow noise up and blade-pass down (or the reverse), slower
        sign = rng.choice([-1.0, 1.0])
        mods = {
            "flow": 10 ** (sign * k["flow_db"] * severity * gate / 20),
            "blade": 10 ** (-sign * k["blade_db"] * severity * gate / 20),
        }
        speed *= 1 - k["slowdown"] * severity * gate
    return mods, extra * gate, band


def _clip(
    char: MachineCharacter, key: Sequence[int], n: int, sr: int, anomaly: str | None
) -> tuple[np.ndarray, dict]:
    """One clip as int16, shape (n,), and its metadata record (SNR, level, anomaly).

    ``key`` (integers) seeds the clip's draws. The normal sound and the anomaly draw from
    separate generators, so an anomalous clip's machine and background are drawn exactly as
    a normal clip's would be (and up to the anomaly's onset the two are the same samples).
    """
    normal_rng, anomaly_rng = (np.random.default_rng([*key, part]) for part in (0, 1))
    t = np.arange(n) / sr
    wander = sum(
        normal_rng.uniform(0.001, 0.003)
        * np.sin(2 * np.pi * normal_rng.uniform(0.05, 0.5) * t + normal_rng.uniform(0, 6.3))
        for _ in range(3)
    )
    jitter = normal_rng.uniform(-0.02, 0.02)
    speed = char.rotation_hz * (1 + jitter) * (1 + wander)
    snr_db = normal_rng.uniform(*_SNR_DB)
    level_db = normal_rng.uniform(-2.0, 2.0)
    record = {
        "snr_db": round(snr_db, 2),
        "level_db": round(level_db, 2),
        "speed_jitter": round(jitter, 4),
    }
    mods, extra, band = {}, np.zeros(n), (0.0, sr / 2)
    if anomaly is not None:
        severity = anomaly_rng.uniform(*_SEVERITY_RANGE) * ANOMALY_SEVERITY
        onset = 0.0
        if anomaly_rng.random() < _PARTIAL:
            onset = anomaly_rng.uniform(0.1, 0.6) * n / sr
        gate = _gate(n, sr, onset)
        mods, extra, band = _anomaly(char, anomaly_rng, anomaly, severity, gate, speed, sr)
        record.update(anomaly=anomaly, severity=round(severity, 4), onset_s=round(onset, 3))
    x = _machine(char, normal_rng, speed, sr, mods)
    if extra.any():
        x += _band_rms(x, sr, *band) * extra
    x += 10 ** (-snr_db / 20) * _background(char, normal_rng, n, sr)
    x *= 0.08 * 10 ** (level_db / 20)  # machine at about -22 dBFS
    return np.round(np.clip(x, -1.0, 32767 / 32768) * 32767.0).astype(np.int16), record


# --------------------------------------------------------------------------- data set
def _check(
    seed: int,
    machine: str,
    ids: Sequence[int],
    counts: tuple[int, int, int],
    seconds: float,
    sample_rate: int,
) -> tuple[int, ...]:
    """Check the options; return the IDs as a sorted tuple of ints."""
    if machine not in MACHINE_TYPES:
        raise ConfigError(f"unknown machine {machine!r}; known: {', '.join(MACHINE_TYPES)}")
    if sample_rate not in MACHINE_SAMPLE_RATES:
        raise ConfigError(
            f"sample_rate must be one of {', '.join(map(str, MACHINE_SAMPLE_RATES))}, "
            f"got {sample_rate}"
        )
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if isinstance(ids, str):
        ids = [i for i in ids.split(",") if i.strip()]
    try:
        ids = tuple(int(i) for i in ids)
    except (TypeError, ValueError):
        raise ConfigError(f"ids must be integers, got {list(ids)}") from None
    if not ids or len(set(ids)) != len(ids) or not all(0 <= i <= 99 for i in ids):
        raise ConfigError(f"ids must be distinct integers in 0-99, not empty; got {list(ids)}")
    if counts[0] < 1 or min(counts) < 0:
        raise ConfigError(
            "train_clips must be >= 1 and test_normal, test_anomaly >= 0; got "
            f"{', '.join(map(str, counts))}"
        )
    if not 0.5 <= seconds <= 60:
        raise ConfigError(f"seconds must be in 0.5-60, got {seconds}")
    return tuple(sorted(ids))


def _generate(
    folder: Path,
    *,
    seed: int,
    machine: str,
    ids: tuple[int, ...],
    counts: tuple[int, int, int],
    seconds: float,
    sample_rate: int,
) -> dict:
    """Write the whole data set into the (empty, existing) ``folder``; return its metadata."""
    from audioar import __version__

    start = time.perf_counter()
    n = int(round(seconds * sample_rate))
    for split in ("train", "test"):
        (folder / machine / split).mkdir(parents=True)
    records = []
    characters = {}
    for machine_id in ids:
        char = machine_character(machine, machine_id, seed)
        characters[f"{machine_id:02d}"] = asdict(char)
        # Anomaly types in (near) equal shares per ID, in a random order.
        kinds_rng = np.random.default_rng([seed, _stable(machine), machine_id, 2])
        kinds = [ANOMALY_TYPES[(i + machine_id) % len(ANOMALY_TYPES)] for i in range(counts[2])]
        kinds = [kinds[i] for i in kinds_rng.permutation(len(kinds))]
        jobs = [("train", "normal", i, None) for i in range(counts[0])]
        jobs += [("test", "normal", i, None) for i in range(counts[1])]
        jobs += [("test", "anomaly", i, kinds[i]) for i in range(counts[2])]
        for code, (split, label, index, kind) in enumerate(jobs):
            key = (seed, _stable(machine), machine_id, 3, code)
            clip, record = _clip(char, key, n, sample_rate, kind)
            name = f"{machine}/{split}/{label}_id_{machine_id:02d}_{index:08d}.wav"
            _write_wav(folder / name, clip, sample_rate)
            records.append({"file": name, "id": machine_id, "label": label, **record})
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "audioar": __version__,
        "seed": seed,
        "machine": machine,
        "ids": list(ids),
        "train_clips": counts[0],
        "test_normal": counts[1],
        "test_anomaly": counts[2],
        "clips": len(records),
        "sample_rate": sample_rate,
        "clip_seconds": seconds,
        "anomaly_severity": ANOMALY_SEVERITY,
        "severity_range": list(_SEVERITY_RANGE),
        "anomaly_strength": _STRENGTH,
        "snr_db": list(_SNR_DB),
        "characters": characters,
        "files": records,
    }
    (folder / "README.md").write_text(_readme(meta))
    (folder / MARKER_FILE).write_text(json.dumps(meta, indent=1) + "\n")  # last: complete
    logger.info("synthesised %d machine clips in %.1f s", len(records), time.perf_counter() - start)
    return meta


def _readme(meta: dict) -> str:
    """The README.md of a machine data set with metadata ``meta``."""
    machine, ids = meta["machine"], ", ".join(f"{i:02d}" for i in meta["ids"])
    lo, hi = MACHINE_TYPES[machine].rotation_hz
    rows = [
        f"| {key} | {c['rotation_hz']:.1f} | {c['blades']} | {c['blades'] * c['rotation_hz']:.0f} "
        f"| {', '.join(f'{r[0]:.0f}' for r in c['resonances'])} |\n"
        for key, c in meta["characters"].items()
    ]
    return (
        f"# audioar synthetic machine sounds: {machine} (synth-machine-v{meta['version']})\n\n"
        f"Made offline by audioar {meta['audioar']} (`audioar data synth --kind machine`), "
        f"seed **{meta['seed']}**; the same seed and options write byte-identical WAV files.\n\n"
        f"- Layout: DCASE 2020 Task 2, `{machine}/train/normal_id_XX_NNNNNNNN.wav` and "
        f"`{machine}/test/{{normal,anomaly}}_id_XX_NNNNNNNN.wav` (clip numbers count from 0 per "
        f"ID and label); point audioar at the `{machine}` folder.\n"
        f"- Clips: {meta['clips']}; machine IDs {ids}; per ID {meta['train_clips']} normal "
        f"training clips, {meta['test_normal']} normal and {meta['test_anomaly']} anomalous "
        f"test clips; {meta['clip_seconds']:g} s, {meta['sample_rate'] / 1000:g} kHz, mono, "
        "16-bit PCM.\n"
        f"- The machine ({machine}): per ID a shaft speed ({lo:g}-{hi:g} Hz) and its "
        "harmonics, a blade count and the blade-pass tone, 2-3 structural resonances and "
        "coloured flow noise modulated at the blade-pass rate. Per clip: speed +-2 % "
        "(wandering under 1 % within the clip), level +-2 dB, a factory background at "
        f"{meta['snr_db'][0]:g}-{meta['snr_db'][1]:g} dB SNR (pink to brown noise, mains hum, "
        "occasional soft knocks: these are *not* anomalies).\n"
        "- Anomalies, one per anomalous clip, the four types in near-equal shares per ID: "
        "bearing (impacts at a defect rate ringing a high resonance), imbalance (amplitude "
        "modulation at the rotation rate, stronger 1x tone), rubbing (friction bursts once per "
        "rotation), clogging (flow noise and blade-pass level change, slightly slower). About "
        "half last the whole clip, the others start part-way (at 10-60 % of the clip). "
        f"Severity knob: {meta['anomaly_severity']:g}.\n"
        f"- `{MARKER_FILE}` (JSON) holds every machine ID's parameters and, per clip, its "
        "label, anomaly type, severity, onset (`onset_s`), SNR and level.\n"
        "- Made from numbers only: no recordings are included.\n\n"
        "| ID | speed (Hz) | blades | blade-pass (Hz) | resonances (Hz) |\n"
        "|---|---|---|---|---|\n" + "".join(rows)
    )


def read_machine_metadata(folder: str | os.PathLike) -> dict:
    """The metadata of a synthetic machine data set (``OUT`` or ``OUT/<machine>``).

    Args:
        folder: The folder ``synthesize_machine_dataset`` wrote, or its machine folder.

    Returns:
        Keys ``format, version, audioar, seed, machine, ids, train_clips, test_normal,
        test_anomaly, clips, sample_rate, clip_seconds, anomaly_severity, severity_range,
        snr_db, characters, files`` (``files``: one record per clip with ``file, id,
        label, snr_db, level_db, speed_jitter`` and, for anomalies, ``anomaly, severity,
        onset_s``).

    Raises:
        DataError: The folder is not a (complete) synthetic machine data set.
    """
    folder = Path(folder)
    path = folder / MARKER_FILE
    if not path.is_file() and (folder.parent / MARKER_FILE).is_file():
        path = folder.parent / MARKER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a synthetic data set marker ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise DataError(f"{path}: not a synthetic machine data set")
    return meta


def synthesize_machine_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    machine: str = "fan",
    ids: Sequence[int] = DEFAULT_MACHINE_IDS,
    train_clips: int = _DEFAULT_COUNTS[0],
    test_normal: int = _DEFAULT_COUNTS[1],
    test_anomaly: int = _DEFAULT_COUNTS[2],
    seconds: float = _DEFAULT_SECONDS,
    sample_rate: int = _DEFAULT_RATE,
    force: bool = False,
) -> Path:
    """Write a synthetic machine-sound data set in the DCASE 2020 Task 2 layout.

    Offline and deterministic; the folder appears whole or not at all (written into a
    temporary sibling, then renamed). The defaults write 280 clips of 3 s at 16 kHz (27 MB,
    about 6 s on one core).

    Args:
        out_dir: Folder ``OUT`` to create; must be absent or empty unless ``force``.
        seed: Seed of every random draw; default 0. Same seed, same bytes.
        machine: Machine type, a key of ``MACHINE_TYPES`` (``"fan"``, ``"pump"``); default
            ``"fan"``. Also the name of the machine folder.
        ids: Machine IDs (0-99); default (0, 2, 4, 6) as DCASE 2020's development set.
        train_clips: Normal training clips per ID (>= 1); default 30.
        test_normal: Normal test clips per ID; default 20.
        test_anomaly: Anomalous test clips per ID; default 20 (the four types in near-equal
            shares).
        seconds: Clip length (0.5-60 s); default 3.0 (DCASE 2020: 10 s).
        sample_rate: 8000 or 16000 Hz; default 16000 (DCASE's rate).
        force: Replace an existing synthetic data set; default False.

    Returns:
        The machine folder ``OUT/<machine>`` (holding ``train/`` and ``test/`` only; the
        README.md and the metadata ``MARKER_FILE`` are in ``OUT``).

    Raises:
        ConfigError: Bad options.
        DataError: ``out_dir`` is a file, or a non-empty folder (without ``force``, or not a
            synthetic data set).

    Example:
        >>> root = synthesize_machine_dataset("data/machine", ids=(0, 2))  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['test', 'train']
    """
    out = Path(out_dir).expanduser()
    counts = (train_clips, test_normal, test_anomaly)
    ids = _check(seed, machine, ids, counts, seconds, sample_rate)
    _write_whole(
        out,
        force,
        lambda tmp: _generate(
            tmp,
            seed=seed,
            machine=machine,
            ids=ids,
            counts=counts,
            seconds=seconds,
            sample_rate=sample_rate,
        ),
    )
    return out / machine


def default_machine_dataset_name(machine: str = "fan", seed: int = 0) -> str:
    """Cache folder name of the default machine set, e.g. ``synth-machine-v1-fan-seed0``."""
    return f"synth-machine-v{_VERSION}-{machine}-seed{seed}"


def default_machine_dataset(*, machine: str = "fan") -> Path:
    """The default machine data set (seed 0, default options), generated on first use.

    Lives in ``audioar.paths.cache_root() / "synth-machine-v1-<machine>-seed0"`` (280 clips
    of 3 s at 16 kHz, 27 MB, about 6 s to make). Generated into a temporary
    sibling and renamed into place, so a partial folder is never returned; later calls (and
    concurrent ones that lose the race) reuse it.

    Args:
        machine: Machine type, a key of ``MACHINE_TYPES``; default ``"fan"``.

    Returns:
        The machine folder (``.../synth-machine-v1-fan-seed0/fan``).
    """
    if machine not in MACHINE_TYPES:
        raise ConfigError(f"unknown machine {machine!r}; known: {', '.join(MACHINE_TYPES)}")
    target = cache_root() / default_machine_dataset_name(machine)
    if (target / MARKER_FILE).is_file():
        return target / machine
    _write_once(
        target,
        lambda tmp: _generate(
            tmp,
            seed=0,
            machine=machine,
            ids=DEFAULT_MACHINE_IDS,
            counts=_DEFAULT_COUNTS,
            seconds=_DEFAULT_SECONDS,
            sample_rate=_DEFAULT_RATE,
        ),
    )
    logger.info("default machine data set ready at %s", target)
    return target / machine
