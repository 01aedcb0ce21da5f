"""The training API: the step, fit, evaluate, predict; masks, determinism, sharding."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import interrupt_at

import jlstm
from jlstm import train

CLASSIFY = {"loss": train.sparse_categorical_crossentropy, "metrics": {"accuracy": train.accuracy}}


def toy(n=48, t=6, f=3, seed=0):
    """Label: is the sum of the first feature over the unmasked steps positive; lengths 2..t."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, t, f)).astype(np.float32)
    lengths = r.integers(2, t + 1, size=n)
    mask = np.arange(t)[None, :] < lengths[:, None]
    x = np.where(mask[..., None], x, 0.0).astype(np.float32)
    y = ((x[..., 0] * mask).sum(1) > 0).astype(np.int32)
    return x, y, mask


def model_and_params(units=6, features=3, seed=0, bidirectional=False, **lstm):
    lstm = jlstm.LSTM(units, **lstm)
    model = jlstm.Sequential([jlstm.Bidirectional(lstm) if bidirectional else lstm, jlstm.Dense(2)])
    _, params = model.init(jax.random.key(seed), (None, None, features))
    return model, params


def run_fit(data, val=None, *, epochs=3, batch_size=10, seed=1, model=None, **kwargs):
    model, params = model or model_and_params()
    return train.fit(
        model,
        params,
        optax.adam(1e-2),
        data,
        val,
        epochs=epochs,
        batch_size=batch_size,
        rng=jax.random.key(seed),
        **{**CLASSIFY, **kwargs},
    )


def test_fit_learns():
    x, y, mask = toy(n=96)
    _, history = run_fit((x, y, mask), (x, y, mask), epochs=15, batch_size=16)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 15 for v in history.values())
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["val_accuracy"][-1] > 0.8


def test_same_seed_same_bits_other_seed_other_result():
    data = toy()
    p1, h1 = run_fit(data, data)
    p2, h2 = run_fit(data, data)
    assert h1 == h2
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, h3 = run_fit(data, data, seed=2)
    assert h3["loss"] != h1["loss"]


def test_fit_leaves_its_inputs_alone():
    model, params = model_and_params()
    before = [np.array(a) for a in jax.tree.leaves(params)]
    run_fit(toy(), model=(model, params))
    for a, b in zip(before, jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_padding_under_the_mask_changes_nothing():
    # Sequences of length 4, padded to 7 with garbage under the mask, train exactly like
    # the unpadded ones; without the mask, the garbage is data.
    x, y, _ = toy(t=4)
    r = np.random.default_rng(5)
    garbage = r.normal(size=(len(x), 3, x.shape[2])).astype(np.float32)
    padded = np.concatenate([x, garbage], axis=1)
    mask = np.arange(7)[None, :] < 4
    mask = np.broadcast_to(mask, (len(x), 7))
    model = model_and_params(bidirectional=True)
    _, plain = run_fit((x, y), (x, y), model=model)
    _, masked = run_fit((padded, y, mask), (padded, y, mask), model=model)
    _, unmasked = run_fit((padded, y), (padded, y), model=model)
    for key in plain:
        np.testing.assert_allclose(masked[key], plain[key], rtol=1e-5, atol=1e-6)
    assert not np.allclose(unmasked["loss"], plain["loss"], rtol=1e-3)


def test_per_step_loss_averages_over_the_mask():
    model = jlstm.Sequential([jlstm.LSTM(4, return_sequences=True), jlstm.Dense(2)])
    _, params = model.init(jax.random.key(0), (None, 6, 3))
    x, _, mask = toy()
    y = np.random.default_rng(1).normal(size=(len(x), 6, 2)).astype(np.float32)
    got = train.evaluate(model, params, (x, y, mask), loss=train.mean_squared_error, batch_size=7)
    per_step = ((np.asarray(model.apply(params, x, mask=mask)) - y) ** 2).mean(-1)
    want = ((per_step * mask).sum(1) / mask.sum(1)).mean()
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)


