"""Regularizers, constraints and freezing against Keras 3 (JAX backend): the functions, a
model's penalties, and SGD steps with all three."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import B, F, T, close, data, reference

import jlstm
from jlstm import constraints, interop, regularizers, train

keras = pytest.importorskip("keras")

# Keras's own get_weights/set_weights trigger NumPy 2's __array__(copy=) deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
KERAS_BASES = {"Regularizer", "regularizer", "Constraint", "constraint"}  # no-ops, not options


def test_regularizers_and_constraints_give_keras_numbers():
    kr, kc = keras.regularizers, keras.constraints
    pairs = [
        (regularizers.L1(0.3), kr.L1(0.3)),
        (regularizers.L2(0.2), kr.L2(0.2)),
        (regularizers.l1_l2(l1=0.1, l2=0.4), kr.l1_l2(l1=0.1, l2=0.4)),
        (regularizers.OrthogonalRegularizer(0.5), kr.OrthogonalRegularizer(0.5)),
        (regularizers.orthogonal_regularizer(0.5, "columns"), kr.OrthogonalRegularizer(0.5, "columns")),
        (constraints.MaxNorm(1.5), kc.MaxNorm(1.5)),
        (constraints.max_norm(2.0, axis=1), kc.MaxNorm(2.0, axis=1)),
        (constraints.NonNeg(), kc.NonNeg()),
        (constraints.UnitNorm(axis=[0, 1]), kc.UnitNorm(axis=[0, 1])),
        (constraints.MinMaxNorm(0.5, 1.2, rate=0.7, axis=1), kc.MinMaxNorm(0.5, 1.2, rate=0.7, axis=1)),
    ]
    ours = jax.jit(lambda w: [f(w) for f, _ in pairs] + [constraints.MaxNorm(0.5)(w[0])])(W)
    with reference():  # a (U,) bias too
        theirs = jax.jit(lambda w: [f(w) for _, f in pairs] + [keras.constraints.MaxNorm(0.5)(w[0])])(W)
    close(ours, theirs, atol=1e-6)


def test_keras_names_give_keras_defaults():
    from keras.src.constraints import ALL_OBJECTS_DICT as KERAS_CONSTRAINTS
    from keras.src.regularizers import ALL_OBJECTS_DICT as KERAS_REGULARIZERS

    kr, kc = keras.regularizers, keras.constraints
    for ours_get, names, theirs_get in (
        (regularizers.get_regularizer, KERAS_REGULARIZERS, kr.get),
        (constraints.get_constraint, KERAS_CONSTRAINTS, kc.get),
    ):
        for name in sorted(set(names) - KERAS_BASES):
            ours, theirs = ours_get(name), theirs_get(name)
            assert type(ours).__name__ == type(theirs).__name__, name
            assert dataclasses.asdict(ours) == pytest.approx(theirs.get_config()), name  # Keras's L1 is float32
    assert sorted(regularizers.REGULARIZERS) == sorted(set(KERAS_REGULARIZERS) - KERAS_BASES)
    assert sorted(constraints.CONSTRAINTS) == sorted(set(KERAS_CONSTRAINTS) - KERAS_BASES)


def keras_layers(kind, **options):
    """A Keras layer whose initializers cost nothing (the weights are set after)."""
    zeros = {"kernel_initializer": "zeros"} | ({"recurrent_initializer": "zeros"} if kind != "Dense" else {})
    return getattr(keras.layers, kind)(**zeros, **options)


KERAS_OPTIONS = [  # every option on every kind of layer, the same objects and names for both libraries
    (
        "LSTM",
        dict(
            units=3,
            return_sequences=True,
            kernel_regularizer=(regularizers.L1(0.02), keras.regularizers.L1(0.02)),
            recurrent_regularizer=(regularizers.L2(0.03), keras.regularizers.L2(0.03)),
            bias_regularizer=(regularizers.L1L2(0.01, 0.05), keras.regularizers.L1L2(0.01, 0.05)),
            kernel_constraint=(constraints.MaxNorm(0.8), keras.constraints.MaxNorm(0.8)),
            recurrent_constraint=(constraints.UnitNorm(), keras.constraints.UnitNorm()),
            bias_constraint="non_neg",
        ),
    ),
    (
        "GRU",
        dict(
            units=3,
            return_sequences=True,
            kernel_regularizer="l2",
            recurrent_regularizer=(
                regularizers.OrthogonalRegularizer(0.1),
                keras.regularizers.OrthogonalRegularizer(0.1),
            ),
            kernel_constraint=(
                constraints.MinMaxNorm(0.2, 0.6, 0.5, 1),
                keras.constraints.MinMaxNorm(0.2, 0.6, 0.5, 1),
            ),
            bias_constraint="max_norm",
        ),
    ),
    ("SimpleRNN", dict(units=3, kernel_regularizer="l1", bias_regularizer="l2", recurrent_constraint="non_neg")),
    (
        "Dense",
        dict(
            units=2,
            kernel_regularizer=(regularizers.L2(0.05), keras.regularizers.L2(0.05)),
            bias_regularizer="l1",
            kernel_constraint=(constraints.UnitNorm(), keras.constraints.UnitNorm()),
            bias_constraint="non_neg",
        ),
    ),
]


def both(kind, options, library):
    """Layer `kind` of `library` (0: jlstm, 1: Keras) with `options`, each a pair or a name."""
    chosen = {k: v[library] if isinstance(v, tuple) else v for k, v in options.items()}
    return getattr(jlstm, kind)(**chosen) if library == 0 else keras_layers(kind, **chosen)


def models(layers, *, wrap_first=True):
    """The jlstm model and the Keras one, with random weights, and the jlstm params."""
    ours = [both(kind, options, 0) for kind, options in layers]
    with reference():
        theirs = [both(kind, options, 1) for kind, options in layers]
        if wrap_first:
            ours[0], theirs[0] = jlstm.Bidirectional(ours[0]), keras.layers.Bidirectional(theirs[0])
        kmodel = keras.Sequential([keras.Input((T, F)), *theirs])
        r = np.random.default_rng(1)
        kmodel.set_weights([r.normal(scale=0.5, size=w.shape).astype(np.float32) for w in kmodel.get_weights()])
    return jlstm.Sequential(ours), kmodel, interop.from_keras(kmodel)[1]


def test_every_layers_penalties_and_constraints_are_keras_model_ones():
    model, kmodel, params = models(KERAS_OPTIONS)
    with reference():
        keras_loss = jax.jit(lambda: sum(kmodel.losses))()
        projected = jax.jit(
            lambda: [v.value if v.constraint is None else v.constraint(v.value) for v in kmodel.weights]
        )()
        kmodel.set_weights([np.asarray(w) for w in projected])
    np.testing.assert_allclose(jax.jit(lambda p: jlstm.regularization_loss(model, p))(params), keras_loss, rtol=1e-6)
    close(
        jax.tree.leaves(jax.jit(lambda p: jlstm.apply_constraints(model, p))(params)),
        jax.tree.leaves(interop.from_keras(kmodel)[1]),
    )


def with_activity_penalty(outputs, targets):
    """Keras's activity_regularizer=L2(0.02) on the last layer, as a per-example loss term."""
    return train.mean_squared_error(outputs, targets) + 0.02 * jnp.sum(jnp.square(outputs), axis=-1)


