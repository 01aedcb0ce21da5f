"""Weights in and out against Keras 3 (JAX backend): from_keras and to_keras."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import B, F, T, U, close, data, jitter, readme_param_counts, reference

import jlstm
from jlstm import constraints, interop, regularizers

keras = pytest.importorskip("keras")

# Keras's own get_weights/set_weights trigger NumPy 2's __array__(copy=) deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def padded(seed=0):
    """Inputs with zero timesteps (holes and padding), for Masking(0.0)."""
    x = data(seed)
    x[1, 4:] = 0.0
    x[2, [0, 2, 3]] = 0.0
    return x


def randomize(kmodel, seed=0):
    """Non-trivial weights everywhere (Keras initialises biases to zeros)."""
    r = np.random.default_rng(seed)
    with reference():
        kmodel.set_weights([r.normal(scale=0.5, size=w.shape).astype(np.float32) for w in kmodel.get_weights()])
    return kmodel


def built(klayer, shape=(None, T, F)):
    """`klayer` built for `shape` (Keras's initializers run, under JAX's default promotion)."""
    with reference():
        klayer.build(shape)
    return klayer


def keras_out(kmodel, x, **kwargs):
    """Keras's outputs for `x`, as NumPy arrays (a list for several)."""
    with reference():
        out = kmodel(x, **kwargs)
        return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


@reference()
def keras_stack():
    return keras.Sequential(
        [
            keras.Input((T, F)),
            keras.layers.Masking(0.0),
            keras.layers.LSTM(U, return_sequences=True, dropout=0.1, recurrent_dropout=0.2),
            keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), merge_mode="sum"),
            keras.layers.Dropout(0.3),
            keras.layers.Bidirectional(keras.layers.LSTM(2, activation="relu", use_bias=False)),
            keras.layers.Dense(2, activation="softplus"),
        ]
    )


def test_keras_sequential_with_masking_matches():
    kmodel = randomize(keras_stack())
    layer, params = interop.from_keras(kmodel)
    assert [sub.type_name for sub in layer.sublayers] == [
        "Masking",
        "LSTM",
        "Bidirectional",
        "Dropout",
        "Bidirectional",
        "Dense",
    ]
    masking, lstm, _, dropout, bi2, _ = layer.sublayers
    assert masking.config["mask_value"] == 0.0 and dropout.config["rate"] == 0.3
    assert lstm.config["dropout"] == 0.1 and lstm.config["recurrent_dropout"] == 0.2
    assert lstm.config["unroll"] == 1 and bi2.config["layer"].config["activation"] == "relu"
    assert jlstm.count_params(params) == kmodel.count_params()
    x = padded()
    close(layer.apply(params, x), keras_out(kmodel, x))
    table = jlstm.summary(layer, (None, T, F))
    assert f"Total params: {kmodel.count_params():,}" in table


def test_keras_gru_and_simple_rnn_sequential_matches():
    with reference():
        kmodel = keras.Sequential(
            [
                keras.Input((T, F)),
                keras.layers.Masking(0.0),
                keras.layers.GRU(U, return_sequences=True, reset_after=False),
                keras.layers.Bidirectional(keras.layers.SimpleRNN(3, return_sequences=True, activation="relu")),
                keras.layers.GRU(2, recurrent_dropout=0.1),
            ]
        )
    randomize(kmodel, seed=5)
    layer, params = interop.from_keras(kmodel)
    assert [sub.type_name for sub in layer.sublayers] == ["Masking", "GRU", "Bidirectional", "GRU"]
    assert layer.sublayers[1].config["reset_after"] is False and layer.sublayers[3].config["reset_after"] is True
    assert jlstm.count_params(params) == kmodel.count_params()
    close(layer.apply(params, padded(5)), keras_out(kmodel, padded(5)))