def test_evaluate_weights_the_padded_last_batch_out():
    model, params = model_and_params()
    data = toy(n=23)
    whole = train.evaluate(model, params, data, **CLASSIFY, batch_size=100)
    pieces = train.evaluate(model, params, data, **CLASSIFY, batch_size=5)
    for key in whole:
        np.testing.assert_allclose(pieces[key], whole[key], rtol=1e-5)


def test_predict_matches_apply():
    model, params = model_and_params()
    x, _, mask = toy(n=11)
    got = train.predict(model, params, x, mask, batch_size=4)
    np.testing.assert_allclose(got, np.asarray(model.apply(params, x, mask=mask)), rtol=1e-5, atol=1e-6)


def test_step_clips_through_optax():
    model, params = model_and_params()
    opt = optax.chain(optax.clip_by_global_norm(1e-3), optax.sgd(1.0))
    x, y, mask = toy()
    step = train.make_step(model, train.sparse_categorical_crossentropy, opt)
    new, _, metrics = step(params, opt.init(params), x, y, mask)
    moved = optax.tree.norm(jax.tree.map(lambda a, b: a - b, new, params))
    assert 0 < float(moved) <= 1e-3 * (1 + 1e-5)
    assert set(metrics) == {"loss"}


def test_dropout_draws_from_the_given_rng():
    model, params = model_and_params(dropout=0.5)
    opt = optax.adam(1e-2)
    step = train.make_step(model, train.sparse_categorical_crossentropy, opt, dropout=True)
    x, y, mask = toy()
    with pytest.raises(ValueError, match="expected an rng key with dropout=True"):
        step(params, opt.init(params), x, y, mask)
    losses = [float(step(params, opt.init(params), x, y, mask, rng=jax.random.key(k))[2]["loss"]) for k in (0, 0, 1)]
    assert losses[0] == losses[1] != losses[2]
    data = toy()
    _, h1 = run_fit(data, model=(model, params), epochs=1, dropout=True)
    _, h2 = run_fit(data, model=(model, params), epochs=1, dropout=True)
    _, h_off = run_fit(data, model=(model, params), epochs=1)
    assert h1 == h2 and h1["loss"] != h_off["loss"]


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"epochs": 0}, ValueError, "fit epochs: expected a positive int, got 0"),
        ({"batch_size": 2.5}, TypeError, "fit batch_size: expected a positive int"),
        ({"rng": 0}, TypeError, "fit rng: expected a jax.random key, got int"),
        ({"train_data": (np.zeros((4, 3)), np.zeros(4))}, ValueError, r"expected x of rank 3 .* got shape \(4, 3\)"),
        ({"train_data": (np.zeros((4, 6, 3)), np.zeros(5))}, ValueError, r"expected y with 4 rows .* got shape \(5,\)"),
        (
            {"train_data": (np.zeros((4, 6, 3)), np.zeros(4), np.ones((4, 5)))},
            ValueError,
            r"expected mask of shape \(4, 6\), got \(4, 5\)",
        ),
        (
            {"train_data": np.zeros((4, 6, 3))},
            TypeError,
            r"expected \(x, y\), \(x, y, mask\) or \(x, y, lengths\), got",
        ),
        (
            {"train_data": (np.zeros((4, 6, 3)), np.zeros(4), np.array([6, 7, 0, -1]))},
            ValueError,
            r"fit train_data: expected lengths in \[0, 6\] \(the timesteps\), got lengths\[1\] = 7, lengths\[3\] = -1$",
        ),
        (
            {"train_data": (np.zeros((4, 6, 3)), np.zeros(4), np.full(4, 6.0))},
            ValueError,
            r"fit train_data: expected lengths as int \(4,\), got float64 \(4,\)",
        ),
        (
            {"trainable": [True]},
            ValueError,
            r"fit trainable: expected a bool or a list or tuple of 2 \(as the params\)",
        ),
        (
            {"trainable": (True, {"kernel": False})},
            ValueError,
            r"expected a bool or a dict with keys \['bias', 'kernel'\] \(as the params\) at trainable\[1\], got a dict",
        ),
        ({"trainable": lambda path, leaf: 1}, TypeError, r"fit trainable: expected the callable to return True or Fa"),
        ({"checkpoint_to": "/no/such/dir/state.ckpt"}, ValueError, "fit checkpoint_to: no directory /no/such/dir$"),
    ],
)
def test_fit_rejects_bad_arguments(change, error, message):
    model, params = model_and_params()
    args = {"train_data": toy(), "epochs": 1, "batch_size": 8, "rng": jax.random.key(0)} | change
    with pytest.raises(error, match=message):
        train.fit(model, params, optax.adam(1e-2), args.pop("train_data"), **CLASSIFY, **args)


