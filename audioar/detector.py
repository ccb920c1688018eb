"""The one object a notebook user needs: :class:`Detector`, audioar's audio anomaly detector.

It follows PyOD's habits (``fit`` returns the detector, ``decision_function`` is higher for
more unusual clips, ``predict`` gives 0/1 at the threshold learned at fit) and is the same
detector as the command line's: ``fit`` resolves its settings as ``audioar fit`` does
(family presets, machine presets on a DCASE folder), ``score`` gives the columns of
``audioar score``, and ``save`` / ``load`` write and read the command line's run directory.

Example:
    >>> import numpy as np
    >>> from audioar import Detector
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(8000) / 8000
    >>> hum = lambda: np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(8000)
    >>> clips = [(hum().astype(np.float32), 8000) for _ in range(24)]
    >>> det = Detector(epochs=3, hidden_features=[16], num_flows=1, trim_db=None)
    >>> det = det.fit(clips)                      # every clip is of the normal class
    >>> hiss = (rng.standard_normal(8000).astype(np.float32), 8000)
    >>> det.decision_function([clips[0], hiss]).argmax()  # the hiss is the unusual one
    np.int64(1)
    >>> det.predict([hiss]).tolist()
    [1]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.config.recipes import RunConfig, resolve_run_config
from audioar.config.values import field_types
from audioar.data.clips import Clip, Dataset, Split
from audioar.data.discovery import split as split_dataset
from audioar.data.layouts import is_machine_data
from audioar.errors import ConfigError, DataError
from audioar.evaluation.experiment import Evaluation, evaluate_run
from audioar.models.build import family as model_family
from audioar.pipeline.calibration import Calibration
from audioar.pipeline.fit import load_dataset, resolve_data, train_model
from audioar.pipeline.recalibrate import calibrate_trained
from audioar.pipeline.runs import load_trained, save_trained
from audioar.pipeline.score_files import expand_inputs, score_files
from audioar.pipeline.trained import FitSummary, TrainedModel

__all__ = ["Detector", "settings_overrides"]

#: Data a detector fits or scores: a folder or CSV manifest, a list of audio files, or a
#: list of ``(waveform, sample_rate)`` pairs (1-D float arrays).
Clips = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Sequence[tuple[Any, int]]

# Keywords that set more than one field, as the command line's options do.
_SHORTCUTS = {
    "seed": ("data.seed", "train.seed"),
    "epochs": ("train.epochs",),
    "device": ("train.device",),
    "split": ("data.split",),
}


def _text(value: Any) -> str:
    """A keyword's value as the text of a dotted override."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def settings_overrides(model: str, settings: Mapping[str, Any]) -> list[str]:
    """Keyword settings -> dotted overrides (``lr=1e-4`` -> ``train.lr=1e-4``).

    A keyword is a field of one section (``lr``, ``window_seconds``, ``hidden_features`` of
    the family ``model``), ``section__field`` for a name several sections share
    (``score__method``), or one of ``seed`` (data and training), ``epochs``, ``device``,
    ``split``.

    Raises:
        ConfigError: An unknown or ambiguous keyword (named, with where it could go).
    """
    from audioar.config.recipes import _SECTIONS

    fields = {name: set(field_types(cls)) for name, cls in _SECTIONS.items() if name != "model"}
    fields["model"] = set(field_types(model_family(model).Config))
    out: list[str] = []
    for key, value in settings.items():
        if key in _SHORTCUTS:
            out += [f"{target}={_text(value)}" for target in _SHORTCUTS[key]]
            continue
        if "__" in key:
            section, _, name = key.partition("__")
            if section not in fields or name not in fields[section]:
                raise ConfigError(f"Detector: unknown setting {key!r} ({section}.{name})")
            out.append(f"{section}.{name}={_text(value)}")
            continue
        owners = [section for section, names in fields.items() if key in names]
        if not owners:
            raise ConfigError(
                f"Detector: unknown setting {key!r}; a keyword names a field of data, features, "
                f"model ({model}), score, train or calibration, or section__field"
            )
        if len(owners) > 1:
            choices = " or ".join(f"{s}__{key}" for s in owners)
            raise ConfigError(f"Detector: setting {key!r} is ambiguous; write {choices}")
        out.append(f"{owners[0]}.{key}={_text(value)}")
    return out


