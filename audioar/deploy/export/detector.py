"""One module that is a whole trained run: waveforms in, calibrated anomaly scores out.

:class:`ExportedDetector` holds the run's featurizer (the library's own module, compiled
by TorchScript: trimming, MFCCs, CMVN and windows included), a TorchScript twin of its
density model with the standardisation (:mod:`audioar.deploy.export.densities`), the score
method, the aggregation of a windowed run's windows and the calibrated threshold. Its
numbers are those of :func:`audioar.pipeline.scoring.score_features` (tests compare them).

Sign convention as in :mod:`audioar.pipeline.scoring`: ``forward`` returns *anomaly scores*
(higher = more unusual), minus the run's chosen per-clip score.
"""

import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.config.sections import aggregate_quantile
from audioar.deploy.export.densities import ExportError, StandardizedTwin, density_twin
from audioar.pipeline.trained import TrainedModel
from audioar.pipeline.windows import is_windowed, model_featurizer

__all__ = ["ExportedDetector", "SUPPORTED_FEATURES", "SUPPORTED_SCORES", "build_detector"]

#: Featurizers an exported detector can hold (each also windowed).
SUPPORTED_FEATURES = ("segments", "fft")
_REFUSED_FEATURES = {
    "stft": "its per-clip timing normalisation is not compiled to TorchScript yet",
    "mulaw": "its codes feed sequence models, which are not exported yet",
}
#: Score methods an exported detector computes.
SUPPORTED_SCORES = ("raw", "per_step", "posterior", "likelihood_ratio", "typicality")
_REFUSED_SCORES = {
    "complexity": "its code length is zlib's compressed size, not a tensor operation",
}


