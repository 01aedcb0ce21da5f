"""Weights in and out against the real libraries: Keras 3 (JAX backend), PyTorch, Flax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlstm
from jlstm import interop
from jlstm.interop._common import _leaf_params

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")

B, T, F, U = 3, 6, 4, 5

# Keras's own get_weights/set_weights trigger NumPy 2's __array__(copy=) deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def data(seed=0, batch=B):
    r = np.random.default_rng(seed)
    return r.normal(size=(batch, T, F)).astype(np.float32)


def padded(seed=0):
    """Inputs with zero timesteps (holes and padding), for Masking(0.0)."""
    x = data(seed)
    x[1, 4:] = 0.0
    x[2, [0, 2, 3]] = 0.0
    return x


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def close(ours, theirs, atol=1e-5):
    ours, theirs = as_list(ours), as_list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


def randomize(kmodel, seed=0):
    """Non-trivial weights everywhere (Keras initialises biases to zeros)."""
    r = np.random.default_rng(seed)
    kmodel.set_weights([r.normal(scale=0.5, size=w.shape).astype(np.float32) for w in kmodel.get_weights()])
    return kmodel


# ---------------------------------------------------------------------------- Keras


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
    close(layer.apply(params, x), kmodel(x))
    table = jlstm.summary(layer, (None, T, F))
    assert f"Total params: {kmodel.count_params():,}" in table


def test_keras_functional_chain_matches():
    inp = keras.Input((T, F))
    h = keras.layers.LSTM(U, return_sequences=True, go_backwards=True)(keras.layers.Masking(0.0)(inp))
    out = keras.layers.Dense(3, activation="tanh")(keras.layers.LSTM(4)(h))
    kmodel = randomize(keras.Model(inp, out), seed=1)
    layer, params = interop.from_keras(kmodel)
    assert layer.type_name == "Sequential" and len(layer.sublayers) == 4
    close(layer.apply(params, padded(1)), kmodel(padded(1)))


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
    ],
    ids=["lstm-state-backwards", "lstm-no-bias", "bi-state-none", "bi-custom-backward"],
)
def test_keras_single_layers_match(make):
    klayer = make()
    klayer.build((None, T, F))
    randomize(klayer, seed=2)
    layer, params = interop.from_keras(klayer)
    assert layer.type_name == type(klayer).__name__
    x, mask = data(2), np.arange(T)[None, :] < np.array([T, 3, 1])[:, None]
    close(layer.apply(params, x, mask=mask), klayer(x, mask=mask))


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
    klayer.build((None, T, F))
    layer, params = interop.from_keras(klayer)
    cfg = layer.config
    assert (cfg["unroll"], cfg["unit_forget_bias"], cfg["name"]) == (True, False, "enc")
    assert (cfg["kernel_initializer"], cfg["recurrent_initializer"]) == ("he_normal", "zeros")
    assert cfg["use_cudnn"] is False and interop.to_keras(layer, params).use_cudnn is False


def test_keras_bidirectional_keeps_a_custom_backward_layer_only_when_custom():
    plain = keras.layers.Bidirectional(keras.layers.LSTM(U))
    plain.build((None, T, F))
    custom = keras.layers.Bidirectional(
        keras.layers.LSTM(U), backward_layer=keras.layers.LSTM(U, go_backwards=True, dropout=0.5)
    )
    custom.build((None, T, F))
    assert interop.from_keras(plain)[0].config["backward_layer"] is None
    assert interop.from_keras(custom)[0].config["backward_layer"].config["dropout"] == 0.5


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
    close(model.apply(params, x), kmodel(x))
    back, back_params = interop.from_keras(kmodel)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back_params, params)
    close(back.apply(back_params, x), model.apply(params, x))


def test_to_keras_single_layer():
    layer = jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True, return_state=True), merge_mode="mul")
    _, params = layer.init(jax.random.key(1), (None, T, F))
    klayer = interop.to_keras(layer, params)
    assert isinstance(klayer, keras.layers.Bidirectional)
    close(layer.apply(params, data(4)), klayer(data(4)))


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_from_keras_rejects_unsupported():
    def built(klayer):
        klayer.build((None, T, F))
        return klayer

    def built_with_batch(klayer):
        klayer.build((B, T, F))
        return klayer

    def my_activation(x):
        return x

    class MyLSTM(keras.layers.LSTM):
        pass

    cases = [
        (built(keras.layers.GRU(U)), TypeError, r"GRU 'gru.*': unsupported layer; expected one of"),
        (
            built(keras.layers.Bidirectional(keras.layers.GRU(U))),
            TypeError,
            "expected an LSTM as forward_layer, got GRU",
        ),
        (built_with_batch(keras.layers.LSTM(U, stateful=True)), ValueError, "stateful=True is not supported"),
        (built(keras.layers.LSTM(U, activation=my_activation)), ValueError, "custom or unsupported 'my_activation'"),
        (built(keras.layers.LSTM(U, activation=lambda x: x)), ValueError, "unsupported '<lambda>'"),
        (built(keras.layers.LSTM(U, activation=eval("lambda x: x"))), TypeError, "cannot read its config"),
        (built(MyLSTM(U)), TypeError, "MyLSTM .*unsupported layer"),
        (keras.layers.LSTM(U), ValueError, "expected a built layer"),
        (keras.layers.Dropout(0.5, noise_shape=(None, 1, F)), ValueError, "noise_shape"),
        (keras.layers.InputLayer((T, F)), TypeError, "InputLayer alone"),
        (np.ones(3), TypeError, "expected a Keras 3 model or layer, got ndarray"),
    ]
    for obj, error, message in cases:
        if isinstance(obj, keras.layers.Dropout):
            obj.build((None, T, F))
        with pytest.raises(error, match=message):
            interop.from_keras(obj)


def test_from_keras_rejects_a_model_that_is_not_a_chain():
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
    one = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(U)])
    assert interop.from_keras(one)[0].type_name == "Sequential"  # a model stays a model
    gru = keras.Sequential([keras.Input((T, F)), keras.layers.GRU(U)])
    with pytest.raises(TypeError, match="GRU"):
        interop.from_keras(gru)


def test_to_keras_rejects_what_keras_cannot_name():
    layer = jlstm.LSTM(U, activation=lambda x: x)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with pytest.raises(TypeError, match=r"LSTM activation: expected one of \[.*'tanh'\] by name, got the callable"):
        interop.to_keras(layer, params)
    good = jlstm.LSTM(U)
    with pytest.raises(ValueError, match=r"expected params\['recurrent_kernel'\] of shape \(5, 20\), got \(4, 20\)"):
        interop.to_keras(good, {**params, "recurrent_kernel": jnp.zeros((4, 20))})


# ---------------------------------------------------------------------------- PyTorch


def torch_out(module, x):
    with torch.no_grad():
        xt = torch.from_numpy(x if module.batch_first else np.swapaxes(x, 0, 1).copy())
        y = module(xt)[0].numpy()
    return y if module.batch_first else np.swapaxes(y, 0, 1)


@pytest.mark.parametrize(
    "num_layers,bidirectional,batch_first,bias",
    [(1, True, False, True), (2, False, True, False), (3, True, True, True)],
)
def test_from_torch_matches(num_layers, bidirectional, batch_first, bias):
    torch.manual_seed(0)
    module = torch.nn.LSTM(
        F, U, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    ).eval()
    layer, params = interop.from_torch(module)
    x = data(5)
    close(layer.apply(params, x), torch_out(module, x))
    lstms = [layer] if num_layers == 1 else list(layer.sublayers)
    assert [sub.type_name for sub in lstms] == ["Bidirectional" if bidirectional else "LSTM"] * num_layers


def test_from_torch_counts_one_bias():
    module = torch.nn.LSTM(3, 5)  # the seed layer: 200 torch params, 180 Keras ones
    _, params = interop.from_torch(module)
    assert sum(p.numel() for p in module.parameters()) == 200 and jlstm.count_params(params) == 180
    deep = torch.nn.LSTM(F, U, num_layers=2, bidirectional=True)
    _, params = interop.from_torch(deep)
    folded = 4 * U * deep.num_layers * 2  # bias_hh, per layer and direction
    assert sum(p.numel() for p in deep.parameters()) - folded == jlstm.count_params(params)


def test_from_torch_dropout_between_layers():
    module = torch.nn.LSTM(F, U, num_layers=3, dropout=0.25, batch_first=True).eval()
    layer, params = interop.from_torch(module)
    kinds = [sub.type_name for sub in layer.sublayers]
    assert kinds == ["LSTM", "Dropout", "LSTM", "Dropout", "LSTM"]
    assert layer.sublayers[1].config["rate"] == 0.25
    x = data(6)
    close(layer.apply(params, x), torch_out(module, x))
    trained = layer.apply(params, x, training=True, rng=jax.random.key(0))
    assert not np.allclose(trained, layer.apply(params, x))


def test_from_torch_rejects_unsupported():
    with pytest.raises(ValueError, match="proj_size=2 is not supported"):
        interop.from_torch(torch.nn.LSTM(F, U, proj_size=2))
    with pytest.raises(TypeError, match="expected a torch.nn.LSTM, got GRU"):
        interop.from_torch(torch.nn.GRU(F, U))


@pytest.mark.parametrize(
    "make",
    [
        lambda: jlstm.LSTM(U, return_sequences=True, use_bias=False),
        lambda: jlstm.Sequential(
            [
                jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True)),
                jlstm.Dropout(0.1),
                jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True)),
            ]
        ),
        lambda: jlstm.Sequential(
            [jlstm.LSTM(U, return_sequences=True), jlstm.Sequential([jlstm.LSTM(U, return_sequences=True)])]
        ),
    ],
    ids=["lstm", "bi-stack", "nested"],
)
def test_to_torch_round_trip(make):
    layer = make()
    _, params = layer.init(jax.random.key(7), (None, T, F))
    module = interop.to_torch(layer, params)
    assert module.batch_first and all(
        torch.count_nonzero(v) == 0 for k, v in module.state_dict().items() if k.startswith("bias_hh")
    )
    x = data(8)
    close(layer.apply(params, x), torch_out(module.eval(), x))
    back, back_params = interop.from_torch(module)
    assert back.type_name == layer.type_name
    flat = tuple(_leaf_params(layer, params)) if layer.type_name == "Sequential" else params
    jax.tree_util.tree_map(np.testing.assert_array_equal, back_params, flat)


def test_to_torch_last_state_is_h_n():
    layer = jlstm.LSTM(U)
    _, params = layer.init(jax.random.key(9), (None, T, F))
    module = interop.to_torch(layer, params)
    with torch.no_grad():
        h_n = module(torch.from_numpy(data(9)))[1][0][-1].numpy()
    close(layer.apply(params, data(9)), h_n)


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: jlstm.LSTM(U, activation="relu"), ValueError, "needs LSTM activation='tanh', got 'relu'"),
        (lambda: jlstm.LSTM(U, go_backwards=True), ValueError, "go_backwards=False, got True"),
        (lambda: jlstm.LSTM(U, dropout=0.1), ValueError, "dropout=0.0, got 0.1"),
        (lambda: jlstm.Bidirectional(jlstm.LSTM(U), merge_mode="sum"), ValueError, "merge_mode='concat'"),
        (lambda: jlstm.Sequential([jlstm.LSTM(U, return_sequences=True), jlstm.LSTM(3)]), ValueError, "units=5, got 3"),
        (lambda: jlstm.Sequential([jlstm.LSTM(U), jlstm.Dense(1)]), TypeError, "nn.LSTM has no Dense"),
        (lambda: jlstm.Sequential([jlstm.Dropout(0.1), jlstm.LSTM(U)]), ValueError, "between every two"),
    ],
)
def test_to_torch_rejects_what_nn_lstm_cannot_hold(make, error, message):
    layer = make()
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with pytest.raises(error, match=message):
        interop.to_torch(layer, params)


# ---------------------------------------------------------------------------- Flax


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


def test_interop_does_not_import_the_other_libraries():
    import subprocess
    import sys

    code = "import sys, jlstm; print(sorted(m for m in ('torch', 'flax', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
