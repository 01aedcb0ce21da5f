"""Weights in and out against PyTorch: from_torch and to_torch, between torch.nn.LSTM, GRU, RNN and jlstm."""

import jax
import numpy as np
import pytest
from helpers import F, T, U, close, data, jitter, readme_param_counts

import jlstm
from jlstm import interop
from jlstm.interop._common import _leaf_params

torch = pytest.importorskip("torch")


def torch_out(module, x):
    with torch.no_grad():
        xt = torch.from_numpy(x if module.batch_first else np.swapaxes(x, 0, 1).copy())
        y = module(xt)[0].numpy()
    return y if module.batch_first else np.swapaxes(y, 0, 1)


@pytest.mark.parametrize(
    "module_type,num_layers,bidirectional,batch_first,bias,extra",
    [
        ("LSTM", 1, True, False, True, {}),
        ("LSTM", 2, False, True, False, {}),
        ("LSTM", 3, True, True, True, {}),
        ("GRU", 1, False, True, True, {}),
        ("GRU", 2, True, False, True, {}),
        ("GRU", 2, False, True, False, {}),
        ("RNN", 2, True, True, True, {}),
        ("RNN", 1, False, False, True, {"nonlinearity": "relu"}),
    ],
)
def test_from_torch_matches(module_type, num_layers, bidirectional, batch_first, bias, extra):
    torch.manual_seed(0)
    module = getattr(torch.nn, module_type)(
        F, U, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias, **extra
    ).eval()
    layer, params = interop.from_torch(module)
    x = data(5)
    close(layer.apply(params, x), torch_out(module, x))
    recurrent = [layer] if num_layers == 1 else list(layer.sublayers)
    jlstm_type = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}[module_type]
    assert [sub.type_name for sub in recurrent] == ["Bidirectional" if bidirectional else jlstm_type] * num_layers


def test_param_counts_in_readme():
    """torch counts both of its biases; jlstm, as Keras, the one an LSTM or RNN acts by (their
    sum), and both of a GRU's, whose recurrent one sits inside r * (...)."""
    modules = {"LSTM": torch.nn.LSTM(3, 5), "GRU": torch.nn.GRU(3, 5), "SimpleRNN": torch.nn.RNN(3, 5)}
    theirs = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
    ours = {name: jlstm.count_params(interop.from_torch(module)[1]) for name, module in modules.items()}
    assert theirs == readme_param_counts("PyTorch")
    assert ours == {k: v for k, v in readme_param_counts("jlstm").items() if k in ours}


@pytest.mark.parametrize("module_type,gates", [("LSTM", 4), ("GRU", 0), ("RNN", 1)])
def test_from_torch_counts_the_biases_it_folds(module_type, gates):
    deep = getattr(torch.nn, module_type)(F, U, num_layers=2, bidirectional=True)
    _, params = interop.from_torch(deep)
    folded = gates * U * deep.num_layers * 2  # bias_hh, per layer and direction
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
    with pytest.raises(TypeError, match="expected a torch.nn.LSTM, GRU or RNN, got GRUCell"):
        interop.from_torch(torch.nn.GRUCell(F, U))


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
        lambda: jlstm.GRU(U, return_sequences=True),
        lambda: jlstm.Sequential(
            [
                jlstm.Bidirectional(jlstm.GRU(U, return_sequences=True)),
                jlstm.Dropout(0.1),
                jlstm.Bidirectional(jlstm.GRU(U, return_sequences=True)),
            ]
        ),
        lambda: jlstm.SimpleRNN(U, return_sequences=True, use_bias=False),
        lambda: jlstm.Sequential(
            [jlstm.Bidirectional(jlstm.SimpleRNN(U, return_sequences=True, activation="relu"))] * 2
        ),
    ],
    ids=["lstm", "bi-stack", "nested", "gru", "gru-bi-stack", "simple-rnn", "simple-rnn-relu-bi-stack"],
)
def test_to_torch_round_trip(make):
    layer = make()
    _, params = layer.init(jax.random.key(7), (None, T, F))
    params = jitter(params)
    module = interop.to_torch(layer, params)
    bias_hh = [v for k, v in module.state_dict().items() if k.startswith("bias_hh")]
    # torch's GRU holds the recurrent bias row; for the others jlstm has one bias, in bias_ih
    assert module.batch_first and (module.mode == "GRU" or all(torch.count_nonzero(v) == 0 for v in bias_hh))
    x = data(8)
    close(layer.apply(params, x), torch_out(module.eval(), x))
    back, back_params = interop.from_torch(module)
    assert back.type_name == layer.type_name
    flat = tuple(_leaf_params(layer, params)) if layer.type_name == "Sequential" else params
    jax.tree_util.tree_map(np.testing.assert_array_equal, back_params, flat)


