"""Bad input fails at the call with a ValueError/TypeError naming expected and received."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jlstm
from jlstm.cli import main

SHAPE = (None, 6, 3)
# Every recurrent layer gets the same bad-input suite: its constructor, its gate count and
# how many state arrays it carries.
KINDS = {"LSTM": (jlstm.LSTM, 4, 2), "GRU": (jlstm.GRU, 3, 1), "SimpleRNN": (jlstm.SimpleRNN, 1, 1)}


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


@pytest.fixture
def lstm(rng, kind):
    """A recurrent layer of each kind (named for the first), with its params."""
    layer = KINDS[kind][0](4)
    return layer, layer.init(rng, SHAPE)[1]


@pytest.fixture
def bidi(rng, kind):
    layer = jlstm.Bidirectional(KINDS[kind][0](4))
    return layer, layer.init(rng, SHAPE)[1]


X = np.zeros((2, 6, 3), np.float32)


@pytest.mark.parametrize(
    "x,match",
    [
        (np.zeros((6, 3), np.float32), r"rank 3.*got shape \(6, 3\)"),
        (np.zeros((1, 2, 6, 3), np.float32), r"rank 3.*got shape \(1, 2, 6, 3\)"),
        (np.zeros((2, 6, 5), np.float32), r"3 features.*got shape \(2, 6, 5\)"),
    ],
)
def test_bad_inputs(lstm, bidi, x, match):
    for layer, params in (lstm, bidi):
        with pytest.raises(ValueError, match=match):
            layer.apply(params, x)


def test_non_numeric_inputs(lstm):
    layer, params = lstm
    with pytest.raises(TypeError, match="numeric"):
        layer.apply(params, np.array([[["a"] * 3] * 6]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mask": np.ones((2, 5), bool)}, r"mask of shape \(batch, timesteps\) = \(2, 6\), got \(2, 5\)"),
        ({"mask": np.ones((6, 2), bool)}, r"got \(6, 2\)"),
        ({"mask": np.ones((2, 6), np.float32)}, "bool or int mask"),
        ({"lengths": np.array([1, 2, 3])}, r"lengths as int \(2,\)"),
        ({"lengths": np.array([1, 2]), "mask": np.ones((2, 6), bool)}, "expected mask or lengths, got both"),
    ],
)
def test_bad_masks(lstm, kwargs, match):
    layer, params = lstm
    with pytest.raises((ValueError, TypeError), match=match):
        layer.apply(params, X, **kwargs)


def test_bad_initial_state(lstm, kind):
    layer, params = lstm
    n = KINDS[kind][2]
    cases = [
        ([np.zeros((2, 4))] * (n + 1), f"{n} arrays, got list of {n + 1}"),
        (
            [np.zeros((2, 4))] * (n - 1) + [np.zeros((2, 5))],
            rf"initial_state\[{n - 1}\] of shape \(2, 4\), got \(2, 5\)",
        ),
        ([np.zeros((3, 4))] * n, r"initial_state\[0\] of shape \(2, 4\), got \(3, 4\)"),
    ]
    if n == 1:  # a single state may come bare, as Keras takes it
        cases.append((np.zeros((2, 5)), r"initial_state\[0\] of shape \(2, 4\), got \(2, 5\)"))
    else:
        cases.append((np.zeros((2, 4)), f"{n} arrays, got ndarray"))
    for state, match in cases:
        with pytest.raises(ValueError, match=match):
            layer.apply(params, X, initial_state=state)


def test_bidirectional_wants_both_directions_states(bidi, kind):
    layer, params = bidi
    n = 2 * KINDS[kind][2]
    with pytest.raises(ValueError, match=f"{n} arrays, got list of 1"):
        layer.apply(params, X, initial_state=[np.zeros((2, 4))])
    with pytest.raises(ValueError, match=f"{n} arrays, got ndarray"):
        layer.apply(params, X, initial_state=np.zeros((2, 4)))


@pytest.mark.parametrize(
    "units,error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("5", TypeError), (True, TypeError), (None, TypeError)],
)
def test_units_must_be_a_positive_int(units, error):
    for make in (jlstm.LSTM, jlstm.GRU, jlstm.SimpleRNN, jlstm.Dense):
        with pytest.raises(error, match="positive int"):
            make(units)


def test_unknown_names(kind):
    make = KINDS[kind][0]
    with pytest.raises(ValueError, match=r"merge_mode: expected one of .*got 'max'"):
        jlstm.Bidirectional(make(3), merge_mode="max")
    with pytest.raises(ValueError, match=f"{kind} activation: expected one of .*'tanhh'"):
        make(3, activation="tanhh")
    if kind != "SimpleRNN":
        with pytest.raises(ValueError, match=f"{kind} recurrent_activation: expected one of .*'tanhh'"):
            make(3, recurrent_activation="tanhh")
    with pytest.raises(ValueError, match=f"{kind} kernel_initializer: expected one of .*'glorot'"):
        make(3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="Dense activation: expected one of .*'soft_max'"):
        jlstm.Dense(3, "soft_max")
    with pytest.raises(ValueError, match="dropout.*got 1.5"):
        make(3, dropout=1.5)
    with pytest.raises(TypeError, match=r"expected a jlstm recurrent layer \(LSTM, GRU, SimpleRNN\), got Dense"):
        jlstm.Bidirectional(jlstm.Dense(3))
    with pytest.raises(ValueError, match="different go_backwards"):
        jlstm.Bidirectional(make(3, go_backwards=True))
    with pytest.raises(ValueError, match="same return_sequences"):
        jlstm.Bidirectional(make(3), backward_layer=make(3, go_backwards=True, return_sequences=True))
    with pytest.raises(TypeError, match=f"{kind} go_backwards: expected True or False, got 1"):
        make(3, go_backwards=1)


def test_params_of_the_wrong_layer(lstm, bidi, rng, kind):
    layer, params = lstm
    make, gates, _ = KINDS[kind]
    _, bidi_params = bidi
    with pytest.raises(
        ValueError, match=r"keys \['bias', 'kernel', 'recurrent_kernel'\], got \['backward', 'forward'\]"
    ):
        layer.apply(bidi_params, X)
    with pytest.raises(ValueError, match=r"keys \['backward', 'forward'\]"):
        bidi[0].apply(params, X)
    _, wide = make(6).init(rng, SHAPE)
    with pytest.raises(ValueError, match=rf"params\['kernel'\] of shape \(\?, {4 * gates}\), got \(3, {6 * gates}\)"):
        layer.apply(wide, X)
    with pytest.raises(TypeError, match="dict"):
        layer.apply([params], X)
    _, other = make(4).init(rng, (None, 6, 5))
    with pytest.raises(ValueError, match=rf"params\['kernel'\] of shape \(3, {4 * gates}\), got \(5, {4 * gates}\)"):
        bidi[0].apply({"forward": params, "backward": other}, X)
    stack = jlstm.Sequential([jlstm.LSTM(4)])
    with pytest.raises(ValueError, match="tuple of 1, got dict"):
        stack.apply(params, X)


@pytest.mark.parametrize(
    "shape,error,match",
    [
        ((None, 3), ValueError, r"rank 3.*got \(None, 3\)"),
        ((None, 6, 0), ValueError, "features"),
        ((None, 6, None), TypeError, "features"),
        (5, TypeError, "input_shape"),
    ],
)
def test_bad_input_shapes(shape, error, match, rng, kind):
    make = KINDS[kind][0]
    with pytest.raises(error, match=match):
        make(4).init(rng, shape)
    with pytest.raises(error, match=match):
        jlstm.count_params(jlstm.Bidirectional(make(4)), shape)


def test_errors_come_before_jax_under_jit(lstm):
    layer, params = lstm
    with pytest.raises(ValueError, match="3 features"):
        jax.jit(layer.apply)(params, jnp.zeros((2, 6, 4)))


def test_gru_bias_layout(rng):
    _, params = jlstm.GRU(4).init(rng, SHAPE)
    with pytest.raises(ValueError, match=r"params\['bias'\] of shape \(12,\), got \(2, 12\)"):
        jlstm.GRU(4, reset_after=False).apply(params, X)
    with pytest.raises(TypeError, match="GRU reset_after: expected True or False"):
        jlstm.GRU(4, reset_after="yes")
    with pytest.raises(ValueError, match="use_cudnn: expected 'auto', True or False, got 1"):
        jlstm.GRU(4, use_cudnn=1)


def test_more_bad_inputs(lstm, rng):
    layer, params = lstm
    with pytest.raises(ValueError, match=r"at least one timestep, got shape \(2, 0, 3\)"):
        layer.apply(params, np.zeros((2, 0, 3), np.float32))
    with pytest.raises(TypeError, match="real numeric array, got dtype complex"):
        layer.apply(params, np.zeros((2, 6, 3), np.complex64))
    with pytest.raises(TypeError, match="mask_value"):
        jlstm.Masking("a")
    with pytest.raises(ValueError, match=r"rank 3.*got shape \(3,\)"):
        jlstm.Masking().apply({}, np.ones(3))
    with pytest.raises(TypeError, match="input_shape"):
        jlstm.Dense(3).init(rng, 5)
    with pytest.raises(ValueError, match="same units, got 4 .forward. and 6 .backward."):
        jlstm.Bidirectional(jlstm.LSTM(4), backward_layer=jlstm.LSTM(6, go_backwards=True), merge_mode="ave")


def test_inputs_take_the_params_dtype(lstm, kind):
    layer, params = lstm
    out = layer.apply(params, np.ones((2, 6, 3), jnp.bfloat16))
    assert out.dtype == jnp.float32  # as Keras casts inputs to the layer's float32
    np.testing.assert_array_equal(out, layer.apply(params, np.ones((2, 6, 3), np.int32)))
    # int64 values beyond int32 are cast to float, not wrapped as JAX's int32 would
    big = np.full((2, 6, 3), 2**40 + 3)
    np.testing.assert_array_equal(layer.apply(params, big), layer.apply(params, big.astype(np.float32)))
    state = (np.full((2, 4), 2**40 + 3),) * KINDS[kind][2]
    np.testing.assert_array_equal(
        layer.apply(params, X, initial_state=state),
        layer.apply(params, X, initial_state=[s.astype(np.float32) for s in state]),
    )
    y = jlstm.Dropout(0.25).apply({}, np.full((4, 8), 3), training=True, rng=jax.random.key(0))
    assert set(np.unique(y).tolist()) <= {0.0, 4.0}


def test_bidirectional_with_a_wider_backward_layer(rng):
    layer = jlstm.Bidirectional(
        jlstm.LSTM(4, return_sequences=True), backward_layer=jlstm.LSTM(6, go_backwards=True, return_sequences=True)
    )
    shape, params = layer.init(rng, SHAPE)
    assert shape == (None, 6, 10)
    assert layer.apply(params, X).shape == (2, 6, 10)


def step(kind, params, state, x_t):
    if kind == "LSTM":
        return jlstm.lstm_step(params, state, x_t)
    return (jlstm.gru_step if kind == "GRU" else jlstm.simple_rnn_step)(params, state[0], x_t)


def test_step_and_rng_checks(lstm, kind):
    layer, params = lstm
    n = KINDS[kind][2]
    with pytest.raises(ValueError, match=r"x_t of shape \(batch, 3\), got \(2, 5\)"):
        step(kind, params, (np.zeros((2, 4)),) * n, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=rf"initial_state\[{n - 1}\] of shape \(2, 4\), got \(2, 3\)"):
        step(kind, params, (np.zeros((2, 4)),) * (n - 1) + (np.zeros((2, 3)),), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"params\['kernel'\] of shape"):
        step("LSTM" if kind != "LSTM" else "GRU", params, (np.zeros((2, 4)),) * 2, np.zeros((2, 3)))
    dropped = KINDS[kind][0](4, dropout=0.5)
    with pytest.raises(TypeError, match="PRNG key"):
        dropped.apply(params, X, training=True, rng=7)
    with pytest.raises(TypeError, match="PRNG key"):
        jlstm.Dropout(0.5).apply({}, X, training=True, rng=np.zeros(3))
    # both key kinds work
    dropped.apply(params, X, training=True, rng=jax.random.PRNGKey(0))
    dropped.apply(params, X, training=True, rng=jax.random.key(0))


@pytest.fixture
def stack(rng, kind):
    layer = jlstm.Sequential([KINDS[kind][0](4, return_sequences=True)])
    return layer, layer.init(rng, SHAPE)[1]


@pytest.mark.parametrize(
    "lengths,match",
    [
        (np.array([-1, 6]), r"lengths in \[0, 6\] \(the timesteps\), got lengths\[0\] = -1"),
        (np.array([6, 7]), r"lengths in \[0, 6\] \(the timesteps\), got lengths\[1\] = 7"),
        (np.array([9, -2]), r"got lengths\[0\] = 9, lengths\[1\] = -2"),
        (np.array([2**32 + 1, 1]), r"got lengths\[0\] = 4294967297"),  # not wrapped to int32's 1
    ],
)
def test_lengths_out_of_range(lstm, bidi, stack, lengths, match):
    for layer, params in (lstm, bidi, stack):
        with pytest.raises(ValueError, match=match):
            layer.apply(params, X, lengths=lengths)


def test_int_masks_hold_0_and_1(lstm):
    layer, params = lstm
    with pytest.raises(ValueError, match=r"an int mask of 0s and 1s, got mask\[1, 2\] = 2"):
        layer.apply(params, X, mask=np.array([[1] * 6, [1, 1, 2, 0, 0, 0]]))


def test_traced_lengths_clamp_and_checkify_catches_them(lstm):
    layer, params = lstm
    apply = jax.jit(layer.apply)
    # Under jit the lengths cannot be read: out of range, they act as 0 and T (documented).
    clamped = apply(params, X + 1, lengths=jnp.array([-1, 9]))
    np.testing.assert_array_equal(clamped, layer.apply(params, X + 1, lengths=np.array([0, 6])))
    checked = checkify.checkify(apply, errors=checkify.user_checks)
    error, _ = checked(params, X + 1, lengths=jnp.array([-1, 9]))
    with pytest.raises(
        checkify.JaxRuntimeError, match=r"expected lengths in \[0, 6\] \(the timesteps\), got \[-1  9\]"
    ):
        error.throw()
    error, out = checked(params, X + 1, lengths=jnp.array([0, 6]))
    assert error.get() is None
    np.testing.assert_array_equal(out, clamped)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64])
def test_params_must_be_real_floats(lstm, bidi, kind, dtype):
    layer, params = lstm
    n = KINDS[kind][2]
    for key in params:
        bad = {**params, key: np.asarray(params[key]).astype(dtype)}
        match = rf"params\['{key}'\] of a real floating dtype, got {np.dtype(dtype)}"
        with pytest.raises(TypeError, match=match):
            layer.apply(bad, X)
        with pytest.raises(TypeError, match=match):
            jax.jit(layer.apply)(bad, X)
        with pytest.raises(TypeError, match=match):
            bidi[0].apply({**bidi[1], "backward": bad}, X)
        with pytest.raises(TypeError, match=match):
            step(kind, bad, (np.zeros((2, 4)),) * n, np.zeros((2, 3)))
    _, dense = jlstm.Dense(2).init(jax.random.key(0), (None, 3))
    with pytest.raises(TypeError, match=r"Dense: expected params\['bias'\] of a real floating dtype, got int32"):
        jlstm.Dense(2).apply({**dense, "bias": np.zeros(2, np.int32)}, X)


def test_params_are_arrays_of_one_dtype(lstm, bidi):
    layer, params = lstm
    with pytest.raises(TypeError, match=r"params\['bias'\] as an array, got list"):
        layer.apply({**params, "bias": np.asarray(params["bias"]).tolist()}, X)
    half = {**params, "recurrent_kernel": params["recurrent_kernel"].astype(jnp.float16)}
    with pytest.raises(
        TypeError, match=r"one float dtype, got params\['kernel'\] float32 and params\['recurrent_kernel'\] float16"
    ):
        layer.apply(half, X)
    all_half = {k: v.astype(jnp.float16) for k, v in params.items()}
    assert layer.apply(all_half, X).dtype == jnp.float16
    with pytest.raises(TypeError, match="both directions' params of one dtype, got float32 .forward. and float16"):
        bidi[0].apply({**bidi[1], "backward": {k: v.astype(jnp.float16) for k, v in bidi[1]["backward"].items()}}, X)


BAD_KEYS = [
    (None, "NoneType"),
    (7, "int"),
    (np.zeros(2, np.float32), r"float32 \(2,\)"),
    (np.zeros(3, np.uint32), r"uint32 \(3,\)"),
    (np.zeros((2, 2), np.uint32), r"uint32 \(2, 2\)"),
    (jax.random.split(jax.random.key(0), 2), r"key<fry> \(2,\)"),
]


@pytest.mark.parametrize("rng,got", BAD_KEYS)
def test_init_wants_a_single_key(kind, rng, got):
    make = KINDS[kind][0]
    layers = [make(4), jlstm.Bidirectional(make(4)), jlstm.Sequential([make(4)]), jlstm.Dense(2)]
    for layer in layers + [jlstm.Dropout(0.5), jlstm.Masking()]:  # these two draw nothing, but take a key too
        with pytest.raises(TypeError, match=rf"{layer.type_name} init: expected rng as a single PRNG key.*got {got}"):
            layer.init(rng, SHAPE)


@pytest.mark.parametrize("rng,got", BAD_KEYS[1:])
def test_dropout_wants_a_single_key(kind, rng, got):
    make = KINDS[kind][0]
    for layer in (make(4, dropout=0.5), jlstm.Sequential([make(4, dropout=0.5)]), jlstm.Dropout(0.5)):
        _, params = layer.init(jax.random.key(0), SHAPE)
        with pytest.raises(TypeError, match=f"{layer.type_name}: expected rng as a single PRNG key.*got {got}"):
            layer.apply(params, X, training=True, rng=rng)


def test_raw_keys_draw_as_typed_ones(kind):
    layer = KINDS[kind][0](4, dropout=0.5)
    _, params = layer.init(jax.random.PRNGKey(0), SHAPE)
    np.testing.assert_array_equal(
        layer.apply(params, X + 1, training=True, rng=jax.random.PRNGKey(1)),
        layer.apply(params, X + 1, training=True, rng=jax.random.key(1)),
    )


@pytest.mark.parametrize("size", [2**31, 99999999999])
def test_sizes_are_at_most_int32_max(size, kind, rng):
    make = KINDS[kind][0]
    match = rf"expected a positive int up to 2\*\*31 - 1 = 2147483647, got {size}"
    for build in (lambda: make(size), lambda: jlstm.Dense(size), lambda: make(4, unroll=size)):
        with pytest.raises(ValueError, match=match):
            build()
    for shape in ((None, 6, size), (None, size, 3), (size, 6, 3)):
        with pytest.raises(ValueError, match=match):
            make(4).init(rng, shape)
        with pytest.raises(ValueError, match=match):
            jlstm.Dense(2).init(rng, shape)
        with pytest.raises(ValueError, match=match):
            jlstm.Dropout(0.5).init(rng, shape)
    assert jlstm.count_params(make(2**31 - 1), (None, 2**31 - 1, 3)) > 0  # the bound itself works


@pytest.mark.parametrize("shape", [(None, -3, 3), (0, 6, 3), (None, 6, 0)])
def test_dense_and_dropout_shapes_hold_sizes(shape, rng):
    for layer in (jlstm.Dense(2), jlstm.Dropout(0.5)):
        with pytest.raises(ValueError, match="expected a positive int, got"):
            layer.init(rng, shape)
    assert jlstm.Dense(2).init(rng, (-1, 6, 3))[0] == (-1, 6, 2)  # stax's -1 batch stays


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "--units", "99999999999"],
        ["summary", "--timesteps", "2147483648"],
        ["summary", "--features", "99999999999"],
        ["train", "digits", "--epochs", "99999999999"],
        ["train", "digits", "--batch-size", "2147483648"],
        ["train", "digits", "--units", "99999999999"],
        ["train", "digits", "--seed", "4294967296"],  # NumPy's and scikit-learn's seeds are < 2**32
    ],
)
def test_cli_numbers_have_bounds(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one line, no usage block
    bound = 2**32 - 1 if "--seed" in argv else 2**31 - 1
    command = f"jlstm {argv[0]}"
    assert re.fullmatch(
        rf"{command}: error: argument {argv[-2]}: expected .* up to .* = {bound}, got {argv[-1]} "
        rf"\(see {command} --help\)\n",
        err,
    )


def test_cli_takes_sizes_up_to_the_bound(capsys):
    assert main(["summary", "--units", str(2**31 - 1)]) == 0
    assert f"{4 * ((3 + 2**31 - 1) * (2**31 - 1) + 2**31 - 1):,}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "layers,got",
    [
        (None, "NoneType"),
        (jlstm.LSTM(3), r"a single LSTM \(put it in a list\)"),
        ("LSTM", "str"),
        (5, "int"),
        ({"lstm": jlstm.LSTM(3)}, "dict"),
        ([], "an empty list"),
        ([jlstm.LSTM(3), 5], r"int at \[1\]"),
        ([tuple(jlstm.LSTM(3))], r"tuple at \[0\]"),
    ],
)
def test_sequential_wants_a_list_of_layers(layers, got):
    with pytest.raises(TypeError, match=f"Sequential: expected a non-empty list of jlstm layers, got {got}"):
        jlstm.Sequential(layers)


def test_sequential_takes_any_iterable_of_layers(rng):
    layers = [jlstm.LSTM(3, return_sequences=True), jlstm.Dense(2)]
    from_generator = jlstm.Sequential(layer for layer in layers)
    assert from_generator.sublayers == tuple(layers)
    assert from_generator.init(rng, SHAPE)[0] == (None, 6, 2)
    with pytest.raises(
        ValueError, match=r"expected only the last layer to return several outputs, got layer 0 \(LSTM\)"
    ):
        jlstm.Sequential([jlstm.LSTM(3, return_state=True), jlstm.Dense(2)]).init(rng, SHAPE)


def test_checks_the_fuzz_found(rng, kind, tmp_path):
    make = KINDS[kind][0]
    layer = make(4)
    _, params = layer.init(rng, SHAPE)
    for bad in (1, "no", None):
        with pytest.raises(TypeError, match=r"expected training=True or False \(under jax.jit, a static argument\)"):
            layer.apply(params, X, training=bad)
    with pytest.raises(TypeError, match=r"training=True or False .*got JitTracer"):
        jax.jit(layer.apply)(params, X, training=True)
    with pytest.raises(TypeError, match=f"{kind} name: expected a str or None, got 5"):
        make(4, name=5)
    short = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape[:1], dtype)  # noqa: E731
    width = 4 * KINDS[kind][1]
    with pytest.raises(
        ValueError, match=rf"kernel_initializer: expected the initializer to return a float32 \(3, {width}\)"
    ):
        make(4, kernel_initializer=short).init(rng, SHAPE)
    with pytest.raises(TypeError, match="Bidirectional layer: expected a jlstm recurrent layer .*got NoneType"):
        jlstm.Bidirectional(None)
    with pytest.raises(ValueError, match="mask_value other than NaN"):
        jlstm.Masking(float("nan"))
    with pytest.raises(TypeError, match="Dense use_bias: expected True or False, got 1"):
        jlstm.Dense(2, use_bias=1)
    with pytest.raises(TypeError, match="summary: expected namer as a jlstm.Namer or None, got dict"):
        jlstm.summary(layer, SHAPE, namer={})
    with pytest.raises(TypeError, match="count_params: expected a jlstm Layer with an input_shape, got dict"):
        jlstm.count_params(params, SHAPE)
    with pytest.raises(ValueError, match=r"params\['step'\]: expected an int in \[-2\*\*63, 2\*\*64 - 1\]"):
        jlstm.save(tmp_path / "p.ckpt", {"step": 2**64})


def test_int64_inputs_are_not_wrapped(rng, kind):
    big = np.full((2, 3), 2**40 + 3)
    _, dense = jlstm.Dense(2).init(rng, (None, 3))
    np.testing.assert_array_equal(jlstm.Dense(2).apply(dense, big), jlstm.Dense(2).apply(dense, big.astype(np.float32)))
    _, params = KINDS[kind][0](4).init(rng, SHAPE)
    state = (np.zeros((2, 4), np.float32),) * KINDS[kind][2]
    jax.tree.map(
        np.testing.assert_array_equal, step(kind, params, state, big), step(kind, params, state, big.astype(np.float32))
    )
