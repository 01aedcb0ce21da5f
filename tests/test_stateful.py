"""jlstm.stateful against Keras 3's stateful=True layers (JAX backend): chunk by chunk, the
outputs and the carried states, reset_state, and the checks of bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import close, count_scan_traces, reference

import jlstm
from jlstm import interop, stateful

keras = pytest.importorskip("keras")

# Keras's own get_weights/set_weights trigger NumPy 2's __array__(copy=) deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

B, T, F = 3, 4, 2  # each chunk's batch, timesteps, features
CHUNKS = 3
# Keras's layers start from zeros (its orthogonal initializer takes a second to compile, and
# to_keras builds its layers with the jlstm layer's initializers); the weights come from
# `random_params` through to_keras.
ZEROS = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}


def random_params(layer, seed):
    """Normal params of `layer`'s tree for F features, drawn by NumPy (init's shapes, traced
    only: compiling init's random draws takes longer than the test's calls)."""
    shapes = jax.eval_shape(lambda key: layer.init(key, (None, None, F))[1], jax.random.key(0))
    r = np.random.default_rng(seed)
    return jax.tree.map(lambda s: r.normal(scale=0.5, size=s.shape).astype(np.float32), shapes)


def chunks(seed=0):
    """Three chunks, and masks that leave steps out at a chunk's start and end, and a row out
    of a whole chunk (it keeps its state); the masked steps hold zeros (for Masking(0.0))."""
    x = np.random.default_rng(seed).normal(size=(CHUNKS, B, T, F)).astype(np.float32)
    mask = np.ones((CHUNKS, B, T), bool)
    mask[0, 0, 2:] = False  # chunk ends masked: the state carried is step 1's
    mask[1, 1, :] = False  # masked throughout
    mask[1, 2, 0] = mask[2, 0, 1] = False  # a leading step, a hole
    return np.where(mask[..., None], x, 0.0).astype(np.float32), mask


def keras_stream(kmodel, klayers):
    """`call(states, x, mask) -> (outputs, states)`: one jitted call of the stateful Keras model,
    its layers' state variables read from and written to `states` (a stateless scope)."""
    variables = [v for klayer in klayers for v in klayer.states]

    @jax.jit
    def call(states, x, mask):
        with keras.StatelessScope(state_mapping=list(zip(variables, states))) as scope:
            y = kmodel(x) if mask is None else kmodel(x, mask=mask)
        return y, [scope.get_current_value(v) for v in variables]

    return call, [np.zeros(v.shape, np.float32) for v in variables]


def lstm_pair():
    layer = jlstm.LSTM(4, return_sequences=True, **ZEROS)
    params = random_params(layer, 0)
    with reference():
        klayer = keras.layers.LSTM(4, return_sequences=True, stateful=True, **ZEROS)
        klayer.build((B, T, F))
        klayer.set_weights(interop.to_keras(layer, params).get_weights())
    return layer, params, klayer


def test_lstm_chunks_match_keras_stateful_and_reset_state(monkeypatch):
    layer, params, klayer = lstm_pair()
    call, kstates = keras_stream(klayer, [klayer])
    xs, masks = chunks()
    state = stateful.init_state(layer, params, B)
    traces, counts, states = count_scan_traces(monkeypatch), [], []
    for k in range(CHUNKS):
        with reference():
            ky, kstates = call(kstates, xs[k], masks[k])
        y, state = stateful.apply(layer, params, state, xs[k], mask=masks[k])
        close([y, *state], [ky, *kstates])
        counts.append(len(traces))
        states.append(state)
    assert counts == [counts[0]] * CHUNKS  # no trace after the first chunk
    # row 1, masked throughout chunk 1, kept chunk 0's state; row 0's changed
    close([s[1] for s in states[1]], [s[1] for s in states[0]])
    assert not np.allclose(states[1][0][0], states[0][0][0])
    # Keras's reset_state() zeroes every row: reset(state)
    for v, value in zip(klayer.states, kstates):
        v.assign(value)
    klayer.reset_state()
    state = stateful.reset(state)
    close(list(state), [v.value for v in klayer.states])
    with reference():
        ky, kstates = call([v.value for v in klayer.states], xs[0], np.ones((B, T), bool))
    y, state = stateful.apply(layer, params, state, xs[0], mask=np.ones((B, T), bool))
    close([y, *state], [ky, *kstates])


