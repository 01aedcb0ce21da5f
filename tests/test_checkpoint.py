"""Checkpoints: exact round trips, tree checks against `like`, bad files, atomic saves."""

import os
import re
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlstm
from jlstm import checkpoint


def model_params():
    model = jlstm.Sequential(
        [
            jlstm.LSTM(4, return_sequences=True),
            jlstm.Bidirectional(jlstm.LSTM(3)),
            jlstm.Dropout(0.1),
            jlstm.Dense(2),
        ]
    )
    return model.init(jax.random.key(0), (None, 5, 3))[1]


def assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_params_round_trip_without_like(tmp_path):
    params = model_params()
    path = tmp_path / "model.ckpt"
    jlstm.save(path, params)
    restored = jlstm.load(path)
    assert isinstance(restored, tuple) and isinstance(restored[1], dict)
    assert restored[2] == {}
    assert_same_tree(restored, params)


def test_dtypes_and_containers_round_trip_exactly(tmp_path):
    r = np.random.default_rng(0)
    tree = {
        "bf16": jnp.asarray(r.normal(size=(3, 4)), jnp.bfloat16),
        "f32": r.normal(size=(2, 3)).astype(np.float32),
        "f64": r.normal(size=(2,)),
        "i8": np.array([-128, 0, 127], np.int8),
        "i64": np.array([2**62, -(2**62)], np.int64),
        "u32": np.array([2**32 - 1], np.uint32),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "scalar_array": np.float32(1.5),
        1: [None, (True, 3, 2.5)],
        "nested": {"tuple": (np.arange(3),), "list": [np.ones(2, np.float16)]},
    }
    path = tmp_path / "t.ckpt"
    jlstm.save(path, tree)
    restored = jlstm.load(path)
    assert list(restored) == list(tree)
    assert restored[1] == [None, (True, 3, 2.5)] and type(restored[1][1][0]) is bool
    assert isinstance(restored["nested"]["tuple"], tuple) and isinstance(restored["nested"]["list"], list)
    for key in ("bf16", "f32", "f64", "i8", "i64", "u32", "bool", "empty", "scalar_array"):
        want = np.asarray(tree[key])
        assert restored[key].dtype == want.dtype and restored[key].shape == want.shape
        assert restored[key].tobytes() == want.tobytes()


def test_prng_keys_round_trip(tmp_path):
    key = jax.random.key(42)
    jlstm.save(tmp_path / "k.ckpt", {"rng": key})
    restored = jlstm.load(tmp_path / "k.ckpt")["rng"]
    np.testing.assert_array_equal(jax.random.key_data(restored), jax.random.key_data(key))
    assert restored.dtype == key.dtype


def test_like_with_prng_keys_restores_them_and_names_a_mismatch(tmp_path):
    key = jax.random.key(42)
    jlstm.save(tmp_path / "k.ckpt", {"rng": key})
    restored = jlstm.load(tmp_path / "k.ckpt", like={"rng": jax.random.key(0)})["rng"]
    np.testing.assert_array_equal(jax.random.key_data(restored), jax.random.key_data(key))
    with pytest.raises(ValueError, match=r"params\['rng'\]: expected key<fry> \(2,\), got key<fry> \(\)"):
        jlstm.load(tmp_path / "k.ckpt", like={"rng": jax.random.split(key)})


class State(NamedTuple):
    step: jax.Array
    params: dict


def test_like_restores_containers_and_array_kinds(tmp_path):
    state = State(jnp.array(7, jnp.int32), {"w": jnp.ones((2, 3)), "b": np.zeros(3, np.float32)})
    jlstm.save(tmp_path / "s.ckpt", state)
    assert type(jlstm.load(tmp_path / "s.ckpt")) is tuple
    restored = jlstm.load(tmp_path / "s.ckpt", like=state)
    assert isinstance(restored, State)
    assert isinstance(restored.params["w"], jax.Array) and isinstance(restored.params["b"], np.ndarray)
    assert_same_tree(restored, state)
    shapes = jax.eval_shape(lambda: state)  # ShapeDtypeStructs are a valid `like`
    assert_same_tree(jlstm.load(tmp_path / "s.ckpt", like=shapes), state)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda p: (p[0], p[1], p[2], {**p[3], "kernel": p[3]["kernel"][:, :1]}),
            r"params\[3\]\['kernel'\]: expected float32 \(6, 1\), got float32 \(6, 2\)",
        ),
        (
            lambda p: (p[0], p[1], p[2], {**p[3], "kernel": p[3]["kernel"].astype(jnp.bfloat16)}),
            r"params\[3\]\['kernel'\]: expected bfloat16 \(6, 2\), got float32 \(6, 2\)",
        ),
        (lambda p: p[:3], r"params: expected a tuple of 3, got a tuple of 4"),
        (
            lambda p: (p[0], {"forward": p[1]["forward"]}, p[2], p[3]),
            r"params\[1\]: expected a dict with keys \['forward'\], got a dict with keys \['backward', 'forward'\]",
        ),
        (lambda p: list(p), r"params: expected a list of 4, got a tuple of 4"),
        (lambda p: (p[0], p[1], None, p[3]), r"params\[2\]: expected None, got a dict with keys \[\]"),
    ],
)
def test_like_mismatch_names_path_expected_and_got(tmp_path, change, message):
    params = model_params()
    path = tmp_path / "m.ckpt"
    jlstm.save(path, params)
    with pytest.raises(ValueError, match=message) as info:
        jlstm.load(path, like=change(params))
    assert str(path) in str(info.value)