class ExportedDetector(nn.Module):
    """A trained run as one module: ``forward(waveform) -> (batch,)`` anomaly scores.

    Attributes:
        sample_rate: The rate (Hz) the waveforms must have.
        threshold: The calibrated threshold on the anomaly score (a clip above it is
            anomalous); may be set after loading.
        classes: The class names of the model's class indices (``groups`` indexes them).
        target: The target (normal) class.
        score_method: The run's score (``raw``, ``per_step``, ``posterior``,
            ``likelihood_ratio`` or ``typicality``).
        by_group: Whether each clip is scored against its own group (machine ID).

    Shapes:
        ``waveform`` ``(batch, time)`` (or ``(time,)``) float32 at ``sample_rate``, each
        clip from sample 0, zero-padded at the end; ``lengths`` ``(batch,)`` real samples
        per clip (default: every row whole); ``groups`` ``(batch,)`` class indices into
        ``classes`` (``-1`` or out of range: the clip's most likely class; default all
        ``-1``; only for a run conditioned on groups) -> ``(batch,)`` float64.
    """

    threshold: float
    sample_rate: int
    classes: list[str]
    target: str
    aggregate: str
    score_method: Final[str]
    by_group: Final[bool]
    windowed: Final[bool]
    window: Final[int]
    hop: Final[int]
    quantile: Final[float]
    mean_aggregate: Final[bool]
    target_index: Final[int]
    typical: Final[float]
    padding: Final[int]

    def __init__(
        self,
        featurizer: nn.Module,
        model: StandardizedTwin,
        background: StandardizedTwin | None,
        *,
        sample_rate: int,
        threshold: float,
        classes: list[str],
        target: str,
        score_method: str,
        by_group: bool,
        aggregate: str = "mean",
        window: int = 0,
        hop: int = 0,
        typical: float | None = None,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.model = model
        self.backgrounds = nn.ModuleList([] if background is None else [background])
        self.sample_rate = int(sample_rate)
        self.threshold = float(threshold)
        self.classes = [str(c) for c in classes]
        self.target = str(target)
        self.target_index = self.classes.index(target) if target in self.classes else -1
        self.score_method = score_method
        self.by_group = bool(by_group)
        self.windowed = window > 0
        self.window, self.hop = int(window), int(hop)
        self.aggregate = aggregate
        q = aggregate_quantile(aggregate)
        self.mean_aggregate = math.isnan(q)
        self.quantile = 0.0 if math.isnan(q) else float(q)
        self.typical = math.nan if typical is None else float(typical)
        # Zeros appended to every row before featurizing (an ONNX graph has no branch on
        # the clip's length: padding past every window and frame size keeps it on one path;
        # the real lengths make the padding count for nothing).
        self.padding = int(padding)

    def forward(
        self, waveform: Tensor, lengths: Tensor | None = None, groups: Tensor | None = None
    ) -> Tensor:
        """``(batch,)`` float64 anomaly scores (higher = more unusual); see the class."""
        x = waveform.float()
        if x.dim() == 1:
            x = x.unsqueeze(0)
        batch, time = x.shape[0], x.shape[1]
        if lengths is None:
            real = torch.full((batch,), time, dtype=torch.int64, device=x.device)
        else:
            real = lengths.reshape(-1).to(device=x.device, dtype=torch.int64).clamp(0, time)
        own = self._own(groups, batch, x.device)
        if self.padding > 0:
            x = F.pad(x, (0, self.padding))
        features = self.featurizer(x, real)
        if not self.windowed:
            return -self._scores(features.reshape(batch, -1), own)
        windows = features.shape[1]
        rows = features.reshape(batch * windows, -1)
        own = own.unsqueeze(1).expand(batch, windows).reshape(-1)  # each clip's, per window
        values = self._scores(rows, own).view(batch, windows)
        counts = torch.where(
            real <= self.window,
            torch.ones_like(real),
            1 + torch.div(real - self.window, self.hop, rounding_mode="floor"),
        )
        return self._aggregate(-values, counts)

    @torch.jit.export
    def is_anomaly(
        self, waveform: Tensor, lengths: Tensor | None = None, groups: Tensor | None = None
    ) -> Tensor:
        """``(batch,)`` bool: anomaly score above :attr:`threshold`."""
        return self.forward(waveform, lengths, groups) > self.threshold

    def _own(self, groups: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """``(batch,)`` the class each clip is scored against; ``-1``: its most likely."""
        if not self.by_group:
            if groups is not None:
                raise ValueError("groups are only taken by a detector conditioned on groups")
            return torch.full((batch,), self.target_index, dtype=torch.int64, device=device)
        if groups is None:
            return torch.full((batch,), -1, dtype=torch.int64, device=device)
        own = groups.reshape(-1).to(device=device, dtype=torch.int64)
        if own.shape[0] != batch:
            raise ValueError("groups must give one class index per clip")
        known = (own >= 0) & (own < len(self.classes))
        return torch.where(known, own, torch.full_like(own, -1))

    def _scores(self, rows: Tensor, own: Tensor) -> Tensor:
        """``(rows,)`` float64: the run's per-clip score (higher = more normal) of each row."""
        per_class = self.model.all_classes(rows).double()  # (rows, classes)
        own = torch.where(own < 0, per_class.argmax(dim=1), own)
        ll = per_class.gather(1, own.unsqueeze(1)).squeeze(1)
        method = self.score_method
        if method == "raw" or method == "per_step":  # a vector is one step
            return ll
        if method == "posterior":
            if per_class.shape[1] < 2:
                return torch.zeros_like(ll)
            others = per_class.scatter(1, own.unsqueeze(1), -math.inf)
            return -torch.logaddexp(torch.zeros_like(ll), torch.logsumexp(others, 1) - ll)
        if method == "likelihood_ratio":
            background = torch.zeros_like(ll)
            for model in self.backgrounds:
                background = model.all_classes(rows).double()[:, 0]
            return ll - background
        return -torch.abs(ll - self.typical)  # typicality

    def _aggregate(self, anomaly: Tensor, counts: Tensor) -> Tensor:
        """Windows' anomaly scores ``(batch, windows)`` -> ``(batch,)`` per clip: their
        mean or quantile over each clip's first ``counts`` windows, as
        :func:`audioar.pipeline.windows.aggregate` (numpy's linear quantile)."""
        windows = anomaly.shape[1]
        valid = torch.arange(windows, device=anomaly.device).unsqueeze(0) < counts.unsqueeze(1)
        n = counts.to(anomaly.dtype)
        if self.mean_aggregate:
            return torch.where(valid, anomaly, torch.zeros_like(anomaly)).sum(1) / n
        ordered = torch.where(valid, anomaly, torch.full_like(anomaly, math.inf)).sort(1)[0]
        position = self.quantile * (n - 1)
        low = position.floor()
        frac = position - low
        low_index = low.to(torch.int64)
        high_index = torch.minimum(low_index + 1, counts - 1)
        a = ordered.gather(1, low_index.unsqueeze(1)).squeeze(1)
        b = ordered.gather(1, high_index.unsqueeze(1)).squeeze(1)
        diff = b - a
        return torch.where(frac >= 0.5, b - diff * (1 - frac), a + diff * frac)


def check_supported(trained: TrainedModel) -> None:
    """Refuse (one line, naming why and what is supported) a run the detector cannot hold.

    Raises:
        ExportError: An unsupported model family, featurizer or score.
    """
    name = trained.config.model.name
    inner = model_featurizer(trained.featurizer)
    density_name_ok = name in ("maf", "made", "nade", "fvsbn")
    if density_name_ok and inner.name not in SUPPORTED_FEATURES:
        why = _REFUSED_FEATURES.get(inner.name, "it has no TorchScript path")
        raise ExportError(
            f"export: features {inner.name} are not supported yet ({why}); supported: "
            f"{', '.join(SUPPORTED_FEATURES)}"
        )
    score = trained.score
    if score not in SUPPORTED_SCORES:
        why = _REFUSED_SCORES.get(score, "it has no TorchScript path")
        raise ExportError(
            f"export: score.method={score} is not supported ({why}); supported: "
            f"{', '.join(SUPPORTED_SCORES)}"
        )
    if score == "likelihood_ratio" and trained.background is None:
        raise ExportError("export: score.method=likelihood_ratio needs the run's background model")
    if score == "typicality" and trained.typical is None:
        raise ExportError("export: score.method=typicality needs the run's training mean")


def build_detector(trained: TrainedModel, *, onnx: bool = False) -> ExportedDetector:
    """The (eager) :class:`ExportedDetector` of a trained run; script it to export
    (``onnx``: for ``torch.onnx.export``, every row padded onto one path through the
    featurizer).

    Raises:
        ExportError: A run it cannot hold (see :func:`check_supported`).
    """
    name = trained.config.model.name
    check_supported(trained)
    model = density_twin(trained.model, name)
    background = None
    if trained.score == "likelihood_ratio" and trained.background is not None:
        background = density_twin(trained.background, trained.config.model.name)
    featurizer = trained.featurizer
    window = hop = 0
    if is_windowed(featurizer):
        window, hop = featurizer.window_samples, featurizer.hop_samples
    inner = model_featurizer(featurizer)
    sizes = [window, int(getattr(inner.config, "n_fft", 0)), int(inner.num_samples or 0)]
    return ExportedDetector(
        featurizer,
        model,
        background,
        sample_rate=featurizer.sample_rate,
        threshold=trained.calibration.threshold,
        classes=list(trained.classes),
        target=trained.config.data.target,
        score_method=trained.score,
        by_group=trained.by_group,
        aggregate=trained.config.score.aggregate,
        window=window,
        hop=hop,
        typical=trained.typical,
        padding=max(sizes) if onnx else 0,
    )
