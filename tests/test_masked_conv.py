"""PixelCNN masks, MaskedConv2d, the gated block and its incremental stepper."""

import pytest
import torch

from audioar.errors import ConfigError
from audioar.layers.masked_conv import MaskedConv2d, channel_group, pixelcnn_mask
from audioar.layers.pixelcnn_blocks import (
    GatedPixelBlock,
    GatedStackStepper,
    PlainMaskedStack,
    shift_down,
    shift_right,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second thread only adds synchronisation."""
    torch.set_num_threads(1)


def _before(height, width, i, j):
    """Pixels strictly before (i, j) in raster order, (height, width) bool."""
    return torch.arange(height * width).view(height, width) < i * width + j


# --------------------------------------------------------------------------- masks
def test_mask_a_and_b_single_channel():
    a = pixelcnn_mask(5, "A")[0, 0]
    b = pixelcnn_mask(5, "B")[0, 0]
    expected_a = torch.tensor(
        [
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(a, expected_a)
    expected_b = expected_a.clone()
    expected_b[2, 2] = True
    assert torch.equal(b, expected_b)
    assert a.dtype == torch.bool and pixelcnn_mask(3, "A", 4, 6).shape == (6, 4, 3, 3)


def test_mask_non_square_kernel():
    m = pixelcnn_mask((3, 5), "A")[0, 0]
    assert m[0].all() and m[1, :2].all() and not m[1, 2:].any() and not m[2].any()


def test_mask_channel_groups_order_the_centre_only():
    # RGB: 3 input channels, 6 outputs (2 per colour).
    a = pixelcnn_mask(3, "A", 3, 6, channel_groups=3)
    b = pixelcnn_mask(3, "B", 3, 6, channel_groups=3)
    g_in, g_out = channel_group(3, 3), channel_group(6, 3)
    assert g_out.tolist() == [0, 0, 1, 1, 2, 2]
    for o in range(6):
        for i in range(3):
            assert bool(a[o, i, 1, 1]) == bool(g_out[o] > g_in[i])
            assert bool(b[o, i, 1, 1]) == bool(g_out[o] >= g_in[i])
    # Off the centre every channel sees every channel, like one group.
    off = torch.ones(3, 3, dtype=torch.bool)
    off[1, 1] = False
    assert torch.equal(a[:, :, off], pixelcnn_mask(3, "A", 3, 6)[:, :, off])
    # R's first-layer outputs see nothing of the current pixel; B's see all three.
    assert not a[:2, :, 1, 1].any() and b[4:, :, 1, 1].all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kernel_size=4), "odd"),
        (dict(kernel_size=(3, 2)), "odd"),
        (dict(kernel_size=3, mask_type="C"), "mask_type"),
        (dict(kernel_size=3, in_channels=4, channel_groups=3), "channel groups"),
    ],
)
def test_mask_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        pixelcnn_mask(**kwargs)


# --------------------------------------------------------------------------- MaskedConv2d
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_gradient_follows_the_mask(mask_type):
    conv = MaskedConv2d(2, 3, 5, mask_type=mask_type)
    x = torch.randn(1, 2, 9, 9, requires_grad=True)
    y = conv(x)
    assert y.shape == (1, 3, 9, 9)
    y[0, :, 4, 4].sum().backward()
    seen = x.grad[0].abs().sum(0) > 0
    expected = pixelcnn_mask(5, mask_type)[0, 0]
    assert torch.equal(seen[2:7, 2:7], expected)
    assert not seen[:2].any() and not seen[7:].any()  # nothing outside the kernel


def test_masked_conv_channel_groups_gradient():
    conv = MaskedConv2d(3, 6, 3, mask_type="A", channel_groups=3)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    conv(x)[0, 2:4, 2, 2].sum().backward()  # the G outputs at (2, 2)
    centre = x.grad[0, :, 2, 2] != 0
    assert centre.tolist() == [True, False, False]  # G sees R of its own pixel only
    assert (x.grad[0, :, 1, 1] != 0).all()  # and every channel of the pixels before


def test_masked_conv_state_dict_holds_mask_and_masked_weights_get_no_gradient():
    conv = MaskedConv2d(1, 4, 3, mask_type="A")
    assert torch.equal(conv.state_dict()["mask"], pixelcnn_mask(3, "A", 1, 4))
    conv(torch.randn(2, 1, 6, 6)).square().sum().backward()
    assert (conv.weight.grad[~conv.mask] == 0).all()
    assert (conv.weight.grad[conv.mask] != 0).any()


def test_plain_stack_is_causal_but_has_a_blind_spot():
    stack = PlainMaskedStack(1, 8, num_layers=4, kernel_size=3)
    x = torch.randn(1, 1, 9, 9, requires_grad=True)
    stack(x)[0, :, 6, 4].sum().backward()
    seen = x.grad[0, 0] != 0
    assert not (seen & ~_before(9, 9, 6, 4)).any()
    # One row up and two columns right is never reached: every row-0 offset points left.
    assert not seen[5, 6] and seen[5, 5] and seen[6, 3]


# --------------------------------------------------------------------------- gated block
def test_shifts():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    assert shift_down(x).tolist() == [[[[0, 0, 0], [0, 1, 2]]]]
    assert shift_right(x).tolist() == [[[[0, 0, 1], [0, 3, 4]]]]


def test_first_gated_block_sees_the_left_pixels_and_the_rows_above():
    block = GatedPixelBlock(1, 8, kernel_size=5, first=True)
    x = torch.randn(1, 1, 8, 9, requires_grad=True)
    _, h, skip = block(x, x)
    (h[0, :, 5, 4].sum() + skip[0, :, 5, 4].sum()).backward()
    seen = x.grad[0, 0] != 0
    expected = torch.zeros(8, 9, dtype=torch.bool)
    expected[5, 1:4] = True  # k//2 + 1 = 3 pixels to the left, not the pixel itself
    expected[2:5, 2:7] = True  # rows 5-3 .. 5-1, columns 4-2 .. 4+2
    assert torch.equal(seen, expected)


def test_vertical_stack_never_reads_the_horizontal_one():
    block = GatedPixelBlock(4, 4, kernel_size=3)
    v = torch.randn(1, 4, 6, 6, requires_grad=True)
    h = torch.randn(1, 4, 6, 6, requires_grad=True)
    v_out, _, _ = block(v, h)
    v_out[0, :, 3, 3].sum().backward()
    assert h.grad is None or not h.grad.any()
    rows = v.grad[0].abs().sum(dim=(0, 2)) > 0
    assert rows.tolist() == [False, False, True, True, False, False]  # rows 3-1 .. 3


def test_gated_block_rejects_even_kernels():
    with pytest.raises(ConfigError, match="odd"):
        GatedPixelBlock(1, 4, kernel_size=4)


@pytest.mark.parametrize("with_cond", [False, True])
def test_stepper_equals_full_path(with_cond):
    torch.manual_seed(3)
    blocks = [GatedPixelBlock(2, 6, 3, first=True), GatedPixelBlock(6, 6, 3)]
    blocks += [GatedPixelBlock(6, 6, 3)]
    x = torch.randn(2, 2, 5, 7)
    cond = torch.randn(2, 3, 24) if with_cond else None
    v, h, total = x, x, 0
    with torch.no_grad():
        for n, block in enumerate(blocks):
            v, h, s = block(v, h, None if cond is None else cond[:, n])
            total = total + s
        stepper = GatedStackStepper(blocks, 2, 5, 7, cond)
        stepped = torch.empty_like(total)
        for i in range(5):
            stepper.begin_row(i)
            for j in range(7):
                stepped[:, :, i, j] = stepper.column(j)
                stepper.write(i, j, x[:, :, i, j])
    torch.testing.assert_close(stepped, total, rtol=1e-5, atol=1e-5)
