"""The cuDNN path: `jax.experimental.rnn`'s LSTM where it gives the scan's answer.

On a GPU backend an `LSTM(use_cudnn="auto")` (the default) runs through cuDNN when the
call qualifies, and through the scan otherwise; results are the scan's, Keras 3's
semantics included. A call qualifies when

- the backend is GPU (`jax.default_backend() == "gpu"`),
- activation is tanh and recurrent_activation sigmoid, float32 compute (float32 params
  and no low-precision dtype policy: a bfloat16 or mixed call runs the scan), `unroll=1`,
  `remat=False`, and no recurrent dropout acts (input dropout applies before the call),
- the mask is absent, or right-padded with every length >= 1 (`lengths` >= 1 is),
- and it is not under `jax.vmap` (cuDNN has no batching rule: there the scan runs; a
  vmapped backward pass of a cuDNN forward, as `jax.jacrev` makes, recomputes the forward
  with the scan and differentiates that).

The mask is checked in the program: `lax.cond` picks cuDNN or the scan, both compiled
once, so `apply` never reads the mask back to Python and a new mask never recompiles.
`use_cudnn=True` raises a ValueError where cuDNN cannot apply, reading a concrete mask
before the call (a traced mask that does not qualify still falls back: it is only known
when the program runs); `use_cudnn=False` always runs the scan.

cuDNN computes in float32 (`precision=HIGHEST`) unless `cudnn_allow_tf32=True`.
`why_not(layer, params, x, ...)` lists why a call would not take cuDNN.

>>> import jax, jax.numpy as jnp, jlstm
>>> layer = jlstm.LSTM(4)
>>> _, params = layer.init(jax.random.key(0), (None, 5, 3))
>>> reasons = jlstm.cudnn.why_not(layer, params, jnp.ones((2, 5, 3)))
>>> reasons == ([] if jax.default_backend() == "gpu" else ["expected a GPU backend, got cpu"])
True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

from jlstm import _checks, _recurrent, precision
from jlstm.cell import Weights, lstm_cell
from jlstm.scan import Direction, ScanResult, rnn_scan


def _on_gpu() -> bool:
    """Whether the default backend is a GPU (tests monkeypatch this)."""
    return jax.default_backend() == "gpu"


# ---------------------------------------------------------------------------------------
# The rule: which calls take cuDNN.


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))


def _static_reasons(spec: Any, dtype: Any, dropout_on: bool) -> list[str]:
    """Why a call with this spec and compute dtype cannot take cuDNN, whatever its mask."""
    checks = [
        (_on_gpu(), "a GPU backend", jax.default_backend()),
        (spec.cell.name == "lstm", "an LSTM (jax.experimental.rnn has cuDNN's LSTM only)", spec.cell.name),
        (spec.activation is jnp.tanh, "activation tanh", _name(spec.activation)),
        (spec.recurrent_activation is jax.nn.sigmoid, "recurrent_activation sigmoid", _name(spec.recurrent_activation)),
        (jnp.dtype(dtype) == jnp.float32, "float32 compute (params and dtype policy)", str(jnp.dtype(dtype))),
        (
            not (dropout_on and spec.recurrent_dropout),
            "no recurrent_dropout in training",
            f"recurrent_dropout={spec.recurrent_dropout}",
        ),
        (spec.unroll is False or (spec.unroll is not True and spec.unroll == 1), "unroll=1", f"unroll={spec.unroll!r}"),
        (not spec.remat, "remat=False (cuDNN keeps every step)", "remat=True"),
    ]
    reasons = [f"expected {want}, got {got}" for ok, want, got in checks if not ok]
    if not reasons and not _rnn_available():
        reasons.append(
            f"expected jax.experimental.rnn with lstm_fwd and lstm_bwd, got jax {jax.__version__} without them"
        )
    return reasons


def _rnn_available() -> bool:
    try:
        from jax.experimental import rnn
    except ImportError:
        return False
    return callable(getattr(rnn, "lstm_fwd", None)) and callable(getattr(rnn, "lstm_bwd", None))


def _mask_reason(mask: np.ndarray) -> str | None:
    """Why a concrete (B, T) mask cannot go to cuDNN, or None when it can."""
    lengths = mask.sum(1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        return "expected a mask right-padded (True then False in every row), got holes or left padding"
    if lengths.min() < 1:
        return f"expected every row's length >= 1, got a zero-length row (row {int(lengths.argmin())})"
    return None


def _qualifies(mask: jax.Array) -> jax.Array:
    """The in-graph form of `_mask_reason(mask) is None`: a bool scalar."""
    lengths = jnp.sum(mask, 1)
    right = jnp.arange(mask.shape[1])[None, :] < lengths[:, None]
    return jnp.all(mask == right) & jnp.all(lengths >= 1)


def _concrete(mask: jax.Array) -> np.ndarray | None:
    """The mask on the host, or None when it is traced."""
    try:
        return np.asarray(mask).astype(bool)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


class _Mask:
    """A mask's reason against cuDNN, read on the host at most once, and only if asked."""

    def __init__(self, mask: jax.Array | None):
        self.mask = mask

    @functools.cached_property
    def concrete(self) -> np.ndarray | None:
        return None if self.mask is None else _concrete(self.mask)

    @property
    def traced(self) -> bool:
        return self.mask is not None and self.concrete is None

    def reasons(self) -> list[str]:
        reason = None if self.concrete is None else _mask_reason(self.concrete)
        return [] if reason is None else [reason]