def test_penalties_constraints_and_a_frozen_layer_train_as_in_keras():
    # An LSTM with every option, then a frozen Dense with options (Keras ignores them: no
    # penalty, no projection) and an activity regularizer (jlstm: a term of the loss).
    lstm = ("LSTM", {**KERAS_OPTIONS[0][1], "return_sequences": False})
    model, kmodel, params = models([lstm, KERAS_OPTIONS[3]], wrap_first=False)
    x, y = data(2), np.random.default_rng(4).normal(size=(B, 2)).astype(np.float32)
    with reference():
        kmodel.layers[1].activity_regularizer = keras.regularizers.L2(0.02)
        kmodel.layers[1].trainable = False
        kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        keras_losses = [float(kmodel.train_on_batch(x, y)) for _ in range(2)]
    frozen, opt = [True, False], optax.sgd(0.1)
    step = train.make_step(model, with_activity_penalty, opt, trainable=frozen)
    trained, opt_state, losses = params, train.freeze(opt, frozen).init(params), []
    for _ in range(2):
        trained, opt_state, metrics = step(trained, opt_state, x, y)
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(losses, keras_losses, rtol=1e-5)  # penalties in the loss, as Keras's
    close(jax.tree.leaves(trained), jax.tree.leaves(interop.from_keras(kmodel)[1]))
    for ours, before in zip(jax.tree.leaves(trained[1]), jax.tree.leaves(params[1])):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(before))  # frozen: bit for bit
    assert not np.allclose(trained[0]["kernel"], params[0]["kernel"])


