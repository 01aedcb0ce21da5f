"""The scan's forms and the tuner that picks one: every form gives the same results, the
choice is cached in memory and on disk, a bad cache file is distrusted, and the config
forces a form or turns tuning off, under jit, grad and vmap too."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jlstm
from jlstm import scan, train, tuning

B, T, F, U = 3, 7, 5, 6


@pytest.fixture(autouse=True)
def clean_config():
    """Each test starts from the suite's settings (tuning off, a private cache) and leaves them,
    with nothing compiled: the tuner is asked when a call is traced, and an earlier test may
    have compiled the very call a test makes."""
    saved = dict(vars(jlstm.config))
    tuning.forget()
    jax.clear_caches()
    yield
    jlstm.config.update(**saved)
    tuning.forget()


@pytest.fixture
def tuned(monkeypatch, tmp_path):
    """Tuning on, even at the tests' tiny sizes, with an empty cache directory."""
    monkeypatch.setattr(tuning, "SMALL_FLOPS", 0)
    jlstm.config.update(tune=True, cache_dir=str(tmp_path))
    return tmp_path


def data(seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.standard_normal((B, T, F)), jnp.float32)
    mask = jnp.asarray(np.arange(T)[None] < np.array([T, 4, 1])[:, None]).at[1, 2].set(False)
    states = [jnp.asarray(r.standard_normal((B, U)), jnp.float32) for _ in range(4)]
    return x, mask, states


def layers(activation="tanh"):
    cfg = dict(return_sequences=True, return_state=True)
    lstm = jlstm.LSTM(U, activation=activation, **cfg)
    gru = jlstm.GRU(U, activation=activation, **cfg)
    return {
        "lstm": lstm,
        "backwards": jlstm.LSTM(U, go_backwards=True, **cfg),
        "bidirectional": jlstm.Bidirectional(lstm),
        "gru": gru,
        "gru-bidirectional": jlstm.Bidirectional(gru),
        "simple_rnn-backwards": jlstm.SimpleRNN(U, go_backwards=True, activation=activation, **cfg),
    }


STATES = {"lstm": 2, "backwards": 2, "bidirectional": 4, "gru": 1, "gru-bidirectional": 2, "simple_rnn-backwards": 1}


def outputs_and_grads(layer, n_states):
    """The layer's outputs, and the gradients of a loss on them w.r.t. params, inputs and
    initial states, with a mask (holes included) and initial states."""
    x, mask, states = data()
    _, params = layer.init(jax.random.key(0), (None, T, F))

    def loss(params, x, states):
        outs = layer.apply(params, x, mask=mask, initial_state=states[:n_states])
        return sum(jnp.sum(jnp.sin(o)) for o in jax.tree.leaves(outs)), outs

    (_, outs), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x, states)
    return outs, grads


def assert_trees_close(a, b, atol=1e-5):
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, atol=atol, rtol=1e-5), a, b)


def results_with(forward, backward, kind, activation="tanh"):
    jlstm.config.update(forward_form=forward, backward_form=backward)
    return outputs_and_grads(layers(activation)[kind], STATES[kind])


# both read forwards and backwards; the LSTM's four gates and the GRU's split three
@pytest.mark.parametrize("kind", ["bidirectional", "gru-bidirectional"])
def test_every_forward_form_gives_the_same_results(kind):
    reference = results_with("rows-fused", "rows", kind)
    for form in tuning.FORWARD_FORMS[1:]:
        assert_trees_close(results_with(form, "rows", kind), reference)


# tanh/sigmoid take the hand-written VJP, other activations jax.vjp's
@pytest.mark.parametrize(
    "kind, activation",
    [
        ("lstm", "relu"),
        ("bidirectional", "tanh"),
        ("gru-bidirectional", "tanh"),
        ("simple_rnn-backwards", "tanh"),
    ],
)
def test_every_backward_form_gives_the_same_results(kind, activation):
    reference = results_with("rows-fused", "rows", kind, activation)
    for forward, backward in [
        ("rows-fused", "rows-t"),
        ("rows-fused", "cols"),
        ("cols-split", "rows"),
        ("cols-fused", "cols"),
    ]:
        assert_trees_close(results_with(forward, backward, kind, activation), reference)


