"""Conditional WaveNet: an autoregressive density over μ-law codes or real-valued frames.

The model factorises ``p(x | class) = prod_t p(x[t] | x[<t], class)``. Inputs are shifted
right by one behind a learned start token, so even ``x[0]`` gets a proper likelihood (from
the class alone). A stack of gated residual blocks with dilations ``1, 2, ..., max_dilation``
(repeated ``dilation_cycles`` times) sees the last :attr:`WaveNet.receptive_field` steps.
The class enters as an embedding added to every gate (global conditioning); optional
frame-rate features are upsampled to the step rate and added too (local conditioning).

Two paths give the same numbers: the full (parallel, convolutional) path used for training
and scoring, and the incremental path (per-layer queues, Fast WaveNet) used for generation.
"""

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.layers.causal_conv import ConvQueue
from audioar.layers.gated import GatedResidualBlock
from audioar.models.contract import InputSpec
from audioar.models.wavenet_fast import WaveNetStepper, step_threads
from audioar.models.wavenet_outputs import OUTPUTS, make_output

__all__ = ["WaveNetConfig", "WaveNet", "length_mask"]

logger = logging.getLogger(__name__)

_UPSAMPLERS = ("repeat", "transposed")


@dataclass
class WaveNetConfig:
    """The settings of :class:`WaveNet` a user chooses (the ``[model]`` keys of a recipe).

    The sizes that come from the data (``classes``, ``quantization``, ``in_features``) are
    constructor arguments, filled from the :class:`~audioar.models.contract.InputSpec` by
    :meth:`WaveNet.from_spec`.
    """

    residual_channels: int = 64  # channels of the residual stream
    skip_channels: int = 128  # channels of the skip connections and the output head
    kernel_size: int = 2  # taps of every dilated causal convolution
    dilation_cycles: int = 2  # how many times the dilation cycle 1, 2, ..., max repeats
    max_dilation: int = 512  # last dilation of a cycle (a power of two)
    # categorical (mu-law codes) | gaussian | logistic_mixture (real-valued frames)
    output: str = "categorical"
    mixture_components: int = 10  # components of the "logistic_mixture" output
    local_channels: int = 0  # channels of the local (frame-rate) features; 0 = none
    hop_length: int = 1  # steps per local-feature frame (the upsampling factor)
    local_upsample: str = "repeat"  # "repeat" (nearest) | "transposed" (learned ConvTranspose1d)
    conditional: bool = True  # condition on the class (trained on every class of the split)


def length_mask(lengths: Tensor, time: int) -> Tensor:
    """Boolean mask of the valid steps of variable-length sequences.

    Args:
        lengths: valid steps per sequence, ``(batch,)`` (LongTensor).
        time: padded length.

    Returns:
        ``(batch, time)`` bool, ``True`` where ``t < lengths[b]``.
    """
    return torch.arange(time, device=lengths.device) < lengths.unsqueeze(1)


