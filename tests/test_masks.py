"""MADE degrees, masks, MaskedLinear and the block-triangular fast path."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError
from audioar.layers import (
    BlockMaskedLinear,
    MaskedLinear,
    block_linear,
    block_masked_mlp,
    block_views,
    connectivity,
    hidden_degrees,
    input_degrees,
    made_degrees,
    made_masks,
    mlp_forward_t,
    mlp_input_grads_t,
    triangular_blocks,
    weight_grad_t,
)
from audioar.layers.derived import Derived
from audioar.layers.masked_linear import stack_blocks

ORDER = st.one_of(st.sampled_from(["natural", "reverse", "random"]), st.just("explicit"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second thread only adds synchronisation (and stalls on a busy machine)."""
    torch.set_num_threads(1)


def _order(order, features, seed):
    if order == "explicit":
        return torch.randperm(features, generator=torch.Generator().manual_seed(seed)).tolist()
    return order


def test_input_degrees_orders():
    assert input_degrees(4, "natural").tolist() == [1, 2, 3, 4]
    assert input_degrees(4, "reverse").tolist() == [4, 3, 2, 1]
    # Explicit: the features in generation order; x_2 first, then x_0, then x_1.
    assert input_degrees(3, [2, 0, 1]).tolist() == [2, 3, 1]
    rand = input_degrees(6, "random", torch.Generator().manual_seed(1))
    assert sorted(rand.tolist()) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("bad", ["sideways", [0, 0, 1], [0, 1], [1, 2, 3]])
def test_input_degrees_rejects_bad_orders(bad):
    with pytest.raises(ConfigError):
        input_degrees(3, bad)


def test_hidden_degrees_equal_covers_range_sorted():
    d = hidden_degrees(10, 1, 4)
    assert d.tolist() == sorted(d.tolist())
    assert set(d.tolist()) == {1, 2, 3, 4}
    r = hidden_degrees(50, 0, 7, "random", torch.Generator().manual_seed(0))
    assert r.min() >= 0 and r.max() <= 7 and torch.equal(r, r.sort().values)
    with pytest.raises(ConfigError):
        hidden_degrees(5, 1, 3, "bogus")


@settings(deadline=None, max_examples=25)
@given(
    features=st.integers(1, 9),
    extra=st.lists(st.integers(0, 12), min_size=1, max_size=3),
    context=st.integers(0, 3),
    order=ORDER,
    seed=st.integers(0, 2**16),
)
def test_masks_connect_exactly_the_allowed_pairs(features, extra, context, order, seed):
    degrees = input_degrees(
        features, _order(order, features, seed), torch.Generator().manual_seed(seed)
    )
    # Enough hidden units for every degree (+1 for the context-only degree 0).
    hidden = [features + 1 + e for e in extra]
    layer_degrees = made_degrees(degrees, hidden, context)
    masks = made_masks(layer_degrees, degrees)
    assert all(m.dtype == torch.bool for m in masks)
    reach = connectivity(masks)
    allowed = degrees[:, None] > degrees[None, :]
    # Data inputs: exactly the pairs the ordering allows (none forbidden, none dead).
    assert torch.equal(reach[:, context:], allowed)
    # Context reaches every output, including the first one in the order.
    assert reach[:, :context].all()
    # Context inputs feed every first-layer hidden unit (and, having degree 0, nothing else).
    assert masks[0][:, :context].all()


@settings(deadline=None, max_examples=25)
@given(
    features=st.integers(2, 9),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    mode=st.sampled_from(["equal", "random"]),
    seed=st.integers(0, 2**16),
)
def test_small_or_random_hidden_layers_never_bypass_the_order(features, hidden, mode, seed):
    g = torch.Generator().manual_seed(seed)
    degrees = input_degrees(features, "random", g)
    masks = made_masks(made_degrees(degrees, hidden, 0, mode, g), degrees)
    reach = connectivity(masks)
    forbidden = degrees[:, None] <= degrees[None, :]
    assert not (reach & forbidden).any()


def test_masked_linear_uses_mask_buffer():
    mask = torch.tensor([[True, False, True], [False, False, True]])
    layer = MaskedLinear(mask)
    assert "mask" in dict(layer.named_buffers())
    assert "mask" in layer.state_dict()
    x = torch.randn(4, 3, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, F.linear(x, layer.weight * mask, layer.bias))
    y.sum().backward()
    assert (layer.weight.grad[~mask] == 0).all()
    assert (layer.weight.grad[mask] != 0).all()
    with pytest.raises(ConfigError):
        MaskedLinear(torch.ones(3, 3))