def test_layers_repr_and_check_their_options():
    layer = jlstm.LSTM(3, kernel_regularizer=regularizers.l2(0.1), bias_constraint="non_neg")
    assert repr(layer) == "LSTM(units=3, kernel_regularizer=L2(l2=0.1), bias_constraint='non_neg')"
    names = re.escape(str(sorted(regularizers.REGULARIZERS)))
    with pytest.raises(ValueError, match=rf"LSTM kernel_regularizer: expected one of {names} .*got 'l1_l2'"):
        jlstm.LSTM(3, kernel_regularizer="l1_l2")
    with pytest.raises(ValueError, match="GRU g recurrent_constraint: expected one of"):
        jlstm.GRU(3, recurrent_constraint="max", name="g")
    with pytest.raises(ValueError, match="L2 l2: expected a non-negative float, got -1"):
        regularizers.L2(-1)
    with pytest.raises(TypeError, match="L1 l1: expected a non-negative float, got '0.1'"):
        regularizers.L1("0.1")
    with pytest.raises(ValueError, match="OrthogonalRegularizer mode: expected one of"):
        regularizers.OrthogonalRegularizer(mode="diagonal")
    with pytest.raises(ValueError, match="MinMaxNorm: expected min_value <= max_value, got 2.0 and 1.0"):
        constraints.MinMaxNorm(2.0, 1.0)
    with pytest.raises(ValueError, match="MinMaxNorm rate: expected a number in"):
        constraints.MinMaxNorm(rate=1.5)
    with pytest.raises(TypeError, match="MaxNorm axis: expected an int or a list of ints, got 0.5"):
        constraints.MaxNorm(axis=0.5)


def test_custom_penalties_and_projections_are_checked():
    dense = jlstm.Dense(2, kernel_regularizer=lambda w: w.sum(0), bias_constraint=lambda b: b[:1], name="out")
    params = {"kernel": np.ones((3, 2), np.float32), "bias": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match=r"Dense out kernel_regularizer: expected a scalar penalty, got shape \(2,\)"):
        jlstm.regularization_loss(dense, params)
    with pytest.raises(
        ValueError, match=r"Dense out bias_constraint: expected the constraint to return a float32 \(2,\)"
    ):
        jlstm.apply_constraints(dense, params)
    with pytest.raises(ValueError, match=r"MaxNorm: expected axis within the weight's rank 1, got axis=1"):
        jlstm.apply_constraints(jlstm.Dense(2, bias_constraint=constraints.MaxNorm(axis=1)), params)
    with pytest.raises(ValueError, match=r"Dense: expected params with keys \['bias', 'kernel'\], got \['kernel'\]"):
        jlstm.regularization_loss(jlstm.Dense(2), {"kernel": params["kernel"]})
    # no regularizer: a zero; no constraint: the params themselves
    assert float(jlstm.regularization_loss(jlstm.Dense(2), params)) == 0.0
    assert jlstm.apply_constraints(jlstm.Dense(2), params)["kernel"] is params["kernel"]
