"""Equinox: from_equinox on its cells, and jlstm layers as Equinox modules (EquinoxLayer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import B, F, T, U, close, data, readme_param_counts, reference

import jlstm
from jlstm import interop

eqx = pytest.importorskip("equinox")
optax = pytest.importorskip("optax")


@eqx.filter_jit
def scanned(cell, x, h0):
    """The cell over each example's steps (`jax.lax.scan`), vmapped over the batch: its h per step."""
    lstm = isinstance(cell, eqx.nn.LSTMCell)

    def run(xs, h):
        def step(state, x_t):
            state = cell(x_t, state)
            return state, state[0] if lstm else state

        return jax.lax.scan(step, (h, jnp.zeros_like(h)) if lstm else h, xs)[1]

    return jax.vmap(run)(x, h0)


def equinox_count(cell):
    """The scalars in the cell's array leaves (arrays or, under eqx.filter_eval_shape, shapes)."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(cell))


# an Equinox GRU has no recurrent bias for r and z: jlstm's reset_after GRU keeps zeros for them
@pytest.mark.parametrize("cell_type,more", [("LSTMCell", 0), ("GRUCell", 2 * U)])
def test_from_equinox_matches(cell_type, more):
    cell = getattr(eqx.nn, cell_type)(F, U, key=jax.random.key(0))
    layer, params = interop.from_equinox(cell)
    assert jlstm.count_params(params) == equinox_count(cell) + more
    x, h0 = data(30), np.random.default_rng(31).normal(size=(B, U)).astype(np.float32)
    with reference():
        theirs = scanned(cell, x, h0)
    initial_state = (h0, np.zeros_like(h0)) if cell_type == "LSTMCell" else h0
    close(layer.apply(params, x, initial_state=initial_state), theirs)


@pytest.mark.parametrize("cell_type,order", [("LSTMCell", (0, 1, 2, 3)), ("GRUCell", (1, 0, 2))])
def test_from_equinox_without_bias(cell_type, order):
    """The layout without running it: kernels transposed, gate blocks in Keras's order, no bias."""
    cell = getattr(eqx.nn, cell_type)(F, U, use_bias=False, key=jax.random.key(1))
    layer, params = interop.from_equinox(cell)
    assert layer.config["use_bias"] is False and sorted(params) == ["kernel", "recurrent_kernel"]
    assert jlstm.count_params(params) == equinox_count(cell)
    for ours, theirs in [(params["kernel"], cell.weight_ih), (params["recurrent_kernel"], cell.weight_hh)]:
        blocks = np.split(np.asarray(theirs), len(order))
        np.testing.assert_array_equal(ours, np.concatenate([blocks[i] for i in order]).T)


def test_param_counts_in_readme():
    """Equinox's own count of its cells' arrays on 3 features with 5 units (as shapes: nothing is drawn)."""
    cells = {"GRU": eqx.nn.GRUCell, "LSTM": eqx.nn.LSTMCell}
    shapes = {name: eqx.filter_eval_shape(make, 3, 5, key=jax.random.key(0)) for name, make in cells.items()}
    assert {name: equinox_count(cell) for name, cell in shapes.items()} == readme_param_counts("Equinox")


def test_from_equinox_rejects_other_modules():
    with pytest.raises(TypeError, match="from_equinox: expected an eqx.nn.LSTMCell or eqx.nn.GRUCell, got Linear"):
        interop.from_equinox(eqx.nn.Linear(F, U, key=jax.random.key(0)))


def test_equinox_layer_trains():
    layer = jlstm.LSTM(3, dropout=0.3)  # as test_interop_nnx.py's, whose compiles it shares in one process
    model = interop.EquinoxLayer(layer, (None, T, F), key=jax.random.key(0))
    x, y = data(32), np.random.default_rng(33).normal(size=(B, 3)).astype(np.float32)
    lengths = np.array([T, 2, 0], np.int32)
    inference = eqx.nn.inference_mode(model)
    expected = inference(x, lengths=lengths)
    close(expected, layer.apply(model.params, x, lengths=lengths))
    close(model(x, lengths=lengths, inference=True), expected)
    # one example at a time, the Equinox way
    close(jax.vmap(lambda x, n: inference(x, lengths=n))(x, lengths), expected)

    opt = optax.adam(0.05)
    mse = lambda m, key=None: jnp.mean((m(x, lengths=lengths, key=key) - y) ** 2)  # noqa: E731

    @eqx.filter_jit
    def step(model, state, key):
        loss, grads = eqx.filter_value_and_grad(mse)(model, key)
        with reference():  # optax is not written for strict promotion
            updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    losses = []
    for key in jax.random.split(jax.random.key(2), 5):
        model, state, loss = step(model, state, key)
        losses.append(float(loss))
    untrained = float(jnp.mean((expected - y) ** 2))
    assert not np.isclose(losses[0], untrained)  # the first step's loss, of the same params, had dropout
    assert float(mse(eqx.nn.inference_mode(model))) < untrained


def test_equinox_layer_rejects_bad_input():
    with pytest.raises(TypeError, match="EquinoxLayer: expected a jlstm layer, got tuple"):
        interop.EquinoxLayer(tuple(jlstm.LSTM(2)), (None, T, F), key=jax.random.key(0))
    with pytest.raises(TypeError, match="EquinoxLayer inference: expected True or False, got 1"):
        interop.EquinoxLayer(jlstm.LSTM(2), (None, T, F), key=jax.random.key(0), inference=1)