@settings(deadline=None, max_examples=20)
@given(
    features=st.integers(1, 12),
    hidden=st.integers(1, 20),
    num_blocks=st.integers(1, 6),
    context=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_block_linear_matches_dense(features, hidden, num_blocks, context, seed):
    torch.manual_seed(seed)
    degrees = torch.arange(1, features + 1)
    layer_degrees = made_degrees(degrees, [hidden, hidden], context)
    masks = made_masks(layer_degrees, degrees.repeat_interleave(2))
    x = torch.randn(5, features + context)
    for mask in masks:
        blocks = triangular_blocks(mask, num_blocks)
        # The blocks cover every row once and leave out only masked-off entries.
        assert [r for r0, r1, _, _ in blocks for r in range(r0, r1)] == list(range(mask.shape[0]))
        for r0, r1, c0, c1 in blocks:
            assert c0 <= c1
            assert not mask[r0:r1, c1:].any()
            assert mask[r0:r1, :c0].all()
        weight = torch.randn(mask.shape) * mask
        bias = torch.randn(mask.shape[0])
        torch.testing.assert_close(block_linear(x, weight, bias, blocks), F.linear(x, weight, bias))
        x = torch.tanh(F.linear(x, weight, bias))


# Masked MLPs drawn for the fast-path tests: activation, bias, dropout, blocks, seed.
MLP_CASES = {
    "activation": st.sampled_from(["tanh", "relu", "identity"]),
    "bias": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.3]),
    "num_blocks": st.integers(1, 5),
    "seed": st.integers(0, 2**16),
}


def _reference_mlp(x, weights, biases, masks, activation, keeps):
    act = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda h: h}[activation]
    for i, (w, b, m) in enumerate(zip(weights, biases, masks, strict=True)):
        x = F.linear(x, w * m, b)
        if i < len(weights) - 1:
            x = act(x) * keeps[i]
    return x


@settings(deadline=None, max_examples=15)
@given(**MLP_CASES)
def test_block_masked_mlp_matches_dense(activation, bias, dropout, num_blocks, seed):
    # Unsorted random masks: the fast path must be exact for any mask, not only MADE's.
    torch.manual_seed(seed)
    sizes = [9, 13, 11, 6]
    masks = [torch.rand(o, i) < 0.6 for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    weights = [(torch.randn(m.shape) * m).requires_grad_() for m in masks]
    biases = [torch.randn(m.shape[0]).requires_grad_() if bias else None for m in masks]
    floats = [m.float() for m in masks]
    blocks = [triangular_blocks(m, num_blocks) for m in masks]
    x = torch.randn(7, sizes[0], requires_grad=True)
    g = torch.randn(7, sizes[-1])
    torch.manual_seed(seed + 1)
    fast = block_masked_mlp(x, weights, biases, floats, blocks, activation, dropout)
    # The same dropout draws, in the same order, for the reference.
    torch.manual_seed(seed + 1)
    keeps = [
        torch.empty(7, n).bernoulli_(1 - dropout) / (1 - dropout) if dropout else 1.0
        for n in sizes[1:-1]
    ]
    ref = _reference_mlp(x, weights, biases, floats, activation, keeps)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    leaves = [x, *weights, *[b for b in biases if b is not None]]
    grads = torch.autograd.grad((fast * g).sum(), leaves)
    expected = torch.autograd.grad((ref * g).sum(), leaves)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for w_grad, m in zip(grads[1 : 1 + len(masks)], masks, strict=True):
        assert (w_grad[~m] == 0).all()
    with torch.no_grad():  # the no-autograd path gives the same numbers
        torch.manual_seed(seed + 1)
        quiet = block_masked_mlp(x, weights, biases, floats, blocks, activation, dropout)
    torch.testing.assert_close(quiet, ref.detach(), rtol=1e-4, atol=1e-5)
    # Weights stored as blocks (BlockMaskedLinear): the same numbers, one gradient per block.
    stored = [
        [w.detach()[r0:r1, :c1].clone().requires_grad_() for r0, r1, _, c1 in layer_blocks]
        for w, layer_blocks in zip(weights, blocks, strict=True)
    ]
    torch.manual_seed(seed + 1)
    out = block_masked_mlp(x, stored, biases, floats, blocks, activation, dropout)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    block_grads = torch.autograd.grad((out * g).sum(), [w for layer in stored for w in layer])
    expected_blocks = [
        w_grad[r0:r1, :c1]
        for w_grad, layer_blocks in zip(expected[1 : 1 + len(masks)], blocks, strict=True)
        for r0, r1, _, c1 in layer_blocks
    ]
    for a, b in zip(block_grads, expected_blocks, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@settings(deadline=None, max_examples=15)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    num_blocks=st.integers(1, 4),
    sort=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_block_masked_linear_is_masked_linear(rows, cols, num_blocks, sort, seed):
    """Same initial values, outputs and (masked) gradients as MaskedLinear; fewer stored."""
    torch.manual_seed(seed)
    mask = torch.rand(rows, cols) < 0.6
    if sort:  # MADE-like: rows see a growing prefix of the columns
        mask = torch.arange(cols)[None, :] < torch.randint(0, cols + 1, (rows, 1)).sort(0).values
    torch.manual_seed(seed + 1)
    dense = MaskedLinear(mask)
    torch.manual_seed(seed + 1)
    layer = BlockMaskedLinear(mask, num_blocks)
    torch.testing.assert_close(layer.masked_weight(), dense.weight.detach())
    assert sum(w.numel() for w in layer.stored_weights()) <= mask.numel()
    x = torch.randn(5, cols, requires_grad=True)
    y, y_ref = layer(x), dense(x)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn(5, rows)
    grads = torch.autograd.grad((y * g).sum(), [x, *layer.stored_weights(), layer.bias])
    ref = torch.autograd.grad((y_ref * g).sum(), [x, dense.weight, dense.bias])
    torch.testing.assert_close(grads[0], ref[0])
    torch.testing.assert_close(grads[-1], ref[-1])
    for (r0, r1, _, c1), w_grad, m in zip(
        layer.blocks, grads[1:-1], layer.block_masks(), strict=True
    ):
        assert (w_grad[~m] == 0).all()
        torch.testing.assert_close(w_grad, ref[1][r0:r1, :c1])


def test_block_masked_linear_state_dict_is_dense_and_loads_either_way():
    torch.manual_seed(0)
    mask = torch.ones(6, 5, dtype=torch.bool).tril()
    layer = BlockMaskedLinear(mask)
    assert [tuple(w.shape) for w in layer.stored_weights()] == [(3, 3), (3, 5)]
    state = layer.state_dict()
    assert sorted(state) == ["bias", "mask", "weight"]  # what MaskedLinear saves
    dense = MaskedLinear(mask)
    dense.load_state_dict(state)
    x = torch.randn(4, 5)
    torch.testing.assert_close(dense(x), layer(x))
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    state["weight"] = torch.randn(6, 5)  # e.g. written by another tool: masked on loading
    other = BlockMaskedLinear(mask)
    other.load_state_dict(state)
    assert torch.equal(other.masked_weight(), state["weight"] * mask)
    with pytest.raises(RuntimeError, match="mask differs"):
        other.load_state_dict(dict(state, mask=~mask))
    assert torch.equal(other.mask, mask)  # not overwritten by the failed load
    with pytest.raises(RuntimeError, match="shape"):
        other.load_state_dict(dict(state, weight=torch.randn(5, 5)))


def test_masked_linear_keeps_masked_weights_at_zero():
    torch.manual_seed(0)
    mask = torch.rand(6, 5) < 0.5
    layer = MaskedLinear(mask)
    assert (layer.weight[~mask] == 0).all()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["weight"] = torch.randn(6, 5)  # e.g. written by another tool
    layer.load_state_dict(state)
    assert (layer.weight[~mask] == 0).all()
    assert torch.equal(layer.weight[mask], state["weight"][mask])
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 5)).square().sum().backward()
        opt.step()
    assert (layer.weight[~mask] == 0).all()


