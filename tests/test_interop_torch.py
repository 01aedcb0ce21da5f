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


def torch_with_states(module, x, hx):
    """torch's (outputs, final states) for batch-major `x` and initial states `hx` (None: zeros)."""
    with torch.no_grad():
        xt = torch.from_numpy(x if module.batch_first else np.swapaxes(x, 0, 1).copy())
        hx = None if hx is None else jax.tree_util.tree_map(torch.from_numpy, hx)
        y, state = module(xt, hx)
    y = y.numpy() if module.batch_first else np.swapaxes(y.numpy(), 0, 1)
    return y, jax.tree_util.tree_map(lambda s: s.numpy(), state)


@pytest.mark.parametrize(
    "module_type,num_layers,bidirectional,batch_first",
    [
        ("LSTM", 2, False, True),
        ("LSTM", 2, True, False),
        ("GRU", 2, False, False),
        ("GRU", 2, True, True),
        ("RNN", 2, True, True),
        ("LSTM", 1, False, True),
    ],
)
def test_from_torch_states_in_torch_layout(module_type, num_layers, bidirectional, batch_first):
    torch.manual_seed(1)
    module = getattr(torch.nn, module_type)(
        F, U, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    ).eval()
    layer, params = interop.from_torch(module)
    r, x = np.random.default_rng(2), data(16)
    shape = (num_layers * (2 if bidirectional else 1), x.shape[0], U)
    h0, c0 = (r.normal(size=shape).astype(np.float32) for _ in range(2))
    hx = (h0, c0) if module_type == "LSTM" else h0
    y, state = layer.apply(params, x, initial_state=hx, return_state=True)
    y_torch, state_torch = torch_with_states(module, x, hx)
    close(y, y_torch)
    close(state, state_torch)  # (h_n, c_n) for an LSTM, h_n else, row layer * num_directions + direction
    close(layer.apply(params, x, initial_state=hx), y_torch)  # the outputs alone without return_state
    zeros = jax.jit(layer.apply, static_argnames="return_state")(params, x, return_state=True)
    close(zeros[1], torch_with_states(module, x, None)[1])  # no initial_state: zeros, as torch's


def test_from_torch_states_through_dropout():
    """Between layers, Dropout draws the same masks with states as without."""
    module = torch.nn.GRU(F, U, num_layers=3, dropout=0.5, batch_first=True)
    layer, params = interop.from_torch(module)
    x, key = data(17), jax.random.key(3)
    y, h_n = layer.apply(params, x, return_state=True, training=True, rng=key)
    close(y, layer.apply(params, x, training=True, rng=key))
    assert h_n.shape == (3, x.shape[0], U)


@pytest.mark.parametrize(
    "module_type,bidirectional,initial_state,message",
    [
        ("LSTM", True, lambda s: s, r"expected initial_state as the pair \(h0, c0\), in torch's layout, got ndarray"),
        ("LSTM", False, lambda s: (s, s, s), r"as the pair \(h0, c0\), .*got tuple of 3"),
        ("GRU", False, lambda s: (s, s), r"expected initial_state as h0 or \(h0,\), in torch's layout, got tuple of 2"),
        (
            "LSTM",
            False,
            lambda s: (s[0], s[0]),
            r"Sequential \(from nn.LSTM\): expected initial_state h0 of shape \(num_layers \* num_directions, "
            r"batch, hidden_size\) = \(2, 3, 5\), got \(3, 5\)",
        ),
        ("RNN", True, lambda s: s, r"initial_state h0 of shape .* = \(4, 3, 5\), got \(2, 3, 5\)"),
        ("GRU", False, lambda s: s[:, :2], r"= \(2, 3, 5\), got \(2, 2, 5\)"),
    ],
)
def test_from_torch_rejects_states_torch_would(module_type, bidirectional, initial_state, message):
    module = getattr(torch.nn, module_type)(F, U, num_layers=2, bidirectional=bidirectional, batch_first=True)
    layer, params = interop.from_torch(module)
    states = np.zeros((2, data().shape[0], U), np.float32)
    with pytest.raises(ValueError, match=message):
        layer.apply(params, data(), initial_state=initial_state(states))
    with pytest.raises(TypeError, match=r"return_state: expected True or False, got 1"):
        layer.apply(params, data(), return_state=1)
