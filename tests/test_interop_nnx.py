"""Flax NNX: from_flax on NNX's recurrent modules, and jlstm layers inside NNX models (NNXLayer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import B, F, T, U, close, data, reference

import jlstm
from jlstm import interop

nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")


def nnx_count(module):
    return jlstm.count_params(nnx.state(module, nnx.Param))


# NNX's cells made with zeros (its orthogonal initializer compiles a QR per shape), then filled
# with noise by `jittered`, which the test must see in every param, biases too.
ZEROS = nnx.initializers.zeros_init()
CHEAP = {"kernel_init": ZEROS, "recurrent_kernel_init": ZEROS, "bias_init": ZEROS, "rngs": nnx.Rngs(0)}


def jittered(module, seed=0):
    r = np.random.default_rng(seed)
    noise = lambda p: r.normal(scale=0.5, size=p.shape).astype(p.dtype)  # noqa: E731
    nnx.update(module, jax.tree_util.tree_map(noise, nnx.state(module, nnx.Param)))
    return module


@nnx.jit
def nnx_call(module, x):
    return module(x)


def both_ways(forward, backward):
    return nnx.Bidirectional(nnx.RNN(forward), nnx.RNN(backward))


def shared(cell):
    return both_ways(cell, cell)


# Each case: the NNX module, and the params the jlstm layer keeps beyond NNX's own.
CASES = {
    "optimized-reverse": (lambda: nnx.RNN(nnx.OptimizedLSTMCell(F, U, **CHEAP), reverse=True), 0),
    # NNX's GRUCell has no recurrent bias: jlstm's reset_after GRU keeps a row of zeros for it
    "lstm-gru": (
        lambda: both_ways(nnx.LSTMCell(F, U, **CHEAP), nnx.GRUCell(F, 3, gate_fn=jax.nn.hard_sigmoid, **CHEAP)),
        9,
    ),
    # one cell in both directions: NNX holds its params, which jlstm's two directions copy
    "shared-simple": (lambda: shared(nnx.SimpleCell(F, U, activation_fn=jax.nn.relu, **CHEAP)), U * (F + U + 1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_from_flax_nnx_matches(case):
    make, more = CASES[case]
    module = jittered(make())
    x = data(21)
    layer, params = interop.from_flax(module)
    assert jlstm.count_params(params) == nnx_count(module) + more
    with reference():
        theirs = nnx_call(module, x)
    close(layer.apply(params, x), theirs)


def test_from_flax_nnx_cell_as_its_rnn():
    """A bare cell converts as nn.RNN(cell) runs it (the same params; its outputs are the RNN's above)."""
    cell = jittered(nnx.LSTMCell(F, U, **CHEAP), seed=1)
    layer, params = interop.from_flax(cell)
    rnn_layer, rnn_params = interop.from_flax(nnx.RNN(cell))
    assert layer.config == rnn_layer.config and jlstm.count_params(params) == nnx_count(cell)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, rnn_params)
    # LSTMCell's per-gate Linears in Keras's gate order i, f, c, o
    np.testing.assert_array_equal(params["kernel"][:, U : 2 * U], cell.if_.kernel.get_value())
    np.testing.assert_array_equal(params["bias"][3 * U :], cell.ho.bias.get_value())


def test_from_flax_nnx_rejects_unsupported():
    rnn = nnx.RNN(nnx.LSTMCell(F, U, **CHEAP))
    with pytest.raises(ValueError, match="expected no params for the NNX module RNN .it holds its own., got dict"):
        interop.from_flax(rnn, {"params": {}})
    with pytest.raises(TypeError, match=r"expected the params \(or variables\) of the linen module RNN, got None"):
        interop.from_flax(pytest.importorskip("flax.linen").RNN(rnn.cell))
    with pytest.raises(ValueError, match="SimpleCell: residual=True is not supported"):
        interop.from_flax(nnx.RNN(nnx.SimpleCell(F, U, residual=True, **CHEAP)))
    with pytest.raises(ValueError, match="reverse=True with keep_order=True is not supported"):
        interop.from_flax(nnx.RNN(rnn.cell, reverse=True, keep_order=True))
    with pytest.raises(ValueError, match="expected the default concatenating merge_fn"):
        interop.from_flax(nnx.Bidirectional(rnn, rnn, merge_fn=jnp.add))
    with pytest.raises(TypeError, match="expected an nnx.RNN in the Bidirectional, got LSTMCell"):
        interop.from_flax(nnx.Bidirectional(rnn, rnn.cell))
    linear = nnx.Linear(F, U, kernel_init=ZEROS, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="expected an LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell, .*got Linear"):
        interop.from_flax(nnx.RNN(linear))


