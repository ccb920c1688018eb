"""A scikit-learn-style density estimator over tables: any audioar family, one training loop.

``DensityEstimator(model="maf").fit(X).score_samples(X_test)`` builds the family through
the registry (:func:`audioar.models.build.build_model`) for ``InputSpec("vector", (D,))``,
optionally wraps it in :class:`~audioar.models.standardize.Standardized` (z-scores from the
training rows; log-likelihoods stay those of the raw columns) and trains it with
:func:`audioar.pipeline.train.fit` (Adam, early stopping on the validation log-likelihood, best
weights restored). Binary families (``output="bernoulli"``) take ``{0, 1}`` tables and are
never standardised.

A saved estimator is a folder: ``config.json`` (the family, its settings, the training
settings, the table width), ``weights.pt`` (a plain state dict, read with
``torch.load(weights_only=True)``) and ``history.csv``, put in place whole.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audioar.atomic import replace_dir, temp_sibling
from audioar.config.recipes import TrainConfig
from audioar.density.recipe import make_config, resolve_family
from audioar.density.tables import check_array
from audioar.errors import ConfigError, DataError, RunFormatError
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.pipeline.batches import log_likelihoods

__all__ = ["DensityEstimator", "ESTIMATOR_FORMAT", "ESTIMATOR_VERSION"]

logger = logging.getLogger(__name__)

ESTIMATOR_FORMAT = "audioar-density"
ESTIMATOR_VERSION = 1


class DensityEstimator:
    """Fit a density model to the rows of a table and score new rows.

    Args:
        model: A family name (``"maf"``, ``"made"``, ``"nade"``, ``"fvsbn"``, anything in
            :data:`audioar.models.build.FAMILIES`) or a model class following
            :mod:`audioar.models.contract` (``Config``, ``from_spec``). Default ``"maf"``.
        model_params: The family's settings: ``None`` (its defaults), a dict of its
            ``Config`` fields, or a ``Config`` instance.
        train: A :class:`~audioar.config.recipes.TrainConfig`; ``None``: its defaults.
        validation_fraction: When :meth:`fit` gets no ``X_val``, the last this share of
            ``X`` (in row order, like the MAF paper) is held out for early stopping;
            ``0``: no validation, the last epoch's weights are kept. Default ``0.1``.
        standardize: Train on z-scored columns (training mean and std), default ``True``;
            ignored for binary families.

    Attributes:
        model_: The fitted model (a :class:`Standardized` wrapper), after :meth:`fit`.
        n_features_in_: Columns of the training table.
        fit_result_: The :class:`audioar.pipeline.train.FitResult` (history, best epoch, why it
            stopped); ``None`` for a loaded estimator.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(500, 3))
        >>> est = DensityEstimator("maf", {"num_flows": 2, "hidden_features": (16, 16)},
        ...                        TrainConfig(epochs=2, device="cpu"))
        >>> est.fit(X).score_samples(X[:4]).shape
        (4,)
    """

    def __init__(
        self,
        model: str | type = "maf",
        model_params: Any = None,
        train: TrainConfig | None = None,
        validation_fraction: float = 0.1,
        standardize: bool = True,
    ) -> None:
        self.model = model
        self.model_params = model_params
        self.train = train
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.fit_result_: Any = None

    # ------------------------------------------------------------- settings
    def _family(self) -> tuple[str, type]:
        """``(name, class)``; a class given directly is named ``module:Class``."""
        if isinstance(self.model, str):
            return self.model, resolve_family(self.model)
        cls = self.model
        if not all(hasattr(cls, a) for a in ("Config", "from_spec", "log_prob")):
            raise ConfigError(f"{cls!r} is not a model family (needs Config and from_spec)")
        return f"{cls.__module__}:{cls.__qualname__}", cls

    def _config(self, cls: type) -> Any:
        params = self.model_params
        if params is None:
            return cls.Config()
        if isinstance(params, cls.Config):
            return params
        if isinstance(params, dict):
            return make_config(cls.Config, params, "model", family=cls.__name__.lower())
        raise ConfigError(
            f"model_params must be None, a dict or a {cls.Config.__name__}, "
            f"got {type(params).__name__}"
        )

    @staticmethod
    def _binary(config: Any) -> bool:
        return getattr(config, "output", None) == "bernoulli"

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: Any,
        X_val: Any = None,
        *,
        on_epoch: Callable[[Any], dict[str, float] | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> DensityEstimator:
        """Train on the rows of ``X``.

        Args:
            X: ``(rows, features)`` numbers.
            X_val: Validation rows for early stopping; ``None``: the last
                ``validation_fraction`` of ``X``.
            on_epoch: Passed to :func:`audioar.pipeline.train.fit` (per-epoch statistics).
            progress: Passed to :func:`audioar.pipeline.train.fit` (steps done, step budget).

        Returns:
            ``self``.

        Raises:
            DataError: Non-finite or non-binary data (for a binary family), or too few rows.
            ConfigError: Unknown family or settings.
        """
        from audioar.pipeline.train import fit

        name, cls = self._family()
        config = self._config(cls)
        train_cfg = self.train if self.train is not None else TrainConfig()
        X = check_array(X, "X")
        if X_val is not None:
            X_val = check_array(X_val, "X_val")
            if X_val.shape[1] != X.shape[1]:
                raise DataError(f"X_val has {X_val.shape[1]} columns, X has {X.shape[1]}")
        elif self.validation_fraction > 0:
            if not 0 < self.validation_fraction < 1:
                raise ConfigError(
                    f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
                )
            n_val = max(1, int(self.validation_fraction * len(X)))
            if len(X) - n_val < 2:
                raise DataError(f"{len(X)} rows are too few to hold out a validation part")
            X, X_val = X[:-n_val], X[-n_val:]
        binary = self._binary(config)
        if binary:
            for part, rows in (("X", X), ("X_val", X_val)):
                if rows is not None and not np.isin(rows, (0.0, 1.0)).all():
                    raise DataError(f"{part}: model {name} (bernoulli) needs values in {{0, 1}}")
        features = X.shape[1]
        spec = InputSpec("vector", (features,), levels=2 if binary else 0)
        network = _build(name, cls, config, spec)
        x = torch.from_numpy(X)
        if self.standardize and not binary:
            mean, std = x.double().mean(0).float(), x.double().std(0).float()
            wrapped = Standardized(network, spec, mean, std)
        else:
            wrapped = Standardized(network, spec)
        val = torch.from_numpy(X_val) if X_val is not None else None
        self.fit_result_ = fit(wrapped, x, val, train_cfg, on_epoch=on_epoch, progress=progress)
        self.model_ = wrapped.eval()
        self.n_features_in_ = features
        self._name, self._config_, self._binary_ = name, config, binary
        return self

    # -------------------------------------------------------------- scoring
    def _fitted(self) -> Standardized:
        model = getattr(self, "model_", None)
        if model is None:
            raise ConfigError("this DensityEstimator is not fitted yet: call fit() or load()")
        return model

    def score_samples(self, X: Any, batch_size: int = 4096) -> np.ndarray:
        """Log-likelihood of every row, nats, in the raw units of ``X``.

        Args:
            X: ``(rows, features)``.
            batch_size: Rows per forward pass, default ``4096``.

        Returns:
            ``(rows,)`` float64.
        """
        model = self._fitted()
        X = check_array(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has {X.shape[1]} columns; the model was fit on {self.n_features_in_}"
            )
        if self._binary_ and not np.isin(X, (0.0, 1.0)).all():
            raise DataError("X: a binary (bernoulli) model scores values in {0, 1} only")
        ll = log_likelihoods(model, torch.from_numpy(X), batch_size=batch_size)
        return ll.double().numpy()

    def score(self, X: Any) -> float:
        """Mean log-likelihood per row, nats (as ``GaussianMixture.score``)."""
        return float(self.score_samples(X).mean())

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` rows drawn from the model, raw units, ``(n, features)`` float32."""
        model = self._fitted().eval()
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            rows = model.sample(n)
        return rows.detach().float().cpu().numpy()

    # --------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator as the folder ``path`` (replaced whole).

        Returns:
            ``path``.
        """
        model = self._fitted()
        config = {
            "format": ESTIMATOR_FORMAT,
            "version": ESTIMATOR_VERSION,
            "model": self._name,
            "model_params": _jsonable(dataclasses.asdict(self._config_)),
            "train": _jsonable(dataclasses.asdict(self.train or TrainConfig())),
            "standardize": self.standardize,
            "validation_fraction": self.validation_fraction,
            "features": self.n_features_in_,
            "binary": self._binary_,
        }
        result = self.fit_result_
        if result is not None:
            config["fit"] = {
                "best_epoch": result.best_epoch,
                "best_val_log_likelihood": _finite_or_none(result.best_val_log_likelihood),
                "stopped": result.stopped,
                "epochs": len(result.history),
            }
        tmp = temp_sibling(path, "write")
        try:
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            torch.save(state, tmp / "weights.pt")
            if result is not None and result.history:
                _write_history(tmp / "history.csv", result.history)
            return replace_dir(tmp, path)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> DensityEstimator:
        """Read an estimator written by :meth:`save` (weights with ``weights_only=True``).

        Raises:
            RunFormatError: Not such a folder, another format or version, or weights that
                do not fit the stored settings.
        """
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text())
        except FileNotFoundError:
            raise RunFormatError(f"{path}: no config.json (not a density run)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFormatError(f"{path}/config.json: not JSON ({exc})") from None
        if config.get("format") != ESTIMATOR_FORMAT:
            raise RunFormatError(f"{path}: not a density run (format {config.get('format')!r})")
        if config.get("version") != ESTIMATOR_VERSION:
            raise RunFormatError(
                f"{path}: density run version {config.get('version')!r}; this audioar reads "
                f"{ESTIMATOR_VERSION}"
            )
        name = config["model"]
        family = _stored_family(name, path)
        params = make_config(family.Config, config["model_params"], "model", family=name)
        train = make_config(TrainConfig, config["train"], "train")
        est = cls(
            family if ":" in name else name,
            params,
            train,
            config["validation_fraction"],
            config["standardize"],
        )
        features, binary = int(config["features"]), bool(config["binary"])
        spec = InputSpec("vector", (features,), levels=2 if binary else 0)
        model = Standardized(_build(name, family, params, spec), spec)
        try:
            state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise RunFormatError(f"{path}: no weights.pt") from None
        except Exception as exc:  # truncated file, other model's keys or shapes
            raise RunFormatError(
                f"{path}/weights.pt: does not fit the stored model ({type(exc).__name__})"
            ) from None
        est.model_ = model.eval()
        est.n_features_in_ = features
        est._name, est._config_, est._binary_ = name, params, binary
        return est


def _build(name: str, cls: type, config: Any, spec: InputSpec) -> nn.Module:
    """Through the registry for a registered ``name``; a user's own class (``module:Class``)
    by its ``from_spec``."""
    from audioar.models.build import FAMILIES, build_model

    return build_model(name, config, spec) if name in FAMILIES else cls.from_spec(config, spec)


def _stored_family(name: str, path: Path) -> type:
    if ":" not in name:
        return resolve_family(name)
    module, _, attribute = name.partition(":")
    if not module.startswith("audioar."):  # a config file never chooses code to import
        raise RunFormatError(f"{path}: model class {name!r} is outside audioar; load refused")
    import importlib

    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        raise RunFormatError(f"{path}: model class {name!r} not found") from None


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: list(v) if isinstance(v, tuple) else ("none" if v is None else v)
        for k, v in values.items()
    }


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    path.write_text(buffer.getvalue())
