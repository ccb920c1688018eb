"""Density models: every one is an nn.Module with log_prob(x, context=None) -> (batch,) nats."""

__all__: list[str] = []
