"""Helpers shared by the test modules."""

import contextlib
import pathlib
from collections.abc import Iterator

import jax
import numpy as np

from jlstm import scan, train


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """JAX's default promotion rules for a reference library's calls (Keras, Flax, ...),
    inside the tests' strict session (conftest.py says why)."""
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        yield


def count_scan_traces(monkeypatch) -> list:
    """A list that gets one entry (the scan's signature) each time JAX traces jlstm's scan:
    the scan picks its form once per trace, never on a cached call."""
    traces = []
    real = scan._forward_form

    def counting(signature, cell):
        traces.append(signature)
        return real(signature, cell)

    monkeypatch.setattr(scan, "_forward_form", counting)
    return traces


# The interop tests' sizes: batch, timesteps, features, units.
B, T, F, U = 3, 6, 4, 5


def data(seed=0, batch=B):
    r = np.random.default_rng(seed)
    return r.normal(size=(batch, T, F)).astype(np.float32)


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def close(ours, theirs, atol=1e-5):
    ours, theirs = as_list(ours), as_list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


def jitter(params, seed=0):
    """`params` plus noise: jlstm initialises biases to zeros, and a test must see them."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    r = np.random.default_rng(seed)
    noisy = [leaf + r.normal(scale=0.3, size=leaf.shape).astype(np.float32) for leaf in leaves]
    return jax.tree_util.tree_unflatten(tree, noisy)


def readme_param_counts(library):
    """The row of README's param-count table whose first cell starts with `library`, as
    {column: count} (the table in "Bringing weights in"; the interop tests measure it)."""
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Bringing weights in", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()]
    rows = [row for row in rows if len(row) > 2]
    header = rows[0]
    (row,) = [row for row in rows if row[0].startswith(library)]
    return {column: int(cell) for column, cell in zip(header, row) if cell.isdigit()}


def interrupt_at(monkeypatch, desc: str, times: int = 1) -> None:
    """Ctrl-C at the first step of the `times`-th epoch whose progress bar reads `desc`
    ("epoch 3/4"), as a KeyboardInterrupt raised from the bar's update."""
    real, seen = train.tqdm, []

    def bar(*args, **kwargs):
        progress = real(*args, **kwargs)
        seen.append(kwargs["desc"] == desc)
        if kwargs["desc"] == desc and sum(seen) == times:

            def update(n=1):
                raise KeyboardInterrupt

            progress.update = update
        return progress

    monkeypatch.setattr(train, "tqdm", bar)