def test_forms_give_the_same_results_with_remat_and_return_state_only():
    x, mask, _ = data()
    layer = jlstm.Bidirectional(jlstm.LSTM(U, remat=True), merge_mode="sum")
    _, params = layer.init(jax.random.key(0), (None, T, F))
    loss = lambda p: jnp.sum(layer.apply(p, x, mask=mask) ** 2)  # noqa: E731
    results = []
    for forward, backward in [("rows-fused", "rows"), ("cols-hoisted", "cols"), ("rows-hoisted-t", "rows-t")]:
        jlstm.config.update(forward_form=forward, backward_form=backward)
        results.append((layer.apply(params, x, mask=mask), jax.grad(loss)(params)))
    for other in results[1:]:
        assert_trees_close(other, results[0])


def spy_forms(monkeypatch):
    """Records the forward form of every scan traced from now on."""
    seen = []
    real = scan._stacked_scan

    def recording(*args, statics, **kwargs):
        seen.append(statics.form)
        return real(*args, statics=statics, **kwargs)

    monkeypatch.setattr(scan, "_stacked_scan", recording)
    return seen


def test_a_forced_form_is_the_one_that_runs(monkeypatch):
    seen = spy_forms(monkeypatch)
    layer = jlstm.LSTM(U)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    for form in ("cols-split", "rows-fused-t"):
        jlstm.config.update(forward_form=form)
        jax.clear_caches()  # the layer's compiled call was traced with the earlier form
        layer.apply(params, data()[0])
        assert seen[-1] == form


def test_tuning_off_takes_the_static_rule_without_measuring(monkeypatch, tuned):
    monkeypatch.setattr(tuning, "_measure", lambda *a: pytest.fail("measured with tuning off"))
    jlstm.config.update(tune=False)
    seen = spy_forms(monkeypatch)
    for units, form in ((U, "rows-fused"), (256, "cols-split")):
        layer = jlstm.LSTM(units)
        _, params = layer.init(jax.random.key(0), (None, T, F))
        layer.apply(params, data()[0])
        assert seen[-1] == form == tuning.default_form("forward", tuning.Signature(1, B, T, F, units, "float32"))
    assert not list(tuned.iterdir())  # nothing written


def test_first_call_measures_then_memory_then_the_cache_file(monkeypatch, tuned):
    layer = jlstm.LSTM(U)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    x = data()[0]
    first = layer.apply(params, x)
    measured = tuning.choices()
    assert {key.split("|")[3] for key in measured} == {"forward"}  # no gradient taken: no backward tuning
    ((key, choice),) = measured.items()
    assert set(choice.seconds) == set(tuning.CANDIDATES["forward"])
    assert choice.form == min(choice.seconds, key=choice.seconds.get)
    stored = json.loads((tuned / "scan_forms.json").read_text())
    assert stored["format"] == tuning.CACHE_FORMAT and stored["entries"] == {key: choice.form}

    monkeypatch.setattr(tuning, "_measure", lambda *a: pytest.fail("measured a cached signature"))
    jax.clear_caches()
    np.testing.assert_allclose(layer.apply(params, x), first, atol=1e-5)  # from memory
    tuning.forget()
    jax.clear_caches()
    layer.apply(params, x)  # from the file
    assert tuning.choices()[key] == tuning.Choice(choice.form, None)


def test_a_gradient_tunes_the_backward_loop_too(tuned):
    layer = jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True))
    _, params = layer.init(jax.random.key(0), (None, T, F))
    jax.grad(lambda p: jnp.sum(layer.apply(p, data()[0]) ** 2))(params)
    kinds = {key.split("|")[3]: choice for key, choice in tuning.choices().items()}
    assert set(kinds) == {"forward", "backward"}
    assert set(kinds["backward"].seconds) == set(tuning.BACKWARD_FORMS)
    assert "D=2" in tuning.cache_key("backward", tuning.Signature(2, B, T, F, U, "float32"))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\x00\x01\x02",
        json.dumps({"format": "someone-elses", "entries": {}}).encode(),
        json.dumps({"format": tuning.CACHE_FORMAT, "version": 99, "entries": {}}).encode(),
        json.dumps([1, 2, 3]).encode(),
    ],
)
def test_a_corrupt_or_foreign_cache_file_is_ignored_with_a_warning_and_left_alone(tuned, content):
    path = tuned / "scan_forms.json"
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="ignoring the scan form cache"):
        assert tuning._read_cache() == {}
    assert path.read_bytes() == content