def test_reset_of_some_rows_is_a_fresh_start_for_them_only():
    layer, params, _ = lstm_pair()
    xs, masks = chunks(1)
    zeros = stateful.init_state(layer, params, B)
    _, carried = stateful.apply(layer, params, zeros, xs[0], mask=masks[0])
    rows = np.array([True, False, True])
    y, state = stateful.apply(layer, params, stateful.reset(carried, rows), xs[1], mask=masks[1])
    fresh_y, fresh = stateful.apply(layer, params, zeros, xs[1], mask=masks[1])
    kept_y, kept = stateful.apply(layer, params, carried, xs[1], mask=masks[1])
    expected_y = np.where(rows[:, None, None], fresh_y, kept_y)
    close([y, *state], [expected_y, *(np.where(rows[:, None], f, c) for f, c in zip(fresh, kept))])
    assert not np.allclose(fresh_y[1], kept_y[1])  # row 1's carried state mattered


def test_sequential_of_bidirectional_and_gru_matches_keras_stateful():
    model = jlstm.Sequential(
        [
            jlstm.Masking(0.0),
            jlstm.Bidirectional(jlstm.LSTM(4, return_sequences=True, **ZEROS)),
            jlstm.Dropout(0.5),
            jlstm.GRU(3, **ZEROS),
            jlstm.Dense(2, kernel_initializer="zeros"),
        ]
    )
    params = random_params(model, 1)
    with reference():
        kmodel = keras.Sequential(
            [
                keras.Input(batch_shape=(B, T, F)),
                keras.layers.Masking(0.0),
                keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True, stateful=True, **ZEROS)),
                keras.layers.Dropout(0.5),
                keras.layers.GRU(3, stateful=True, **ZEROS),
                keras.layers.Dense(2, kernel_initializer="zeros"),
            ]
        )
        kmodel.set_weights(interop.to_keras(model, params).get_weights())
    call, kstates = keras_stream(kmodel, [kmodel.layers[1], kmodel.layers[3]])
    step = jax.jit(stateful.apply, static_argnums=0, static_argnames="training")
    xs, _ = chunks(2)
    state = stateful.init_state(model, params, B)
    assert jax.tree.map(jnp.shape, state) == ((), ((B, 4),) * 4, (), ((B, 3),), ())
    for k in range(CHUNKS):
        with reference():
            ky, kstates = call(kstates, xs[k], None)
        y, state = step(model, params, state, xs[k])
        close([y, *jax.tree.leaves(state)], [ky, *kstates])


def test_bidirectional_simple_rnn_returning_states_matches_keras_stateful():
    layer = jlstm.Bidirectional(jlstm.SimpleRNN(3, return_state=True, dropout=0.5, **ZEROS), merge_mode=None)
    params = random_params(layer, 2)
    with reference():
        klayer = keras.layers.Bidirectional(
            keras.layers.SimpleRNN(3, stateful=True, **ZEROS), merge_mode=None
        )  # not return_state=True: Keras 3.15's stateful Bidirectional fails then (in compute_mask)
        klayer.build((B, T, F))
        klayer.set_weights(interop.to_keras(layer, params).get_weights())
    call, kstates = keras_stream(klayer, [klayer])
    xs, _ = chunks(3)
    state, outputs = stateful.init_state(layer, params, B), []
    for x, lengths in [(xs[0], np.array([T, T, T])), (xs[1], np.array([T, 0, 2]))]:
        with reference():
            (ky, ky_rev), kstates = call(kstates, x, np.arange(T) < lengths[:, None])
        (y, y_rev), state = stateful.apply(layer, params, state, x, lengths=lengths)
        close([y, y_rev, *state], [ky, ky_rev, *kstates])
        outputs.append(y)
    # in training, a first chunk draws dropout as the layer's own call does
    key, zeros, full = jax.random.key(3), stateful.init_state(layer, params, B), np.array([T, T, T])
    (y, y_rev), state = stateful.apply(layer, params, zeros, xs[0], lengths=full, training=True, rng=key)
    close([y, y_rev, *state], layer.apply(params, xs[0], lengths=full, training=True, rng=key))
    assert not np.allclose(y, outputs[0])  # dropout acted