@settings(deadline=None, max_examples=15)
@given(**MLP_CASES)
def test_transposed_mlp_matches_dense(activation, bias, dropout, num_blocks, seed):
    """The ``(features, batch)`` layout used by the MAF stack: outputs, input gradients and
    weight gradients (one layer at a time, and batched over a stack of three MLPs that share
    their masks) against autograd on the dense masked MLP."""
    torch.manual_seed(seed)
    sizes, batch, flows = [9, 13, 11, 6], 7, 3
    masks = [torch.rand(o, i) < 0.6 for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    floats = [m.float() for m in masks]
    blocks = [triangular_blocks(m, num_blocks) for m in masks]
    stack = [
        (
            [(torch.randn(m.shape) * m).requires_grad_() for m in masks],
            [torch.randn(m.shape[0]).requires_grad_() if bias else None for m in masks],
        )
        for _ in range(flows)
    ]
    xs = torch.randn(flows, batch, sizes[0], requires_grad=True)
    g = torch.randn(flows, batch, sizes[-1])
    inputs = [torch.empty(flows, n, batch) for n in sizes[:-1]]
    grads = [torch.empty(flows, n, batch) for n in sizes[1:]]
    for t, (weights, biases) in enumerate(stack):
        views = block_views(weights, biases, floats, blocks)
        inputs[0][t] = xs[t].detach().t()
        keeps = [torch.empty(batch, n).bernoulli_(1 - dropout) / (1 - dropout) for n in sizes[1:-1]]
        drops = [k.t() for k in keeps] if dropout else None
        values = mlp_forward_t(inputs[0][t], views, activation, [h[t] for h in inputs[1:]], drops)
        ref = _reference_mlp(xs[t], weights, biases, floats, activation, keeps)
        torch.testing.assert_close(values[-1].t(), ref, rtol=1e-5, atol=1e-5)
        grads[-1][t] = g[t].t()
        grad_in = mlp_input_grads_t([h[t] for h in grads], values, views, activation, True, drops)
        leaves = [xs, *weights, *[b for b in biases if b is not None]]
        expected = torch.autograd.grad((ref * g[t]).sum(), leaves)
        torch.testing.assert_close(grad_in.t(), expected[0][t], rtol=1e-5, atol=1e-5)
        for i, view in enumerate(views):  # one MLP's weight gradients, layer by layer
            grad_w = weight_grad_t(grads[i][t], inputs[i][t], view)
            torch.testing.assert_close(grad_w, expected[1 + i], rtol=1e-5, atol=1e-5)
            assert (grad_w[~masks[i]] == 0).all()
        if bias:
            for i, b_grad in enumerate(expected[1 + len(masks) :]):
                torch.testing.assert_close(grads[i][t].sum(1), b_grad, rtol=1e-5, atol=1e-5)
        if not dropout:  # evaluation's call: no buffers to fill, nothing kept
            quiet = mlp_forward_t(inputs[0][t].clone(), views, activation)[-1]
            torch.testing.assert_close(quiet.t(), ref.detach(), rtol=1e-5, atol=1e-5)
    views = block_views(stack[0][0], stack[0][1], floats, blocks)
    for i, view in enumerate(views):  # all three at once, one batched product per block
        batched = weight_grad_t(grads[i], inputs[i], view)
        for t in range(flows):
            torch.testing.assert_close(
                batched[t], weight_grad_t(grads[i][t], inputs[i][t], view), rtol=1e-5, atol=1e-5
            )


def test_derived_follows_storage_and_in_place_writes():
    w = torch.ones(2, 3)
    made = []

    def total() -> torch.Tensor:
        made.append(1)
        return w.sum()

    cache = Derived()
    assert cache.get([w], total).item() == 6.0
    assert cache.get([w], total).item() == 6.0 and len(made) == 1  # kept
    w.mul_(2)  # in place: the version counter moves
    assert cache.get([w], total).item() == 12.0 and len(made) == 2
    assert cache.get([w], total, 3).item() == 12.0 and len(made) == 3  # other extra key
    views = Derived(versions=False)  # a view sees writes: only the storage matters
    row = views.get([w], lambda: w[0])
    w.add_(1)
    assert views.get([w], lambda: w[1]) is row and row.tolist() == [3.0, 3.0, 3.0]
    w = w.double()  # new storage
    assert views.get([w], lambda: w[1]) is not row
    dense = torch.zeros(3)
    src = torch.arange(3.0)
    refreshed = Derived()
    kept = refreshed.get([src], lambda: src.clone(), refresh=lambda d: d.copy_(src))
    src.add_(1)  # written in place: refreshed in place, the same tensor
    again = refreshed.get([src], lambda: dense, refresh=lambda d: d.copy_(src))
    assert again is kept and again.tolist() == [1.0, 2.0, 3.0]
    assert __import__("copy").deepcopy(refreshed)._found is None  # copies start empty


def test_stacked_block_layers_read_their_rows():
    """stack_blocks: like layers keep their block weights in (layers, rows, cols) stacks; each
    computes, differentiates, saves and loads as before."""
    torch.manual_seed(0)
    mask = torch.rand(6, 5) < 0.6
    layers = [BlockMaskedLinear(mask, 3) for _ in range(3)]
    states = [layer.state_dict() for layer in layers]
    x = torch.randn(4, 5)
    before = [layer(x).detach() for layer in layers]
    stacks = stack_blocks(layers)
    assert [tuple(s.shape) for s in stacks] == [(3, *w.shape) for w in layers[0].block_masks()]
    assert list(layers[1].parameters()) == [layers[1].bias]
    for layer, y, state in zip(layers, before, states, strict=True):
        torch.testing.assert_close(layer(x), y)
        assert sorted(layer.state_dict()) == sorted(state)
        torch.testing.assert_close(layer.state_dict()["weight"], state["weight"])
    sum(layer(x).square().sum() for layer in layers).backward()  # one unbind per stack
    for j, stack in enumerate(stacks):
        assert stack.grad is not None
        assert (stack.grad[:, ~layers[0].block_masks()[j]] == 0).all()
    fresh = BlockMaskedLinear(mask, 3)
    layers[2].load_state_dict(fresh.state_dict())  # into row 2 of the stacks
    torch.testing.assert_close(layers[2](x), fresh(x))
    torch.testing.assert_close(layers[0](x), before[0])
    with pytest.raises(RuntimeError, match="weight"):
        layers[1].load_state_dict({"bias": fresh.bias, "mask": mask})
    with pytest.raises(ConfigError):
        stack_blocks(layers)  # stacked already