def test_keras_functional_chain_matches():
    with reference():
        inp = keras.Input((T, F))
        h = keras.layers.LSTM(U, return_sequences=True, go_backwards=True)(keras.layers.Masking(0.0)(inp))
        out = keras.layers.Dense(3, activation="tanh")(keras.layers.LSTM(4)(h))
        kmodel = randomize(keras.Model(inp, out), seed=1)
    layer, params = interop.from_keras(kmodel)
    assert layer.type_name == "Sequential" and len(layer.sublayers) == 4
    close(layer.apply(params, padded(1)), keras_out(kmodel, padded(1)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.LSTM(
            U,
            return_sequences=True,
            return_state=True,
            go_backwards=True,
            activation="relu",
            recurrent_activation="hard_sigmoid",
        ),
        lambda: keras.layers.LSTM(U, use_bias=False, unit_forget_bias=False),
        lambda: keras.layers.Bidirectional(keras.layers.LSTM(U, return_state=True), merge_mode=None),
        lambda: keras.layers.Bidirectional(
            keras.layers.LSTM(U, return_sequences=True),
            backward_layer=keras.layers.LSTM(3, return_sequences=True, go_backwards=True, activation="relu"),
            merge_mode="concat",
        ),
        lambda: keras.layers.GRU(
            U, return_sequences=True, return_state=True, go_backwards=True, recurrent_activation="hard_sigmoid"
        ),
        lambda: keras.layers.GRU(U, reset_after=False, activation="relu"),
        lambda: keras.layers.GRU(U, use_bias=False),
        lambda: keras.layers.SimpleRNN(U, return_sequences=True, return_state=True, activation="softsign"),
        lambda: keras.layers.SimpleRNN(U, go_backwards=True, use_bias=False),
        lambda: keras.layers.Bidirectional(keras.layers.GRU(U, return_state=True, reset_after=False), merge_mode=None),
        lambda: keras.layers.Bidirectional(
            keras.layers.GRU(U, return_sequences=True),
            backward_layer=keras.layers.SimpleRNN(3, return_sequences=True, go_backwards=True),
        ),
    ],
    ids=[
        "lstm-state-backwards",
        "lstm-no-bias",
        "bi-state-none",
        "bi-custom-backward",
        "gru-state-backwards",
        "gru-reset-before",
        "gru-no-bias",
        "simple-rnn-state",
        "simple-rnn-backwards-no-bias",
        "bi-gru-state-none",
        "bi-gru-simple-rnn-backward",
    ],
)
def test_keras_single_layers_match(make):
    klayer = randomize(built(make()), seed=2)
    layer, params = interop.from_keras(klayer)
    assert layer.type_name == type(klayer).__name__
    x, mask = data(2), np.arange(T)[None, :] < np.array([T, 3, 1])[:, None]
    close(layer.apply(params, x, mask=mask), keras_out(klayer, x, mask=mask))


def test_keras_config_maps_to_jlstm_arguments():
    klayer = keras.layers.LSTM(
        U,
        unroll=True,
        unit_forget_bias=False,
        kernel_initializer="he_normal",
        recurrent_initializer=keras.initializers.Zeros(),
        name="enc",
        use_cudnn=False,
    )
    layer, params = interop.from_keras(built(klayer))
    cfg = layer.config
    assert (cfg["unroll"], cfg["unit_forget_bias"], cfg["name"]) == (True, False, "enc")
    assert (cfg["kernel_initializer"], cfg["recurrent_initializer"]) == ("he_normal", "zeros")
    assert cfg["use_cudnn"] is False and interop.to_keras(layer, params).use_cudnn is False
    gru = keras.layers.GRU(U, reset_after=False, use_cudnn=False, unroll=True, kernel_initializer="orthogonal")
    layer, params = interop.from_keras(built(gru))
    cfg = layer.config
    assert (cfg["reset_after"], cfg["use_cudnn"], cfg["unroll"], cfg["kernel_initializer"]) == (
        False,
        False,
        True,
        "orthogonal",
    )
    back = interop.to_keras(layer, params)
    assert (back.reset_after, back.use_cudnn, back.unroll) == (False, False, True)


def test_param_counts_in_readme():
    """Keras's count and jlstm's of the same layer, each library counting its own tree."""
    layers = {
        "GRU": (keras.layers.GRU(5), jlstm.GRU(5)),
        "GRU, reset_after=False": (keras.layers.GRU(5, reset_after=False), jlstm.GRU(5, reset_after=False)),
        "LSTM": (keras.layers.LSTM(5), jlstm.LSTM(5)),
        "SimpleRNN": (keras.layers.SimpleRNN(5), jlstm.SimpleRNN(5)),
    }
    for klayer, _ in layers.values():
        built(klayer, (None, None, 3))
    assert {name: k.count_params() for name, (k, _) in layers.items()} == readme_param_counts("Keras 3")
    ours = {name: jlstm.count_params(layer, (None, 7, 3)) for name, (_, layer) in layers.items()}
    assert ours == readme_param_counts("jlstm")