@pytest.mark.parametrize("make", [jlstm.LSTM, jlstm.GRU, jlstm.SimpleRNN])
def test_to_torch_last_state_is_h_n(make):
    layer = make(U)
    _, params = layer.init(jax.random.key(9), (None, T, F))
    module = interop.to_torch(layer, jitter(params))
    with torch.no_grad():
        state = module(torch.from_numpy(data(9)))[1]
    h_n = state[0] if isinstance(state, tuple) else state  # an LSTM's is (h_n, c_n)
    close(layer.apply(jitter(params), data(9)), h_n[-1].numpy())


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: jlstm.LSTM(U, activation="relu"), ValueError, "needs LSTM activation='tanh', got 'relu'"),
        (lambda: jlstm.LSTM(U, go_backwards=True), ValueError, "go_backwards=False, got True"),
        (lambda: jlstm.LSTM(U, dropout=0.1), ValueError, "dropout=0.0, got 0.1"),
        (lambda: jlstm.Bidirectional(jlstm.LSTM(U), merge_mode="sum"), ValueError, "merge_mode='concat'"),
        (lambda: jlstm.Sequential([jlstm.LSTM(U, return_sequences=True), jlstm.LSTM(3)]), ValueError, "units=5, got 3"),
        (lambda: jlstm.Sequential([jlstm.LSTM(U), jlstm.Dense(1)]), TypeError, "nn.RNN have no Dense"),
        (lambda: jlstm.Sequential([jlstm.Dropout(0.1), jlstm.LSTM(U)]), ValueError, "between every two"),
        (lambda: jlstm.GRU(U, reset_after=False), ValueError, "nn.GRU needs GRU reset_after=True, got False"),
        (
            lambda: jlstm.GRU(U, recurrent_activation="hard_sigmoid"),
            ValueError,
            "needs GRU recurrent_activation='sigmoid', got 'hard_sigmoid'",
        ),
        (
            lambda: jlstm.SimpleRNN(U, activation="sigmoid"),
            ValueError,
            "nn.RNN needs SimpleRNN activation='tanh' or 'relu', got 'sigmoid'",
        ),
        (
            lambda: jlstm.Sequential(
                [jlstm.SimpleRNN(U, return_sequences=True), jlstm.SimpleRNN(U, activation="relu")]
            ),
            ValueError,
            "needs SimpleRNN activation='tanh', got 'relu'",
        ),
        (
            lambda: jlstm.Sequential([jlstm.LSTM(U, return_sequences=True), jlstm.GRU(U)]),
            ValueError,
            r"of one type .*got \['LSTM', 'GRU'\]",
        ),
        (
            lambda: jlstm.Bidirectional(jlstm.GRU(U), backward_layer=jlstm.SimpleRNN(U, go_backwards=True)),
            ValueError,
            r"got \['GRU', 'SimpleRNN'\]",
        ),
    ],
)
def test_to_torch_rejects_what_torch_cannot_hold(make, error, message):
    layer = make()
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with pytest.raises(error, match=message):
        interop.to_torch(layer, params)
