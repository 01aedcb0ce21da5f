"""Dtype policies (Keras's names, Flax's param_dtype) and zero_output_for_mask.

Low-precision calls are checked against float32 on the same rounded params and inputs, with
the tolerances below (README's "Mixed precision" states them): the largest errors measured at
these shapes, across LSTM, GRU and SimpleRNN, were about a quarter of them (bfloat16: outputs
and states 4.8e-3, gradients 1.5e-2 of the largest gradient; float16: 1.0e-3 and 2.6e-3).
Against Keras with the same policy and weights, the two differ by a few units in the last
place (they round in different orders).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_scan_traces, reference

import jlstm
from jlstm import precision, stateful

keras = pytest.importorskip("keras")

B, T, F, U = 3, 6, 4, 4
LENGTHS = np.array([T, 4, 1])
MASK = np.array([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]], bool)  # holes, post, pre
F32, BF16, F16 = (jnp.dtype(d) for d in (jnp.float32, jnp.bfloat16, jnp.float16))
# Against float32 on the same rounded params and inputs: (outputs and states, absolute;
# gradients, relative to the largest entry of each gradient).
TOLERANCE = {"bfloat16": (2e-2, 5e-2), "float16": (4e-3, 1e-2)}
# Against Keras with the same policy and weights: 4 units in the last place at 1.
KERAS_TOLERANCE = {"bfloat16": 1.6e-2, "float16": 2e-3}


def data(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype(np.float32)


def jitter(params, seed=0):
    """float32 params plus noise, so that the biases are not zeros."""
    r = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: np.asarray(a, np.float32) + r.normal(scale=0.3, size=a.shape).astype(np.float32), params
    )


def cast(tree, dtype):
    return jax.tree.map(lambda a: np.asarray(a).astype(dtype), tree)


def outputs_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def layer_params(layer, input_shape, seed=0):
    """The layer's params, jittered, in its policy's variable dtype (a Bidirectional's too)."""
    _, params = layer.init(jax.random.key(0), input_shape)
    return cast(jitter(params, seed), layer.dtype_policy.variable_dtype)


# ---------------------------------------------------------------------------------------
# Low precision against float32.


@functools.cache
def value_and_grads(layer):
    """The layer's outputs and states, and the gradients of a weighted sum of them w.r.t. the
    params and the inputs, jitted, with LENGTHS as the mask."""

    def loss(params, x):
        outputs = layer.apply(params, x, lengths=LENGTHS)
        weights = [jnp.cos(jnp.arange(o.size, dtype=jnp.float32)).reshape(o.shape) for o in outputs]
        return sum(jnp.sum(o.astype(jnp.float32) * w) for o, w in zip(outputs, weights)), outputs

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def assert_scaled_close(ours, theirs, atol):
    """Gradients equal up to `atol` times the largest entry of `theirs`."""
    scale = np.max(np.abs(theirs))
    np.testing.assert_allclose(np.asarray(ours, np.float32) / scale, theirs / scale, atol=atol, rtol=0)


def check_against_float32(layer, ref_layer, params, x):
    """`layer` (a low-precision policy) against `ref_layer` in float32 on the params and
    inputs rounded to the compute dtype: what the low-precision loop reads."""
    policy = layer.dtype_policy
    compute = policy.compute_dtype
    ours = cast(params, policy.variable_dtype)
    (_, outputs), (d_params, d_x) = value_and_grads(layer)(ours, x.astype(compute))
    rounded = cast(cast(params, compute), np.float32)
    (_, ref_outputs), (ref_d_params, ref_d_x) = value_and_grads(ref_layer)(rounded, cast(x.astype(compute), np.float32))

    assert {o.dtype for o in outputs} == {compute}  # outputs and states in the compute dtype
    assert {g.dtype for g in d_params.values()} == {policy.variable_dtype}  # float32 under a mixed policy
    assert d_x.dtype == compute
    values, grads = TOLERANCE[compute.name]
    for ours_out, ref_out in zip(outputs, ref_outputs):
        np.testing.assert_allclose(np.asarray(ours_out, np.float32), ref_out, atol=values, rtol=0)
    for key in params:
        assert_scaled_close(d_params[key], ref_d_params[key], grads)
    assert_scaled_close(d_x, ref_d_x, grads)
    # the loop computes in the compute dtype: its matmuls take it
    short = {"bfloat16": "bf16", "float16": "f16"}[compute.name]
    jaxpr = str(jax.make_jaxpr(layer.apply)(ours, x)).splitlines()
    assert any("dot_general" in line and f"{short}[" in line for line in jaxpr)


def test_low_precision_matches_float32(monkeypatch):
    """bfloat16 (pure and mixed, an LSTM) and float16 (a GRU) against float32: outputs, final
    states and gradients (params and inputs), with a mask, through the scan's custom VJP."""
    cfg = dict(return_sequences=True, return_state=True)
    traces = count_scan_traces(monkeypatch)
    for make, names in ((jlstm.LSTM, ("bfloat16", "mixed_bfloat16")), (jlstm.GRU, ("float16",))):
        ref_layer = make(U, **cfg)
        _, params = ref_layer.init(jax.random.key(0), (None, T, F))
        for name in names:
            check_against_float32(make(U, dtype=name, **cfg), ref_layer, jitter(params), data())
    # the tuner's signature (so its cache key) names the dtype the loop runs in
    assert {t.dtype for t in traces} == {"float32", "bfloat16", "float16"}


def test_count_params_and_summary_are_unchanged():
    def model(**policy):
        return jlstm.Sequential(
            [
                jlstm.Bidirectional(jlstm.GRU(U, return_sequences=True, **policy)),
                jlstm.LSTM(U, **policy),
                jlstm.Dense(2, **policy),
            ]
        )

    shape = (None, T, F)
    plain = model()
    layer = model(dtype="bfloat16", param_dtype="float32")
    _, params = layer.init(jax.random.key(0), shape)
    assert jlstm.count_params(layer, shape) == jlstm.count_params(params) == jlstm.count_params(plain, shape)
    assert jlstm.summary(layer, shape) == jlstm.summary(plain, shape)
    # Keras 3's table counts bytes in the variable dtype, as Keras's own summary does
    count = jlstm.count_params(plain, shape)
    assert f"Total params: {count} ({count * 2:,.2f} B)" in jlstm.summary(
        model(dtype="bfloat16"), shape, style="keras3"
    )


# ---------------------------------------------------------------------------------------
# The arguments.


def test_policy_names_and_param_dtype():
    cases = [
        ((None, None), ("float32", F32, None)),  # no policy: computes in its params' dtype
        (("float32", None), ("float32", F32, F32)),
        (("bfloat16", None), ("bfloat16", BF16, BF16)),  # Keras: a dtype alone is both
        ((np.float16, None), ("float16", F16, F16)),
        (("mixed_bfloat16", None), ("mixed_bfloat16", F32, BF16)),
        (("mixed_float16", "float32"), ("mixed_float16", F32, F16)),  # the same, said twice
        ((jnp.bfloat16, jnp.float32), ("mixed_bfloat16", F32, BF16)),  # Flax: dtype computes, param_dtype holds
        (("float16", "float16"), ("float16", F16, F16)),
        ((None, "bfloat16"), ("bfloat16", BF16, BF16)),
        (("float32", "bfloat16"), ("params bfloat16, compute float32", BF16, F32)),
    ]
    for (dtype, param_dtype), want in cases:
        assert tuple(precision.dtype_policy(dtype, param_dtype)) == want, (dtype, param_dtype)
    # init makes params of the variable dtype (16-bit ones drawn in float32, orthogonal's QR too)
    for make in (jlstm.LSTM, jlstm.GRU, jlstm.SimpleRNN, jlstm.Dense):
        layer = make(U, dtype="float32", param_dtype="bfloat16")
        _, params = layer.init(jax.random.key(0), (None, T, F))
        assert {a.dtype for a in params.values()} == {BF16} and layer.dtype_policy.compute_dtype == F32
    bidi = jlstm.Bidirectional(jlstm.LSTM(U, dtype="mixed_float16"))
    assert bidi.dtype_policy.name == "mixed_float16" and jlstm.Sequential([bidi]).dtype_policy is None
    # a stream's state starts in the dtype the layer returns its states in
    _, params = bidi.init(jax.random.key(0), (None, T, F))
    assert {s.dtype for s in stateful.init_state(bidi, params, batch_size=2)} == {F16}
    assert repr(jlstm.LSTM(U, dtype="mixed_float16")) == "LSTM(units=4, dtype='mixed_float16')"


def test_policy_errors():
    names = r"expected one of \['float32', 'bfloat16', 'float16', 'mixed_bfloat16', 'mixed_float16'\] or a float dtype"
    with pytest.raises(ValueError, match=f"LSTM dtype: {names}.*got 'mixed_bfloat17'"):
        jlstm.LSTM(U, dtype="mixed_bfloat17")
    with pytest.raises(TypeError, match=f"GRU dtype: {names}.*got the non-float dtype int32"):
        jlstm.GRU(U, dtype="int32")
    with pytest.raises(TypeError, match=f"SimpleRNN dtype: {names}.*got 5"):
        jlstm.SimpleRNN(U, dtype=5)
    with pytest.raises(TypeError, match="Dense param_dtype: .*got the non-float dtype complex64"):
        jlstm.Dense(2, param_dtype=np.complex64)
    with pytest.raises(ValueError, match="dtype='mixed_float16' keeps float32 params, but param_dtype='bfloat16'"):
        jlstm.GRU(U, dtype="mixed_float16", param_dtype="bfloat16")
    with pytest.raises(ValueError, match="param_dtype: expected a float dtype, got the policy name 'mixed_bfloat16'"):
        jlstm.LSTM(U, param_dtype="mixed_bfloat16")
    with pytest.raises(TypeError, match="zero_output_for_mask: expected True or False, got 'yes'"):
        jlstm.SimpleRNN(U, zero_output_for_mask="yes")
    with pytest.raises(ValueError, match="one dtype policy, got 'bfloat16' .forward. and no policy"):
        jlstm.Bidirectional(jlstm.LSTM(U, dtype="bfloat16"), backward_layer=jlstm.LSTM(U, go_backwards=True))
    # params of another dtype than the policy's are refused at the call, before JAX sees them
    _, half = jlstm.LSTM(U, dtype="bfloat16").init(jax.random.key(0), (None, T, F))
    with pytest.raises(
        TypeError, match=r"expected params of float32 \(the dtype policy 'mixed_bfloat16'\), got bfloat16"
    ):
        jlstm.LSTM(U, dtype="mixed_bfloat16").apply(half, data())
    _, params = jlstm.Dense(2).init(jax.random.key(0), (None, F))
    with pytest.raises(
        TypeError, match=r"Dense: expected params of float16 \(the dtype policy 'float16'\), got float32"
    ):
        jlstm.Dense(2, dtype="float16").apply(params, data())


# ---------------------------------------------------------------------------------------
# Against Keras's own numbers.


def keras_twin(klayer, params, input_shape):
    """`klayer` built and holding jlstm's `params` (a Bidirectional's two directions in turn)."""
    trees = [params["forward"], params["backward"]] if "forward" in params else [params]
    with reference():
        klayer.build(input_shape)
        klayer.set_weights([np.asarray(p[k]) for p in trees for k in ("kernel", "recurrent_kernel", "bias") if k in p])
    return klayer


def keras_call(klayer, x, **kwargs):
    with reference():
        return outputs_list(klayer(x, **kwargs))


def assert_like_keras(ours, theirs, atol):
    """The same outputs, of the same dtypes, to `atol`."""
    ours, theirs = outputs_list(ours), outputs_list(theirs)
    assert [o.dtype for o in ours] == [t.dtype for t in theirs]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=atol, rtol=atol)


