"""Counting and the Keras summary table, against the seed notebook and real Keras 3."""

import functools
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import reference
from hypothesis import given, settings
from hypothesis import strategies as st

import jlstm
from jlstm.cli import main

SEED_TABLES = (pathlib.Path(__file__).parent / "data" / "seed_summaries.txt").read_text()


def test_cli_prints_the_seed_tables_line_for_line(capsys):
    assert main(["summary"]) == 0
    assert capsys.readouterr().out == SEED_TABLES


def test_each_seed_table_from_the_api():
    namer = jlstm.Namer()
    tables = [
        jlstm.summary(layer, (None, 11, 3), namer=namer)
        for layer in (
            jlstm.LSTM(5),
            jlstm.Bidirectional(jlstm.LSTM(5)),
            jlstm.LSTM(5, return_sequences=True),
            jlstm.Bidirectional(jlstm.LSTM(5, return_sequences=True)),
        )
    ]
    assert tables == SEED_TABLES.rstrip("\n").split("\n\n")


def test_explicit_names_win_and_do_not_count():
    table = jlstm.summary(
        jlstm.Sequential([jlstm.LSTM(5, name="enc", return_sequences=True), jlstm.LSTM(4)]), (None, 11, 3)
    )
    assert "enc (LSTM)" in table and "lstm_1 (LSTM)" in table


