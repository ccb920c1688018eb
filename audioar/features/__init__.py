"""Featurizers: waveform (time,) or (batch, time) at a fixed sample rate -> features."""

__all__: list[str] = []
