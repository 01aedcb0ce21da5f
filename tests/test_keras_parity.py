"""Numerical parity with real Keras 3 (JAX backend): same weights, same outputs to 1e-5."""

import functools
import itertools

import jax
import numpy as np
import pytest
from helpers import reference

import jlstm

keras = pytest.importorskip("keras")

B, T, F, U = 3, 7, 4, 5
MASKS = ("none", "post", "holes", "pre")


def make_mask(kind):
    if kind == "none":
        return None
    if kind == "post":
        return np.arange(T)[None, :] < np.array([T, 4, 1])[:, None]
    if kind == "pre":
        return np.arange(T)[None, :] >= np.array([0, 3, 6])[:, None]
    return np.array([[1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0]], bool)


def data(seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(B, T, F)).astype(np.float32)
    states = [r.normal(size=(B, U)).astype(np.float32) for _ in range(4)]
    return x, states


def keras_weights(params):
    if "forward" in params:
        return keras_weights(params["forward"]) + keras_weights(params["backward"])
    return [np.asarray(params[k]) for k in ("kernel", "recurrent_kernel", "bias") if k in params]


def keras_layer(layer, params):
    with reference():
        layer.build((None, T, F))
        layer.set_weights(keras_weights(params))
    return layer


@functools.cache
def keras_call(layer, masked, with_state):
    """The Keras layer's call, jitted through `stateless_call` as Keras's JAX backend runs it
    in a model (called eagerly, it retraces its scan on every call)."""

    def call(weights, others, x, mask, initial_state):
        kwargs = {"mask": mask} if masked else {}
        if with_state:
            kwargs["initial_state"] = list(initial_state)
        return layer.stateless_call(weights, others, x, **kwargs)[0]

    return jax.jit(call)


def run_keras(layer, x, mask, initial_state, states=None):
    """Keras's outputs. Given the layer's number of `states`, Keras is always called with a
    mask and initial states, all True and zeros where jlstm was given none (the same values by
    Keras's semantics), so that a layer's cases share one compile."""
    if states is not None:
        mask = np.ones(x.shape[:2], bool) if mask is None else mask
        initial_state = [np.zeros((x.shape[0], U), np.float32)] * states if initial_state is None else initial_state
    call = keras_call(layer, mask is not None, initial_state is not None)
    with reference():
        weights = [v.value for v in layer.trainable_variables]
        others = [v.value for v in layer.non_trainable_variables]
        out = call(weights, others, x, mask, None if initial_state is None else tuple(initial_state))
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_all_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


# Each recurrent layer against its Keras twin: (jlstm constructor, Keras class, options, states).
KINDS = {
    "LSTM": (jlstm.LSTM, keras.layers.LSTM, {}, 2),
    "GRU": (jlstm.GRU, keras.layers.GRU, {}, 1),
    "GRU-v1": (jlstm.GRU, keras.layers.GRU, {"reset_after": False}, 1),
    "SimpleRNN": (jlstm.SimpleRNN, keras.layers.SimpleRNN, {}, 1),
}


@functools.cache
def recurrent_pair(kind, return_sequences, return_state, go_backwards):
    """A jlstm layer, its params, and a Keras layer holding the same weights (built once)."""
    ours, theirs, options, _ = KINDS[kind]
    cfg = dict(return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards, **options)
    layer = ours(U, **cfg)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    return layer, params, keras_layer(theirs(U, **cfg), params)


@functools.cache
def bidirectional_pair(kind, merge_mode, return_sequences, return_state):
    ours, theirs, options, _ = KINDS[kind]
    cfg = dict(return_sequences=return_sequences, return_state=return_state, **options)
    layer = jlstm.Bidirectional(ours(U, **cfg), merge_mode=merge_mode)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    klayer = keras.layers.Bidirectional(theirs(U, **cfg), merge_mode=merge_mode)
    return layer, params, keras_layer(klayer, params)


# A case runs unmasked, or masked with each of the masks in turn (one compile: a mask's values
# are data); the masked and unmasked cases take the state in turn.
MASK_RUNS = {"none": ("none",), "masked": ("post", "holes", "pre")}


def recurrent_grid(kind):
    """Every output and direction unmasked and masked, with and without a state in turn."""
    outputs = list(itertools.product([False, True], [False, True], [False, True]))
    return [(kind, *out, masks, (i + j) % 2 == 1) for i, out in enumerate(outputs) for j, masks in enumerate(MASK_RUNS)]


