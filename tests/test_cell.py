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


@pytest.mark.parametrize(
    "cfg",
    [{}, {"use_bias": False}, {"activation": "relu", "recurrent_activation": "hard_sigmoid"}],
)
def test_step_loop_equals_layer(cfg):
    layer = jlstm.LSTM(U, return_sequences=True, return_state=True, **cfg)
    params = init(layer)
    x, _ = data()
    acts = {k: cfg[k] for k in ("activation", "recurrent_activation") if k in cfg}
    state = (jnp.zeros((B, U)), jnp.zeros((B, U)))
    ys = []
    for t in range(T):
        state, y = jlstm.lstm_step(params, state, x[:, t], **acts)
        ys.append(y)
    seq, h, c = layer.apply(params, x)
    close(jnp.stack(ys, axis=1), seq)
    close(state[0], h)
    close(state[1], c)


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
    """Runs `chunks` of the time axis in the given order, carrying (h, c) between them."""
    state, outs = None, []
    for start, stop in chunks:
        m = None if mask is None else mask[:, start:stop]
        seq, h, c = layer.apply(params, x[:, start:stop], mask=m, initial_state=state)
        state = (h, c)
        outs.append(seq)
    return jnp.concatenate(outs, axis=1), state


def assert_streams_like_one_pass(layer, params, x, stream_mask, chunks, **apply_kwargs):
    seq, (h, c) = stream(layer, params, x, stream_mask, chunks)
    full_seq, full_h, full_c = layer.apply(params, x, **apply_kwargs)
    close(seq, full_seq)
    close(h, full_h)
    close(c, full_c)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_streaming_chunks_equal_one_pass(masked, go_backwards):
    # go_backwards reads time from the end, so its chunks go last-first; each chunk's
    # sequence comes back in processing order, as the full pass returns it.
    layer = jlstm.LSTM(U, return_sequences=True, return_state=True, go_backwards=go_backwards)
    params = init(layer, 4 if go_backwards else 2)
    x, mask = data(4 if go_backwards else 2)
    mask = mask if masked else None
    assert_streams_like_one_pass(layer, params, x, mask, CHUNKS[::-1] if go_backwards else CHUNKS, mask=mask)


def test_streaming_with_lengths_equals_mask():
    layer = jlstm.LSTM(U, return_sequences=True, return_state=True)
    params = init(layer, 3)
    x, _ = data(3)
    lengths = np.array([T, 6, 2])
    mask = np.arange(T)[None, :] < lengths[:, None]
    assert_streams_like_one_pass(layer, params, x, mask, CHUNKS, lengths=lengths)


def test_streaming_one_step_at_a_time_equals_step_loop():
    layer = jlstm.LSTM(U, return_sequences=True, return_state=True)
    params = init(layer, 5)
    x, mask = data(5)
    seq, _ = stream(layer, params, x, None, [(t, t + 1) for t in range(T)])
    close(seq, layer.apply(params, x)[0])
