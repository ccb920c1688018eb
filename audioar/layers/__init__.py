"""Shared building blocks: masked linear layers, masked 2-D and dilated causal convolutions."""

from audioar.layers.block_linear import (
    block_linear,
    block_masked_mlp,
    block_views,
    block_weight_grads_t,
    mlp_forward_t,
    mlp_input_grads_t,
    triangular_blocks,
    weight_grad_t,
)
from audioar.layers.causal_conv import CausalConv1d, ConvQueue
from audioar.layers.gated import GatedResidualBlock, gated_activation
from audioar.layers.masked_linear import BlockMaskedLinear, MaskedLinear
from audioar.layers.masks import (
    connectivity,
    hidden_degrees,
    input_degrees,
    made_degrees,
    made_masks,
)

__all__: list[str] = []
__all__ += [
    "MaskedLinear",
    "BlockMaskedLinear",
    "block_linear",
    "block_masked_mlp",
    "block_views",
    "block_weight_grads_t",
    "mlp_forward_t",
    "mlp_input_grads_t",
    "triangular_blocks",
    "weight_grad_t",
    "connectivity",
    "hidden_degrees",
    "input_degrees",
    "made_degrees",
    "made_masks",
]
__all__ += ["CausalConv1d", "ConvQueue", "GatedResidualBlock", "gated_activation"]