def test_keras_bidirectional_keeps_a_custom_backward_layer_only_when_custom():
    plain = built(keras.layers.Bidirectional(keras.layers.LSTM(U)))
    custom = built(
        keras.layers.Bidirectional(
            keras.layers.LSTM(U), backward_layer=keras.layers.LSTM(U, go_backwards=True, dropout=0.5)
        )
    )
    assert interop.from_keras(plain)[0].config["backward_layer"] is None
    assert interop.from_keras(custom)[0].config["backward_layer"].config["dropout"] == 0.5


# The Keras arguments from_keras and to_keras carry beyond the weights' layout.
CARRIED = ("zero_output_for_mask", "dtype") + tuple(
    f"{prefix}_{kind}" for prefix in ("kernel", "recurrent", "bias") for kind in ("regularizer", "constraint")
)


def test_keras_options_round_trip():
    """zero_output_for_mask, dtype policies, regularizers and constraints, both ways."""
    with reference():
        kmodel = keras.Sequential(
            [
                keras.Input((T, F)),
                keras.layers.Masking(0.0),
                keras.layers.LSTM(
                    U,
                    return_sequences=True,
                    zero_output_for_mask=True,
                    kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                    recurrent_regularizer=keras.regularizers.OrthogonalRegularizer(0.1, mode="columns"),
                    bias_regularizer="l2",
                    recurrent_constraint=keras.constraints.MaxNorm(1.5, axis=1),
                ),
                keras.layers.GRU(  # zero_output_for_mask zeroes padded()'s row 1 (its last step is masked)
                    3,
                    zero_output_for_mask=True,
                    dtype="mixed_bfloat16",
                    kernel_constraint="non_neg",
                    bias_regularizer="l1",
                ),
                keras.layers.Dense(2, dtype="bfloat16", kernel_constraint=keras.constraints.MinMaxNorm(0.5, 1.0, 0.5)),
            ]
        )
    randomize(kmodel, seed=7)
    layer, params = interop.from_keras(kmodel)
    _, lstm, gru, dense = layer.sublayers
    assert lstm.config["zero_output_for_mask"] is True and "zero_output_for_mask=True" in repr(lstm)
    assert (lstm.config["kernel_regularizer"], lstm.config["recurrent_regularizer"]) == (
        regularizers.L1L2(0.01, 0.02),
        regularizers.OrthogonalRegularizer(0.1, "columns"),
    )
    assert "bias_regularizer=L2(l2=0.01), recurrent_constraint=MaxNorm(max_value=1.5, axis=1)" in repr(lstm)
    assert "L1(l1=0.01), kernel_constraint=NonNeg(), zero_output_for_mask=True, dtype='mixed_bfloat16'" in repr(gru)
    assert dense.config["kernel_constraint"] == constraints.MinMaxNorm(0.5, 1.0, 0.5)
    assert dense.dtype_policy.name == "bfloat16"
    assert [p.dtype for p in jax.tree.leaves(params)] == [w.dtype for w in kmodel.get_weights()]
    assert {p.dtype.name for p in jax.tree.leaves(params)} == {"float32", "bfloat16"}  # mixed keeps float32 ones
    x = padded(7)
    ours, theirs = layer.apply(params, x), keras_out(kmodel, x)
    assert ours.dtype == theirs.dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours[1], params[3]["bias"])  # the GRU's zeros through the Dense
    atol = 1.6e-2  # test_precision's bfloat16 tolerance against Keras (on this CPU they agree exactly)
    np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(theirs, np.float32), atol=atol, rtol=atol)
    with reference():
        keras_penalty = jax.jit(lambda: sum(kmodel.losses))()
    penalty = jax.jit(lambda p: jlstm.regularization_loss(layer, p))(params)
    np.testing.assert_allclose(penalty, keras_penalty, rtol=1e-5)
    back = interop.to_keras(layer, params)
    for kl, kback in zip(kmodel.layers, back.layers, strict=True):
        want, got = kl.get_config(), kback.get_config()
        assert {k: got[k] for k in CARRIED if k in want} == {k: want[k] for k in CARRIED if k in want}
    for w, w_back in zip(kmodel.get_weights(), back.get_weights(), strict=True):
        assert w_back.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(w_back, np.float32), np.asarray(w, np.float32))


