"""audioar: audio anomaly detection with deep autoregressive density models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
