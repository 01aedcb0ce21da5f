"""Bad input fails at the call with a ValueError/TypeError naming expected and received."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlstm

SHAPE = (None, 6, 3)


@pytest.fixture
def lstm(rng):
    layer = jlstm.LSTM(4)
    return layer, layer.init(rng, SHAPE)[1]


@pytest.fixture
def bidi(rng):
    layer = jlstm.Bidirectional(jlstm.LSTM(4))
    return layer, layer.init(rng, SHAPE)[1]


X = np.zeros((2, 6, 3), np.float32)


@pytest.mark.parametrize(
    "x,match",
    [
        (np.zeros((6, 3), np.float32), r"rank 3.*got shape \(6, 3\)"),
        (np.zeros((1, 2, 6, 3), np.float32), r"rank 3.*got shape \(1, 2, 6, 3\)"),
        (np.zeros((2, 6, 5), np.float32), r"3 features.*got shape \(2, 6, 5\)"),
    ],
)
@pytest.mark.parametrize("which", ["lstm", "bidi"])
def test_bad_inputs(which, x, match, request):
    layer, params = request.getfixturevalue(which)
    with pytest.raises(ValueError, match=match):
        layer.apply(params, x)


def test_non_numeric_inputs(lstm):
    layer, params = lstm
    with pytest.raises(TypeError, match="numeric"):
        layer.apply(params, np.array([[["a"] * 3] * 6]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mask": np.ones((2, 5), bool)}, r"mask of shape \(batch, timesteps\) = \(2, 6\), got \(2, 5\)"),
        ({"mask": np.ones((6, 2), bool)}, r"got \(6, 2\)"),
        ({"mask": np.ones((2, 6), np.float32)}, "bool or int mask"),
        ({"lengths": np.array([1, 2, 3])}, r"lengths as int \(2,\)"),
        ({"lengths": np.array([1, 2]), "mask": np.ones((2, 6), bool)}, "not both"),
    ],
)
def test_bad_masks(lstm, kwargs, match):
    layer, params = lstm
    with pytest.raises((ValueError, TypeError), match=match):
        layer.apply(params, X, **kwargs)


@pytest.mark.parametrize(
    "state,match",
    [
        ([np.zeros((2, 4))], "2 arrays, got list of 1"),
        (np.zeros((2, 4)), "2 arrays, got ndarray"),
        ([np.zeros((2, 4)), np.zeros((2, 5))], r"initial_state\[1\] of shape \(2, 4\), got \(2, 5\)"),
        ([np.zeros((3, 4)), np.zeros((3, 4))], r"initial_state\[0\] of shape \(2, 4\), got \(3, 4\)"),
    ],
)
def test_bad_initial_state(lstm, state, match):
    layer, params = lstm
    with pytest.raises(ValueError, match=match):
        layer.apply(params, X, initial_state=state)


def test_bidirectional_wants_four_states(bidi):
    layer, params = bidi
    with pytest.raises(ValueError, match="4 arrays, got list of 2"):
        layer.apply(params, X, initial_state=[np.zeros((2, 4))] * 2)


@pytest.mark.parametrize(
    "units,error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("5", TypeError), (True, TypeError), (None, TypeError)],
)
def test_units_must_be_a_positive_int(units, error):
    with pytest.raises(error, match="positive int"):
        jlstm.LSTM(units)
    with pytest.raises(error, match="positive int"):
        jlstm.Dense(units)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"merge_mode: expected one of .*got 'max'"):
        jlstm.Bidirectional(jlstm.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="LSTM activation: expected one of .*'tanhh'"):
        jlstm.LSTM(3, activation="tanhh")
    with pytest.raises(ValueError, match="LSTM recurrent_activation: expected one of .*'tanhh'"):
        jlstm.LSTM(3, recurrent_activation="tanhh")
    with pytest.raises(ValueError, match="LSTM kernel_initializer: expected one of .*'glorot'"):
        jlstm.LSTM(3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="Dense activation: expected one of .*'soft_max'"):
        jlstm.Dense(3, "soft_max")
    with pytest.raises(ValueError, match="dropout.*got 1.5"):
        jlstm.LSTM(3, dropout=1.5)
    with pytest.raises(TypeError, match="expected a jlstm LSTM layer, got Dense"):
        jlstm.Bidirectional(jlstm.Dense(3))
    with pytest.raises(ValueError, match="different go_backwards"):
        jlstm.Bidirectional(jlstm.LSTM(3, go_backwards=True))
    with pytest.raises(ValueError, match="same return_sequences"):
        jlstm.Bidirectional(jlstm.LSTM(3), backward_layer=jlstm.LSTM(3, go_backwards=True, return_sequences=True))


def test_params_of_the_wrong_layer(lstm, bidi, rng):
    layer, params = lstm
    _, bidi_params = bidi
    with pytest.raises(
        ValueError, match=r"keys \['bias', 'kernel', 'recurrent_kernel'\], got \['backward', 'forward'\]"
    ):
        layer.apply(bidi_params, X)
    with pytest.raises(ValueError, match=r"keys \['backward', 'forward'\]"):
        bidi[0].apply(params, X)
    _, wide = jlstm.LSTM(6).init(rng, SHAPE)
    with pytest.raises(ValueError, match=r"params\['kernel'\] of shape \(\?, 16\), got \(3, 24\)"):
        layer.apply(wide, X)
    with pytest.raises(TypeError, match="dict"):
        layer.apply([params], X)
    _, other = jlstm.LSTM(4).init(rng, (None, 6, 5))
    with pytest.raises(ValueError, match=r"params\['kernel'\] of shape \(3, 16\), got \(5, 16\)"):
        bidi[0].apply({"forward": params, "backward": other}, X)
    stack = jlstm.Sequential([jlstm.LSTM(4)])
    with pytest.raises(ValueError, match="tuple of 1, got dict"):
        stack.apply(params, X)


@pytest.mark.parametrize(
    "shape,error,match",
    [
        ((None, 3), ValueError, r"rank 3.*got \(None, 3\)"),
        ((None, 6, 0), ValueError, "features"),
        ((None, 6, None), TypeError, "features"),
        (5, TypeError, "input_shape"),
    ],
)
def test_bad_input_shapes(shape, error, match, rng):
    with pytest.raises(error, match=match):
        jlstm.LSTM(4).init(rng, shape)
    with pytest.raises(error, match=match):
        jlstm.count_params(jlstm.Bidirectional(jlstm.LSTM(4)), shape)


def test_errors_come_before_jax_under_jit(lstm):
    layer, params = lstm
    with pytest.raises(ValueError, match="3 features"):
        jax.jit(layer.apply)(params, jnp.zeros((2, 6, 4)))


def test_more_bad_inputs(lstm, rng):
    layer, params = lstm
    with pytest.raises(ValueError, match=r"at least one timestep, got shape \(2, 0, 3\)"):
        layer.apply(params, np.zeros((2, 0, 3), np.float32))
    with pytest.raises(TypeError, match="real numeric array, got dtype complex"):
        layer.apply(params, np.zeros((2, 6, 3), np.complex64))
    with pytest.raises(TypeError, match="mask_value"):
        jlstm.Masking("a")
    with pytest.raises(ValueError, match=r"rank 3.*got shape \(3,\)"):
        jlstm.Masking().apply({}, np.ones(3))
    with pytest.raises(TypeError, match="input_shape"):
        jlstm.Dense(3).init(rng, 5)
    with pytest.raises(ValueError, match="same units, got 4 .forward. and 6 .backward."):
        jlstm.Bidirectional(jlstm.LSTM(4), backward_layer=jlstm.LSTM(6, go_backwards=True), merge_mode="ave")


def test_inputs_take_the_params_dtype(lstm):
    layer, params = lstm
    out = layer.apply(params, np.ones((2, 6, 3), jnp.bfloat16))
    assert out.dtype == jnp.float32  # as Keras casts inputs to the layer's float32
    np.testing.assert_array_equal(out, layer.apply(params, np.ones((2, 6, 3), np.int32)))
    y = jlstm.Dropout(0.25).apply({}, np.full((4, 8), 3), training=True, rng=jax.random.key(0))
    assert set(np.unique(y).tolist()) <= {0.0, 4.0}


def test_bidirectional_with_a_wider_backward_layer(rng):
    layer = jlstm.Bidirectional(
        jlstm.LSTM(4, return_sequences=True), backward_layer=jlstm.LSTM(6, go_backwards=True, return_sequences=True)
    )
    shape, params = layer.init(rng, SHAPE)
    assert shape == (None, 6, 10)
    assert layer.apply(params, X).shape == (2, 6, 10)


def test_step_and_rng_checks(lstm):
    layer, params = lstm
    state = (np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"x_t of shape \(batch, 3\), got \(2, 5\)"):
        jlstm.lstm_step(params, state, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"initial_state\[1\] of shape \(2, 4\), got \(2, 3\)"):
        jlstm.lstm_step(params, (np.zeros((2, 4)), np.zeros((2, 3))), np.zeros((2, 3)))
    dropped = jlstm.LSTM(4, dropout=0.5)
    with pytest.raises(TypeError, match="PRNG key"):
        dropped.apply(params, X, training=True, rng=7)
    with pytest.raises(TypeError, match="PRNG key"):
        jlstm.Dropout(0.5).apply({}, X, training=True, rng=np.zeros(3))
    # both key kinds work
    dropped.apply(params, X, training=True, rng=jax.random.PRNGKey(0))
    dropped.apply(params, X, training=True, rng=jax.random.key(0))