def test_to_keras_round_trip():
    model = jlstm.Sequential(
        [
            jlstm.Masking(0.0),
            jlstm.LSTM(U, return_sequences=True, recurrent_dropout=0.1),
            jlstm.Bidirectional(
                jlstm.LSTM(3, return_sequences=True),
                merge_mode="ave",
                backward_layer=jlstm.LSTM(3, return_sequences=True, go_backwards=True, activation="relu"),
            ),
            jlstm.Dense(2, "sigmoid"),
        ]
    )
    _, params = model.init(jax.random.key(0), (None, T, F))
    kmodel = interop.to_keras(model, params)
    assert isinstance(kmodel, keras.Sequential)
    assert kmodel.count_params() == jlstm.count_params(params)
    x = padded(3)
    close(model.apply(params, x), keras_out(kmodel, x))
    back, back_params = interop.from_keras(kmodel)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back_params, params)
    close(back.apply(back_params, x), model.apply(params, x))


def test_to_keras_round_trip_gru_and_simple_rnn():
    model = jlstm.Sequential(
        [
            jlstm.Masking(0.0),
            jlstm.GRU(U, return_sequences=True, reset_after=False),
            jlstm.Bidirectional(
                jlstm.GRU(3, return_sequences=True, recurrent_activation="hard_sigmoid"),
                backward_layer=jlstm.SimpleRNN(3, return_sequences=True, go_backwards=True, activation="relu"),
            ),
            jlstm.SimpleRNN(4, use_bias=False),
        ]
    )
    _, params = model.init(jax.random.key(2), (None, T, F))
    params = jitter(params)
    kmodel = interop.to_keras(model, params)
    assert kmodel.count_params() == jlstm.count_params(params)
    x = padded(6)
    close(model.apply(params, x), keras_out(kmodel, x))
    back, back_params = interop.from_keras(kmodel)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back_params, params)
    assert back.sublayers[2].config["backward_layer"].type_name == "SimpleRNN"


def test_to_keras_single_layer():
    layer = jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True, return_state=True), merge_mode="mul")
    _, params = layer.init(jax.random.key(1), (None, T, F))
    klayer = interop.to_keras(layer, params)
    assert isinstance(klayer, keras.layers.Bidirectional)
    close(layer.apply(params, data(4)), keras_out(klayer, data(4)))


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_from_keras_rejects_unsupported():
    def my_activation(x):
        return x

    def my_penalty(x):
        return 0.01 * keras.ops.sum(x)

    class Clipped(keras.constraints.Constraint):
        def __call__(self, w):
            return keras.ops.clip(w, -1.0, 1.0)

    class MyLSTM(keras.layers.LSTM):
        pass

    class MyGRU(keras.layers.GRU):
        pass

    generic = keras.layers.RNN(keras.layers.GRUCell(U))
    quantized = built(keras.layers.Dense(2, dtype="int8_from_float32"), (None, F))  # int8 weights, a scale
    cases = [
        (built(generic), TypeError, r"RNN 'rnn.*': unsupported layer; expected one of \['InputLayer', 'LSTM', 'GRU'"),
        (
            built(keras.layers.Bidirectional(keras.layers.RNN(keras.layers.LSTMCell(U)))),
            TypeError,
            "expected an LSTM, GRU or SimpleRNN as forward_layer, got RNN",
        ),
        (built(keras.layers.LSTM(U, stateful=True), (B, T, F)), ValueError, "stateful=True is not supported"),
        (built(keras.layers.GRU(U, stateful=True), (B, T, F)), ValueError, "GRU .*stateful=True is not supported"),
        (built(keras.layers.SimpleRNN(U, stateful=False, activation=my_activation)), ValueError, "'my_activation'"),
        (built(keras.layers.GRU(U, recurrent_activation=my_activation)), ValueError, "recurrent_activation: expected"),
        (
            built(keras.layers.SimpleRNN(U, kernel_regularizer=my_penalty, recurrent_initializer="zeros")),
            ValueError,
            r"SimpleRNN .* kernel_regularizer: expected None or one of Keras's \['L1', 'L1L2', 'L2', "
            r"'OrthogonalRegularizer'\], got the custom or unsupported 'my_penalty'",
        ),
        (
            built(keras.layers.GRU(U, bias_constraint=Clipped(), recurrent_initializer="zeros")),
            ValueError,
            "bias_constraint: .*unsupported 'Clipped'",
        ),
        (
            built(
                keras.layers.Bidirectional(keras.layers.LSTM(U, recurrent_initializer="zeros"), dtype="mixed_bfloat16")
            ),
            ValueError,
            "expected the float32 dtype policy or its layers' 'float32', got 'mixed_bfloat16'",
        ),
        (built(MyGRU(U)), TypeError, "MyGRU .*unsupported layer"),
        (built(keras.layers.LSTM(U, activation=my_activation)), ValueError, "custom or unsupported 'my_activation'"),
        (built(keras.layers.LSTM(U, activation=lambda x: x)), ValueError, "unsupported '<lambda>'"),
        (built(keras.layers.LSTM(U, activation=eval("lambda x: x"))), TypeError, "cannot read its config"),
        (built(MyLSTM(U)), TypeError, "MyLSTM .*unsupported layer"),
        (keras.layers.LSTM(U), ValueError, "expected a built layer"),
        (keras.layers.Dropout(0.5, noise_shape=(None, 1, F)), ValueError, "noise_shape"),
        (keras.layers.InputLayer((T, F)), TypeError, "InputLayer alone"),
        (quantized, ValueError, "expected a float dtype policy, got the quantized 'int8_from_float32'"),
        (np.ones(3), TypeError, "expected a Keras 3 model or layer, got ndarray"),
    ]
    for obj, error, message in cases:
        if isinstance(obj, keras.layers.Dropout):
            built(obj)
        with pytest.raises(error, match=message):
            interop.from_keras(obj)