def _is_pair(item: object) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], str | Path)


class Detector:
    """An audio anomaly detector: a density model of the normal sound, a score and a
    threshold.

    Args:
        model: The model family (``maf``, ``made``, ``nade``, ``fvsbn``, ``wavenet``,
            ``pixelcnn``). Default ``maf``.
        features: ``segments`` (default), ``fft``, ``stft`` or ``mulaw``.
        recipe: A TOML recipe to start from instead of the presets. Default None.
        **settings: Any recipe setting by keyword (see :func:`settings_overrides`), e.g.
            ``seed=0, epochs=40, lr=1e-4, window_seconds=1.0, score__method="raw"``.

    Attributes (after ``fit`` or ``load``):
        trained_: The fitted :class:`audioar.pipeline.trained.TrainedModel`.
        threshold_: The anomaly-score threshold (``predict`` flags scores above it).
        classes_: The model's classes (labels, machine IDs, or the normal class alone).
        run_dir: Where the detector was saved or loaded from, or None.
    """

    def __init__(
        self,
        model: str = "maf",
        features: str = "segments",
        *,
        recipe: str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> None:
        self.model = model
        self.features = features
        self.recipe = recipe
        self.settings = dict(settings)
        self.overrides = [
            f"model.name={model}",
            f"features.name={features}",
            *settings_overrides(model, settings),
        ]
        resolve_run_config(recipe, self.overrides)  # bad settings fail here, at once
        self.trained_: TrainedModel | None = None
        self.summary_: FitSummary | None = None
        self.run_dir: Path | None = None
        self._data: tuple[Dataset, Split] | None = None
        self._tmp: Path | None = None

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        state = "fitted" if self.trained_ is not None else "not fitted"
        return f"Detector(model={self.model!r}, features={self.features!r}{extra}) [{state}]"

    # ------------------------------------------------------------------ state

    @property
    def fitted(self) -> TrainedModel:
        """The fitted model; ConfigError before ``fit`` or ``load``."""
        if self.trained_ is None:
            raise ConfigError("this Detector is not fitted yet: call fit() or Detector.load()")
        return self.trained_

    @property
    def config(self) -> RunConfig:
        """The resolved run configuration (the fitted one once fitted)."""
        if self.trained_ is not None:
            return self.trained_.config
        return resolve_run_config(self.recipe, self.overrides)

    @property
    def threshold_(self) -> float:
        """The calibrated anomaly-score threshold."""
        return float(self.fitted.calibration.threshold)

    @property
    def classes_(self) -> list[str]:
        """The model's classes."""
        return list(self.fitted.classes)

    def _workdir(self) -> Path:
        """A temporary folder for in-memory waveforms, removed with the detector."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="audioar-detector-"))
            weakref.finalize(self, shutil.rmtree, str(self._tmp), True)
        return self._tmp

    def _files(self, x: Clips, sample_rate: int | None = None) -> list[Path]:
        """Audio files for ``x``: paths as given (folders and manifests expanded), waveforms
        written to temporary float WAV files (lossless; read back like any file)."""
        if isinstance(x, str | os.PathLike):
            return expand_inputs([x])
        if isinstance(x, np.ndarray):
            if sample_rate is None:
                raise ConfigError("score an array of waveforms with sample_rate=...")
            x = [(row, sample_rate) for row in np.atleast_2d(x)]
        items = list(x)
        if not items:
            raise DataError("no clips given")
        if not all(_is_pair(item) for item in items):
            if any(_is_pair(item) for item in items):
                raise DataError("give either paths or (waveform, sample_rate) pairs, not both")
            return expand_inputs(items)
        import soundfile as sf

        folder = Path(tempfile.mkdtemp(prefix="clips-", dir=self._workdir()))
        paths = []
        for i, (wave, rate) in enumerate(items):
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1:
                raise DataError(f"clip {i}: a waveform must be 1-D (time,), got {wave.shape}")
            path = folder / f"clip_{i:06d}.wav"
            sf.write(path, wave, int(rate), subtype="FLOAT")
            paths.append(path)
        return paths

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        data: Clips,
        target: str | None = None,
        *,
        labels: Sequence[str] | None = None,
        split: str | None = None,
        layout: str | None = None,
        use_cache: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> Detector:
        """Fit the density model to the normal class and calibrate its threshold.

        Args:
            data: A data-set folder or CSV manifest (any layout ``audioar fit`` reads: a DCASE
                machine folder gets the machine presets), a list of audio files, or a list of
                ``(waveform, sample_rate)`` pairs.
            target: The normal class. Default None: the layout's (a DCASE folder's
                ``normal``), ``normal`` for a list without labels, else ``zero``.
            labels: One label per item of a list (default: all of class ``target``); a
                class-conditional model learns every label.
            split: ``official`` | ``random`` | ``speaker:NAME``. Default: the settings' (a
                list: all of it for training and validation, no test part).
            layout: Force a folder's layout.
            use_cache: Use the on-disk feature cache.
            progress: Called with ``(steps done, step budget)``.

        Returns:
            The detector itself.
        """
        folder = isinstance(data, str | os.PathLike)
        chosen = list(self.overrides)
        if folder:
            chosen.append(f"data.root={Path(data)}")
            if layout is not None:
                chosen.append(f"data.layout={layout}")
        if target is not None:
            chosen.append(f"data.target={target}")
        if split is not None:
            chosen.append(f"data.split={split}")
        machine = folder and is_machine_data(data, layout)
        cfg = resolve_run_config(self.recipe, chosen, machine=machine)
        if folder:
            dataset = load_dataset(Path(data), layout)
        else:
            dataset = self._listed(data, labels, target or "normal")
            if target is None:
                cfg = replace(cfg, data=replace(cfg.data, target=target or "normal"))
        cfg = resolve_data(cfg, dataset)
        if folder or split is not None:
            parts = split_dataset(
                dataset,
                cfg.data.split,
                validation_fraction=cfg.data.validation_fraction,
                seed=cfg.data.seed,
            )
        else:  # a list: every clip trains or validates
            parts = split_dataset(
                dataset,
                "random",
                validation_fraction=cfg.data.validation_fraction,
                test_fraction=0.0,
                seed=cfg.data.seed,
            )
        self.trained_, self.summary_ = train_model(
            cfg, dataset, parts, use_cache=use_cache, progress=progress
        )
        self._data = (dataset, parts)
        self.run_dir = None
        return self

    def _listed(self, data: Clips, labels: Sequence[str] | None, target: str) -> Dataset:
        files = self._files(data)
        if labels is not None and len(labels) != len(files):
            raise DataError(f"{len(files)} clips but {len(labels)} labels")
        names = [str(label) for label in labels] if labels is not None else [target] * len(files)
        clips = [Clip(path, label) for path, label in zip(files, names, strict=True)]
        root = files[0].parent if files else Path(".")
        return Dataset(root, "list", sorted(clips, key=lambda c: c.path))

    # ------------------------------------------------------------------ score

    def score(
        self,
        x: Clips,
        *,
        sample_rate: int | None = None,
        use_cache: bool = True,
        trace_dir: str | os.PathLike[str] | None = None,
    ) -> pd.DataFrame:
        """Score clips: the table ``audioar score`` writes, one row per clip in order.

        Args:
            x: A file, folder or manifest, a list of files, a list of ``(waveform,
                sample_rate)`` pairs, or an array ``(n, time)`` / ``(time,)`` with
                ``sample_rate``.
            sample_rate: The rate of an array's waveforms.
            use_cache: Use the on-disk feature cache.
            trace_dir: Also write each clip's trace there (``audioar score --trace``).

        Returns:
            Columns ``path, log_likelihood, nats_per_dim``, every score of the run,
            ``anomaly_score, p_value, is_anomaly, error``; a clip that cannot be scored has
            its reason in ``error`` and empty scores.
        """
        trained = self.fitted
        files = self._files(x, sample_rate)
        tables = score_files(trained, files, use_cache=use_cache, trace_dir=trace_dir)
        return pd.concat(list(tables), ignore_index=True)

    def decision_function(self, x: Clips, *, sample_rate: int | None = None) -> np.ndarray:
        """Anomaly scores, higher = more unusual (PyOD's convention).

        Returns:
            ``(n,)`` float64.

        Raises:
            DataError: A clip could not be scored (its path and reason).
        """
        table = self.score(x, sample_rate=sample_rate)
        bad = table[table["error"].astype(bool)]
        if len(bad):
            row = bad.iloc[0]
            raise DataError(f"{row['path']}: {row['error']} ({len(bad)} clip(s) not scored)")
        return table["anomaly_score"].to_numpy(dtype=np.float64)

    def predict(self, x: Clips, *, sample_rate: int | None = None) -> np.ndarray:
        """1 for clips whose anomaly score is above the threshold, else 0: ``(n,)`` int64."""
        scores = self.decision_function(x, sample_rate=sample_rate)
        return (scores > self.threshold_).astype(np.int64)

    # ------------------------------------------------------------------ calibrate, evaluate

    def calibrate(
        self, x: Clips, *, target_fpr: float | None = None, method: str | None = None
    ) -> Calibration:
        """Set the threshold anew from normal clips recorded where the detector will run
        (``audioar calibrate``); stored in the run directory too when the detector was
        saved or loaded.

        Returns:
            The new calibration.
        """
        trained = self.fitted
        files = self._files(x)
        if self.run_dir is not None:
            from audioar.pipeline.recalibrate import recalibrate

            after = recalibrate(self.run_dir, files, target_fpr=target_fpr, method=method).after
        else:
            after, _, _ = calibrate_trained(trained, files, target_fpr=target_fpr, method=method)
        trained.calibration = after
        return after

    def evaluate(
        self,
        data: str | os.PathLike[str] | None = None,
        *,
        split: str | None = None,
        out: str | os.PathLike[str] | None = None,
        resamples: int = 1000,
        dcase_year: int | None = None,
    ) -> Evaluation:
        """``audioar evaluate``: score held-out clips of every class against the normal one.

        Args:
            data: The data set. Default: the one fitted on.
            split: ``official`` | ``random`` | ``speaker:NAME`` | ``loso``. Default: the
                fit's.
            out: The evaluation folder. Default: ``RUN/eval`` of a saved detector, else a
                temporary folder.
            resamples: Bootstrap resamples of the intervals.
            dcase_year: DCASE folders: the challenge year of the official score.
        """
        trained = self.fitted
        if out is None:
            out = self.run_dir / "eval" if self.run_dir else self._workdir() / "eval"
        return evaluate_run(
            trained,
            data_root=data,
            scheme=split,
            out_dir=out,
            resamples=resamples,
            dcase_year=dcase_year,
        )

    def report(self) -> tuple[Path, Path]:
        """``audioar report``: ``report.html`` and ``report.md`` of the saved detector."""
        from audioar.report.build import build_report

        if self.run_dir is None:
            raise ConfigError("save the detector (det.save(path)) before making its report")
        return build_report(self.run_dir)

    # ------------------------------------------------------------------ save, load

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the command line's run directory (``audioar score --model PATH`` reads it).

        Returns:
            The run directory.
        """
        trained = self.fitted
        if self._data is None or self.summary_ is None:
            if self.run_dir is None:
                raise ConfigError("nothing to save: this detector was not fitted here")
            if Path(path).resolve() != self.run_dir.resolve():
                shutil.copytree(self.run_dir, path, dirs_exist_ok=overwrite)
            self.run_dir = Path(path)
            return self.run_dir
        dataset, parts = self._data
        save_trained(trained, self.summary_, dataset, parts, path, overwrite=overwrite)
        self.run_dir = Path(path)
        return self.run_dir

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Detector:
        """A detector from a run directory (``audioar fit --out`` or :meth:`save`)."""
        trained = load_trained(path)
        cfg = trained.config
        detector = cls(model=cfg.model.name, features=cfg.features.name)
        detector.trained_ = trained
        detector.run_dir = Path(path)
        return detector