class WaveNet(nn.Module):
    """Conditional WaveNet density over sequences of codes or frames.

    Args:
        classes: classes for global conditioning (default ``10``); ``0`` makes the model
            unconditional and labels are then ignored.
        quantization: codes of the categorical output (default ``256``).
        residual_channels: residual stream channels (default ``64``).
        skip_channels: skip / head channels (default ``128``).
        kernel_size: taps of the dilated convolutions (default ``2``).
        dilation_cycles: repeats of the cycle ``1, 2, ..., max_dilation`` (default ``2``).
        max_dilation: last dilation of a cycle, a power of two (default ``512``).
        output: ``"categorical"`` (x: codes ``(batch, time)``), ``"gaussian"`` (diagonal,
            safe log-scale) or ``"logistic_mixture"`` (continuous mixture of diagonal
            logistics); for the last two x is float ``(batch, time, in_features)``.
        in_features: frame size of the continuous outputs (default ``1``).
        mixture_components: components of ``"logistic_mixture"`` (default ``10``).
        local_channels: channels of optional local features ``(batch, frames,
            local_channels)``; ``0`` (default) disables local conditioning.
        hop_length: steps per local frame (default ``1``); frame ``f`` covers steps
            ``f * hop_length ... (f + 1) * hop_length - 1``.
        local_upsample: ``"repeat"`` (default; each frame repeated ``hop_length`` times)
            or ``"transposed"`` (learned ``ConvTranspose1d`` with kernel = stride =
            ``hop_length``, so a frame still only affects its own steps).

    Local features are treated as observed side information (they are not modelled and may
    look ahead); do not derive them from the very samples being scored.

    References:
        van den Oord et al., "WaveNet: A Generative Model for Raw Audio", 2016.
        Paine et al., "Fast Wavenet Generation Algorithm", 2016.

    Example:
        >>> wn = WaveNet(classes=10, residual_channels=16, skip_channels=32, max_dilation=8)
        >>> codes = torch.randint(0, 256, (4, 100))
        >>> labels = torch.tensor([0, 1, 2, 3])
        >>> wn.log_prob(codes, labels).shape
        torch.Size([4])
        >>> wn.log_prob_all_classes(codes).shape
        torch.Size([4, 10])
        >>> wn.generate(labels, 50).shape
        torch.Size([4, 50])
    """

    Config = WaveNetConfig
    inputs = ("sequence",)
    #: Overrides that size the model for its features when no recipe is given. ``stft``: a
    #: small model for short frame sequences (FSDD clips are ~28 frames at hop 128): 32
    #: log-mel bands normalised per clip, a Gaussian output, 32 residual / 32 skip channels,
    #: dilations 1..8 twice (receptive field 31 frames), 30 epochs of batches of 64 at lr
    #: 2e-3 (as recipes/zero_wavenet_frames.toml). ``mulaw``: the categorical output.
    presets = {
        "stft": [
            "features.n_mels=32",
            "features.cmvn=mean",
            "model.output=gaussian",
            "model.residual_channels=32",
            "model.skip_channels=32",
            "model.max_dilation=8",
            "model.dilation_cycles=2",
            "train.epochs=30",
            "train.batch_size=64",
            "train.lr=2e-3",
            "train.weight_decay=1e-4",
            "train.patience=10",
        ],
        "mulaw": ["model.output=categorical"],
    }

    def __init__(
        self,
        classes: int = 10,
        quantization: int = 256,
        residual_channels: int = 64,
        skip_channels: int = 128,
        kernel_size: int = 2,
        dilation_cycles: int = 2,
        max_dilation: int = 512,
        *,
        output: str = "categorical",
        in_features: int = 1,
        mixture_components: int = 10,
        local_channels: int = 0,
        hop_length: int = 1,
        local_upsample: str = "repeat",
    ) -> None:
        super().__init__()
        self.config = WaveNetConfig(
            residual_channels,
            skip_channels,
            kernel_size,
            dilation_cycles,
            max_dilation,
            output,
            mixture_components,
            local_channels,
            hop_length,
            local_upsample,
            conditional=classes > 0,
        )
        _validate(self.config, classes)
        self.classes = classes
        self.conditional = classes > 0
        self.quantization = quantization
        self.output = output
        self.in_features = in_features
        self.distribution = make_output(output, quantization, in_features, mixture_components)
        r, s = residual_channels, skip_channels
        cycle = [2**i for i in range(max_dilation.bit_length())]
        self.dilations = cycle * dilation_cycles

        if output == "categorical":
            # One extra row: the start token that stands in front of x[0].
            self.start_code = quantization
            self.input_embedding = nn.Embedding(quantization + 1, r)
        else:
            self.input_proj = nn.Linear(in_features, r)
            self.start = nn.Parameter(torch.zeros(r))
        self.blocks = nn.ModuleList(
            GatedResidualBlock(r, s, kernel_size, d) for d in self.dilations
        )
        gates = len(self.dilations) * 2 * r  # conditioning is added to every gate
        self.class_embedding = nn.Embedding(classes, gates) if classes > 0 else None
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.1)
        self.local_proj = nn.Conv1d(local_channels, gates, 1) if local_channels > 0 else None
        self.upsample = None
        if local_channels > 0 and local_upsample == "transposed":
            self.upsample = nn.ConvTranspose1d(
                local_channels, local_channels, hop_length, stride=hop_length
            )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(s, s, 1), nn.ReLU(), nn.Conv1d(s, self.distribution.size, 1)
        )

    @classmethod
    def from_config(
        cls, cfg: WaveNetConfig, classes: int = 10, quantization: int = 256, in_features: int = 1
    ) -> "WaveNet":
        """Builds a model from a :class:`WaveNetConfig` and the data's sizes (``classes`` is
        ignored, 0, when ``cfg.conditional`` is off)."""
        kwargs = asdict(cfg)
        conditional = kwargs.pop("conditional")
        return cls(
            classes if conditional else 0,
            quantization,
            in_features=in_features,
            **kwargs,
        )

    @classmethod
    def from_spec(cls, cfg: WaveNetConfig, spec: InputSpec) -> "WaveNet":
        """The model for ``spec``: codes (``spec.levels`` values, categorical output) or
        frames of ``spec.size`` bins (continuous outputs).

        Raises:
            ConfigError: The output does not fit the features (codes need
                ``output="categorical"``, real-valued frames a continuous output).
        """
        if spec.kind != "sequence":
            raise ConfigError(f"model wavenet needs a sequence per clip, got {spec.kind}s")
        codes = spec.levels > 0
        if codes != (cfg.output == "categorical"):
            wanted = "categorical" if codes else "gaussian or logistic_mixture"
            what = "codes" if codes else "real-valued frames"
            raise ConfigError(
                f"model.output={cfg.output} does not fit the features: {what} need "
                f"model.output={wanted}"
            )
        return cls.from_config(
            cfg,
            classes=spec.classes,
            quantization=spec.levels if codes else 256,
            in_features=1 if codes else spec.size,
        )

    @property
    def receptive_field(self) -> int:
        """Number of past steps one prediction depends on:
        ``(kernel_size - 1) * sum(dilations) + 1`` (2047 for the default configuration)."""
        return (self.config.kernel_size - 1) * sum(self.dilations) + 1

    # ----------------------------------------------------------------- input checking
    def _check(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Validates x and lengths; returns x with padded steps zeroed, and the step mask."""
        if self.output == "categorical":
            if x.dim() != 2 or x.dtype.is_floating_point:
                raise DataError(
                    f"codes must be an integer tensor (batch, time), got {x.dtype} {tuple(x.shape)}"
                )
        elif x.dim() != 3 or x.shape[-1] != self.in_features or not x.dtype.is_floating_point:
            raise DataError(
                f"frames must be float (batch, time, {self.in_features}), got "
                f"{x.dtype} {tuple(x.shape)}"
            )
        batch, time = x.shape[:2]
        if time == 0:
            raise DataError("sequences must have at least one step")
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            if lengths.shape != (batch,) or lengths.min() < 0 or lengths.max() > time:
                raise DataError(f"lengths must be (batch,)={batch} values in [0, {time}]")
            mask = length_mask(lengths, time)
            # Padding may hold anything (e.g. -1 codes, NaN frames): make it harmless.
            fill = mask if x.dim() == 2 else mask.unsqueeze(-1)
            x = torch.where(fill, x, torch.zeros((), dtype=x.dtype, device=x.device))
        if self.output == "categorical":
            if x.min() < 0 or x.max() >= self.quantization:
                raise DataError(f"codes must lie in [0, {self.quantization})")
        else:
            if not torch.isfinite(x).all():
                raise DataError("frames contain NaN or infinite values")
            x = x.to(self.input_proj.weight.dtype)
        return x, mask

    def _check_labels(
        self, labels: Tensor | None, batch: int, device: torch.device
    ) -> Tensor | None:
        if self.classes == 0:
            return None
        if labels is None:
            raise DataError(f"labels are required: this WaveNet has classes={self.classes}")
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (batch,) or labels.min() < 0 or labels.max() >= self.classes:
            raise DataError(f"labels must be (batch,)={batch} values in [0, {self.classes})")
        return labels

    # ----------------------------------------------------------------- full path
    def _embed(self, x: Tensor) -> Tensor:
        """Inputs shifted right behind the start token, embedded: ``(batch, residual, time)``."""
        batch = x.shape[0]
        if self.output == "categorical":
            start = torch.full((batch, 1), self.start_code, dtype=torch.long, device=x.device)
            h = self.input_embedding(torch.cat([start, x[:, :-1].long()], dim=1))
        else:
            h = torch.cat([self.start.expand(batch, 1, -1), self.input_proj(x[:, :-1])], dim=1)
        return h.transpose(1, 2)

    def _global(self, labels: Tensor | None) -> Tensor | None:
        """Class embedding per layer: ``(batch, layers, 2 * residual)`` or ``None``."""
        if self.class_embedding is None:
            return None
        return self.class_embedding(labels).view(labels.shape[0], len(self.blocks), -1)

    def _local(self, local_features: Tensor | None, batch: int, time: int) -> Tensor | None:
        """Local features upsampled to the step rate: ``(batch, local_channels, time)``."""
        if self.local_proj is None:
            if local_features is not None:
                raise DataError("local_features given but this WaveNet has local_channels=0")
            return None
        channels, hop = self.config.local_channels, self.config.hop_length
        if local_features is None:
            raise DataError(f"local_features (batch, frames, {channels}) are required")
        if (
            local_features.dim() != 3
            or local_features.shape[0] != batch
            or local_features.shape[2] != channels
            or local_features.shape[1] * hop < time
        ):
            raise DataError(
                f"local_features must be ({batch}, >= ceil({time}/{hop}), {channels}), "
                f"got {tuple(local_features.shape)}"
            )
        f = local_features.transpose(1, 2).to(self.local_proj.weight.dtype)
        f = f.repeat_interleave(hop, dim=2) if self.upsample is None else self.upsample(f)
        return f[:, :, :time]

    def _trunk(self, h: Tensor, glob: Tensor | None, local: Tensor | None) -> Tensor:
        """Residual stack and head over embedded inputs: ``(batch, time, params)``."""
        skip = 0
        r2 = 2 * self.config.residual_channels
        for i, block in enumerate(self.blocks):
            cond = None if glob is None else glob[:, i].unsqueeze(-1)
            if local is not None:
                w = self.local_proj.weight[i * r2 : (i + 1) * r2]
                c = F.conv1d(local, w, self.local_proj.bias[i * r2 : (i + 1) * r2])
                cond = c if cond is None else cond + c
            h, s = block(h, cond)
            skip = skip + s
        return self.head(skip).transpose(1, 2)

    def output_params(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        *,
        local_features: Tensor | None = None,
        path: str = "full",
    ) -> Tensor:
        """Distribution parameters predicted for every step (from the steps before it).

        Args:
            x: codes ``(batch, time)`` or frames ``(batch, time, in_features)``.
            labels: classes ``(batch,)`` (ignored when ``classes == 0``).
            local_features: ``(batch, frames, local_channels)`` when ``local_channels > 0``.
            path: how to compute them, all giving the same numbers: ``"full"`` (default; the
                parallel convolutional path), ``"step"`` (incremental, layer by layer through
                :meth:`GatedResidualBlock.step`, the reference of the cached path) or
                ``"fast"`` (incremental, fused :class:`WaveNetStepper`, used by
                :meth:`generate`). The incremental paths are fed the true inputs (teacher
                forcing).

        Returns:
            ``(batch, time, size)``: logits for ``"categorical"``, else the parameters of the
            continuous output (see :mod:`audioar.models.wavenet_outputs`).
        """
        x, _ = self._check(x, None)
        batch, time = x.shape[:2]
        labels = self._check_labels(labels, batch, x.device)
        h, glob, local = (
            self._embed(x),
            self._global(labels),
            self._local(local_features, batch, time),
        )
        if path == "full":
            return self._trunk(h, glob, local)
        if path == "step":
            queues = self.init_cache(batch)
            steps = [
                self._step(h[:, :, t], self._cond_t(glob, local, t), queues) for t in range(time)
            ]
        elif path == "fast":
            with torch.no_grad(), step_threads(batch, self.config.residual_channels):
                stepper = WaveNetStepper(self, batch, glob)
                steps = [stepper.step(h[:, :, t], _at(local, t)) for t in range(time)]
        else:
            raise ConfigError(f"unknown path {path!r}; expected 'full', 'step' or 'fast'")
        return torch.stack(steps, dim=1)

    # ----------------------------------------------------------------- likelihoods
    def log_prob_steps(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        lengths: Tensor | None = None,
        *,
        local_features: Tensor | None = None,
    ) -> Tensor:
        """Log-likelihood of every step, ``log p(x[t] | x[<t], class)``, in nats.

        Args:
            x: codes ``(batch, time)`` (LongTensor) or frames ``(batch, time, in_features)``.
            labels: classes ``(batch,)`` (LongTensor; ignored when ``classes == 0``).
            lengths: valid steps per sequence ``(batch,)``, or ``None`` (all valid).
            local_features: ``(batch, frames, local_channels)`` when ``local_channels > 0``.

        Returns:
            ``(batch, time)``; steps at or beyond a sequence's length are exactly ``0``, so a
            sum over time is the clip log-likelihood and ``length_mask`` selects valid steps.
        """
        x, mask = self._check(x, lengths)
        batch, time = x.shape[:2]
        labels = self._check_labels(labels, batch, x.device)
        local = self._local(local_features, batch, time)
        params = self._trunk(self._embed(x), self._global(labels), local)
        steps = self.distribution.log_prob(params, x)
        return steps if mask is None else steps.masked_fill(~mask, 0.0)

    def log_prob(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        lengths: Tensor | None = None,
        *,
        local_features: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """Log-likelihood of whole sequences (sum over valid steps), in nats.

        Can be called as ``model.log_prob(*batch)`` with ``batch = (x, labels, lengths)``.

        Args:
            x: codes ``(batch, time)`` or frames ``(batch, time, in_features)``.
            labels: classes ``(batch,)`` (ignored when ``classes == 0``).
            lengths: valid steps per sequence ``(batch,)``, or ``None`` (all valid).
            local_features: ``(batch, frames, local_channels)`` when ``local_channels > 0``.
            context: another name for ``labels`` (the density-model convention).

        Returns:
            ``(batch,)`` log-likelihoods; divide by ``lengths`` for nats per step.
        """
        if context is not None:
            if labels is not None:
                raise DataError("give labels or context, not both")
            labels = context
        steps = self.log_prob_steps(x, labels, lengths, local_features=local_features)
        return steps.sum(dim=1)

    def log_prob_all_classes(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        *,
        local_features: Tensor | None = None,
        chunk_steps: int = 2**15,
    ) -> Tensor:
        """Log-likelihood of each sequence under every class, in one batched call.

        The class enters the very first gate, so everything after the input embedding
        depends on it: the embedding (and the upsampled local features) are computed once,
        then the residual stack runs on ``batch * classes`` (sequence, class) rows. Rows go
        through in chunks of at most ``chunk_steps`` rows x steps: on CPU one huge batch is
        slower per step than cache-sized ones (measured, default model, 8 clips of 3,200
        steps x 10 classes: 16x the time of scoring one class in a single pass, 9.8x in
        chunks of 2**15), and memory stays bounded. The result does not depend on chunking.

        Args:
            x: codes ``(batch, time)`` or frames ``(batch, time, in_features)``.
            lengths: valid steps per sequence ``(batch,)``, or ``None`` (all valid).
            local_features: ``(batch, frames, local_channels)`` when ``local_channels > 0``.
            chunk_steps: rows x time per pass (default ``32768``; at least one row a pass).

        Returns:
            ``(batch, classes)`` log-likelihoods in nats (padded steps count 0).
        """
        if self.classes == 0:
            raise ConfigError(
                "log_prob_all_classes needs a class-conditional WaveNet (classes > 0)"
            )
        x, mask = self._check(x, lengths)
        batch, time, c = x.shape[0], x.shape[1], self.classes
        local = self._local(local_features, batch, time)
        h = self._embed(x)
        rows = torch.arange(batch * c, device=x.device)  # row = sequence * classes + class
        per_pass = max(1, chunk_steps // time)
        out = []
        for chunk in rows.split(per_pass):
            seq, labels = chunk // c, chunk % c
            loc = None if local is None else local[seq]
            params = self._trunk(h[seq], self._global(labels), loc)
            steps = self.distribution.log_prob(params, x[seq])
            if mask is not None:
                steps = steps.masked_fill(~mask[seq], 0.0)
            out.append(steps.sum(dim=-1))
        return torch.cat(out).view(batch, c)

    def sample(
        self,
        num_samples: int,
        context: Tensor | int | None = None,
        length: int = 8000,
        temperature: float = 1.0,
    ) -> Tensor:
        """Density-model style sampling: ``num_samples`` sequences of one class.

        Args:
            num_samples: sequences to draw.
            context: a class index, or labels ``(num_samples,)``; ``None`` when ``classes == 0``.
            length: steps per sequence (default ``8000``, one second at 8 kHz).
            temperature: sampling temperature (default ``1.0``).

        Returns:
            Same as :meth:`generate`.
        """
        labels = None
        if context is not None and self.classes > 0:
            labels = torch.as_tensor(context, device=_device(self)).long()
            if labels.dim() == 0:
                labels = labels.expand(num_samples)
        return self.generate(labels, length, temperature, batch=num_samples)

    # ----------------------------------------------------------------- incremental path
    def init_cache(self, batch: int) -> list[ConvQueue]:
        """Empty per-layer queues for incremental steps (one :class:`ConvQueue` per block)."""
        p = self.head[-1].weight
        return [b.init_cache(batch, device=p.device, dtype=p.dtype) for b in self.blocks]

    def _cond_t(self, glob: Tensor | None, local: Tensor | None, t: int) -> Tensor | None:
        """Conditioning of step ``t``: ``(batch, layers, 2 * residual)`` or ``None``."""
        if local is None:
            return glob
        w = self.local_proj.weight.squeeze(-1)
        c = F.linear(local[:, :, t], w, self.local_proj.bias).view(
            local.shape[0], len(self.blocks), -1
        )
        return c if glob is None else glob + c

    def _step(self, h_t: Tensor, cond_t: Tensor | None, queues: list[ConvQueue]) -> Tensor:
        """One step through the stack and head: embedded input ``(batch, residual)`` ->
        parameters ``(batch, size)``; the queues are updated in place."""
        skip = None
        for i, (block, queue) in enumerate(zip(self.blocks, queues, strict=True)):
            h_t, s = block.step(h_t, queue, None if cond_t is None else cond_t[:, i])
            skip = s if skip is None else skip + s
        hidden = F.linear(F.relu(skip), self.head[1].weight.squeeze(-1), self.head[1].bias)
        return F.linear(F.relu(hidden), self.head[3].weight.squeeze(-1), self.head[3].bias)

    def _embed_step(self, y: Tensor) -> Tensor:
        """Embeds one generated step (codes ``(batch,)`` or frames ``(batch, in_features)``)."""
        if self.output == "categorical":
            return self.input_embedding(y)
        return self.input_proj(y)

    @torch.no_grad()
    def generate(
        self,
        labels: Tensor | None,
        length: int,
        temperature: float = 1.0,
        *,
        local_features: Tensor | None = None,
        batch: int | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Samples new sequences step by step.

        Args:
            labels: classes ``(batch,)``; ``None`` for an unconditional model.
            length: steps to generate.
            temperature: sampling temperature (default ``1.0``; ``0`` = most likely step):
                divides the logits (categorical, mixture weights) and scales the noise.
            local_features: ``(batch, frames, local_channels)`` when ``local_channels > 0``.
            batch: number of sequences when neither labels nor local features fix it
                (default ``1``).
            use_cache: ``True`` (default): incremental generation with per-layer queues,
                O(layers) per step (on one intra-op thread for small batches, where
                threads only add overhead). ``False``: the plain reference, a full forward pass over
                the last ``receptive_field`` steps for every new step (same numbers, slow).

        Returns:
            Codes ``(batch, length)`` (LongTensor) or frames ``(batch, length, in_features)``.
        """
        if length < 1:
            raise DataError(f"length must be >= 1, got {length}")
        if temperature < 0:
            raise DataError(f"temperature must be >= 0, got {temperature}")
        if labels is not None and self.classes > 0:
            n = len(labels)
        elif local_features is not None:
            n = local_features.shape[0]
        else:
            n = 1 if batch is None else batch
        labels = self._check_labels(labels, n, _device(self))
        logger.debug("generating %d x %d steps (use_cache=%s)", n, length, use_cache)
        # inference_mode trims per-op overhead (~10% at batch 1); clone() hands back an
        # ordinary tensor that autograd can use later (e.g. as training data).
        with torch.inference_mode():
            glob, local = self._global(labels), self._local(local_features, n, length)
            if use_cache:
                with step_threads(n, self.config.residual_channels):
                    out = self._generate_cached(n, length, temperature, glob, local)
            else:
                out = self._generate_naive(n, length, temperature, glob, local)
        return out.clone()

    def _generate_cached(
        self, n: int, length: int, temperature: float, glob: Tensor | None, local: Tensor | None
    ) -> Tensor:
        stepper = WaveNetStepper(self, n, glob)
        if self.output == "categorical":
            start = torch.full((n,), self.start_code, dtype=torch.long, device=_device(self))
            h_t = self.input_embedding(start)
        else:
            h_t = self.start.expand(n, -1)
        out = []
        for t in range(length):
            params = stepper.step(h_t, _at(local, t))
            y = self.distribution.sample(params, temperature)
            out.append(y)
            h_t = self._embed_step(y)
        return torch.stack(out, dim=1)

    def _generate_naive(
        self, n: int, length: int, temperature: float, glob: Tensor | None, local: Tensor | None
    ) -> Tensor:
        device = _device(self)
        if self.output == "categorical":
            seq = torch.zeros(n, length, dtype=torch.long, device=device)
        else:
            seq = torch.zeros(n, length, self.in_features, device=device)
        for t in range(length):
            # The window's first step only feeds the start token, which lies outside the
            # receptive field of its last step once t >= receptive_field: the result is exact.
            lo = max(0, t - self.receptive_field)
            window = seq[:, lo : t + 1]  # step t is still a placeholder: never seen (causal)
            win_local = None if local is None else local[:, :, lo : t + 1]
            params = self._trunk(self._embed(window), glob, win_local)[:, -1]
            seq[:, t] = self.distribution.sample(params, temperature)
        return seq


def _at(local: Tensor | None, t: int) -> Tensor | None:
    """Step ``t`` of upsampled local features ``(batch, channels, time)``, or ``None``."""
    return None if local is None else local[:, :, t]


def _device(model: nn.Module) -> torch.device:
    """Device of a model's parameters."""
    return next(model.parameters()).device


def _validate(cfg: WaveNetConfig, classes: int) -> None:
    """Raises ConfigError for an unusable configuration."""
    positive = (
        "residual_channels",
        "skip_channels",
        "kernel_size",
        "dilation_cycles",
        "max_dilation",
        "hop_length",
    )
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"WaveNet {name} must be >= 1, got {getattr(cfg, name)}")
    if classes < 0 or cfg.local_channels < 0:
        raise ConfigError("WaveNet classes and local_channels must be >= 0")
    if cfg.max_dilation & (cfg.max_dilation - 1):
        raise ConfigError(f"WaveNet max_dilation must be a power of two, got {cfg.max_dilation}")
    if cfg.output not in OUTPUTS:
        raise ConfigError(f"unknown WaveNet output {cfg.output!r}; expected one of {OUTPUTS}")
    if cfg.local_upsample not in _UPSAMPLERS:
        raise ConfigError(
            f"unknown local_upsample {cfg.local_upsample!r}; expected one of {_UPSAMPLERS}"
        )