@pytest.mark.parametrize(
    "kind,return_sequences,return_state,go_backwards,masks,with_state",
    [case for kind in KINDS for case in recurrent_grid(kind)],
)
def test_recurrent_matches_keras(kind, return_sequences, return_state, go_backwards, masks, with_state):
    layer, params, klayer = recurrent_pair(kind, return_sequences, return_state, go_backwards)
    x, states = data()
    init = states[: KINDS[kind][3]] if with_state else None
    for mask in map(make_mask, MASK_RUNS[masks]):
        ours = as_list(layer.apply(params, x, mask=mask, initial_state=init))
        assert_all_close(ours, run_keras(klayer, x, mask, init, KINDS[kind][3]))


def bidirectional_grid(kind):
    """Every merge mode and output, each merge mode meeting the masks and both states (the
    merge runs after the scan, so the masks and states need no full product with it)."""
    modes = list(itertools.product(["concat", "sum", "mul", "ave", None], [False, True], [False, True]))
    return [(kind, *mode, list(MASK_RUNS)[i % 2], (i + i // 2) % 2 == 1) for i, mode in enumerate(modes)]


@pytest.mark.parametrize(
    "kind,merge_mode,return_sequences,return_state,masks,with_state",
    [case for kind in KINDS for case in bidirectional_grid(kind)],
)
def test_bidirectional_matches_keras(kind, merge_mode, return_sequences, return_state, masks, with_state):
    layer, params, klayer = bidirectional_pair(kind, merge_mode, return_sequences, return_state)
    x, states = data(1)
    init = states[: 2 * KINDS[kind][3]] if with_state else None
    for mask in map(make_mask, MASK_RUNS[masks]):
        ours = as_list(layer.apply(params, x, mask=mask, initial_state=init))
        assert_all_close(ours, run_keras(klayer, x, mask, init, 2 * KINDS[kind][3]))


@functools.cache
def keras_gradient_call(klayer, masked, with_state):
    """The jitted gradient of sum(sin(outputs)) w.r.t. Keras's trainable weights and the inputs
    (one compile per layer: the mask and state are arguments)."""

    def loss(weights, others, x, mask, initial_state):
        kwargs = {"mask": mask} if masked else {}
        if with_state:
            kwargs["initial_state"] = list(initial_state)
        outs, _ = klayer.stateless_call(weights, others, x, **kwargs)
        return sum(jax.numpy.sum(jax.numpy.sin(o)) for o in jax.tree.leaves(outs))

    return jax.jit(jax.grad(loss, argnums=(0, 2)))  # jitted: Keras's scan differentiated eagerly takes seconds


def keras_gradients(klayer, x, mask, initial_state):
    """Gradients of sum(sin(outputs)) w.r.t. Keras's trainable weights and the inputs."""
    grad = keras_gradient_call(klayer, mask is not None, initial_state is not None)
    weights = [v.value for v in klayer.trainable_variables]
    others = [v.value for v in klayer.non_trainable_variables]
    with reference():
        return grad(weights, others, x, mask, initial_state)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "holes"])
def test_gradients_match_keras(kind, bidirectional, mask_kind):
    cfg = (True, True) if bidirectional else (True, True, True)  # return_sequences, return_state (go_backwards)
    layer, params, klayer = bidirectional_pair(kind, "concat", *cfg) if bidirectional else recurrent_pair(kind, *cfg)
    x, states = data(2)
    mask = make_mask(mask_kind)
    init = tuple(states[: KINDS[kind][3] * (2 if bidirectional else 1)])

    def loss(params, x):
        outs = layer.apply(params, x, mask=mask, initial_state=init)
        return sum(jax.numpy.sum(jax.numpy.sin(o)) for o in jax.tree.leaves(outs))

    d_params, d_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    all_steps = np.ones((B, T), bool)  # Keras's gradients unmasked are its all-True mask's
    k_weights, k_x = keras_gradients(klayer, x, all_steps if mask is None else mask, init)
    assert_all_close(keras_weights(d_params) + [d_x], [np.asarray(w) for w in k_weights] + [k_x])


@pytest.mark.parametrize("kind", ["GRU", "GRU-v1", "SimpleRNN"])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("activation,recurrent_activation", [("relu", "hard_sigmoid"), ("tanh", "sigmoid")])
def test_other_cells_options_match_keras(kind, use_bias, activation, recurrent_activation, rng):
    ours, theirs, options, _ = KINDS[kind]
    cfg = dict(return_sequences=True, use_bias=use_bias, activation=activation, **options)
    if kind != "SimpleRNN":
        cfg["recurrent_activation"] = recurrent_activation
    layer = ours(U, **cfg)
    _, params = layer.init(rng, (None, T, F))
    if use_bias:  # nonzero biases, so that the input and recurrent rows are told apart
        params["bias"] = jax.random.normal(jax.random.key(5), params["bias"].shape)
    x, _ = data(2)
    assert_all_close(as_list(layer.apply(params, x)), run_keras(keras_layer(theirs(U, **cfg), params), x, None, None))


@pytest.mark.parametrize("use_bias,unit_forget_bias", [(False, True), (True, False)])
@pytest.mark.parametrize("activation,recurrent_activation", [("relu", "hard_sigmoid"), ("tanh", "sigmoid")])
def test_options_match_keras(use_bias, unit_forget_bias, activation, recurrent_activation, rng):
    cfg = dict(
        return_sequences=True,
        use_bias=use_bias,
        unit_forget_bias=unit_forget_bias,
        activation=activation,
        recurrent_activation=recurrent_activation,
    )
    layer = jlstm.LSTM(U, **cfg)
    _, params = layer.init(rng, (None, T, F))
    x, _ = data(2)
    ours = as_list(layer.apply(params, x))
    theirs = run_keras(keras_layer(keras.layers.LSTM(U, **cfg), params), x, None, None)
    assert_all_close(ours, theirs)


def test_mixed_cells_in_a_bidirectional_match_keras(rng):
    fwd = jlstm.GRU(U, return_sequences=True)
    bwd = jlstm.LSTM(4, return_sequences=True, go_backwards=True)
    layer = jlstm.Bidirectional(fwd, backward_layer=bwd)
    _, params = layer.init(rng, (None, T, F))
    x, states = data(3)
    mask = make_mask("holes")
    init = [states[0], states[1][:, :4], states[2][:, :4]]
    ours = as_list(layer.apply(params, x, mask=mask, initial_state=init))
    klayer = keras.layers.Bidirectional(
        keras.layers.GRU(U, return_sequences=True),
        backward_layer=keras.layers.LSTM(4, return_sequences=True, go_backwards=True),
    )
    assert_all_close(ours, run_keras(keras_layer(klayer, params), x, mask, init))


def test_custom_backward_layer_matches_keras(rng):
    fwd = jlstm.LSTM(U, return_sequences=True)
    bwd = jlstm.LSTM(U, return_sequences=True, go_backwards=True, activation="relu")
    layer = jlstm.Bidirectional(fwd, backward_layer=bwd, merge_mode="sum")
    _, params = layer.init(rng, (None, T, F))
    x, _ = data(3)
    mask = make_mask("holes")
    ours = as_list(layer.apply(params, x, mask=mask))
    klayer = keras.layers.Bidirectional(
        keras.layers.LSTM(U, return_sequences=True),
        backward_layer=keras.layers.LSTM(U, return_sequences=True, go_backwards=True, activation="relu"),
        merge_mode="sum",
    )
    assert_all_close(ours, run_keras(keras_layer(klayer, params), x, mask, None))


def test_lengths_is_post_padding_mask(rng):
    layer = jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True))
    _, params = layer.init(rng, (None, T, F))
    x, _ = data(4)
    lengths = np.array([T, 4, 1])
    np.testing.assert_array_equal(
        layer.apply(params, x, lengths=lengths),
        layer.apply(params, x, mask=np.arange(T)[None, :] < lengths[:, None]),
    )


