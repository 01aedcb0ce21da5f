"""Numerical parity with real Keras 3 (JAX backend): same weights, same outputs to 1e-5."""

import functools
import itertools

import jax
import numpy as np
import pytest

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
    layer.build((None, T, F))
    layer.set_weights(keras_weights(params))
    return layer


def run_keras(layer, x, mask, initial_state):
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if initial_state is not None:
        kwargs["initial_state"] = list(initial_state)
    out = layer(x, **kwargs)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_all_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@functools.cache
def lstm_pair(return_sequences, return_state, go_backwards):
    """A jlstm LSTM, its params, and a Keras LSTM holding the same weights (built once)."""
    cfg = dict(return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards)
    layer = jlstm.LSTM(U, **cfg)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    return layer, params, keras_layer(keras.layers.LSTM(U, **cfg), params)


@functools.cache
def bidirectional_pair(merge_mode, return_sequences, return_state):
    cfg = dict(return_sequences=return_sequences, return_state=return_state)
    layer = jlstm.Bidirectional(jlstm.LSTM(U, **cfg), merge_mode=merge_mode)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    klayer = keras.layers.Bidirectional(keras.layers.LSTM(U, **cfg), merge_mode=merge_mode)
    return layer, params, keras_layer(klayer, params)


@pytest.mark.parametrize(
    "return_sequences,return_state,go_backwards,mask_kind,with_state",
    list(itertools.product([False, True], [False, True], [False, True], MASKS, [False, True])),
)
def test_lstm_matches_keras(return_sequences, return_state, go_backwards, mask_kind, with_state):
    layer, params, klayer = lstm_pair(return_sequences, return_state, go_backwards)
    x, states = data()
    mask = make_mask(mask_kind)
    init = states[:2] if with_state else None
    ours = as_list(layer.apply(params, x, mask=mask, initial_state=init))
    assert_all_close(ours, run_keras(klayer, x, mask, init))


@pytest.mark.parametrize(
    "merge_mode,return_sequences,return_state,mask_kind,with_state",
    list(itertools.product(["concat", "sum", "mul", "ave", None], [False, True], [False, True], MASKS, [False, True])),
)
def test_bidirectional_matches_keras(merge_mode, return_sequences, return_state, mask_kind, with_state):
    layer, params, klayer = bidirectional_pair(merge_mode, return_sequences, return_state)
    x, states = data(1)
    mask = make_mask(mask_kind)
    init = states if with_state else None
    ours = as_list(layer.apply(params, x, mask=mask, initial_state=init))
    assert_all_close(ours, run_keras(klayer, x, mask, init))


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
    kmodel = keras.Sequential(
        [
            keras.Input((T, F)),
            keras.layers.LSTM(6, return_sequences=True),
            keras.layers.Bidirectional(keras.layers.LSTM(U)),
            keras.layers.Dense(3, activation="softplus"),
        ]
    )
    kmodel.set_weights(
        [
            w
            for p in params
            for w in (
                keras_weights(p)
                if "recurrent_kernel" in p or "forward" in p
                else [np.asarray(p["kernel"]), np.asarray(p["bias"])]
            )
        ]
    )
    ours = np.asarray(model.apply(params, x, mask=mask))
    theirs = np.asarray(kmodel(x, mask=mask))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), np.asarray(kmodel(x)), atol=1e-5)
