"""jlstm layers under jax.jit, grad, vmap and eval_shape; no retrace on a second call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_scan_traces
from jax.test_util import check_grads

import jlstm
from jlstm import tuning

LAYERS = {
    "lstm": lambda: jlstm.LSTM(4, return_sequences=True),
    "bidirectional": lambda: jlstm.Bidirectional(jlstm.LSTM(4, return_sequences=True), merge_mode="ave"),
    "stack": lambda: jlstm.Sequential([jlstm.LSTM(4, return_sequences=True), jlstm.Dense(2)]),
    "gru": lambda: jlstm.GRU(4, return_sequences=True),
    "gru-v1": lambda: jlstm.GRU(4, return_sequences=True, reset_after=False),
    "gru-bidirectional": lambda: jlstm.Bidirectional(jlstm.GRU(4, return_sequences=True), merge_mode="ave"),
    "simple_rnn": lambda: jlstm.SimpleRNN(4, return_sequences=True),
    "simple_rnn-bidirectional": lambda: jlstm.Bidirectional(jlstm.SimpleRNN(4, return_sequences=True)),
}
# Each recurrent layer kind, with how many state arrays it carries.
CELLS = {"LSTM": (jlstm.LSTM, 2), "GRU": (jlstm.GRU, 1), "SimpleRNN": (jlstm.SimpleRNN, 1)}


def x_and_mask(batch=2, timesteps=5, features=3):
    x = jax.random.normal(jax.random.key(1), (batch, timesteps, features))
    return x, jnp.arange(timesteps)[None, :] < jnp.array([timesteps, 3])[:, None]


@pytest.mark.parametrize("kind", LAYERS)
def test_jit_equals_eager(kind, rng):
    layer = LAYERS[kind]()
    _, params = layer.init(rng, (None, 5, 3))
    x, mask = x_and_mask()
    np.testing.assert_allclose(jax.jit(layer.apply)(params, x, mask=mask), layer.apply(params, x, mask=mask), atol=1e-6)


@pytest.mark.parametrize(
    "kind", ["lstm", "bidirectional", "gru", "gru-v1", "gru-bidirectional", "simple_rnn", "simple_rnn-bidirectional"]
)
def test_grads_are_correct(kind, rng):
    layer = LAYERS[kind]()
    _, params = layer.init(rng, (None, 5, 3))
    x, mask = x_and_mask()
    f64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64), tree)  # noqa: E731
    with jax.enable_x64():
        check_grads(
            lambda p, xx: layer.apply(p, xx, mask=mask),
            (f64(params), f64(x)),
            order=1,
            modes=["rev"],
            atol=1e-5,
            rtol=1e-5,
        )


# Every chunking (T a square, padded, one step) and output for the LSTM; the padded chunks
# for the other cells, whose remat is the same code over another step.
REMAT_CASES = [("LSTM", "lstm", 9), ("LSTM", "lstm-last", 5), ("LSTM", "bidirectional", 1)] + [
    ("GRU", "bidirectional", 5),
    ("SimpleRNN", "lstm-last", 5),
]


@pytest.mark.parametrize("cell,kind,timesteps", REMAT_CASES)
def test_remat_gives_the_same_outputs_and_grads(cell, kind, timesteps, rng):
    x = jax.random.normal(jax.random.key(1), (2, timesteps, 3))
    mask = jnp.arange(timesteps)[None, :] < jnp.array([timesteps, 3])[:, None]
    results = []
    for remat in (False, True):
        layer = CELLS[cell][0](4, return_sequences=kind != "lstm-last", remat=remat)
        if kind == "bidirectional":
            layer = jlstm.Bidirectional(layer)
        _, params = layer.init(rng, (None, timesteps, 3))
        loss = lambda p, layer=layer: jnp.sum(layer.apply(p, x, mask=mask) ** 2)  # noqa: E731
        results.append((layer.apply(params, x, mask=mask), jax.grad(loss)(params)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), *results)


@pytest.mark.parametrize("kind", ["stack", "simple_rnn-bidirectional"])
def test_vmap_over_an_ensemble_of_params(kind):
    layer = LAYERS[kind]()
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: layer.init(k, (None, 5, 3))[1])(keys)
    x, mask = x_and_mask()
    ys = jax.vmap(lambda p: layer.apply(p, x, mask=mask))(params)
    for i in range(3):
        one = jax.tree.map(lambda a, i=i: a[i], params)
        np.testing.assert_allclose(ys[i], layer.apply(one, x, mask=mask), atol=1e-6)


@pytest.mark.parametrize("kind", LAYERS)
def test_eval_shape_matches_init_shape(kind, rng):
    layer = LAYERS[kind]()
    out_shape, params = layer.init(rng, (None, 5, 3))
    out = jax.eval_shape(layer.apply, params, jax.ShapeDtypeStruct((7, 5, 3), jnp.float32))
    assert out.shape == (7,) + tuple(out_shape[1:])


@pytest.mark.parametrize("kind", ["bidirectional", "gru"])
def test_no_retrace_on_a_second_call(kind, rng, monkeypatch):
    layer = LAYERS[kind]()
    _, params = layer.init(rng, (None, 5, 3))
    x, mask = x_and_mask()
    jax.clear_caches()  # an earlier test may have compiled this very layer's call
    traced = count_scan_traces(monkeypatch)
    layer.apply(params, x, mask=mask)
    assert len(traced) == 1
    for _ in range(3):
        layer.apply(params, x + 1.0, mask=~mask)
    assert len(traced) == 1
    layer.apply(params, x[:1], mask=mask[:1])  # a new shape compiles once more
    assert len(traced) == 2
    LAYERS[kind]().apply(params, x, mask=mask)  # a new layer alike shares the compile
    assert len(traced) == 2
    saved = jlstm.config.forward_form
    jlstm.config.update(forward_form=tuning.FORWARD_FORMS[-1])  # other settings: traced again
    try:
        layer.apply(params, x, mask=mask)
        assert len(traced) == 3
    finally:
        jlstm.config.update(forward_form=saved)

    traces = []

    @jax.jit
    def f(p, xx):
        traces.append(1)
        return layer.apply(p, xx)

    f(params, x)
    f(params, x * 2)
    assert len(traces) == 1


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_is_off_unless_training(cell, rng):
    make = CELLS[cell][0]
    layer = make(4, return_sequences=True, dropout=0.5, recurrent_dropout=0.5)
    _, params = layer.init(rng, (None, 5, 3))
    x, _ = x_and_mask()
    plain = make(4, return_sequences=True).apply(params, x)
    np.testing.assert_array_equal(layer.apply(params, x), plain)
    a = layer.apply(params, x, training=True, rng=jax.random.key(1))
    b = layer.apply(params, x, training=True, rng=jax.random.key(1))
    c = layer.apply(params, x, training=True, rng=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain) and not np.allclose(a, c)
    with pytest.raises(ValueError, match="rng"):
        layer.apply(params, x, training=True)


# Every output and direction for the LSTM; the other cells' custom VJPs once each way.
@pytest.mark.parametrize(
    "cell,return_sequences,bidirectional",
    [("LSTM", seq, bi) for seq in (False, True) for bi in (False, True)]
    + [(cell, seq, not seq) for cell in ("GRU", "SimpleRNN") for seq in (False, True)],
)
def test_grads_through_states_and_masks(cell, return_sequences, bidirectional, rng):
    """The custom VJP against numerical differences: last output or sequence, a mask with
    holes, and gradients into the initial state too."""
    make, n_states = CELLS[cell]
    layer = make(3, return_sequences=return_sequences, return_state=True)
    if bidirectional:
        layer = jlstm.Bidirectional(layer, merge_mode="mul")
    _, params = layer.init(rng, (None, 5, 2))
    x = jax.random.normal(jax.random.key(2), (2, 5, 2))
    mask = jnp.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], bool)
    count = n_states * (2 if bidirectional else 1)
    states = [jax.random.normal(k, (2, 3)) for k in jax.random.split(jax.random.key(3), count)]

    def f(p, xx, st):
        out = layer.apply(p, xx, mask=mask, initial_state=st)
        return out[0], out[1:]

    f64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64), tree)  # noqa: E731
    with jax.enable_x64():
        check_grads(f, (f64(params), f64(x), f64(states)), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("activation,recurrent_activation", [("tanh", "sigmoid"), ("relu", "hard_sigmoid")])
def test_grads_with_other_activations(cell, activation, recurrent_activation, rng):
    """tanh/sigmoid take the hand-written gate derivatives; other activations take jax.vjp."""
    acts = dict(activation=activation, recurrent_activation=recurrent_activation)
    layer = CELLS[cell][0](3, return_sequences=True, **acts)
    _, params = layer.init(rng, (None, 4, 2))
    x = jax.random.normal(jax.random.key(5), (2, 4, 2))
    f64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64), tree)  # noqa: E731
    with jax.enable_x64():
        check_grads(layer.apply, (f64(params), f64(x)), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kind,options",
    [
        ("LSTM", {}),
        ("LSTM", {"remat": True}),
        ("LSTM", {"dropout": 0.3, "recurrent_dropout": 0.3}),
        ("LSTM-bidirectional", {}),
        ("GRU", {}),
        ("GRU", {"reset_after": False}),
        ("SimpleRNN-bidirectional", {"recurrent_dropout": 0.3}),
    ],
)
def test_masked_steps_contribute_nothing_whatever_they_hold(kind, options, rng):
    """Outputs and gradients with NaN, inf or 1e30 at the masked steps equal those with
    zeros there: forwards, backwards, through remat and dropout."""
    layer = CELLS[kind.split("-")[0]][0](4, return_sequences=True, **options)
    if kind.endswith("bidirectional"):
        layer = jlstm.Bidirectional(layer)
    model = jlstm.Sequential([layer, jlstm.Dense(2)])
    _, params = model.init(rng, (None, 5, 3))
    x, mask = x_and_mask()
    mask = mask.at[0, 1].set(False)  # a hole too
    training = "dropout" in options or "recurrent_dropout" in options

    def loss(p, xx):
        out = model.apply(p, xx, mask=mask, training=training, rng=jax.random.key(4))
        return jnp.sum(jnp.where(mask[..., None], out, 0.0) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss, (0, 1)))  # one compile for every fill
    value, grads = value_and_grad(params, jnp.where(mask[..., None], x, 0.0))
    for fill in (np.nan, np.inf, 1e30):
        dirty_value, dirty_grads = value_and_grad(params, jnp.where(mask[..., None], x, fill))
        assert np.isfinite(dirty_value) and dirty_value == value, fill
        for a, b in zip(jax.tree.leaves(dirty_grads), jax.tree.leaves(grads), strict=True):
            assert np.all(np.isfinite(a)), fill
            np.testing.assert_array_equal(a, b)