def test_foreign_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / "m.ckpt"
    jlstm.save(path, model_params())
    blob = path.read_bytes()
    cases = {
        "foreign": (b"PK\x03\x04 not a checkpoint", "not a jlstm checkpoint"),
        "empty": (b"", "not a jlstm checkpoint"),
        "truncated": (blob[:-10], f"expected {len(blob) - checkpoint._HEADER.size} payload bytes, got"),
        "header_only": (blob[: checkpoint._HEADER.size], "truncated"),
        "corrupt": (blob[:-5] + bytes(b ^ 0xFF for b in blob[-5:]), "CRC-32 mismatch"),
        "future": (blob[:8] + (99).to_bytes(4, "little") + blob[12:], "format version 99"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.ckpt"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            jlstm.load(bad)
        assert str(bad) in str(info.value), name


def test_bad_leaves_are_type_errors_naming_the_path(tmp_path):
    with pytest.raises(TypeError, match=r"params\['a'\]\[1\]: expected an array.*got str"):
        jlstm.save(tmp_path / "x.ckpt", {"a": (np.ones(2), "text")})
    with pytest.raises(TypeError, match=r"params\['a'\]: expected a numeric or bool array, got dtype object"):
        jlstm.save(tmp_path / "x.ckpt", {"a": np.array([object()])})
    with pytest.raises(TypeError, match=r"expected str or int dict keys, got \(1, 2\)"):
        jlstm.save(tmp_path / "x.ckpt", {(1, 2): np.ones(2)})
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.ckpt"
    params = model_params()
    jlstm.save(path, params)
    good = path.read_bytes()

    with pytest.raises(TypeError):  # fails while serialising, at the last leaf
        jlstm.save(path, (params, object()))
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["m.ckpt"]

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)  # fails after a partial write
    with pytest.raises(OSError, match="No space left"):
        jlstm.save(path, {"other": np.ones(1000)})
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["m.ckpt"]
    assert_same_tree(jlstm.load(path), params)


def test_overwrite_replaces_and_new_directory_path_works(tmp_path):
    path = tmp_path / "m.ckpt"
    jlstm.save(str(path), {"a": np.zeros(2)})
    jlstm.save(path, {"a": np.ones(3)})
    np.testing.assert_array_equal(jlstm.load(path)["a"], np.ones(3))
    assert os.listdir(tmp_path) == ["m.ckpt"]


def test_restored_params_run(tmp_path):
    model = jlstm.Sequential([jlstm.LSTM(4), jlstm.Dense(2)])
    _, params = model.init(jax.random.key(1), (None, 5, 3))
    jlstm.save(tmp_path / "m.ckpt", params)
    x = jnp.ones((2, 5, 3))
    np.testing.assert_array_equal(model.apply(jlstm.load(tmp_path / "m.ckpt"), x), model.apply(params, x))


def test_save_into_a_missing_directory_names_the_target(tmp_path):
    target = tmp_path / "missing" / "m.ckpt"
    with pytest.raises(FileNotFoundError, match=f"no directory {tmp_path / 'missing'} to write into") as info:
        jlstm.save(target, {"a": np.ones(2)})
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def with_payload(path, payload):
    """`path` holding `payload` behind a header that vouches for it (length, CRC-32)."""
    crc = zlib.crc32(payload)
    path.write_bytes(checkpoint._HEADER.pack(checkpoint.MAGIC, checkpoint.FORMAT_VERSION, len(payload), crc) + payload)
    return path


@pytest.mark.parametrize(
    "payload,cause",
    [
        # arrays in arrays, deeper than msgpack unpacks (it raises a StackError without a message)
        (b"\x81\xa4tree" + b"\x91" * 5000 + b"\xc0", "nested deeper than msgpack unpacks"),
        # dict nodes within msgpack's depth, but deeper than Python's recursion limit rebuilds
        (
            b"\x81\xa4tree" + b"\x83\xa4type\xa4dict\xa4keys\x91\xa1k\xa6values\x91" * 500 + b"\x81\xa4type\xa4none",
            "a tree nested too deeply to rebuild",
        ),
    ],
    ids=["msgpack", "python"],
)
def test_deeply_nested_payload_says_why(tmp_path, payload, cause):
    path = with_payload(tmp_path / "deep.ckpt", payload)
    with pytest.raises(ValueError, match=f"deep.ckpt: corrupt checkpoint payload: {cause}$"):
        jlstm.load(path)


@pytest.mark.parametrize("path", [3, None, 1.5, b"m.ckpt", ["m.ckpt"]], ids=repr)
def test_save_and_load_name_a_path_of_another_type(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    got = rf"got {re.escape(repr(path))} \({type(path).__name__}\)"
    with pytest.raises(TypeError, match=rf"save path: expected a str or an os.PathLike, {got}"):
        jlstm.save(path, {"a": np.ones(2)})
    with pytest.raises(TypeError, match=rf"load path: expected a str or an os.PathLike, {got}"):
        jlstm.load(path)
    assert list(tmp_path.iterdir()) == []  # an int is not taken for a file descriptor