def bad_calls():
    lstm = jlstm.LSTM(4)
    params = {"kernel": jnp.zeros((F, 16)), "recurrent_kernel": jnp.zeros((4, 16)), "bias": jnp.zeros(16)}
    dense = jlstm.Dense(2)
    model = jlstm.Sequential([lstm, dense])
    model_params = (params, {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)})
    h = jnp.zeros((B, 4))
    x = jnp.zeros((B, T, F))
    init, apply, reset = stateful.init_state, stateful.apply, stateful.reset
    return [
        (lambda: init(dense, {}, B), TypeError, "expected a recurrent layer .*, got Dense"),
        (lambda: init(jlstm.Sequential([dense]), ({},), B), TypeError, "got a Sequential of Dense"),
        (lambda: init("LSTM", params, B), TypeError, "expected a jlstm layer, .*got str"),
        (lambda: init(lstm, params, 0), ValueError, "batch_size: expected a positive int, got 0"),
        (lambda: init(lstm, {"kernel": np.zeros((F, 16), np.int32)}, B), TypeError, "float dtype, got \\['int32'\\]"),
        (lambda: init(model, (params,), B), ValueError, "expected params as a tuple of 2, got tuple of 1"),
        (lambda: apply(lstm, params, (h, h), x[:2]), ValueError, "batch size 3 \\(the state's.*got 2"),
        (lambda: apply(lstm, params, (h,), x), ValueError, "expected state as a tuple of 2 .*got tuple of 1"),
        (lambda: apply(lstm, params, h, x), ValueError, "expected state as a tuple of 2 .*got ArrayImpl"),
        (lambda: apply(lstm, params, (h, jnp.zeros((B, 5))), x), ValueError, "state\\[1\\] of shape \\(batch, 4\\)"),
        (lambda: apply(lstm, params, (h, jnp.zeros((2, 4))), x), ValueError, "of one batch size, got .*\\(2, 4\\)"),
        (lambda: apply(lstm, params, (h, h), x[0]), ValueError, "rank 3 .*got shape \\(4, 2\\)"),
        (lambda: apply(lstm, params, (h, h), x, training=1), TypeError, "training=True or False"),
        (lambda: apply(model, model_params, ((h, h),), x), ValueError, "state as a tuple of 2 \\(an entry per layer"),
        (lambda: apply(model, model_params, ((h, h), (h,)), x), ValueError, "state\\[1\\] as a tuple of 0 .*Dense"),
        (lambda: apply(model, model_params, ((h,), ()), x), ValueError, "state\\[0\\] as a tuple of 2"),
        (lambda: reset((h, h), np.array([1, 0, 1])), TypeError, "rows as a bool \\(3,\\) array, got dtype int64"),
        (lambda: reset((h, h), np.array([True, False])), ValueError, "rows of shape \\(3,\\) .*got \\(2,\\)"),
        (lambda: reset(((), ()), None), ValueError, "expected a state of \\(batch, units\\) arrays"),
    ]


@pytest.mark.parametrize("index", range(len(bad_calls())))
def test_bad_input_names_what_was_expected(index):
    call, error, message = bad_calls()[index]
    with pytest.raises(error, match=message):
        call()
