"""Dropout, Masking and Dense semantics against Keras 3 (dropout masks shared with Keras)."""

import jax
import numpy as np
import pytest
from helpers import reference

import jlstm
from jlstm._recurrent import dropout_masks

keras = pytest.importorskip("keras")

B, T, F, U = 3, 6, 4, 5
KINDS = {
    "LSTM": (jlstm.LSTM, keras.layers.LSTM, {}),
    "GRU": (jlstm.GRU, keras.layers.GRU, {}),
    "GRU-v1": (jlstm.GRU, keras.layers.GRU, {"reset_after": False}),
    "SimpleRNN": (jlstm.SimpleRNN, keras.layers.SimpleRNN, {}),
}


# Input dropout alone and both for the LSTM; both for the GRU and the SimpleRNN (the masks are
# drawn in one place; the GRU without reset_after draws them as the GRU does).
@pytest.mark.parametrize(
    "kind,dropout,recurrent_dropout",
    [("LSTM", 0.4, 0.0), ("LSTM", 0.4, 0.3), ("GRU", 0.4, 0.3), ("SimpleRNN", 0.4, 0.3)],
)
def test_dropout_matches_keras_with_the_same_masks(kind, dropout, recurrent_dropout, rng):
    ours, theirs, options = KINDS[kind]
    cfg = dict(return_sequences=True, dropout=dropout, recurrent_dropout=recurrent_dropout, **options)
    layer = ours(U, **cfg)
    _, params = layer.init(rng, (None, T, F))
    x = np.random.default_rng(0).normal(size=(B, T, F)).astype(np.float32)
    key = jax.random.key(7)
    out = layer.apply(params, x, training=True, rng=key)

    # The masks our apply drew (one direction: the first of the split keys), handed to Keras's cell.
    masks = dropout_masks(layer.spec, jax.random.split(key, 1)[0], B, F, np.float32)
    per_gate = recurrent_dropout > 0 and layer.spec.per_gate_dropout
    with reference():
        klayer = theirs(U, **cfg)
        klayer.build((None, T, F))
        klayer.set_weights([np.asarray(params[k]) for k in ("kernel", "recurrent_kernel", "bias")])
        if masks.inputs is not None:
            klayer.cell._dropout_mask = list(masks.inputs) if per_gate else masks.inputs[0]
        if masks.recurrent is not None:
            klayer.cell._recurrent_dropout_mask = list(masks.recurrent) if per_gate else masks.recurrent[0]
        theirs_out = np.asarray(klayer(x, training=True))
    np.testing.assert_allclose(out, theirs_out, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_masks_are_shared_across_timesteps(kind, rng):
    ours, _, options = KINDS[kind]
    layer = ours(U, return_sequences=True, dropout=0.5, **options)
    _, params = layer.init(rng, (None, T, F))
    # Identical timesteps give identical gate inputs only if the same input mask is reused.
    x = np.repeat(np.random.default_rng(1).normal(size=(B, 1, F)).astype(np.float32), T, axis=1)
    key = jax.random.key(3)
    masked_x = x * dropout_masks(layer.spec, jax.random.split(key, 1)[0], B, F, np.float32).inputs[0][:, None]
    np.testing.assert_allclose(
        layer.apply(params, x, training=True, rng=key),
        ours(U, return_sequences=True, **options).apply(params, masked_x),
        atol=1e-6,
    )


def test_dropout_layer(rng):
    layer = jlstm.Dropout(0.25)
    x = np.ones((4, 50, 8), np.float32)
    np.testing.assert_array_equal(layer.apply({}, x), x)
    y = np.asarray(layer.apply({}, x, training=True, rng=rng))
    assert set(np.unique(y).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
    assert 0.15 < np.mean(y == 0) < 0.35
    with pytest.raises(ValueError, match="rng"):
        layer.apply({}, x, training=True)


def test_masking_matches_keras(rng):
    model = jlstm.Sequential(
        [jlstm.Masking(-1.0), jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True)), jlstm.LSTM(3)]
    )
    _, params = model.init(rng, (None, T, F))
    x = np.random.default_rng(2).normal(size=(B, T, F)).astype(np.float32)
    x[0, 4:] = -1.0
    x[1, :2] = -1.0
    weights = [
        np.asarray(w)
        for p in params[1:]
        for w in jax.tree.leaves(
            [p] if "kernel" in p else [p["forward"], p["backward"]],
            is_leaf=lambda d: isinstance(d, dict) and "kernel" in d,
        )
        for w in (w["kernel"], w["recurrent_kernel"], w["bias"])
    ]
    with reference():
        kmodel = keras.Sequential(
            [
                keras.Input((T, F)),
                keras.layers.Masking(-1.0),
                keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True)),
                keras.layers.LSTM(3),
            ]
        )
        kmodel.set_weights(weights)
        theirs = np.asarray(kmodel(x))
    np.testing.assert_allclose(model.apply(params, x), theirs, atol=1e-5)
    assert not np.allclose(model.apply(params, x), jlstm.Sequential(list(model.sublayers[1:])).apply(params[1:], x))


def test_dense_matches_keras(rng):
    layer = jlstm.Dense(3, activation="relu")
    _, params = layer.init(rng, (None, T, F))
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
    with reference():
        klayer = keras.layers.Dense(3, activation="relu")
        klayer.build((None, T, F))
        klayer.set_weights([np.asarray(params["kernel"]), np.asarray(params["bias"])])
        theirs = np.asarray(klayer(x))
    np.testing.assert_allclose(layer.apply(params, x), theirs, atol=1e-6)