def test_from_keras_rejects_a_model_that_is_not_a_chain():
    with reference():
        inp = keras.Input((T, F))
        a, b = keras.layers.LSTM(U)(inp), keras.layers.LSTM(U)(inp)
        branched = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="expected a chain of layers"):
        interop.from_keras(branched)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="expected a Sequential or functional model, got a Subclassed"):
        interop.from_keras(Subclassed())
    with reference():
        one = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(U)])
        generic = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(keras.layers.SimpleRNNCell(U))])
    assert interop.from_keras(one)[0].type_name == "Sequential"  # a model stays a model
    with pytest.raises(TypeError, match="RNN .*unsupported layer"):
        interop.from_keras(generic)


def test_to_keras_rejects_what_keras_cannot_name():
    layer = jlstm.LSTM(U, activation=lambda x: x)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with pytest.raises(TypeError, match=r"LSTM activation: expected one of \[.*'tanh'\] by name, got the callable"):
        interop.to_keras(layer, params)
    with pytest.raises(TypeError, match=r"LSTM kernel_regularizer: expected one of \['L1', .*\] .* got the callable"):
        interop.to_keras(jlstm.LSTM(U, kernel_regularizer=jnp.sum), params)
    with pytest.raises(ValueError, match="a dtype policy Keras has a name for, got 'params float16, compute bfloat16'"):
        interop.to_keras(jlstm.LSTM(U, dtype="bfloat16", param_dtype="float16"), params)
    good = jlstm.LSTM(U)
    with pytest.raises(ValueError, match=r"expected params\['recurrent_kernel'\] of shape \(5, 20\), got \(4, 20\)"):
        interop.to_keras(good, {**params, "recurrent_kernel": jnp.zeros((4, 20))})
    gru = jlstm.GRU(U, recurrent_activation=jax.nn.log_sigmoid)
    _, params = gru.init(jax.random.key(0), (None, T, F))
    with pytest.raises(TypeError, match=r"GRU recurrent_activation: expected one of .* by name, got the callable"):
        interop.to_keras(gru, params)
    with pytest.raises(ValueError, match=r"expected params\['bias'\] of shape \(2, 15\), got \(15,\)"):
        interop.to_keras(jlstm.GRU(U), {**params, "bias": jnp.zeros(15)})
    simple = jlstm.SimpleRNN(U, kernel_initializer=lambda key, shape, dtype: jnp.zeros(shape, dtype))
    _, params = simple.init(jax.random.key(0), (None, T, F))
    with pytest.raises(TypeError, match="SimpleRNN kernel_initializer: expected one of"):
        interop.to_keras(simple, params)