def test_policies_match_keras():
    """Keras 3 with the same policy and weights: outputs and states of its dtype and values."""
    x = data(1)
    cases = [
        (jlstm.LSTM(U, return_sequences=True, return_state=True, dtype="mixed_bfloat16"), keras.layers.LSTM),
        (jlstm.SimpleRNN(U, return_state=True, go_backwards=True, dtype="bfloat16"), keras.layers.SimpleRNN),
    ]
    for layer, kind in cases:
        params = layer_params(layer, (None, T, F))
        # Keras draws its variables in the variable dtype, and its orthogonal (a QR) fails in 16 bits
        cfg = {k: layer.config[k] for k in ("return_sequences", "return_state", "go_backwards", "dtype")}
        klayer = keras_twin(kind(U, recurrent_initializer="glorot_uniform", **cfg), params, (None, T, F))
        ours = layer.apply(params, x, mask=MASK)
        assert {o.dtype for o in outputs_list(ours)} == {layer.dtype_policy.compute_dtype}
        assert_like_keras(ours, keras_call(klayer, x, mask=MASK), KERAS_TOLERANCE["bfloat16"])
    dense = jlstm.Dense(3, activation="tanh", dtype="mixed_float16")
    params = layer_params(dense, (None, F))
    kdense = keras_twin(keras.layers.Dense(3, activation="tanh", dtype="mixed_float16"), params, (None, F))
    assert_like_keras(dense.apply(params, x), keras_call(kdense, x), KERAS_TOLERANCE["float16"])
    # Keras's Bidirectional casts to its own policy: given the layer's, the outputs agree
    bidi = jlstm.Bidirectional(jlstm.GRU(U, return_sequences=True, dtype="float16"), merge_mode="sum")
    params = layer_params(bidi, (None, T, F))
    kgru = keras.layers.GRU(U, return_sequences=True, dtype="float16", recurrent_initializer="glorot_uniform")
    kbidi = keras_twin(keras.layers.Bidirectional(kgru, merge_mode="sum", dtype="float16"), params, (None, T, F))
    ours = bidi.apply(params, x, mask=MASK)
    assert ours.dtype == F16
    assert_like_keras(ours, keras_call(kbidi, x, mask=MASK), 2 * KERAS_TOLERANCE["float16"])


