"""The Layer protocol: a layer is a stax (init, apply) pair with read-only metadata."""

import jax
import numpy as np
import pytest
from helpers import reference
from jax.example_libraries import stax

import jlstm


def test_a_layer_is_a_stax_pair():
    layer = jlstm.LSTM(5, return_sequences=True)
    init, apply = layer
    assert (init, apply) == (layer.init, layer.apply)

    model_init, model_apply = stax.serial(layer, jlstm.Bidirectional(jlstm.LSTM(4)), stax.Dense(2))
    out_shape, params = model_init(jax.random.key(0), (-1, 11, 3))  # stax's -1 for the batch
    assert out_shape == (None, 2)
    x = jax.random.normal(jax.random.key(1), (4, 11, 3))
    with reference():  # stax's Dense adds its (2,) bias to (4, 2) rows
        y = model_apply(params, x)
    assert y.shape == (4, 2)
    lstm_out = apply(params[0], x)
    w, b = params[2]
    expected = jlstm.Bidirectional(jlstm.LSTM(4)).apply(params[1], lstm_out) @ w + b[None, :]
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_config_is_read_only():
    layer = jlstm.LSTM(5)
    with pytest.raises(TypeError):
        layer.config["units"] = 7
    assert layer.config["units"] == 5 and jlstm.LSTM(**layer.config).config["units"] == 5


def test_repr_is_short_and_shows_what_differs_from_the_defaults():
    assert repr(jlstm.LSTM(5)) == "LSTM(units=5)"
    assert (
        repr(jlstm.LSTM(5, return_sequences=True, dropout=0.25)) == "LSTM(units=5, return_sequences=True, dropout=0.25)"
    )
    assert (
        repr(jlstm.GRU(3, reset_after=False, activation=jax.nn.relu))
        == "GRU(units=3, reset_after=False, activation=relu)"
    )
    model = jlstm.Sequential(
        [jlstm.Masking(), jlstm.Bidirectional(jlstm.SimpleRNN(4), merge_mode="sum"), jlstm.Dense(1)]
    )
    assert repr(model) == (
        "Sequential(layers=[Masking(), Bidirectional(layer=SimpleRNN(units=4), merge_mode='sum'), Dense(units=1)])"
    )
    assert repr(jlstm.Dense(2, activation="relu")) == "Dense(units=2, activation='relu')"