def test_a_call_beside_a_corrupt_cache_file_measures_and_leaves_it_alone(tuned):
    path = tuned / "scan_forms.json"
    path.write_bytes(b"{not json")
    layer = jlstm.LSTM(U)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with pytest.warns(UserWarning, match="ignoring the scan form cache"):
        layer.apply(params, data()[0])
    assert path.read_bytes() == b"{not json"
    (choice,) = tuning.choices().values()
    assert choice.seconds is not None  # measured, not read


def test_cache_entries_naming_no_known_form_are_not_trusted(tuned):
    key = tuning.cache_key("forward", tuning.Signature(1, B, T, F, U, "float32"))
    (tuned / "scan_forms.json").write_text(
        json.dumps({"format": tuning.CACHE_FORMAT, "version": tuning.CACHE_VERSION, "entries": {key: "rm -rf /"}})
    )
    layer = jlstm.LSTM(U)
    _, params = layer.init(jax.random.key(0), (None, T, F))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.apply(params, data()[0])
    assert tuning.choices()[key].form in tuning.CANDIDATES["forward"]
    assert json.loads((tuned / "scan_forms.json").read_text())["entries"][key] in tuning.FORWARD_FORMS


def test_tuning_under_jit_grad_and_vmap_matches_tuning_off(tuned):
    layer = jlstm.Bidirectional(jlstm.LSTM(U, return_sequences=True))
    x, mask, _ = data()
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: layer.init(k, (None, T, F))[1])(keys)

    def run():
        loss = lambda p: jnp.sum(layer.apply(p, x, mask=mask) ** 2)  # noqa: E731
        jitted = jax.jit(jax.vmap(jax.value_and_grad(loss)))
        return jitted(params)

    tuned_result = run()
    assert {key.split("|")[3] for key in tuning.choices()} == {"forward", "backward"}
    jlstm.config.update(tune=False)
    jax.clear_caches()
    assert_trees_close(tuned_result, run())


def test_fit_repeats_bit_for_bit_with_a_warm_cache_and_with_tuning_off(tuned):
    r = np.random.default_rng(0)
    x, y = r.standard_normal((24, 6, 3)).astype(np.float32), r.integers(0, 2, 24)
    model = jlstm.Sequential([jlstm.LSTM(5), jlstm.Dense(2)])
    _, params = model.init(jax.random.key(0), (None, 6, 3))

    def fit():
        trained, _ = train.fit(
            model,
            params,
            optax.adam(1e-2),
            (x, y),
            epochs=2,
            batch_size=8,
            rng=jax.random.key(1),
            loss=train.sparse_categorical_crossentropy,
        )
        return trained

    first = fit()
    tuning.forget()  # the second run reads the cache file
    jax.clear_caches()
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(fit())):
        np.testing.assert_array_equal(a, b)
    jlstm.config.update(tune=False)
    jax.clear_caches()
    off = fit()
    for a, b in zip(jax.tree.leaves(off), jax.tree.leaves(fit())):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"forward_form": "diagonal"}, ValueError, "expected None or one of rows-fused"),
        ({"backward_form": "cols-fused"}, ValueError, "expected None or one of rows, rows-t, cols"),
        ({"tune": "yes"}, TypeError, "tune: expected a bool"),
        ({"cache_dir": 3}, TypeError, "cache_dir: expected a path"),
        ({"speed": "max"}, ValueError, "got 'speed'"),
    ],
)
def test_bad_config_is_refused(changes, error, message):
    with pytest.raises(error, match=message):
        jlstm.config.update(**changes)


def test_the_environment_sets_the_config(monkeypatch):
    monkeypatch.setenv("JLSTM_TUNE", "0")
    monkeypatch.setenv("JLSTM_FORWARD_FORM", "cols-split")
    monkeypatch.setenv("JLSTM_CACHE_DIR", "/some/where")
    config = tuning.Config()
    assert (config.tune, config.forward_form, config.backward_form, config.cache_dir) == (
        False,
        "cols-split",
        None,
        "/some/where",
    )
    monkeypatch.setenv("JLSTM_BACKWARD_FORM", "sideways")
    with pytest.raises(ValueError, match="JLSTM_BACKWARD_FORM: expected None or one of"):
        tuning.Config()
