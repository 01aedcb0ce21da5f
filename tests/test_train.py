"""The training API: the step, fit, evaluate, predict; masks, determinism, sharding."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from helpers import reference_optimizer

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
        reference_optimizer(optax.adam(1e-2)),
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
    opt = reference_optimizer(optax.chain(optax.clip_by_global_norm(1e-3), optax.sgd(1.0)))
    x, y, mask = toy()
    step = train.make_step(model, train.sparse_categorical_crossentropy, opt)
    new, _, metrics = step(params, opt.init(params), x, y, mask)
    moved = optax.tree.norm(jax.tree.map(lambda a, b: a - b, new, params))
    assert 0 < float(moved) <= 1e-3 * (1 + 1e-5)
    assert set(metrics) == {"loss"}


def test_dropout_draws_from_the_given_rng():
    model, params = model_and_params(dropout=0.5)
    opt = reference_optimizer(optax.adam(1e-2))
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
        ({"train_data": np.zeros((4, 6, 3))}, TypeError, r"expected \(x, y\) or \(x, y, mask\), got ndarray"),
    ],
)
def test_fit_rejects_bad_arguments(change, error, message):
    model, params = model_and_params()
    args = {"train_data": toy(), "epochs": 1, "batch_size": 8, "rng": jax.random.key(0)} | change
    with pytest.raises(error, match=message):
        train.fit(model, params, reference_optimizer(optax.adam(1e-2)), args.pop("train_data"), **CLASSIFY, **args)


SHARDED = """
import json, sys, jax, numpy as np, optax
sys.path.insert(0, "tests")  # test_train imports the tests' helpers, as under pytest
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
