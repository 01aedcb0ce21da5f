"""Weights in against Flax linen (from_flax), and jlstm layers inside Flax models (FlaxLayer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import B, F, T, U, close, data, readme_param_counts, reference

import jlstm
from jlstm import interop

nn = pytest.importorskip("flax.linen")


@reference()
def flax_init(module, x, seed=0):
    return module.init(jax.random.key(seed), x)


@reference()
def flax_apply(module, variables, x, **kwargs):
    return module.apply(variables, x, **kwargs)


@reference()
def abstract_init(module, x):
    """The module's variables as shapes: what a test of the params' layout needs, without compiling."""
    return jax.eval_shape(module.init, jax.random.key(0), x)


@pytest.mark.parametrize(
    "cell_type,reverse",
    [("LSTMCell", False), ("OptimizedLSTMCell", True), ("GRUCell", False), ("GRUCell", True), ("SimpleCell", True)],
)
def test_from_flax_rnn_matches(cell_type, reverse):
    rnn = nn.RNN(getattr(nn, cell_type)(U), reverse=reverse)
    x = data(10)
    variables = flax_init(rnn, x)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, variables)  # non-zero biases
    layer, params = interop.from_flax(rnn, variables)
    assert layer.config["go_backwards"] is reverse
    close(layer.apply(params, x), flax_apply(rnn, variables, x))


@pytest.mark.parametrize(
    "cell,type_name,more",
    [
        (nn.LSTMCell(U, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu), "LSTM", 0),
        # jlstm's reset_after GRU keeps recurrent biases for z and r too, zeros from Flax
        (nn.GRUCell(U, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu), "GRU", 2 * U),
        (nn.SimpleCell(U, activation_fn=jax.nn.relu), "SimpleRNN", 0),
    ],
    ids=["lstm", "gru", "simple"],
)
def test_from_flax_cell_with_its_own_gates(cell, type_name, more):
    rnn = nn.RNN(cell)
    x = data(11)
    variables = jax.tree_util.tree_map(lambda p: p - 0.2, flax_init(rnn, x, seed=1))
    layer, params = interop.from_flax(cell, variables["params"]["cell"])
    assert layer.type_name == type_name and jlstm.count_params(params) == jlstm.count_params(variables) + more
    assert layer.config["activation"] is jax.nn.relu
    close(layer.apply(params, x), flax_apply(rnn, variables, x))


def test_from_flax_gru_bias_rows():
    cell = nn.GRUCell(U)
    r = np.random.default_rng(3)
    shapes = abstract_init(nn.RNN(cell), data(3))["params"]["cell"]
    p = jax.tree_util.tree_map(lambda s: r.normal(size=s.shape).astype(np.float32), shapes)
    layer, params = interop.from_flax(cell, p)
    assert layer.config["reset_after"] is True
    np.testing.assert_array_equal(params["bias"][0], np.concatenate([p[g]["bias"] for g in ("iz", "ir", "in")]))
    np.testing.assert_array_equal(params["bias"][1], np.concatenate([np.zeros(2 * U), p["hn"]["bias"]]))


def test_param_counts_in_readme():
    """Flax linen's and NNX's own counts of their cells on 3 features with 5 units."""
    from flax import nnx

    x = jnp.ones((2, 7, 3))
    linen = {"GRU": nn.GRUCell(5), "LSTM": nn.LSTMCell(5), "SimpleRNN": nn.SimpleCell(5)}
    counts = {name: jlstm.count_params(abstract_init(nn.RNN(cell), x)) for name, cell in linen.items()}
    assert counts == readme_param_counts("Flax linen")
    cells = {"GRU": nnx.GRUCell, "LSTM": nnx.LSTMCell, "SimpleRNN": nnx.SimpleCell}
    with reference():
        modules = {name: nnx.eval_shape(lambda make=make: make(3, 5, rngs=nnx.Rngs(0))) for name, make in cells.items()}
    states = {name: nnx.state(module, nnx.Param) for name, module in modules.items()}
    counts = {name: sum(leaf.size for leaf in jax.tree_util.tree_leaves(state)) for name, state in states.items()}
    assert counts == readme_param_counts("Flax NNX")


def test_from_flax_bidirectional_matches():
    bi = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(U)), nn.RNN(nn.LSTMCell(3)))
    x = data(12)
    variables = flax_init(bi, x, seed=2)
    layer, params = interop.from_flax(bi, variables)
    assert layer.type_name == "Bidirectional"
    close(layer.apply(params, x), flax_apply(bi, variables, x))


def test_from_flax_bidirectional_gru_and_simple_cell_matches():
    bi = nn.Bidirectional(nn.RNN(nn.GRUCell(U)), nn.RNN(nn.SimpleCell(3)))
    x = data(15)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, flax_init(bi, x, seed=4))
    layer, params = interop.from_flax(bi, variables)
    assert [layer.config["layer"].type_name, layer.config["backward_layer"].type_name] == ["GRU", "SimpleRNN"]
    close(layer.apply(params, x), flax_apply(bi, variables, x))


def test_from_flax_rejects_unsupported():
    x = data(13)
    mgu = nn.RNN(nn.MGUCell(U))
    with pytest.raises(TypeError, match="expected an LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell, .*got MGUCell"):
        interop.from_flax(mgu, abstract_init(mgu, x))
    residual = nn.RNN(nn.SimpleCell(U, residual=True))
    with pytest.raises(ValueError, match="SimpleCell: residual=True is not supported"):
        interop.from_flax(residual, abstract_init(residual, x))
    gru = nn.RNN(nn.GRUCell(U))
    cell = abstract_init(gru, x)["params"]["cell"]
    with pytest.raises(
        ValueError, match=r"GRUCell hr: expected params with keys \['kernel'\], got \['bias', 'kernel'\]"
    ):
        interop.from_flax(gru, {"cell": {**cell, "hr": {**cell["hr"], "bias": jnp.zeros(U)}}})
    kept = nn.RNN(nn.LSTMCell(U), reverse=True, keep_order=True)
    with pytest.raises(ValueError, match="keep_order=True"):
        interop.from_flax(kept, abstract_init(kept, x))
    rnn = nn.RNN(nn.LSTMCell(U))
    p = abstract_init(rnn, x)["params"]
    with pytest.raises(ValueError, match=r"expected params with keys \['hf', .*got \['hf'"):
        interop.from_flax(rnn, {"cell": {k: v for k, v in p["cell"].items() if k != "ii"}})
    with pytest.raises(TypeError, match="expected an nn.RNN in the Bidirectional, got LSTMCell"):
        interop.from_flax(nn.Bidirectional(rnn, nn.LSTMCell(U)), {})


class FlaxModel(nn.Module):
    layer: jlstm.Layer

    @nn.compact
    def __call__(self, x, training=False):
        return nn.Dense(2)(interop.FlaxLayer(self.layer)(x, training=training))


def test_flax_layer_in_a_flax_model():
    # not in reference(): a model around a FlaxLayer runs under the strict promotion its user set
    layer = jlstm.Sequential([jlstm.LSTM(3, dropout=0.5)])
    model = FlaxModel(layer)
    x = data(14)
    variables = model.init(jax.random.key(0), x)
    inner = variables["params"]["FlaxLayer_0"]["jlstm"]
    assert isinstance(inner, tuple) and jlstm.count_params(inner) == jlstm.count_params(layer, (None, T, F))
    dense = variables["params"]["Dense_0"]
    expected = layer.apply(inner, x) @ dense["kernel"] + dense["bias"][None]
    close(jax.jit(model.apply)(variables, x), expected)
    trained = model.apply(variables, x, training=True, rngs={"dropout": jax.random.key(1)})
    assert trained.shape == (B, 2) and not np.allclose(trained, expected)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))(variables)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables)


@pytest.mark.parametrize("cell_type", ["LSTMCell", "GRUCell"])
def test_from_flax_reverse_with_seq_lengths(cell_type):
    """Flax flips each sequence's real steps in place, jlstm the whole padded axis: from_flax's
    documented gather puts jlstm's outputs where Flax has them, at every real step."""
    rnn = nn.RNN(getattr(nn, cell_type)(U), reverse=True)
    x, lengths = data(18), np.array([T, 3, 1], np.int32)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, flax_init(rnn, x))
    theirs = flax_apply(rnn, variables, x, seq_lengths=lengths)
    layer, params = interop.from_flax(rnn, variables)
    y = layer.apply(params, x, lengths=lengths)
    ours = jnp.take_along_axis(y, ((jnp.arange(T)[None] - lengths[:, None]) % T)[..., None], axis=1)
    real = (np.arange(T)[None] < lengths[:, None])[..., None]
    close(np.where(real, ours, 0), np.where(real, theirs, 0))
    assert not np.allclose(np.where(real, y, 0), np.where(real, theirs, 0), atol=1e-2)  # as they come, they differ


