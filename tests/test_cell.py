"""The single-step API and streaming: a step loop, or chunks carried through
`initial_state`/`return_state`, equal one full pass of the layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlstm

B, T, F, U = 3, 9, 4, 5
CHUNKS = ((0, 4), (4, 5), (5, 9))  # uneven, one of length 1


def data(seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(B, T, F)).astype(np.float32)
    mask = np.array([[1] * T, [1, 0, 1, 1, 0, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0]], bool)
    return x, mask


def init(layer, seed=0):
    return layer.init(jax.random.key(seed), (None, T, F))[1]


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-6)


def step_fn(kind, **cfg):
    """The single-step API of a layer kind: (params, state tuple, x_t) -> state tuple."""
    if kind == "LSTM":
        return lambda p, s, x_t: jlstm.lstm_step(p, s, x_t, **cfg)[0]
    one = jlstm.gru_step if kind == "GRU" else jlstm.simple_rnn_step
    return lambda p, s, x_t: (one(p, s[0], x_t, **cfg)[0],)


LAYERS = {"LSTM": (jlstm.LSTM, 2), "GRU": (jlstm.GRU, 1), "SimpleRNN": (jlstm.SimpleRNN, 1)}
STEP_CASES = [
    ("LSTM", {}),
    ("LSTM", {"use_bias": False}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False, "activation": "relu"}),
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu", "use_bias": False}),
]


def step_loop(kind, params, x, mask=None, **cfg):
    """Every step's output and the final state from the single-step API; a masked step
    keeps the state and outputs the previous h, as the layer does."""
    step = step_fn(kind, **{k: v for k, v in cfg.items() if k != "use_bias"})
    state = (jnp.zeros((B, U)),) * LAYERS[kind][1]
    ys = []
    for t in range(T):
        new = step(params, state, x[:, t])
        state = new if mask is None else tuple(jnp.where(mask[:, t, None], n, o) for n, o in zip(new, state))
        ys.append(state[0])
    return jnp.stack(ys, axis=1), state


@pytest.mark.parametrize("kind,cfg", STEP_CASES)
def test_step_loop_equals_layer(kind, cfg):
    layer = LAYERS[kind][0](U, return_sequences=True, return_state=True, **cfg)
    params = init(layer)
    x, mask = data()
    for m in (None, mask):
        seq, state = step_loop(kind, params, x, m, **cfg)
        seq_layer, *state_layer = layer.apply(params, x, mask=m)
        close(seq, seq_layer)
        for a, b in zip(state, state_layer):
            close(a, b)


def test_step_runs_under_jit_and_scan():
    layer = jlstm.LSTM(U, return_sequences=True)
    params = init(layer, 1)
    x, _ = data(1)
    carry = (jnp.zeros((B, U)), jnp.zeros((B, U)))
    _, ys = jax.jit(lambda p, c, xs: jax.lax.scan(lambda s, x_t: jlstm.lstm_step(p, s, x_t), c, xs))(
        params, carry, jnp.swapaxes(x, 0, 1)
    )
    close(jnp.swapaxes(ys, 0, 1), layer.apply(params, x))


def stream(layer, params, x, mask, chunks):
    """Runs `chunks` of the time axis in the given order, carrying the state between them."""
    state, outs = None, []
    for start, stop in chunks:
        m = None if mask is None else mask[:, start:stop]
        seq, *state = layer.apply(params, x[:, start:stop], mask=m, initial_state=state)
        outs.append(seq)
    return jnp.concatenate(outs, axis=1), state


def assert_streams_like_one_pass(layer, params, x, stream_mask, chunks, **apply_kwargs):
    seq, state = stream(layer, params, x, stream_mask, chunks)
    full_seq, *full_state = layer.apply(params, x, **apply_kwargs)
    close(seq, full_seq)
    for a, b in zip(state, full_state, strict=True):
        close(a, b)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_streaming_chunks_equal_one_pass(kind, masked, go_backwards):
    # go_backwards reads time from the end, so its chunks go last-first; each chunk's
    # sequence comes back in processing order, as the full pass returns it.
    layer = LAYERS[kind][0](U, return_sequences=True, return_state=True, go_backwards=go_backwards)
    params = init(layer, 4 if go_backwards else 2)
    x, mask = data(4 if go_backwards else 2)
    mask = mask if masked else None
    assert_streams_like_one_pass(layer, params, x, mask, CHUNKS[::-1] if go_backwards else CHUNKS, mask=mask)


@pytest.mark.parametrize("kind", LAYERS)
def test_streaming_with_lengths_equals_mask(kind):
    layer = LAYERS[kind][0](U, return_sequences=True, return_state=True)
    params = init(layer, 3)
    x, _ = data(3)
    lengths = np.array([T, 6, 2])
    mask = np.arange(T)[None, :] < lengths[:, None]
    assert_streams_like_one_pass(layer, params, x, mask, CHUNKS, lengths=lengths)


@pytest.mark.parametrize("kind", LAYERS)
def test_streaming_one_step_at_a_time_equals_step_loop(kind):
    layer = LAYERS[kind][0](U, return_sequences=True, return_state=True)
    params = init(layer, 5)
    x, mask = data(5)
    seq, state = stream(layer, params, x, mask, [(t, t + 1) for t in range(T)])
    loop_seq, loop_state = step_loop(kind, params, x, mask)
    close(seq, loop_seq)
    for a, b in zip(state, loop_state, strict=True):
        close(a, b)