SHARDED = """
import json, sys, jax, numpy as np, optax
sys.path.insert(0, "tests")  # as pytest has it, for tests.test_train's own imports
jax.config.update("jax_default_matmul_precision", "highest")
import jlstm
from jlstm import train
from tests.test_train import model_and_params, run_fit, toy
assert jax.device_count() == 4, jax.devices()
data = toy(n=45)
model = model_and_params(bidirectional=True)
params, history = run_fit(data, data, batch_size=10, model=model)  # 10 rows padded to 12
devices = {len(leaf.sharding.device_set) for leaf in jax.tree.leaves(params)}
replicated = all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(params))
(x,) = train._shard((np.zeros((12, 6, 3), np.float32),), train.data_mesh())
assert [s.data.shape for s in x.addressable_shards] == [(3, 6, 3)] * 4, x.sharding
_, one = run_fit(data, data, batch_size=10, model=model, devices=jax.devices()[:1])
print(json.dumps({"history": history, "one_device": one, "devices": sorted(devices),
                  "replicated": replicated}))
"""


@pytest.mark.slow
def test_sharded_over_four_devices_matches_one_device():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SHARDED)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["devices"] == [4] and got["replicated"]
    _, here = run_fit(toy(n=45), toy(n=45), batch_size=10, model=model_and_params(bidirectional=True))
    for key in here:
        np.testing.assert_allclose(got["history"][key], here[key], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["history"][key], got["one_device"][key], rtol=1e-5, atol=1e-5)


def test_evaluate_and_predict_trace_once_per_layer():
    model, params = model_and_params()
    traces = []

    def counting_apply(params, x, **kwargs):
        traces.append(1)  # runs only while JAX traces
        return model.apply(params, x, **kwargs)

    layer = dataclasses.replace(model, apply=counting_apply)
    x, y, mask = toy(n=12)
    for _ in range(3):
        train.predict(layer, params, x, mask)
        train.evaluate(layer, params, (x, y, mask), **CLASSIFY)
    assert len(traces) == 2


def regression_fit(optimizer, *, epochs=3, model=None, **kwargs):
    """fit on toy() with two float targets and MSE: 5 steps an epoch."""
    model, params = model or model_and_params()
    x, y, mask = toy()
    targets = np.stack([y, 1 - y], axis=1).astype(np.float32)
    return train.fit(
        model,
        params,
        optimizer,
        (x, targets, mask),
        loss=train.mean_squared_error,
        epochs=epochs,
        batch_size=10,
        rng=jax.random.key(1),
        **kwargs,
    )


def nan_updates_at(step):
    """An optax transformation that passes updates through, except NaNs at `step` (0-based)."""

    def update(updates, count, params=None):
        return jax.tree.map(lambda u: jnp.where(count == step, jnp.nan, u), updates), count + 1

    return optax.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)