def test_zero_output_for_mask_matches_keras():
    """Keras's numbers with a mask of holes, post- and pre-padding: zeros at the masked steps
    of a returned sequence; without return_sequences, zeros in the rows whose last step read
    is masked (Keras 3 returns the last step of its zeroed sequence); the states as without.
    The scan's VJP of zeroed steps is Bidirectional's (it zeroes them always), whose gradients
    test_keras_parity checks against Keras's."""
    x = data(2)
    cases = [
        (jlstm.LSTM, dict(go_backwards=True)),
        (jlstm.GRU, dict(return_sequences=True, go_backwards=True)),
        (jlstm.SimpleRNN, dict(return_state=True)),
    ]
    for make, cfg in cases:
        layer = make(U, zero_output_for_mask=True, **cfg)
        params = layer_params(layer, (None, T, F), seed=3)
        klayer = keras_twin(
            getattr(keras.layers, layer.type_name)(U, zero_output_for_mask=True, **cfg), params, (None, T, F)
        )
        ours = outputs_list(layer.apply(params, x, mask=MASK))
        assert_like_keras(ours, keras_call(klayer, x, mask=MASK), 1e-5)
        zeroed = ~MASK[:, ::-1] if cfg.get("go_backwards") else ~MASK  # in processing order
        if cfg.get("return_sequences"):
            assert np.all(ours[0][zeroed] == 0) and np.all(ours[0][~zeroed] != 0)
        else:
            assert np.array_equal(np.all(ours[0] == 0, -1), zeroed[:, -1])


def test_bidirectional_ignores_its_layers_zero_output_for_mask():
    """Keras 3's Bidirectional sets its layers' zero_output_for_mask to return_sequences, and
    so does jlstm's: the inner layer's True changes nothing, as in Keras."""
    x = data(5)
    layer = jlstm.Bidirectional(jlstm.GRU(U, zero_output_for_mask=True))
    params = layer_params(layer, (None, T, F))
    kbidi = keras_twin(keras.layers.Bidirectional(keras.layers.GRU(U, zero_output_for_mask=True)), params, (None, T, F))
    ours = layer.apply(params, x, mask=MASK)
    assert_like_keras(ours, keras_call(kbidi, x, mask=MASK), 1e-5)
    np.testing.assert_array_equal(ours, jlstm.Bidirectional(jlstm.GRU(U)).apply(params, x, mask=MASK))
