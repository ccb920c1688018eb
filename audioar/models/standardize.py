"""A density model over standardised features that still reports densities of the raw ones."""

import torch
from torch import Tensor, nn

__all__ = ["Standardized"]


class Standardized(nn.Module):
    """Wrap ``model`` so it sees ``z = (x - mean) / std`` and returns ``log p(x)`` in nats.

    Standardising with training statistics is what the MAF paper does to every data set; the
    change of variables adds ``-sum(log std)`` so the log-likelihoods (and nats per dimension)
    stay those of the unstandardised features and models with different scalings compare.
    ``mean`` and ``std`` are buffers, saved with the weights.

    Args:
        model: A density model with ``log_prob(z, context=None) -> (batch,)``.
        mean: ``(features,)`` training mean.
        std: ``(features,)`` training standard deviation (clamped to at least ``min_std``).
        min_std: Floor under ``std`` so constant features do not blow up. Default 1e-3.

    Example:
        >>> x = torch.randn(100, 3) * 5 + 2
        >>> wrapped = Standardized(MAF(3, num_flows=2, hidden_features=(8,)), x.mean(0), x.std(0))
        >>> wrapped.log_prob(x).shape
        torch.Size([100])
    """

    def __init__(self, model: nn.Module, mean: Tensor, std: Tensor, min_std: float = 1e-3) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float().clamp_min(min_std))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(batch, features)`` -> ``(batch,)`` log-likelihood of the raw features, nats."""
        z = (x - self.mean) / self.std
        return self.model.log_prob(z, context) - torch.log(self.std).sum()

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples ``(n, features)`` in the raw feature space."""
        return self.model.sample(n, context) * self.std + self.mean
