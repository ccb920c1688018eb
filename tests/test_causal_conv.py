"""CausalConv1d and the gated residual block: causality, exact span, step path == full path."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.layers import CausalConv1d, GatedResidualBlock, gated_activation


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny tensors: extra threads only add synchronisation overhead (and noise on busy CPUs).
    torch.set_num_threads(1)


@settings(deadline=None, max_examples=15)
@given(
    kernel_size=st.integers(1, 4),
    dilation=st.integers(1, 5),
    t0=st.integers(0, 39),
)
def test_output_before_t_ignores_inputs_at_or_after_t(kernel_size, dilation, t0):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size, dilation)
    x = torch.randn(2, 3, 40)
    x2 = x.clone()
    x2[:, :, t0:] = torch.randn(2, 3, 40 - t0)
    y, y2 = conv(x), conv(x2)
    assert y.shape == (2, 5, 40)
    torch.testing.assert_close(y[:, :, :t0], y2[:, :, :t0], rtol=0, atol=0)
    assert not torch.allclose(y[:, :, t0], y2[:, :, t0])


@pytest.mark.parametrize(("kernel_size", "dilation"), [(1, 1), (2, 1), (2, 4), (3, 2), (4, 3)])
def test_output_depends_on_exactly_the_dilated_taps(kernel_size, dilation):
    conv = CausalConv1d(2, 2, kernel_size, dilation)
    x = torch.randn(1, 2, 30, requires_grad=True)
    conv(x)[0, :, 25].sum().backward()
    touched = set(torch.nonzero(x.grad[0].abs().sum(0)).flatten().tolist())
    assert touched == {25 - m * dilation for m in range(kernel_size)}
    assert conv.context == (kernel_size - 1) * dilation


@settings(deadline=None, max_examples=15)
@given(kernel_size=st.integers(1, 4), dilation=st.integers(1, 6), batch=st.integers(1, 3))
def test_step_equals_forward(kernel_size, dilation, batch):
    torch.manual_seed(1)
    conv = CausalConv1d(4, 6, kernel_size, dilation)
    x = torch.randn(batch, 4, 50)  # several wrap-arounds of every ring buffer
    queue = conv.init_cache(batch)
    steps = torch.stack([conv.step(x[:, :, t], queue) for t in range(50)], dim=2)
    torch.testing.assert_close(steps, conv(x), rtol=1e-5, atol=1e-6)
    assert queue.position == 50


def test_queue_reset_starts_over():
    conv = CausalConv1d(3, 3, 2, 3)
    x = torch.randn(1, 3, 12)
    queue = conv.init_cache(1)
    first = [conv.step(x[:, :, t], queue) for t in range(12)]
    queue.reset()
    again = [conv.step(x[:, :, t], queue) for t in range(12)]
    torch.testing.assert_close(torch.stack(first), torch.stack(again), rtol=0, atol=0)


def test_gated_activation_is_tanh_times_sigmoid():
    x = torch.randn(2, 6, 5)
    expected = torch.tanh(x[:, :3]) * torch.sigmoid(x[:, 3:])
    torch.testing.assert_close(gated_activation(x), expected)
    torch.testing.assert_close(
        gated_activation(x.transpose(1, 2), dim=-1), expected.transpose(1, 2)
    )


@pytest.mark.parametrize("cond_kind", ["none", "global", "local"])
def test_block_step_equals_forward(cond_kind):
    block = GatedResidualBlock(4, 7, kernel_size=3, dilation=2)
    h = torch.randn(2, 4, 20)
    cond = {
        "none": None,
        "global": torch.randn(2, 8, 1),
        "local": torch.randn(2, 8, 20),
    }[cond_kind]
    res, skip = block(h, cond)
    assert res.shape == (2, 4, 20) and skip.shape == (2, 7, 20)
    queue = block.init_cache(2)
    outs = []
    for t in range(20):
        c = None if cond is None else cond[:, :, min(t, cond.shape[2] - 1)]
        outs.append(block.step(h[:, :, t], queue, c))
    torch.testing.assert_close(torch.stack([o[0] for o in outs], 2), res, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack([o[1] for o in outs], 2), skip, rtol=1e-5, atol=1e-6)