# Keras warns that its Sequential model does not support masking when called with a mask, yet
# hands the mask to its layers: the masked outputs below match jlstm's masked stack.
@pytest.mark.filterwarnings("ignore:Layer 'sequential.*does not support masking:UserWarning:keras.src.layers.layer")
def test_stack_matches_keras_sequential(rng):
    model = jlstm.Sequential(
        [
            jlstm.LSTM(6, return_sequences=True),
            jlstm.Bidirectional(jlstm.LSTM(U)),
            jlstm.Dense(3, activation="softplus"),
        ]
    )
    _, params = model.init(rng, (None, T, F))
    x, _ = data(5)
    mask = make_mask("post")
    weights = [
        w
        for p in params
        for w in (
            keras_weights(p)
            if "recurrent_kernel" in p or "forward" in p
            else [np.asarray(p["kernel"]), np.asarray(p["bias"])]
        )
    ]
    with reference():
        kmodel = keras.Sequential(
            [
                keras.Input((T, F)),
                keras.layers.LSTM(6, return_sequences=True),
                keras.layers.Bidirectional(keras.layers.LSTM(U)),
                keras.layers.Dense(3, activation="softplus"),
            ]
        )
        kmodel.set_weights(weights)
        theirs, theirs_unmasked = np.asarray(kmodel(x, mask=mask)), np.asarray(kmodel(x))
    np.testing.assert_allclose(np.asarray(model.apply(params, x, mask=mask)), theirs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), theirs_unmasked, atol=1e-5)
