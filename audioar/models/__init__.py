"""Density models: every one is an nn.Module with log_prob(x, context=None) -> (batch,) nats."""

from audioar.models.made import MADE, MADEConfig
from audioar.models.maf import MAF, MAFConfig
from audioar.models.wavenet import WaveNet, WaveNetConfig

__all__: list[str] = []
__all__ += ["MADE", "MADEConfig", "MAF", "MAFConfig"]
__all__ += ["WaveNet", "WaveNetConfig"]