def _reasons(spec: Any, dtype: Any, mask: _Mask, dropout_on: bool) -> list[str]:
    """Why this call cannot take cuDNN; a traced mask gives no reason (it decides in the graph)."""
    return _static_reasons(spec, dtype, dropout_on) or mask.reasons()


def plan(specs: Sequence[Any], x: jax.Array, mask: jax.Array | None, dropout_on: bool, what: str) -> tuple[str, ...]:
    """Per spec: "cudnn", "scan", or "cond" (the mask decides in the program).

    Runs before JAX traces the layer. `use_cudnn=True` raises its ValueError here where
    cuDNN cannot apply, and only then is a concrete mask read on the host.
    """
    routes = []
    checked = _Mask(mask)
    for spec in specs:
        if spec.use_cudnn is False:
            routes.append("scan")
            continue
        strict = spec.use_cudnn is True
        reasons = _reasons(spec, x.dtype, checked, dropout_on) if strict else _static_reasons(spec, x.dtype, dropout_on)
        if strict and reasons:
            raise ValueError(
                f"{what}: use_cudnn=True but cuDNN cannot run this call: {'; '.join(reasons)} "
                "(use_cudnn='auto' runs the scan where cuDNN cannot)"
            )
        if reasons:
            routes.append("scan")
        elif mask is None or (strict and not checked.traced):
            routes.append("cudnn")
        else:
            routes.append("cond")
    return tuple(routes)


def why_not(
    layer: Any, params: Any, inputs: Any, *, mask: Any = None, lengths: Any = None, training: bool = False
) -> list[str]:
    """Why `layer.apply(params, inputs, mask=..., lengths=..., training=...)` would not run
    cuDNN, one line per reason; `[]` when it would.

    `layer` is a recurrent layer or a `Bidirectional` (a reason of either direction counts);
    only an LSTM runs through cuDNN.
    A traced mask is checked when the program runs, so only the other conditions show here.

    Args:
        layer: the recurrent layer (`LSTM`, `GRU`, `SimpleRNN`) or `Bidirectional` to ask about.
        params: the layer's params, as its `init` made them.
        inputs: the call's inputs (batch, timesteps, features).
        mask: the call's bool (batch, timesteps) mask, or None.
        lengths: the call's int (batch,) lengths instead of a mask, or None.
        training: whether the call trains (dropout acts only then).

    Returns:
        The reasons, each "expected ..., got ...", without repeats; `[]` when cuDNN would run.
    """
    if getattr(layer, "spec", None) is None and getattr(layer, "type_name", None) != "Bidirectional":
        got = getattr(layer, "type_name", type(layer).__name__)
        raise TypeError(f"why_not: expected a recurrent layer or a Bidirectional, got {got}")
    if layer.type_name == "Bidirectional":
        inner, backward = layer.config["layer"], layer.config["backward_layer"]
        specs, kernel = [inner.spec, (backward or inner).spec], params["forward"]["kernel"]
    else:
        specs, kernel = [layer.spec], params["kernel"]
    dtype = precision.compute_dtype(specs[0].policy, kernel.dtype, "why_not")
    x = _checks.array(inputs, "why_not inputs")
    if x.ndim != 3:
        raise ValueError(f"why_not: expected inputs of rank 3 (batch, timesteps, features), got shape {x.shape}")
    checked = _Mask(_checks.sequence_mask(mask, lengths, x.shape[0], x.shape[1], "why_not"))
    reasons: list[str] = []
    for spec in specs:
        dropout_on = bool(training and (spec.dropout or spec.recurrent_dropout))
        found = (
            ["expected use_cudnn 'auto' or True, got False"]
            if spec.use_cudnn is False
            else _reasons(spec, dtype, checked, dropout_on)
        )
        reasons += [r for r in found if r not in reasons]
    return reasons


