"""Shared building blocks: masked linear layers, masked 2-D and dilated causal convolutions."""

__all__: list[str] = []
