"""Weights in and out against PyTorch: from_torch and to_torch, between torch.nn.LSTM and jlstm."""

import jax
import numpy as np
import pytest
from helpers import F, T, U, close, data

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
