"""Gated PixelCNN: an autoregressive density over images in raster order.

The model factorises ``p(x | class) = prod_{i,j} p(x[:, i, j] | pixels before (i, j),
class)`` (rows top to bottom, pixels left to right; the channels of one pixel are predicted
together, see :mod:`audioar.models.pixelcnn_outputs`). A stack of gated blocks
(:class:`~audioar.layers.pixelcnn_blocks.GatedPixelBlock`, vertical and horizontal stacks)
sees every earlier pixel within its receptive field, with no blind spot; ``gated=False``
builds the original masked-convolution PixelCNN instead, as a reference and baseline. The
class enters every gate (or, in the plain model, every layer) as a learned embedding.

Outputs: ``"bernoulli"`` (binary pixels), ``"categorical"`` (``levels`` values), and
``"logistic_mixture"``: PixelCNN++'s discretised mixture for pixels of ``levels`` values, or
for real-valued pixels (``levels == 0``: standardised log-mel spectrograms) a continuous
mixture of logistics, a density on the real line. Spectrograms enter as images ``(1,
n_mels, frames)``: raster order then runs along time within each mel band, band after band.

Generation is sequential. The cached generator runs each row's vertical stack once and one
column of the horizontal stacks per pixel; the naive reference recomputes the whole network
for every pixel. Both draw the same samples from one seed.

References:
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", NIPS 2016.
    van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
    Salimans et al., "PixelCNN++", ICLR 2017 (discretised logistic mixture).
    Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.layers.pixelcnn_blocks import GatedPixelBlock, GatedStackStepper, PlainMaskedStack
from audioar.models.contract import InputSpec
from audioar.models.labels import class_labels
from audioar.models.pixelcnn_outputs import PIXEL_OUTPUTS, make_pixel_output
from audioar.models.wavenet_fast import step_threads

__all__ = ["PixelCNNConfig", "PixelCNN", "OUTPUTS", "resolve_output"]

logger = logging.getLogger(__name__)

#: Output names a config may give; ``"auto"`` picks from the data's levels.
OUTPUTS = (*PIXEL_OUTPUTS, "auto")


@dataclass
class PixelCNNConfig:
    """The settings of :class:`PixelCNN` a user chooses (the ``[model]`` keys of a recipe).

    The sizes that come from the data (``in_channels``, ``levels``, ``classes``, the image
    size) are constructor arguments, filled from the
    :class:`~audioar.models.contract.InputSpec` by :meth:`PixelCNN.from_spec`. The defaults
    suit a CPU fit of ``1 x 32 x ~28`` log-mel images: 32 channels and 6 blocks of kernel 3
    see the 7 frames before a pixel in its mel band and the 7 bands above it, 6 frames to
    either side. Kernel 3 costs a fifth of kernel 5 per block (a ``2 x 3`` instead of a
    ``3 x 5`` vertical convolution); depth grows the receptive field instead.
    """

    hidden_channels: int = 32  # channels of both stacks, the skips and the output head
    num_layers: int = 6  # gated blocks (or masked convolutions when gated=False)
    kernel_size: int = 3  # odd; vertical kernel (k//2+1) x k, horizontal 1 x (k//2+1)
    # bernoulli | categorical | logistic_mixture | auto (bernoulli for 2 levels,
    # categorical for more, a continuous logistic mixture for real values)
    output: str = "auto"
    components: int = 5  # mixture components of "logistic_mixture"
    conditional: bool = True  # condition on the class (trained on every class of the split)
    gated: bool = True  # gated blocks (no blind spot); False: the plain masked-conv PixelCNN
    dropout: float = 0.0  # dropout on each gated block's output in training (small data sets)


def resolve_output(output: str, levels: int) -> str:
    """The output ``"auto"`` stands for: ``"bernoulli"`` for 2 levels, ``"categorical"``
    for more, ``"logistic_mixture"`` (continuous) for real values (``levels == 0``); any
    other name is returned as it is."""
    if output != "auto":
        return output
    if levels == 0:
        return "logistic_mixture"
    return "bernoulli" if levels == 2 else "categorical"


class PixelCNN(nn.Module):
    """Gated (or plain) PixelCNN density over images ``(batch, in_channels, height, width)``.

    Args:
        in_channels: values per pixel ``C``.
        classes: classes to condition on; ``None`` or ``0`` (default) makes the model
            unconditional (labels are then ignored).
        hidden_channels: channels of the stacks, skips and head (default ``32``).
        num_layers: gated blocks, or masked convolutions when ``gated=False`` (default ``6``).
        kernel_size: odd ``k >= 3`` (default ``3``).
        output: ``"bernoulli"`` (x in ``{0, 1}``), ``"categorical"`` (x long in ``[0,
            levels)``), ``"logistic_mixture"`` (discretised over ``levels`` values, or
            continuous over real-valued x when ``levels == 0``), or ``"auto"`` (default:
            chosen from ``levels`` by :func:`resolve_output`).
        levels: values of a discrete pixel channel; ``0`` (default) for real values.
        components: logistic mixture components (default ``5``).
        gated: gated blocks with vertical and horizontal stacks (default ``True``);
            ``False``: the plain masked-convolution PixelCNN, which has a blind spot.
        dropout: dropout probability on the gated blocks' outputs in training (default
            ``0.0``; gated model only): a regulariser for small data sets.
        image_size: ``(height, width)`` drawn by :meth:`sample` unless it is given a size
            (default ``None``); likelihoods take any size.

    References:
        van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.

    Example:
        >>> pix = PixelCNN(1, classes=10, hidden_channels=16, num_layers=3,
        ...                output="bernoulli", image_size=(8, 8))
        >>> x = torch.randint(0, 2, (4, 1, 8, 8)).float()
        >>> labels = torch.tensor([0, 1, 2, 3])
        >>> pix.log_prob(x, labels).shape
        torch.Size([4])
        >>> pix.log_prob_steps(x, labels).shape
        torch.Size([4, 8, 8])
        >>> pix.log_prob_all_classes(x).shape
        torch.Size([4, 10])
        >>> pix.sample(2, labels[:2]).shape
        torch.Size([2, 1, 8, 8])
    """

    Config = PixelCNNConfig
    inputs = ("image",)
    #: ``stft``: the first 10 MFCCs of 24 log-mel bands, normalised per clip, hop 256 (32 ms
    #: at 8 kHz), each clip a ``1 x 10 x 20`` image (0.64 s; longer clips are trimmed,
    #: shorter ones padded and the padding masked out), a continuous logistic mixture per
    #: pixel, 16 channels, 6 gated blocks, at most 36 epochs of batches of 32 at lr 2e-3: an
    #: FSDD fit in about 70 s on 2 CPU cores (as recipes/zero_pixelcnn.toml). MFCCs keep the
    #: spectral envelope and drop the pitch harmonics, which differ most between speakers.
    presets = {
        "stft": [
            "features.n_mels=24",
            "features.n_mfcc=10",
            "features.hop_length=256",
            "features.cmvn=mean",
            "features.frames=20",
            "model.output=logistic_mixture",
            "model.hidden_channels=16",
            "train.epochs=36",
            "train.batch_size=32",
            "train.lr=2e-3",
            "train.weight_decay=1e-4",
            "train.patience=10",
        ],
    }

    def __init__(
        self,
        in_channels: int,
        classes: int | None = None,
        hidden_channels: int = 32,
        num_layers: int = 6,
        kernel_size: int = 3,
        output: str = "auto",
        levels: int = 0,
        components: int = 5,
        gated: bool = True,
        dropout: float = 0.0,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        classes = int(classes or 0)
        for name, value in (
            ("in_channels", in_channels),
            ("hidden_channels", hidden_channels),
            ("num_layers", num_layers),
        ):
            if value < 1:
                raise ConfigError(f"PixelCNN {name} must be >= 1, got {value}")
        if classes < 0 or levels < 0:
            raise ConfigError(f"PixelCNN classes and levels must be >= 0, got {classes}, {levels}")
        if output not in OUTPUTS:
            raise ConfigError(f"unknown PixelCNN output {output!r}; expected one of {OUTPUTS}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ConfigError(f"PixelCNN kernel_size must be odd and >= 3, got {kernel_size}")
        if not 0.0 <= dropout < 1.0 or (dropout > 0 and not gated):
            raise ConfigError(f"PixelCNN dropout must be in [0, 1) (gated only), got {dropout}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise ConfigError(f"image_size must be (height, width) >= 1, got {image_size}")
        self.config = PixelCNNConfig(
            hidden_channels,
            num_layers,
            kernel_size,
            output,
            components,
            conditional=classes > 0,
            gated=gated,
            dropout=dropout,
        )
        self.in_channels = in_channels
        self.classes = classes
        self.conditional = classes > 0
        self.levels = levels
        self.gated = gated
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.output = resolve_output(output, levels)
        self.distribution = make_pixel_output(self.output, in_channels, levels, components)
        c = hidden_channels
        if gated:
            self.blocks = nn.ModuleList(
                GatedPixelBlock(
                    in_channels if n == 0 else c, c, kernel_size, first=n == 0, dropout=dropout
                )
                for n in range(num_layers)
            )
            per_layer = 4 * c  # both halves of the vertical and of the horizontal gate
        else:
            self.stack = PlainMaskedStack(in_channels, c, num_layers, kernel_size)
            per_layer = c
        self.class_embedding = nn.Embedding(classes, num_layers * per_layer) if classes else None
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.1)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, self.distribution.size, 1)
        )

    @classmethod
    def from_config(
        cls,
        cfg: PixelCNNConfig,
        in_channels: int,
        classes: int = 0,
        levels: int = 0,
        image_size: tuple[int, int] | None = None,
    ) -> PixelCNN:
        """Builds a model from a :class:`PixelCNNConfig` and the data's sizes (``classes``
        is ignored, 0, when ``cfg.conditional`` is off)."""
        return cls(
            in_channels,
            classes if cfg.conditional else 0,
            cfg.hidden_channels,
            cfg.num_layers,
            cfg.kernel_size,
            cfg.output,
            levels,
            cfg.components,
            cfg.gated,
            cfg.dropout,
            image_size=image_size,
        )

    @classmethod
    def from_spec(cls, cfg: PixelCNNConfig, spec: InputSpec) -> PixelCNN:
        """The model for images ``spec.shape = (channels, height, width)`` of
        ``spec.levels`` values (``0``: real-valued), conditioned on ``spec.classes`` classes
        when ``cfg.conditional``.

        Raises:
            ConfigError: Not images, or an output that does not fit the levels
                (``bernoulli`` needs 2 levels, ``categorical`` at least 2).
        """
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"model pixelcnn needs an image per clip, got {spec.kind}s")
        channels, height, width = (int(d or 0) for d in spec.shape)
        output = resolve_output(cfg.output, spec.levels)
        if output in ("bernoulli", "categorical") and spec.levels == 0:
            raise ConfigError(
                f"model.output={output} needs discrete pixels; these features are real-valued: "
                "use model.output=logistic_mixture (or auto)"
            )
        size = (height, width) if height > 0 and width > 0 else None
        return cls.from_config(cfg, channels, spec.classes, spec.levels, size)

    # ----------------------------------------------------------------- input checking
    def _dtype(self) -> torch.dtype:
        return self.head[-1].weight.dtype

    def _device(self) -> torch.device:
        return self.head[-1].weight.device

    def _check(self, x: Tensor) -> Tensor:
        """Validated pixels (DataError for a wrong shape or value)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or min(x.shape) < 1:
            raise DataError(
                f"images must be (batch, {self.in_channels}, height, width) with every size "
                f">= 1, got {tuple(x.shape)}"
            )
        return self.distribution.check(x)

    def _labels(self, context: Tensor | int | None, batch: int) -> Tensor | None:
        """Class labels ``(batch,)`` of a conditional model (``None`` for an unconditional
        one, whatever ``context`` is)."""
        if not self.conditional:
            return None
        return class_labels(context, batch, self.classes, self._device(), "PixelCNN")

    # ----------------------------------------------------------------- full path
    def _conditioning(self, labels: Tensor | None) -> Tensor | None:
        """Class embedding per layer ``(batch, num_layers, 4 c)`` (gated) or ``(batch,
        num_layers, c)`` (plain), or ``None``."""
        if self.class_embedding is None or labels is None:
            return None
        return self.class_embedding(labels).view(len(labels), self.config.num_layers, -1)

    def _network(self, h: Tensor, cond: Tensor | None) -> Tensor:
        """Encoded image ``(batch, C, H, W)`` -> parameters ``(batch, size, H, W)``."""
        if not self.gated:
            return self.head(self.stack(h, cond))
        v, skip = h, 0
        for n, block in enumerate(self.blocks):
            v, h, s = block(v, h, None if cond is None else cond[:, n])
            skip = skip + s
        return self.head(skip)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Distribution parameters of every pixel, each from the pixels before it.

        Args:
            x: images ``(batch, in_channels, height, width)``.
            context: class labels ``(batch,)`` (LongTensor) of a conditional model.

        Returns:
            ``(batch, size, height, width)``: the output's parameters per pixel (see
            :mod:`audioar.models.pixelcnn_outputs`).
        """
        x = self._check(x)
        labels = self._labels(context, x.shape[0])
        return self._network(self.distribution.encode(x, self._dtype()), self._conditioning(labels))

    @torch.no_grad()
    def output_params_cached(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The parameters of :meth:`forward`, computed pixel by pixel by the cached
        generator's path fed the true pixels (teacher forcing): its reference check.

        Raises:
            ConfigError: The plain model (it has no cached path).
        """
        if not self.gated:
            raise ConfigError("the plain PixelCNN (gated=False) has no cached path")
        x = self._check(x)
        labels = self._labels(context, x.shape[0])
        batch, _, height, width = x.shape
        enc = self.distribution.encode(x, self._dtype())
        stepper = GatedStackStepper(self.blocks, batch, height, width, self._conditioning(labels))
        out = torch.empty(batch, self.distribution.size, height, width, dtype=enc.dtype)
        for i in range(height):
            stepper.begin_row(i)
            for j in range(width):
                out[:, :, i, j] = self._head_step(stepper.column(j))
                stepper.write(i, j, enc[:, :, i, j])
        return out

    # ----------------------------------------------------------------- likelihoods
    def log_prob_steps(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood of every pixel, ``log p(x[:, i, j] | pixels before, class)``.

        Args:
            x: images ``(batch, in_channels, height, width)``: float ``{0, 1}``
                (bernoulli), long ``[0, levels)`` (categorical, discretised mixture) or
                float (continuous mixture).
            context: class labels ``(batch,)`` of a conditional model.

        Returns:
            ``(batch, height, width)`` in nats, summed over the channels of each pixel.
        """
        x = self._check(x)
        cond = self._conditioning(self._labels(context, x.shape[0]))
        params = self._network(self.distribution.encode(x, self._dtype()), cond)
        return self.distribution.log_prob(params.permute(0, 2, 3, 1), x.permute(0, 2, 3, 1))

    def log_prob(
        self, x: Tensor, context: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """Log-likelihood of whole images, in nats.

        Args:
            x: images ``(batch, in_channels, height, width)``.
            context: class labels ``(batch,)`` of a conditional model.
            lengths: valid columns per image ``(batch,)`` (images padded on the right), or
                ``None`` (every column counts). Padded columns are still seen as context.

        Returns:
            ``(batch,)``.
        """
        steps = self.log_prob_steps(x, context)
        if lengths is None:
            return steps.sum(dim=(1, 2))
        lengths = torch.as_tensor(lengths, device=steps.device)
        if lengths.shape != (x.shape[0],):
            raise DataError(f"lengths must be (batch,)={x.shape[0]} valid column counts")
        valid = torch.arange(steps.shape[-1], device=steps.device) < lengths.unsqueeze(1)
        return (steps.sum(dim=1) * valid).sum(dim=1)

    def log_prob_all_classes(
        self, x: Tensor, lengths: Tensor | None = None, *, chunk_size: int = 256
    ) -> Tensor:
        """Log-likelihood of each image under every class.

        The class enters the first gate, so the whole network runs once per (image, class)
        row, in batches of at most ``chunk_size`` rows.

        Args:
            x: images ``(batch, in_channels, height, width)``.
            lengths: valid columns per image ``(batch,)``, or ``None``.
            chunk_size: rows per pass (default ``256``); the result does not depend on it.

        Returns:
            ``(batch, classes)`` in nats.

        Raises:
            ConfigError: An unconditional model.
        """
        if not self.conditional:
            raise ConfigError("log_prob_all_classes needs a class-conditional PixelCNN")
        x = self._check(x)
        batch, k = x.shape[0], self.classes
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
        rows = torch.arange(batch * k, device=x.device)  # row = image * classes + class
        out = []
        for chunk in rows.split(max(1, chunk_size)):
            image, labels = chunk // k, chunk % k
            part = None if lengths is None else lengths[image]
            out.append(self.log_prob(x[image], labels, part))
        return torch.cat(out).view(batch, k)

    # ----------------------------------------------------------------- generation
    def _head_step(self, skip: Tensor) -> Tensor:
        """The output head on one pixel's summed skips ``(batch, c)`` -> ``(batch, size)``."""
        hidden = F.linear(F.relu(skip), self.head[1].weight[:, :, 0, 0], self.head[1].bias)
        return F.linear(F.relu(hidden), self.head[3].weight[:, :, 0, 0], self.head[3].bias)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        context: Tensor | int | None = None,
        *,
        cached: bool | None = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Draws ``n`` images pixel by pixel in raster order.

        Args:
            n: images to draw.
            context: a class index, or labels ``(n,)``; required by a conditional model.
            cached: ``True``: the cached generator (gated model only); ``False``: the naive
                reference that runs the whole network for every pixel; ``None`` (default):
                cached when the model has it. Both give the same images from one seed, and
                both run on one thread when ``n * hidden_channels < 16384``, in eval
                mode (no dropout; the model's mode is restored).
            size: ``(height, width)``; default the model's ``image_size``.

        Returns:
            ``(n, in_channels, height, width)``: float (bernoulli, continuous mixture) or
            long (categorical, discretised mixture).

        Raises:
            ConfigError: No image size, or ``cached=True`` on the plain model.
            DataError: ``n < 1`` or bad labels.
        """
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        size = size if size is not None else self.image_size
        if size is None or len(size) != 2 or min(size) < 1:
            raise ConfigError(
                f"sample needs size=(height, width) or a model built with image_size, got {size}"
            )
        if cached and not self.gated:
            raise ConfigError("cached generation needs the gated PixelCNN (gated=True)")
        cached = self.gated if cached is None else cached
        labels = self._labels(context, n)
        height, width = int(size[0]), int(size[1])
        logger.debug("sampling %d images of %d x %d (cached=%s)", n, height, width, cached)
        # Per-pixel work is small: for a small batch both paths run on one intra-op thread
        # (extra threads only add synchronisation on a shared CPU).
        was_training = self.training
        self.eval()  # no dropout: both paths sample the same model
        try:
            with torch.inference_mode(), step_threads(n, self.config.hidden_channels):
                cond = self._conditioning(labels)
                if cached:
                    out = self._sample_cached(n, height, width, cond)
                else:
                    out = self._sample_naive(n, height, width, cond)
        finally:
            self.train(was_training)
        return out.clone()

    def _empty_images(self, n: int, height: int, width: int) -> Tensor:
        dtype = self._dtype() if self.output == "bernoulli" or self.levels == 0 else torch.long
        return torch.zeros(n, self.in_channels, height, width, dtype=dtype, device=self._device())

    def _sample_naive(self, n: int, height: int, width: int, cond: Tensor | None) -> Tensor:
        images = self._empty_images(n, height, width)
        enc = self.distribution.encode(images, self._dtype())
        for i in range(height):
            for j in range(width):
                # Pixels at and after (i, j) are placeholders the prediction never sees.
                params = self._network(enc, cond)[:, :, i, j]
                value = self.distribution.sample(params)
                images[:, :, i, j] = value
                enc[:, :, i, j] = self.distribution.encode(value, enc.dtype)
        return images

    def _sample_cached(self, n: int, height: int, width: int, cond: Tensor | None) -> Tensor:
        images = self._empty_images(n, height, width)
        stepper = GatedStackStepper(self.blocks, n, height, width, cond)
        for i in range(height):
            stepper.begin_row(i)
            for j in range(width):
                value = self.distribution.sample(self._head_step(stepper.column(j)))
                images[:, :, i, j] = value
                stepper.write(i, j, self.distribution.encode(value, self._dtype()))
        return images
