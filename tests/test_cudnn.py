"""The cuDNN path on CPU: `jax.experimental.rnn`'s forward and backward replaced by stand-ins
built on its pure-JAX `lstm_ref`, and the backend reported as GPU, so that the whole dispatch
(weight packing, Keras semantics, fallbacks, vmap) runs here and must equal the scan to 1e-5.

The stand-ins behave as cuDNN does where it matters: float32 and int32 lengths only, zeros
at padded steps, no batching rule, and they count the calls that run (not only traced).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_scan_traces, reference
from jax import lax
from jax.custom_batching import custom_vmap
from jax.experimental import rnn

import jlstm
from jlstm import cudnn

B, T, F, U = 3, 7, 4, 5
LENGTHS = np.array([T, 4, 1])  # a full row, a padded one, a one-step one
MASKS = {
    "holes": np.array([[1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0]], bool),
    "pre": np.arange(T)[None, :] >= np.array([0, 3, 6])[:, None],
    "zero-length": np.arange(T)[None, :] < np.array([T, 0, 2])[:, None],
}
LSTM_REF = rnn.lstm_ref


class FakeCudnn:
    """`rnn.lstm_fwd` / `rnn.lstm_bwd` (the two halves of `rnn.lstm`) on `rnn.lstm_ref`."""

    def __init__(self):
        self.runs = []  # one entry per forward call that ran
        self.precisions = []  # as traced

    def count(self):
        jax.effects_barrier()
        return len(self.runs)

    @staticmethod
    def reference(x, h0, c0, w, lengths, input_size, hidden_size, num_layers, dropout, bidirectional):
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(w, input_size, hidden_size, num_layers, bidirectional)
        with reference():  # JAX's reference LSTM stands in for cuDNN
            return LSTM_REF(
                x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, input_size, hidden_size, num_layers, dropout, bidirectional
            )

    def lstm_fwd(
        self, x, h0, c0, w, seq_lengths, input_size, hidden_size, num_layers, dropout, bidirectional, precision
    ):
        if seq_lengths.dtype != jnp.int32:
            raise NotImplementedError("`seq_lengths` can only be int32.")
        if x.dtype != jnp.float32:
            raise NotImplementedError(f"cuDNN LSTM lowers for float32 only, got {x.dtype}")
        self.precisions.append(precision)
        statics = (input_size, hidden_size, num_layers, dropout, bidirectional)

        @custom_vmap
        def forward(x, h0, c0, w, lengths):
            jax.debug.callback(lambda: self.runs.append(1))
            return self.reference(x, h0, c0, w, lengths, *statics)

        forward.def_vmap(_no_batching_rule("rnn_fwd"))
        return forward(x, h0, c0, w, seq_lengths), (x, h0, c0, w, seq_lengths)

    def lstm_bwd(self, input_size, hidden_size, num_layers, dropout, bidirectional, precision, residuals, gradients):
        statics = (input_size, hidden_size, num_layers, dropout, bidirectional)

        @custom_vmap
        def backward(x, h0, c0, w, lengths, gradients):
            _, vjp = jax.vjp(lambda *a: self.reference(*a, lengths, *statics), x, h0, c0, w)
            return vjp(gradients)

        backward.def_vmap(_no_batching_rule("rnn_bwd"))
        return (*backward(*residuals, gradients), jnp.zeros_like(residuals[4]))


def _no_batching_rule(name):
    def rule(*_):
        raise NotImplementedError(f"Batching rule for '{name}' not implemented")

    return rule


@pytest.fixture
def fake(monkeypatch):
    stand_in = FakeCudnn()
    monkeypatch.setattr(cudnn, "_on_gpu", lambda: True)
    monkeypatch.setattr(rnn, "lstm_fwd", stand_in.lstm_fwd)
    monkeypatch.setattr(rnn, "lstm_bwd", stand_in.lstm_bwd)
    return stand_in


def data(seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(B, T, F)).astype(np.float32)
    states = [r.normal(size=(B, U)).astype(np.float32) for _ in range(4)]
    return x, states


@functools.cache
def twins(kind, use_cudnn="auto", **cfg):
    """The same layer with `use_cudnn` and with False, and its params (built once)."""
    make = {
        "lstm": lambda **o: jlstm.LSTM(U, **cfg, **o),
        "bidirectional": lambda **o: jlstm.Bidirectional(
            jlstm.LSTM(U, **{k: v for k, v in cfg.items() if k != "merge_mode"}, **o),
            merge_mode=cfg.get("merge_mode", "concat"),
        ),
    }[kind]
    on, off = make(use_cudnn=use_cudnn), make(use_cudnn=False)
    _, params = on.init(jax.random.key(0), (None, T, F))
    return on, off, params


def assert_close(ours, theirs):
    ours, theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=1e-5, rtol=1e-5)


def weighted_sum(outputs):
    """A scalar that every output element reaches with its own weight."""
    leaves = jax.tree.leaves(outputs)
    return sum(jnp.sum(o * jnp.cos(jnp.arange(o.size, dtype=o.dtype)).reshape(o.shape)) for o in leaves)


def check_outputs(fake, kind, cfg, n_states):
    """Outputs with lengths and initial state as the scan's (use_cudnn=True: the lengths are
    checked before the call, and the program has no scan to fall back to)."""
    on, off, params = twins(kind, use_cudnn=True, **cfg)
    x, states = data()
    state = states[:n_states]
    assert_close(
        on.apply(params, x, lengths=LENGTHS, initial_state=state),
        off.apply(params, x, lengths=LENGTHS, initial_state=state),
    )
    assert fake.count() == 1  # one cuDNN call (fused for a Bidirectional)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_matches_the_scan(fake, return_sequences, return_state, go_backwards):
    cfg = dict(return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards)
    check_outputs(fake, "lstm", cfg, 2)


def test_zero_output_for_mask_matches_the_scan(fake):
    check_outputs(fake, "lstm", dict(return_sequences=True, return_state=True, zero_output_for_mask=True), 2)


@pytest.mark.parametrize(
    "merge_mode,return_sequences,return_state",
    [
        ("concat", True, True),
        ("sum", False, False),
        ("mul", True, False),
        ("ave", False, True),
        (None, True, True),
    ],
)
def test_bidirectional_matches_the_scan(fake, merge_mode, return_sequences, return_state):
    cfg = dict(return_sequences=return_sequences, return_state=return_state, merge_mode=merge_mode)
    check_outputs(fake, "bidirectional", cfg, 4)


@pytest.mark.parametrize(
    "kind,cfg,n_states,calls",
    [
        ("lstm", dict(return_sequences=True, return_state=True), 2, 1),
        ("lstm", dict(return_sequences=True, return_state=True, go_backwards=True), 2, 2),
        ("bidirectional", dict(return_sequences=True, return_state=True, merge_mode="concat"), 4, 1),
    ],
)
def test_gradients_match_the_scan(fake, kind, cfg, n_states, calls):
    """Values and gradients (params, inputs, initial state) under jit with traced lengths
    (and, in one case, of a second call with no mask)."""
    on, off, params = twins(kind, **cfg)
    x, states = data()

    def loss(layer):
        def f(params, x, state, lengths):
            value = weighted_sum(layer.apply(params, x, lengths=lengths, initial_state=state))
            return value + weighted_sum(layer.apply(params, x)) if calls == 2 else value

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

    assert_close(loss(on)(params, x, states[:n_states], LENGTHS), loss(off)(params, x, states[:n_states], LENGTHS))
    assert fake.count() == calls


@pytest.mark.parametrize("kind,n_states", [("lstm", 2), ("bidirectional", 4)])
@pytest.mark.parametrize("mask_kind", list(MASKS))
def test_masks_cudnn_cannot_take_fall_back(fake, kind, n_states, mask_kind):
    """Holes, pre-padding and zero-length rows run the scan (the program checks the mask)."""
    on, off, params = twins(kind, return_sequences=True, return_state=True)
    x, states = data(1)
    mask = MASKS[mask_kind]
    assert cudnn.why_not(on, params, x, mask=mask) == [cudnn._mask_reason(mask)]
    assert_close(
        on.apply(params, x, mask=mask, initial_state=states[:n_states]),
        off.apply(params, x, mask=mask, initial_state=states[:n_states]),
    )
    assert fake.count() == 0


def test_a_new_mask_does_not_recompile(fake, monkeypatch):
    """With "auto" the program checks the mask: one compile for every mask of a shape."""
    layer = jlstm.LSTM(U, return_sequences=True)
    _, params = layer.init(jax.random.key(2), (None, T, F))
    x, _ = data()
    traced = count_scan_traces(monkeypatch)
    for mask, runs in (
        (np.arange(T)[None, :] < LENGTHS[:, None], 1),
        (MASKS["holes"], 1),
        (MASKS["pre"], 1),
        (np.ones((B, T), bool), 2),
    ):
        layer.apply(params, x, mask=mask)
        assert fake.count() == runs
    assert len(traced) == 1


def test_under_vmap_the_scan_runs(fake):
    """The stand-in has no batching rule, as cuDNN: vmap, vmap of grad, grad of vmap and
    jacrev (a vmap over cotangents) take the scan where they batch it."""
    on, off, params = twins("lstm", return_sequences=True, return_state=True)
    x, states = data(2)
    ensemble = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    x_two = jnp.stack([x, -x])

    def loss(layer):
        return lambda p, x: sum(jnp.sum(jnp.sin(o)) for o in layer.apply(p, x, lengths=LENGTHS))

    def both(transform):
        return [jax.jit(transform(loss(layer)))(ensemble, x_two) for layer in (on, off)]

    assert_close(*both(jax.vmap))
    ours, theirs = both(lambda f: jax.vmap(jax.grad(f, argnums=(0, 1))))
    assert_close(ours, theirs)
    # each member's loss depends on its own params and inputs only: the same gradients
    grad_of_vmap = jax.grad(lambda p, x: jax.vmap(loss(on))(p, x).sum(), argnums=(0, 1))
    assert_close(jax.jit(grad_of_vmap)(ensemble, x_two), theirs)
    assert fake.count() == 0
    out = lambda layer: lambda x: layer.apply(params, x, lengths=LENGTHS)[0]  # noqa: E731
    assert_close(jax.jit(jax.jacrev(out(on)))(x), jax.jit(jax.jacrev(out(off)))(x))
    assert fake.count() == 1  # jacrev's forward ran on "cuDNN", its vmapped backward on the scan


def test_dropout(fake):
    """Input dropout is applied before the call, with the scan's masks; recurrent dropout
    only in training keeps a layer off cuDNN."""
    x, _ = data(3)
    key = jax.random.key(7)
    for kind, calls in (("lstm", 1), ("bidirectional", 2)):  # one call per direction: masks differ
        on, off, params = twins(kind, use_cudnn=True, return_sequences=True, dropout=0.3)
        before = fake.count()
        assert_close(
            on.apply(params, x, lengths=LENGTHS, training=True, rng=key),
            off.apply(params, x, lengths=LENGTHS, training=True, rng=key),
        )
        assert fake.count() - before == calls
    on, off, params = twins("lstm", use_cudnn=True, return_sequences=True, recurrent_dropout=0.3)
    assert cudnn.why_not(on, params, x, training=True) == [
        "expected no recurrent_dropout in training, got recurrent_dropout=0.3"
    ]
    assert_close(on.apply(params, x), off.apply(params, x))  # not in training: cuDNN
    assert fake.count() == 4


def test_bidirectional_with_its_own_backward_layer(fake):
    """A backward layer of another spec runs on its own, on cuDNN where it qualifies and on
    the scan where it does not (relu); with go_backwards swapped, one fused call."""
    x, states = data(4)
    cases = [
        (
            jlstm.LSTM(U, return_sequences=True),
            jlstm.LSTM(U, go_backwards=True, return_sequences=True, activation="relu"),
            1,
        ),
        (jlstm.LSTM(U, go_backwards=True, return_sequences=True), jlstm.LSTM(U, return_sequences=True), 1),
    ]
    for forward, backward, calls in cases:
        configs = [dict(forward.config), dict(backward.config)]
        on = jlstm.Bidirectional(forward, backward_layer=backward, merge_mode="concat")
        off = jlstm.Bidirectional(
            jlstm.LSTM(**{**configs[0], "use_cudnn": False}),
            backward_layer=jlstm.LSTM(**{**configs[1], "use_cudnn": False}),
        )
        _, params = on.init(jax.random.key(1), (None, T, F))
        before = fake.count()
        assert_close(on.apply(params, x, lengths=LENGTHS), off.apply(params, x, lengths=LENGTHS))
        assert fake.count() - before == calls


def test_no_bias_and_float32_only(fake):
    x, states = data(5)
    on, off, params = twins("lstm", return_sequences=True, use_bias=False)
    assert_close(on.apply(params, x, lengths=LENGTHS), off.apply(params, x, lengths=LENGTHS))
    assert fake.count() == 1
    on, off, params = twins("bidirectional", return_sequences=True)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert cudnn.why_not(on, half, x) == ["expected float32 compute (params and dtype policy), got bfloat16"]
    assert_close(on.apply(half, x, lengths=LENGTHS), off.apply(half, x, lengths=LENGTHS))
    assert fake.count() == 1


def test_precision(fake):
    x, _ = data(6)
    for allow_tf32, precision in ((False, lax.Precision.HIGHEST), (True, lax.Precision.HIGH)):
        layer = jlstm.LSTM(U, cudnn_allow_tf32=allow_tf32)
        _, params = layer.init(jax.random.key(0), (None, T, F))
        layer.apply(params, x)
        assert fake.precisions[-1] == precision


def test_use_cudnn_true_raises_off_gpu(rng):
    for layer in (jlstm.LSTM(U, use_cudnn=True), jlstm.Bidirectional(jlstm.LSTM(U, use_cudnn=True))):
        _, params = layer.init(rng, (None, T, F))
        x, _ = data()
        backend = jax.default_backend()
        with pytest.raises(
            ValueError, match=f"use_cudnn=True but cuDNN cannot run this call: expected a GPU backend, got {backend}"
        ):
            layer.apply(params, x)
        with pytest.raises(ValueError, match="expected a GPU backend"):
            jax.jit(layer.apply)(params, x)
        assert cudnn.why_not(layer, params, x) == [f"expected a GPU backend, got {backend}"]


def test_use_cudnn_true_raises_where_cudnn_cannot(fake, rng):
    x, _ = data()

    def fails(match, *, mask=None, training=False, **cfg):
        layer = jlstm.LSTM(U, use_cudnn=True, **cfg)
        _, params = layer.init(rng, (None, T, F))
        with pytest.raises(ValueError, match=match):
            layer.apply(params, x, mask=mask, training=training, rng=rng)

    fails("expected activation tanh, got relu", activation="relu")
    fails("expected recurrent_activation sigmoid, got hard_sigmoid", recurrent_activation="hard_sigmoid")
    fails("expected unroll=1, got unroll=2", unroll=2)
    fails("expected remat=False", remat=True)
    fails(r"expected float32 compute \(params and dtype policy\), got bfloat16", dtype="mixed_bfloat16")
    fails("expected no recurrent_dropout in training, got recurrent_dropout=0.2", recurrent_dropout=0.2, training=True)
    fails("expected a mask right-padded .* got holes or left padding", mask=MASKS["holes"])
    fails("expected every row's length >= 1, got a zero-length row .row 1.", mask=MASKS["zero-length"])
    layer = jlstm.LSTM(U, use_cudnn=True)
    _, params = layer.init(rng, (None, T, F))
    with pytest.raises(ValueError, match="expected no jax.vmap"):
        jax.vmap(lambda x: layer.apply(params, x))(jnp.stack([x, x]))
    assert fake.count() == 0
    layer.apply(params, x, lengths=LENGTHS)  # qualifies: runs
    assert fake.count() == 1


def test_arguments_are_checked():
    with pytest.raises(ValueError, match=r"LSTM use_cudnn: expected 'auto', True or False, got 1"):
        jlstm.LSTM(U, use_cudnn=1)
    with pytest.raises(ValueError, match="got 'yes'"):
        jlstm.LSTM(U, use_cudnn="yes")
    with pytest.raises(TypeError, match="cudnn_allow_tf32: expected True or False, got 'no'"):
        jlstm.LSTM(U, cudnn_allow_tf32="no")
    with pytest.raises(TypeError, match="why_not: expected a recurrent layer or a Bidirectional, got Dense"):
        cudnn.why_not(jlstm.Dense(3), {}, np.zeros((1, 2, 3)))
    inner = jlstm.LSTM(U, use_cudnn=False, cudnn_allow_tf32=True)
    assert jlstm.Bidirectional(inner).config["layer"].config["use_cudnn"] is False


def test_why_not(fake, rng):
    x, _ = data()
    layer = jlstm.Bidirectional(jlstm.LSTM(U), backward_layer=jlstm.LSTM(U, go_backwards=True, activation="relu"))
    _, params = layer.init(rng, (None, T, F))
    assert cudnn.why_not(layer, params, x) == ["expected activation tanh, got relu"]
    plain = jlstm.LSTM(U, dropout=0.2, recurrent_dropout=0.2)
    _, params = plain.init(rng, (None, T, F))
    assert cudnn.why_not(plain, params, x, lengths=LENGTHS) == []
    assert cudnn.why_not(plain, params, x, training=True) == [
        "expected no recurrent_dropout in training, got recurrent_dropout=0.2"
    ]
    off = jlstm.LSTM(U, use_cudnn=False)
    assert cudnn.why_not(off, params, x) == ["expected use_cudnn 'auto' or True, got False"]
    mixed = jlstm.LSTM(U, dtype="mixed_float16")  # float32 params, float16 compute: the scan
    assert cudnn.why_not(mixed, params, x) == ["expected float32 compute (params and dtype policy), got float16"]


@pytest.mark.parametrize("make", [jlstm.GRU, jlstm.SimpleRNN])
def test_other_cells_run_the_scan_on_a_gpu(fake, rng, make):
    """jax.experimental.rnn has cuDNN's LSTM only: a GRU or SimpleRNN scans, says why, and
    a GRU with use_cudnn=True refuses."""
    x, _ = data()
    layer = jlstm.Bidirectional(make(U, return_sequences=True))
    _, params = layer.init(rng, (None, T, F))
    layer.apply(params, x, lengths=LENGTHS)
    assert fake.count() == 0
    reasons = cudnn.why_not(layer, params, x)
    assert reasons[0].startswith("expected an LSTM (jax.experimental.rnn has cuDNN's LSTM only), got ")
    if make is jlstm.GRU:
        strict = jlstm.GRU(U, use_cudnn=True)
        _, params = strict.init(rng, (None, T, F))
        with pytest.raises(ValueError, match="use_cudnn=True but cuDNN cannot run this call: expected an LSTM"):
            strict.apply(params, x)