def test_from_flax_bidirectional_with_seq_lengths():
    """nn.Bidirectional's backward RNN keeps the order, as jlstm's Bidirectional: equal at the real steps."""
    bi = nn.Bidirectional(nn.RNN(nn.LSTMCell(U)), nn.RNN(nn.GRUCell(3)))
    x, lengths = data(19), np.array([T, 3, 1], np.int32)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, flax_init(bi, x))
    layer, params = interop.from_flax(bi, variables)
    real = (np.arange(T)[None] < lengths[:, None])[..., None]
    ours, theirs = layer.apply(params, x, lengths=lengths), flax_apply(bi, variables, x, seq_lengths=lengths)
    close(np.where(real, ours, 0), np.where(real, theirs, 0))


@pytest.mark.parametrize("share", ["rnn", "cell"])
def test_from_flax_bidirectional_sharing_one_cell(share):
    """One RNN, or one cell in two RNNs, in both directions: Flax keeps one params (under
    forward_rnn); from_flax refuses it, saying how to convert the same model, which this checks."""
    cell = nn.LSTMCell(U)
    rnn = nn.RNN(cell)
    shared = nn.Bidirectional(rnn, rnn) if share == "rnn" else nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))
    x = data(20)
    variables = jax.tree_util.tree_map(lambda p: p + 0.1, flax_init(shared, x))
    with pytest.raises(ValueError, match=r"Bidirectional: expected a cell per direction .*got one cell shared"):
        interop.from_flax(shared, variables)
    p = variables["params"]["forward_rnn"]
    layer, params = interop.from_flax(
        nn.Bidirectional(nn.RNN(cell), nn.RNN(cell.clone())), {"forward_rnn": p, "backward_rnn": p}
    )
    close(layer.apply(params, x), flax_apply(shared, variables, x))