def test_nnx_layer_in_an_nnx_model(tmp_path):
    layer = jlstm.Sequential([jlstm.LSTM(3, dropout=0.3)])
    wrapped = interop.NNXLayer(layer, (None, T, F), rngs=nnx.Rngs(0))
    model = jittered(nnx.Sequential(wrapped, nnx.Linear(3, 2, kernel_init=ZEROS, rngs=nnx.Rngs(1))))
    linear = model.layers[1]
    assert isinstance(wrapped.params, tuple) and nnx_count(wrapped) == jlstm.count_params(layer, (None, T, F))
    x, y = data(23), np.random.default_rng(24).normal(size=(B, 2)).astype(np.float32)
    lengths = np.array([T, 2, 0], np.int32)
    dense = lambda h: h @ linear.kernel.get_value() + linear.bias.get_value()[None]  # noqa: E731

    model.eval()  # deterministic=True: no dropout; nnx.Sequential passes keywords to its first layer
    expected = model(x, lengths=lengths)
    close(expected, dense(layer.apply(wrapped.params, x, lengths=lengths)))
    model.train()  # dropout, a new key from the module's stream at each call, or the call's rngs
    first, second = model(x, lengths=lengths), model(x, lengths=lengths)
    assert not np.allclose(first, second) and not np.allclose(first, expected)
    key = jax.random.key(3)
    close(wrapped(x, lengths=lengths, rngs=key), wrapped(x, lengths=lengths, rngs=key))
    close(wrapped(x, lengths=lengths, rngs=nnx.Rngs(dropout=4)), wrapped(x, lengths=lengths, rngs=nnx.Rngs(dropout=4)))
    close(nnx.view(model, deterministic=True)(x, lengths=lengths), expected)

    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)
    mse = lambda m: jnp.mean((m(x, lengths=lengths) - y) ** 2)  # noqa: E731

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(mse)(model)
        with reference():  # optax is not written for strict promotion
            optimizer.update(model, grads)
        return loss

    for _ in range(5):
        step(model, optimizer)
    model.eval()
    assert float(mse(model)) < float(jnp.mean((expected - y) ** 2))

    path = tmp_path / "nnx.ckpt"
    jlstm.save(path, wrapped.params)
    fresh = interop.NNXLayer(layer, (None, T, F), rngs=nnx.Rngs(9), deterministic=None)
    fresh.set_params(jlstm.load(path, like=fresh.params))
    close(fresh(x, lengths=lengths, deterministic=True), wrapped(x, lengths=lengths))


def test_nnx_layer_rejects_bad_input():
    layer = jlstm.Dense(2)
    with pytest.raises(TypeError, match="NNXLayer: expected a jlstm layer, got str"):
        interop.NNXLayer("LSTM", (None, T, F), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="NNXLayer: expected rngs as an nnx.Rngs, got int"):
        interop.NNXLayer(layer, (None, T, F), rngs=0)
    module = interop.NNXLayer(layer, (None, T, F), rngs=nnx.Rngs(0), deterministic=None)
    with pytest.raises(ValueError, match="expected deterministic=True or False at the call .*got None"):
        module(data(25))
    with pytest.raises(
        ValueError, match=r"NNXLayer params\['kernel'\]: expected float32 \(4, 2\), got float32 \(3, 2\)"
    ):
        module.set_params({**module.params, "kernel": jnp.zeros((3, 2))})