def assert_same_bits(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "optimizer, finished, stopped",
    [
        (optax.sgd(1e6), 0, r"^epoch 1/3, step \d/5: the loss was (inf|nan); fit returned the params it was given$"),
        # lr 1e-2 for the first epoch's 5 steps, then 1e10: the loss blows up in epoch 2.
        (
            optax.sgd(optax.piecewise_constant_schedule(1e-2, {5: 1e12})),
            1,
            r"^epoch 2/3, step \d/5: the loss was (inf|nan); fit returned the params of epoch 1$",
        ),
        # Finite losses, NaN params after the last step of epoch 1.
        (
            optax.chain(optax.sgd(1e-2), nan_updates_at(4)),
            0,
            r"^epoch 1/3: the params came out non-finite; fit returned the params it was given$",
        ),
    ],
)
def test_a_diverging_run_stops_with_the_last_finished_epochs_params(tmp_path, optimizer, finished, stopped):
    model = model_and_params()
    path = tmp_path / "state.ckpt"
    with pytest.warns(train.DivergenceWarning, match="fit stopped at epoch"):
        params, history = regression_fit(optimizer, model=model, checkpoint_to=path)
    assert re.match(stopped, history.pop("stopped")), history
    assert sorted(history) == (["loss"] if finished else []) and len(history.get("loss", [])) == finished
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(params))
    if finished:
        state = train.load_state(path)
        assert state.epoch == finished and state.history == history
        assert_same_bits(params, state.params)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            before, _ = regression_fit(optimizer, model=model, epochs=finished)
        assert_same_bits(params, before)
    else:
        assert_same_bits(params, model[1])
        assert not path.exists()


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (
            lambda y: np.where(y == 1, 5, y),
            ValueError,
            r"train_data: expected class labels in \[0, 2\) \(the model's output width\), got 5$",
        ),
        (lambda y: y - 1, ValueError, r"expected class labels in \[0, 2\) .*, got -1$"),
        (lambda y: np.arange(len(y)), ValueError, r"in \[0, 2\) .*, got 2, 3, 4, 5, 6, \.\.\. \(46 values\)$"),
        (
            lambda y: np.zeros((len(y), 7), np.int32),
            ValueError,
            r"expected class labels of shape \(48,\) \(the outputs' \(48, 2\) less the class axis\), got \(48, 7\)",
        ),
        (lambda y: y.astype(np.float32), TypeError, "expected integer class labels, got dtype float32"),
    ],
)
def test_class_labels_are_checked_against_the_model_before_training(monkeypatch, labels, error, message):
    steps = []
    monkeypatch.setattr(train, "make_step", lambda *a, **k: steps.append(1))
    x, y, mask = toy()
    with pytest.raises(error, match=message):
        run_fit((x, labels(y), mask), epochs=1)
    declared = train.class_label_loss(
        lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    )
    with pytest.raises(error, match=message.replace("train_data", "validation_data")):
        run_fit((x, y, mask), (x, labels(y), mask), epochs=1, loss=declared)
    assert steps == []  # nothing trained


def test_per_step_class_labels_and_evaluate_are_checked():
    model = jlstm.Sequential([jlstm.LSTM(4, return_sequences=True), jlstm.Dense(3)])
    _, params = model.init(jax.random.key(0), (None, 6, 3))
    x, _, mask = toy(n=8)
    labels = np.random.default_rng(0).integers(0, 3, size=(8, 6))
    assert set(train.evaluate(model, params, (x, labels, mask), **CLASSIFY)) == {"loss", "accuracy"}
    with pytest.raises(ValueError, match=r"evaluate data: expected class labels of shape \(8, 6\)"):
        train.evaluate(model, params, (x, labels[:, 0], mask), **CLASSIFY)
    with pytest.raises(ValueError, match=r"evaluate data: expected class labels in \[0, 3\) .*, got 3$"):
        train.evaluate(model, params, (x, labels + 1, mask), **CLASSIFY)


