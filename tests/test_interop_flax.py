"""Weights in against Flax linen (from_flax), and jlstm layers inside Flax models (FlaxLayer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import B, F, T, U, close, data

import jlstm
from jlstm import interop

nn = pytest.importorskip("flax.linen")


@pytest.mark.parametrize("cell_type,reverse", [("LSTMCell", False), ("OptimizedLSTMCell", True)])
def test_from_flax_rnn_matches(cell_type, reverse):
    rnn = nn.RNN(getattr(nn, cell_type)(U), reverse=reverse)
    x = data(10)
    variables = rnn.init(jax.random.key(0), x)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, variables)  # non-zero biases
    layer, params = interop.from_flax(rnn, variables)
    assert layer.config["go_backwards"] is reverse
    close(layer.apply(params, x), rnn.apply(variables, x))


def test_from_flax_cell_with_its_own_gates():
    cell = nn.LSTMCell(U, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu)
    rnn = nn.RNN(cell)
    x = data(11)
    variables = rnn.init(jax.random.key(1), x)
    layer, params = interop.from_flax(cell, variables["params"]["cell"])
    assert layer.type_name == "LSTM" and jlstm.count_params(params) == jlstm.count_params(variables)
    close(layer.apply(params, x), rnn.apply(variables, x))


def test_from_flax_bidirectional_matches():
    bi = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(U)), nn.RNN(nn.LSTMCell(3)))
    x = data(12)
    variables = bi.init(jax.random.key(2), x)
    layer, params = interop.from_flax(bi, variables)
    assert layer.type_name == "Bidirectional"
    close(layer.apply(params, x), bi.apply(variables, x))


def test_from_flax_rejects_unsupported():
    x = data(13)
    gru = nn.RNN(nn.GRUCell(U))
    with pytest.raises(TypeError, match="got GRUCell"):
        interop.from_flax(gru, gru.init(jax.random.key(0), x))
    kept = nn.RNN(nn.LSTMCell(U), reverse=True, keep_order=True)
    with pytest.raises(ValueError, match="keep_order=True"):
        interop.from_flax(kept, kept.init(jax.random.key(0), x))
    rnn = nn.RNN(nn.LSTMCell(U))
    p = rnn.init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match=r"expected params with keys \['hf', .*got \['hf'"):
        interop.from_flax(rnn, {"cell": {k: v for k, v in p["cell"].items() if k != "ii"}})


class FlaxModel(nn.Module):
    layer: jlstm.Layer

    @nn.compact
    def __call__(self, x, training=False):
        return nn.Dense(2)(interop.FlaxLayer(self.layer)(x, training=training))


def test_flax_layer_in_a_flax_model():
    layer = jlstm.Sequential([jlstm.LSTM(3, dropout=0.5)])
    model = FlaxModel(layer)
    x = data(14)
    variables = model.init(jax.random.key(0), x)
    inner = variables["params"]["FlaxLayer_0"]["jlstm"]
    assert isinstance(inner, tuple) and jlstm.count_params(inner) == jlstm.count_params(layer, (None, T, F))
    dense = variables["params"]["Dense_0"]
    expected = layer.apply(inner, x) @ dense["kernel"] + dense["bias"]
    close(jax.jit(model.apply)(variables, x), expected)
    trained = model.apply(variables, x, training=True, rngs={"dropout": jax.random.key(1)})
    assert trained.shape == (B, 2) and not np.allclose(trained, expected)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))(variables)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables)