# ---------------------------------------------------------------------------------------
# The call: jax.experimental.rnn's forward and backward, falling back to the scan under vmap.


class _Call(NamedTuple):
    """The static arguments of one cuDNN call."""

    input_size: int
    hidden_size: int
    bidirectional: bool
    allow_tf32: bool
    strict: str | None  # the layer's name where use_cudnn=True: vmap then raises


def _rnn_statics(call: _Call) -> tuple[int, int, int, float, bool, lax.Precision]:
    # input_size, hidden_size, num_layers, dropout, bidirectional, precision
    precision = lax.Precision.HIGH if call.allow_tf32 else lax.Precision.HIGHEST
    return (call.input_size, call.hidden_size, 1, 0.0, call.bidirectional, precision)


def _reference(
    call: _Call, x: jax.Array, h0: jax.Array, c0: jax.Array, w: jax.Array, lengths: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """What the cuDNN call computes, with the scan: (y, h_n, c_n) of cuDNN's layout and
    semantics (zeros past each row's length, the backward direction aligned to the input)."""
    from jax.experimental import rnn

    directions = 2 if call.bidirectional else 1
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(w, call.input_size, call.hidden_size, 1, call.bidirectional)
    result = rnn_scan(
        lstm_cell(),
        x,
        [
            Direction(Weights(w_ih[d].T, w_hh[d].T, b_ih[d] + b_hh[d]), d == 1, (h0[d], c0[d]))
            for d in range(directions)
        ],
        jnp.arange(x.shape[1])[None, :] < lengths[:, None],
        return_sequences=True,
        zero_output_for_mask=True,
    )
    seqs = result.sequences
    assert seqs is not None  # return_sequences=True
    y = seqs[0] if directions == 1 else jnp.concatenate([seqs[0], jnp.flip(seqs[1], 1)], -1)
    h_n, c_n = result.states
    return y, h_n, c_n


def _in_axes(in_batched: Sequence[bool]) -> list[int | None]:
    return [0 if b else None for b in in_batched]


@functools.cache
def _forward(call: _Call) -> custom_vmap:
    """cuDNN's forward as a custom_vmap: under vmap the scan computes it instead."""

    @custom_vmap
    def forward(x, h0, c0, w, lengths):
        from jax.experimental import rnn

        out, residuals = rnn.lstm_fwd(x, h0, c0, w, lengths, *_rnn_statics(call))
        return out, (x, h0, c0, w, lengths, residuals)

    @forward.def_vmap
    def _(axis_size, in_batched, x, h0, c0, w, lengths):
        from jax.experimental import rnn

        if call.strict is not None:
            raise ValueError(
                f"{call.strict}: use_cudnn=True but cuDNN cannot run this call: expected no "
                "jax.vmap (cuDNN has no batching rule), got a call under jax.vmap "
                "(use_cudnn='auto' runs the scan there)"
            )
        args = (x, h0, c0, w, lengths)
        out = jax.vmap(functools.partial(_reference, call), in_axes=_in_axes(in_batched), axis_size=axis_size)(*args)
        one = [jax.ShapeDtypeStruct(a.shape[1:] if b else a.shape, a.dtype) for a, b in zip(args, in_batched)]
        shapes = jax.eval_shape(lambda x, h0, c0, w, n: rnn.lstm_fwd(x, h0, c0, w, n, *_rnn_statics(call))[1], *one)
        unused = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # the backward rule recomputes
        batched = (True, True, True), tuple(in_batched) + (jax.tree.map(lambda _: False, unused),)
        return (out, args + (unused,)), batched

    return forward


@functools.cache
def _backward(call: _Call) -> custom_vmap:
    """cuDNN's backward as a custom_vmap: under vmap the scan's VJP computes it instead."""

    @custom_vmap
    def backward(residuals, cotangents):
        from jax.experimental import rnn

        dx, dh0, dc0, dw, _ = rnn.lstm_bwd(*_rnn_statics(call), residuals[-1], cotangents)
        return dx, dh0, dc0, dw

    @backward.def_vmap
    def _(axis_size, in_batched, residuals, cotangents):
        def one(x, h0, c0, w, lengths, cotangents):
            _, vjp = jax.vjp(lambda x, h0, c0, w: _reference(call, x, h0, c0, w, lengths), x, h0, c0, w)
            return vjp(cotangents)

        in_axes = _in_axes(in_batched[0][:-1]) + [tuple(_in_axes(in_batched[1]))]
        x, h0, c0, w, lengths, _ = residuals
        out = jax.vmap(one, in_axes=in_axes, axis_size=axis_size)(x, h0, c0, w, lengths, cotangents)
        return out, (True,) * 4

    return backward


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _cudnn_lstm(
    call: _Call, x: jax.Array, h0: jax.Array, c0: jax.Array, w: jax.Array, lengths: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`jax.experimental.rnn.lstm`, one layer, that falls back to the scan under vmap."""
    return _forward(call)(x, h0, c0, w, lengths)[0]


def _cudnn_lstm_fwd(call, x, h0, c0, w, lengths):
    return _forward(call)(x, h0, c0, w, lengths)


def _cudnn_lstm_bwd(call, residuals, cotangents):
    return tuple(_backward(call)(residuals, cotangents)) + (None,)


_cudnn_lstm.defvjp(_cudnn_lstm_fwd, _cudnn_lstm_bwd)


# ---------------------------------------------------------------------------------------
# Keras semantics from cuDNN's.


def _pack(params: Sequence[Any], use_bias: bool, dtype: Any) -> jax.Array:
    """cuDNN's flat weights: every direction's W_ih, W_hh, then every direction's b_ih, b_hh.
    Keras's kernel is W_ih.T with the same gate order (i, f, g=c, o), and its one bias is b_ih."""
    mats = [m.T.ravel() for p in params for m in (p["kernel"], p["recurrent_kernel"])]
    zeros = jnp.zeros(params[0]["recurrent_kernel"].shape[1], dtype)
    biases = [b for p in params for b in ((p["bias"] if use_bias else zeros), zeros)]
    return jnp.concatenate(mats + biases).astype(dtype)


def _reverse_rows(a: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Each row's first `length` steps in reverse order; the padding stays where it is."""
    if lengths is None:
        return jnp.flip(a, 1)
    t = jnp.arange(a.shape[1])[None, :]
    index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return jnp.take_along_axis(a, index[..., None], axis=1)


def _processing_order(aligned, lengths, reverse, fill):
    """A direction's outputs in the order the scan returns them (its processing order),
    with `fill` (B, U) at padded steps."""
    seq = jnp.flip(aligned, 1) if reverse else aligned
    if lengths is None:
        return seq
    t = jnp.arange(aligned.shape[1])[None, :]
    real = t >= aligned.shape[1] - lengths[:, None] if reverse else t < lengths[:, None]
    return jnp.where(real[..., None], seq, fill[:, None, :])


def _dropped_inputs(spec: _recurrent.RecurrentSpec, x: jax.Array, key: jax.Array) -> jax.Array:
    """x times the scan's input dropout mask drawn with `key` (one mask for every gate here)."""
    batch, _, features = x.shape
    masks = _recurrent.dropout_masks(spec, key, batch, features, x.dtype).inputs
    assert masks is not None  # spec.dropout > 0
    return x * masks[0][:, None, :]


def _run_cudnn(
    spec: _recurrent.RecurrentSpec,
    params: Sequence[Any],
    x: jax.Array,
    mask: jax.Array | None,
    states: _recurrent.States,
    *,
    reverse: tuple[bool, ...],
    return_sequences: bool,
    zero_output_for_mask: bool,
    dropout_rng: jax.Array | None,
    what: str,
) -> ScanResult:
    """The scan's `ScanResult` for this call, computed by cuDNN (the call qualifies)."""
    batch, timesteps, features = x.shape
    units, directions = spec.units, len(params)
    lengths = None if mask is None else jnp.sum(mask, 1, dtype=jnp.int32)
    seq_lengths = jnp.full((batch,), timesteps, jnp.int32) if lengths is None else lengths
    zeros = jnp.zeros((batch, units), x.dtype)
    h0 = [zeros] * directions if states is None else [h.astype(x.dtype) for h, _ in states]
    c0 = [zeros] * directions if states is None else [c.astype(x.dtype) for _, c in states]
    xs = [x] * directions
    if dropout_rng is not None and spec.dropout:  # the scan's input masks, drawn alike
        keys = jax.random.split(dropout_rng, directions)
        xs = [_dropped_inputs(spec, x, key) for key in keys]
    call = functools.partial(
        _Call, features, units, allow_tf32=spec.cudnn_allow_tf32, strict=what if spec.use_cudnn is True else None
    )

    aligned: dict[int, jax.Array] = {}
    h: dict[int, jax.Array] = {}
    c: dict[int, jax.Array] = {}
    if directions == 2 and xs[0] is xs[1] and set(reverse) == {False, True}:
        order = (0, 1) if reverse == (False, True) else (1, 0)  # cuDNN's forward one first
        y, h_n, c_n = _cudnn_lstm(
            call(bidirectional=True),
            x,
            jnp.stack([h0[d] for d in order]),
            jnp.stack([c0[d] for d in order]),
            _pack([params[d] for d in order], spec.use_bias, x.dtype),
            seq_lengths,
        )
        for i, d in enumerate(order):
            aligned[d], h[d], c[d] = y[..., i * units : (i + 1) * units], h_n[i], c_n[i]
    else:
        for d in range(directions):
            x_d = _reverse_rows(xs[d], lengths) if reverse[d] else xs[d]
            y, h_n, c_n = _cudnn_lstm(
                call(bidirectional=False),
                x_d,
                h0[d][None],
                c0[d][None],
                _pack([params[d]], spec.use_bias, x.dtype),
                seq_lengths,
            )
            aligned[d] = _reverse_rows(y, lengths) if reverse[d] else y
            h[d], c[d] = h_n[0], c_n[0]

    sequences = None
    if return_sequences:
        # At a padded step the scan outputs zeros, or else its state there: the last real
        # one going forwards, the initial one going backwards (padding comes first).
        fills = [zeros if zero_output_for_mask else (h0[d] if reverse[d] else h[d]) for d in range(directions)]
        sequences = jnp.stack([_processing_order(aligned[d], lengths, reverse[d], fills[d]) for d in range(directions)])
    return ScanResult(
        sequences, (jnp.stack([h[d] for d in range(directions)]), jnp.stack([c[d] for d in range(directions)]))
    )


def run_directions(
    spec: _recurrent.RecurrentSpec,
    params: Sequence[Any],
    x: jax.Array,
    mask: jax.Array | None,
    states: _recurrent.States,
    *,
    reverse: tuple[bool, ...],
    return_sequences: bool,
    zero_output_for_mask: bool,
    dropout_rng: jax.Array | None = None,
    route: str = "scan",
    what: str = "LSTM",
) -> ScanResult:
    """`jlstm._recurrent.run_directions` by the route `plan` chose: "scan", "cudnn", or
    "cond" (cuDNN when the traced mask qualifies, the scan otherwise)."""
    kwargs: dict[str, Any] = dict(
        reverse=reverse,
        return_sequences=return_sequences,
        zero_output_for_mask=zero_output_for_mask,
        dropout_rng=dropout_rng,
    )
    scan = functools.partial(_recurrent.run_directions, spec, params, x, mask, states, **kwargs)
    if route == "scan":
        return scan()
    cudnn = functools.partial(_run_cudnn, spec, params, x, mask, states, **kwargs, what=what)
    if route == "cudnn" or mask is None:
        return cudnn()
    return lax.cond(_qualifies(mask), cudnn, scan)