@pytest.mark.parametrize(
    "validation, error, message",
    [
        (
            lambda x, y, m: (x[..., :2], y, m),
            ValueError,
            r"fit validation_data: the model and loss cannot take x \(48, 6, 2\), y \(48,\), mask \(48, 6\): ",
        ),
        (
            lambda x, y, m: (x, y, m * 0.5),
            ValueError,
            r"fit validation_data: expected a bool mask \(or 0/1\), got values 0.0, 0.5$",
        ),
        (
            lambda x, y, m: (x, y, m[:, :5]),
            ValueError,
            r"fit validation_data: expected mask of shape \(48, 6\), got \(48, 5\)",
        ),
        (lambda x, y, m: (x.astype(str), y, m), TypeError, r"fit validation_data: expected numeric x, got dtype <U"),
        (lambda x, y, m: (x, y[:40], m), ValueError, r"fit validation_data: expected y with 48 rows"),
    ],
)
def test_bad_validation_data_fails_before_training(monkeypatch, validation, error, message):
    steps = []
    monkeypatch.setattr(train, "make_step", lambda *a, **k: steps.append(1))
    x, y, mask = toy()
    with pytest.raises(error, match=message):
        run_fit((x, y, mask), validation(x, y, mask), epochs=1)
    assert steps == []


def test_validation_targets_that_do_not_fit_the_loss_fail_before_training(monkeypatch):
    steps = []
    monkeypatch.setattr(train, "make_step", lambda *a, **k: steps.append(1))
    x, _, _ = toy()
    message = r"fit validation_data: the model and loss cannot take x \(48, 6, 3\), y \(48, 3\): .*shapes"
    with pytest.raises(ValueError, match=message):
        regression_fit(optax.sgd(0.1), validation_data=(x, np.zeros((48, 3), np.float32)))
    assert steps == []


def test_an_interrupted_run_resumes_to_the_same_bits(tmp_path, monkeypatch):
    model = model_and_params(dropout=0.3)
    data = toy()
    kwargs = {"epochs": 4, "dropout": True, "model": model}
    whole, whole_history = run_fit(data, data, checkpoint_to=tmp_path / "whole.ckpt", **kwargs)
    path = tmp_path / "state.ckpt"
    with monkeypatch.context() as patch:
        interrupt_at(patch, "epoch 3/4")
        with pytest.raises(KeyboardInterrupt):
            run_fit(data, data, checkpoint_to=path, **kwargs)
    state = train.load_state(path)
    assert state.epoch == 2 and state.history == {k: v[:2] for k, v in whole_history.items()}
    params, history = run_fit(data, data, checkpoint_to=path, resume_from=path, **kwargs)
    assert history == whole_history
    assert_same_bits(params, whole)
    assert path.read_bytes() == (tmp_path / "whole.ckpt").read_bytes()  # params, opt_state, rng, history
    # A finished run resumes to itself without training.
    again, history = run_fit(data, data, resume_from=path, **kwargs)
    assert history == whole_history
    assert_same_bits(again, whole)


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    path = tmp_path_factory.mktemp("state") / "state.ckpt"
    run_fit(toy(), epochs=2, checkpoint_to=path)
    return path


def corrupt(path):
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize(
    "damage, change, message",
    [
        (None, {"units": 5}, r"not a checkpoint of this model, optimizer and rng: params\[0\]\['kernel'\]: expected "),
        (None, {"optimizer": optax.sgd(0.1)}, r"not a checkpoint of this model, optimizer and rng: opt_state"),
        (None, {"epochs": 1}, "saved after epoch 2, past epochs=1"),
        (None, {"metrics": {}}, r"its history holds \['accuracy', 'loss'\], this run's would hold \['loss'\]"),
        (corrupt, {}, r"corrupt checkpoint \(CRC-32 mismatch\)"),
        (lambda path: jlstm.save(path, model_and_params()[1]), {}, "a jlstm checkpoint, but not a fit TrainState"),
        (lambda path: path.unlink(), {}, "No such file or directory"),
    ],
)
def test_a_resume_file_that_does_not_match_is_an_error_and_stays_as_it_was(
    tmp_path, saved_state, damage, change, message
):
    path = tmp_path / "state.ckpt"
    path.write_bytes(saved_state.read_bytes())
    if damage is not None:
        damage(path)
    before = path.read_bytes() if path.exists() else None
    model, params = model_and_params(units=change.pop("units", 6))
    optimizer = change.pop("optimizer", optax.adam(1e-2))
    args = {**CLASSIFY, "epochs": 3, "batch_size": 10, "rng": jax.random.key(1)} | change
    with pytest.raises(train.ResumeError, match=message):
        train.fit(model, params, optimizer, toy(), checkpoint_to=path, resume_from=path, **args)
    assert (path.read_bytes() if path.exists() else None) == before


