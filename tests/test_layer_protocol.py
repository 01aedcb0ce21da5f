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