def test_cli_custom_table(capsys):
    assert (
        main(
            [
                "summary",
                "--units",
                "7",
                "--features",
                "2",
                "--timesteps",
                "20",
                "--bidirectional",
                "--return-sequences",
                "--merge-mode",
                "sum",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(None, 20, 7)" in out and f"Total params: {2 * 4 * ((2 + 7) * 7 + 7)}" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "--units", "0"],
        ["summary", "--merge-mode", "max"],
        ["summary", "--features", "x"],
        ["summary", "--layer", "gru"],
    ],
)
def test_cli_rejects_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    assert "error" in capsys.readouterr().err


def lstm_formula(features, units, use_bias, gates=4, bias_rows=1):
    return gates * ((features + units) * units + (bias_rows * units if use_bias else 0))


# (constructor, gates, bias rows): Keras's GRU keeps a recurrent bias row with reset_after.
CELLS = {
    "LSTM": (jlstm.LSTM, 4, 1),
    "GRU": (jlstm.GRU, 3, 2),
    "GRU-v1": (functools.partial(jlstm.GRU, reset_after=False), 3, 1),
    "SimpleRNN": (jlstm.SimpleRNN, 1, 1),
}


def test_cli_version_and_bare_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"jlstm {jlstm.__version__}\n"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jlstm") and "summary" in out and "train" in out


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(
    kind=st.sampled_from(list(CELLS)),
    features=st.integers(1, 64),
    units=st.integers(1, 64),
    use_bias=st.booleans(),
    bidirectional=st.booleans(),
)
def test_count_params_matches_formula(kind, features, units, use_bias, bidirectional):
    make, gates, bias_rows = CELLS[kind]
    layer = make(units, use_bias=use_bias)
    if bidirectional:
        layer = jlstm.Bidirectional(layer)
    expected = lstm_formula(features, units, use_bias, gates, bias_rows) * (2 if bidirectional else 1)
    assert jlstm.count_params(layer, (None, 9, features)) == expected
    _, params = layer.init(jax.random.key(0), (None, 9, features))
    assert jlstm.count_params(params) == expected


@pytest.mark.slow
def test_counting_allocates_nothing():
    # ~540M params (2 GiB of float32) counted through eval_shape in a fresh process, whose
    # peak memory would show the allocation (building them peaks at 5.3 GiB).
    # VmHWM is the process's own peak (ru_maxrss would carry the parent's over from fork).
    script = textwrap.dedent("""
        import jlstm
        layer = jlstm.Bidirectional(jlstm.LSTM(8192))
        print(jlstm.count_params(layer, (None, None, 8192)))
        print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))  # KiB
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, peak_kib = map(int, done.stdout.split())
    assert count == 2 * lstm_formula(8192, 8192, True)
    assert peak_kib < 1.5 * 2**20, f"peak {peak_kib / 2**20:.2f} GiB: the params were allocated"


def test_count_params_rejects_misuse():
    with pytest.raises(TypeError, match="input_shape"):
        jlstm.count_params(jlstm.LSTM(3))
    with pytest.raises(TypeError, match="array leaves"):
        jlstm.count_params({"a": "not an array"})


def test_counts_match_real_keras():
    keras = pytest.importorskip("keras")
    cases = [
        (jlstm.LSTM(5), keras.layers.LSTM(5)),
        (jlstm.LSTM(7, use_bias=False), keras.layers.LSTM(7, use_bias=False)),
        (jlstm.Bidirectional(jlstm.LSTM(5)), keras.layers.Bidirectional(keras.layers.LSTM(5))),
        (jlstm.GRU(5), keras.layers.GRU(5)),
        (jlstm.GRU(5, reset_after=False), keras.layers.GRU(5, reset_after=False)),
        (jlstm.GRU(6, use_bias=False), keras.layers.GRU(6, use_bias=False)),
        (jlstm.Bidirectional(jlstm.GRU(5)), keras.layers.Bidirectional(keras.layers.GRU(5))),
        (jlstm.SimpleRNN(5), keras.layers.SimpleRNN(5)),
        (jlstm.Bidirectional(jlstm.SimpleRNN(4)), keras.layers.Bidirectional(keras.layers.SimpleRNN(4))),
    ]
    for ours, theirs in cases:
        with reference():
            theirs.build((None, 11, 3))
        assert jlstm.count_params(ours, (None, 11, 3)) == theirs.count_params()
    stack = jlstm.Sequential(
        [
            jlstm.LSTM(6, return_sequences=True),
            jlstm.Bidirectional(jlstm.GRU(4, return_sequences=True)),
            jlstm.SimpleRNN(5, return_sequences=True),
            jlstm.Bidirectional(jlstm.LSTM(3), merge_mode="sum"),
            jlstm.Dense(2),
        ]
    )
    with reference():
        kstack = keras.Sequential(
            [
                keras.Input((11, 3)),
                keras.layers.LSTM(6, return_sequences=True),
                keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True)),
                keras.layers.SimpleRNN(5, return_sequences=True),
                keras.layers.Bidirectional(keras.layers.LSTM(3), merge_mode="sum"),
                keras.layers.Dense(2),
            ]
        )
    assert jlstm.count_params(stack, (None, 11, 3)) == kstack.count_params()
    table = jlstm.summary(stack, (None, 11, 3))
    assert f"Total params: {kstack.count_params():,}" in table
    assert "bidirectional_2 (Bidirection (None, 3)" in table
    assert "simple_rnn_1 (SimpleRNN)     (None, 11, 5)" in table
    rows = {line.split()[0]: int(line.split()[-1].replace(",", "")) for line in table.splitlines()[2:-4:2]}
    assert list(rows.values())[1:] == [layer.count_params() for layer in kstack.layers]


def test_cli_table_of_each_layer(capsys):
    for layer, total in (("GRU", 150), ("SimpleRNN", 45), ("LSTM", 180)):
        assert main(["summary", "--layer", layer]) == 0
        out = capsys.readouterr().out
        assert f" ({layer})" in out and f"Total params: {total}" in out
    assert main(["summary", "--layer", "GRU", "--bidirectional"]) == 0
    assert "Total params: 300" in capsys.readouterr().out


def keras3_tables(models, line_length=88):
    """Keras 3's `model.summary()` of each model, as it prints off a terminal."""
    printed = []
    for model in models:
        model.summary(line_length=line_length, print_fn=lambda text, **_: printed.append(text.rstrip("\n")))
    return printed


def test_keras3_style_is_keras3s_table(capsys, monkeypatch):
    keras = pytest.importorskip("keras")
    monkeypatch.setenv("COLUMNS", "200")  # rich's console would cut Keras's lines at 80 columns otherwise
    layers = keras.layers
    with reference():
        keras.backend.clear_session()  # Keras's names count from here, as in a fresh session
        seed = []
        for return_sequences in (False, True):  # the notebook's order, which names follow
            for bidirectional in (False, True):
                x = keras.Input((11, 3))
                layer = layers.LSTM(5, return_sequences=return_sequences)
                seed.append(keras.Model(x, (layers.Bidirectional(layer) if bidirectional else layer)(x)))
        stack = keras.Sequential(
            [
                keras.Input((11, 3)),
                layers.LSTM(5, return_sequences=True, name="a_name_longer_than_its_column"),
                layers.Dense(1000),
            ]
        )
        x = keras.Input((None, 3))
        states = keras.Model(x, layers.LSTM(5, return_state=True)(x))
        expected = keras3_tables(seed) + keras3_tables([stack], 40) + keras3_tables([states])
    assert main(["summary", "--style", "keras3"]) == 0
    assert capsys.readouterr().out == "\n\n".join(expected[:4]) + "\n"
    namer = jlstm.Namer("keras3")
    for model in (jlstm.LSTM(5), jlstm.Bidirectional(jlstm.LSTM(5))) * 2:  # the seed's names, taken again
        jlstm.summary(model, (None, 11, 3), namer=namer, style="keras3")
    ours = jlstm.Sequential(
        [
            jlstm.LSTM(5, return_sequences=True, name="a_name_longer_than_its_column"),
            jlstm.Dense(1000),
        ]
    )
    assert jlstm.summary(ours, (None, 11, 3), namer=namer, style="keras3", line_length=40) == expected[4]
    assert "│ a_name_longer_… │" in expected[4] and "Total params: 6,180 (24.14 KB)" in expected[4]  # cut, as Keras
    table = jlstm.summary(jlstm.LSTM(5, return_state=True), (None, None, 3), namer=namer, style="keras3")
    assert table == expected[5]


def test_keras2_style_at_another_line_length():
    table = jlstm.summary(jlstm.Bidirectional(jlstm.LSTM(5)), (None, 11, 3), line_length=100)
    lines = table.splitlines()
    assert lines[0] == "_" * 100 and lines[-1] == "_" * 100
    # Keras 2's columns end at 45% and 85% of the line: 45 and 85 here, 29 and 55 at 65.
    assert lines[4] == "bidirectional_1 (Bidirectional)".ljust(45) + "(None, 10)".ljust(40) + "360".ljust(15)


def test_summary_style_errors(capsys):
    cases = [
        (dict(style="keras4"), ValueError, r"summary style: expected one of \['keras2', 'keras3'\], got 'keras4'"),
        (dict(line_length=19), ValueError, "summary: expected line_length >= 20, got 19"),
        (dict(line_length="wide"), TypeError, "summary line_length: expected a positive int, got 'wide'"),
        (
            dict(namer=jlstm.Namer(), style="keras3"),
            ValueError,
            "expected a Namer of style 'keras3' .* got one of 'keras2'",
        ),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            jlstm.summary(jlstm.LSTM(5), (None, 11, 3), **kwargs)
    with pytest.raises(ValueError, match="Namer style: expected one of"):
        jlstm.Namer("keras1")
    for argv, message in (
        (["--line-length", "19"], "argument --line-length: expected an int >= 20, got 19"),
        (["--style", "keras1"], "argument --style: invalid choice: 'keras1'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["summary", *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_summary_help_says_what_the_seed_notebook_is(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the Keras 2 notebook" in out and "'bidirectional_1 (Bidirection' is cut at 29 characters" in out
    assert "not a random seed" in out


def test_count_params_per_member_of_a_batch_of_param_sets():
    # An ensemble's params as jax.vmap(lambda k: layer.init(k, shape)[1])(keys) builds them
    # (the count_params doctest and examples/vmap_ensemble.py do): every leaf leads with the
    # members' axis.
    member = {"kernel": np.zeros((1, 8)), "recurrent_kernel": np.zeros((2, 8)), "bias": np.zeros(8)}
    params = {k: np.stack([v] * 3) for k, v in member.items()}
    assert jlstm.count_params(params, batch_dims=1) == jlstm.count_params(jlstm.LSTM(2), (None, 4, 1)) == 32
    assert jlstm.count_params(params) == 3 * 32
    grid = {k: v.reshape(1, 3, *v.shape[1:]) for k, v in params.items()}  # (1, 3) members
    assert jlstm.count_params(grid, batch_dims=2) == 32
    uneven = {"a": np.zeros((3, 4)), "b": np.zeros((2, 4))}
    with pytest.raises(
        ValueError, match=r"lead with the batch axes \(3,\) \(batch_dims=1\), got shape \(2, 4\) at \['b'\]"
    ):
        jlstm.count_params(uneven, batch_dims=1)
    with pytest.raises(ValueError, match=r"rank >= batch_dims=2, got shape \(3,\) at \['c'\]"):
        jlstm.count_params({"a": np.zeros((3, 4)), "c": np.zeros(3)}, batch_dims=2)
    with pytest.raises(ValueError, match="expected batch_dims=0 with a layer"):
        jlstm.count_params(jlstm.LSTM(2), (None, 11, 3), batch_dims=1)
    for bad in (-1, True, 1.0):
        with pytest.raises(TypeError, match="expected batch_dims as an int >= 0"):
            jlstm.count_params(params, batch_dims=bad)