def options_model():
    """model_and_params()'s model (its params' shapes, so that its eager init has compiled
    already), its LSTM with a regularizer and a constraint, its Dense with a regularizer."""
    lstm = jlstm.LSTM(6, kernel_regularizer="l2", recurrent_constraint=jlstm.constraints.MaxNorm(0.5))
    model = jlstm.Sequential([lstm, jlstm.Dense(2, bias_regularizer=jlstm.regularizers.L1(0.1))])
    _, params = model.init(jax.random.key(0), (None, None, 3))
    return model, params


def test_lengths_train_evaluate_and_predict_as_their_mask_does_and_frozen_params_stay():
    x, y, mask = toy(n=20, t=5)
    lengths = mask.sum(1)
    model, params = options_model()
    run = dict(model=(model, params), epochs=1, batch_size=8, trainable=[False, True])
    by_lengths, history = run_fit((x, y, lengths), (x, y, lengths), **run)
    by_mask, mask_history = run_fit((x, y, mask), **run)
    assert history["loss"] == mask_history["loss"]
    assert_same_bits(by_lengths, by_mask)
    assert_same_bits(by_lengths[0], params[0])  # the frozen LSTM, bit for bit
    # the validation loss holds the trainable params' penalties, as evaluate's does (Keras's)
    got = train.evaluate(model, by_lengths, (x, y, lengths), **CLASSIFY, batch_size=8, trainable=[False, True])
    np.testing.assert_allclose(got["loss"], history["val_loss"][-1], rtol=1e-5)
    everything = train.evaluate(model, by_lengths, (x, y, mask), **CLASSIFY, batch_size=8)  # fit's compile
    full = float(jlstm.regularization_loss(model, by_lengths))
    dense_only = float(jlstm.regularization_loss(model, by_lengths, trainable=[False, True]))
    assert full > dense_only > 0
    np.testing.assert_allclose(everything["loss"] - got["loss"], full - dense_only, rtol=1e-4)
    assert got["accuracy"] == everything["accuracy"] == history["val_accuracy"][-1]
    by_lengths_out = train.predict(model, by_lengths, x, lengths=lengths)
    np.testing.assert_array_equal(by_lengths_out, train.predict(model, by_lengths, x, mask))


def test_frozen_params_hold_no_optimizer_state_and_a_plain_state_is_refused():
    model, params = options_model()
    opt = optax.adam(1e-2)
    by_prefix = train.freeze(opt, [False, True]).init(params)
    by_callable = train.freeze(opt, lambda path, leaf: path[0].idx == 1).init(params)

    def shapes(tree):
        return sorted(leaf.shape for leaf in jax.tree.leaves(tree))

    assert shapes(by_prefix) == shapes(by_callable) == sorted([()] + 2 * [leaf.shape for leaf in params[1].values()])
    step = train.make_step(model, train.sparse_categorical_crossentropy, opt, trainable=[False, True])
    x, y, mask = toy(n=4)
    with pytest.raises(ValueError, match=r"train step: expected opt_state = train.freeze\(optimizer, trainable\)"):
        step(params, opt.init(params), x, y, mask)
    with pytest.raises(ValueError, match=r"train step trainable: expected a bool or a list or tuple of 2"):
        train.make_step(model, train.sparse_categorical_crossentropy, opt, trainable=[False])(params, {}, x, y)
