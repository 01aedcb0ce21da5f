"""Which form the scan takes on this machine and shape: measured once, then remembered.

The scan can lay out each step's matmul several ways (`FORWARD_FORMS`, `BACKWARD_FORMS`),
all with the same results up to float rounding; which is fastest depends on the CPU and the
shape (a layout that wins on one x86 CPU can lose 1.6x on another). At the first call of a
shape signature the tuner compiles and times every candidate on dummy data of that shape,
keeps the winner in memory and in a JSON file in the user's cache directory, and reuses it.

Set through `jlstm.config.update` or the environment, before the calls it should apply to
are traced:

- `tune` (`JLSTM_TUNE=0` turns it off): off, the scan takes `default_form`'s static rule.
- `forward_form`, `backward_form` (`JLSTM_FORWARD_FORM`, `JLSTM_BACKWARD_FORM`): force a form.
- `cache_dir` (`JLSTM_CACHE_DIR`; default `$XDG_CACHE_HOME/jlstm` or `~/.cache/jlstm`).

>>> import jlstm
>>> jlstm.config.update(forward_form="rows-fused")   # every forward pass takes this form
>>> jlstm.config.forward_form
'rows-fused'
>>> jlstm.config.update(forward_form=None)           # the tuner chooses again
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.checkpoint import write_atomic

# "rows": states (B, U) and z = [x_t, h] @ W; "cols": states (U, B) and z = W^T @ [x_t; h].
# "fused": one dot of [x_t, h] per step; "split": x_t and h in two dots; "hoisted": the input
# projection of every step as one GEMM before the loop. "-t": the weight is stored (4U, K)
# and contracted on its last axis (einsum "nk,bk->bn"), which XLA's CPU dot emits differently.
FORWARD_FORMS = (
    "rows-fused",
    "rows-fused-t",
    "rows-split",
    "rows-hoisted-t",
    "cols-fused",
    "cols-split",
    "cols-hoisted",
)
"""The forward forms, each a layout of the step's matmul: `forward_form` takes one of these."""
# The backward loop's one dot, d_h = d_z @ recurrent_kernel^T, in the same layouts.
BACKWARD_FORMS = ("rows", "rows-t", "cols")
"""The backward forms, the backward loop's dot in rows, rows with the weight transposed, or
columns: `backward_form` takes one of these."""
FORMS = {"forward": FORWARD_FORMS, "backward": BACKWARD_FORMS}
# What the tuner times. The hoisted forms are left out: on dummy sequences short enough to
# time in a second their projection stays in cache and they look fastest, while at the
# bench's full lengths they lost at every shape on both CPUs measured (bench/RESULTS.md).
# They can still be forced.
CANDIDATES = {"forward": tuple(f for f in FORWARD_FORMS if "hoisted" not in f), "backward": BACKWARD_FORMS}
CACHE_FORMAT = "jlstm-scan-forms"
CACHE_VERSION = 1
# Below this many FLOPs per call every form takes a few microseconds, dispatch dominates,
# and the static rule is taken without measuring.
SMALL_FLOPS = 5e7


class Signature(NamedTuple):
    """What a form is chosen for: one scan's shapes, dtype and cell (by its gate count:
    LSTM 4, GRU 3, SimpleRNN 1)."""

    directions: int
    batch: int
    timesteps: int
    features: int
    units: int
    dtype: str
    gates: int = 4


def flops(signature: Signature) -> float:
    """The matmul FLOPs of one forward call of the signature."""
    d, b, t, f, u, _, g = signature
    return 2.0 * d * b * t * (f + u) * g * u


def tuning_steps(signature: Signature) -> int:
    """How long the dummy sequences are (T if shorter): the per-step cost is what the forms
    change. 32 steps, or 16 where a step costs over 1e8 FLOPs: at 8 steps the ranking at the
    bench's mid shape differed from the one at full length, at 32 it followed it, and at the
    large shape 8 steps already did."""
    per_step = flops(signature) / signature.timesteps
    return min(signature.timesteps, 16 if per_step > 1e8 else 32)


class Config:
    """The tuner's settings: `jlstm.config`. Read from the environment at import."""

    def __init__(self) -> None:
        env = os.environ
        self.tune = env.get("JLSTM_TUNE", "1").strip().lower() not in ("0", "false", "no", "off")
        self.forward_form = _form_or_none(env.get("JLSTM_FORWARD_FORM") or None, "forward", "JLSTM_FORWARD_FORM")
        self.backward_form = _form_or_none(env.get("JLSTM_BACKWARD_FORM") or None, "backward", "JLSTM_BACKWARD_FORM")
        self.cache_dir = env.get("JLSTM_CACHE_DIR") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "jlstm"
        )

    def update(self, **changes: Any) -> None:
        """Sets `tune`, `forward_form`, `backward_form` or `cache_dir`. Forms are fixed when a
        function is traced: the change applies to calls traced after it (`jax.clear_caches()`
        retraces the ones already compiled).

        Args:
            **changes: the settings to change, by name:

                - `tune`: a bool; False takes `default_form`'s static rule instead of measuring.
                - `forward_form`: one of `FORWARD_FORMS` that every forward pass takes, or None
                  to let the tuner choose.
                - `backward_form`: one of `BACKWARD_FORMS`, or None, likewise for the backward pass.
                - `cache_dir`: the directory (a str or path) of the JSON file of tuned choices.
        """
        checked = {}
        for name, value in changes.items():
            if name == "tune":
                if not isinstance(value, bool):
                    raise TypeError(f"jlstm.config tune: expected a bool, got {value!r}")
            elif name in ("forward_form", "backward_form"):
                value = _form_or_none(value, name.split("_")[0], f"jlstm.config {name}")
            elif name == "cache_dir":
                if not isinstance(value, (str, os.PathLike)):
                    raise TypeError(f"jlstm.config cache_dir: expected a path, got {value!r}")
                value = os.fspath(value)
            else:
                raise ValueError(
                    f"jlstm.config: expected one of tune, forward_form, backward_form, cache_dir, got {name!r}"
                )
            checked[name] = value
        vars(self).update(checked)
        _warned.clear()

    def __repr__(self) -> str:
        return "jlstm.config(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


def _form_or_none(form: Any, kind: str, what: str) -> str | None:
    if form is None or form in FORMS[kind]:
        return form
    raise ValueError(f"{what}: expected None or one of {', '.join(FORMS[kind])}, got {form!r}")


config = Config()
"""The one `Config`, as `jlstm.config`: `jlstm.config.update(...)` changes it, `print(jlstm.config)` shows it."""


class Choice(NamedTuple):
    """A tuned choice: the winning form and every candidate's seconds (None: read from the cache)."""

    form: str
    seconds: dict[str, float] | None


_memory: dict[str, Choice] = {}
_warned: set[str] = set()


def default_form(kind: str, signature: Signature) -> str:
    """The static rule, from the bench's sweep of every form at full length (bench/RESULTS.md):
    two dots on column-laid states once the weights are large (U >= 256), where it was the
    fastest at every such shape, and one dot on rows below, where rows won."""
    large = signature.units >= 256
    if kind == "forward":
        return "cols-split" if large else "rows-fused"
    return "cols" if large else "rows"


def choose(
    kind: str, signature: Signature, candidate: Callable[[str], Candidate], forms: tuple[str, ...] | None = None
) -> str:
    """The form of `kind` ("forward" or "backward") for `signature`: forced by the config,
    the static rule with tuning off, else the remembered or newly measured fastest of
    `forms` (default `CANDIDATES[kind]`), where `candidate(form)` is the function and dummy
    arguments that run that form."""
    forced = config.forward_form if kind == "forward" else config.backward_form
    if forced is not None:
        return forced
    if not config.tune or flops(signature) < SMALL_FLOPS:
        return default_form(kind, signature)
    key = cache_key(kind, signature)
    if key not in _memory:
        stored = _read_cache().get(key)
        if stored in FORMS[kind]:
            _memory[key] = Choice(stored, None)
        else:
            _memory[key] = _measure(key, candidate, forms or CANDIDATES[kind])
    return _memory[key].form


class Candidate(NamedTuple):
    """A form's computation on concrete dummy arguments, to compile and time."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


def _measure(key: str, candidate: Callable[[str], Candidate], forms: tuple[str, ...]) -> Choice:
    with jax.ensure_compile_time_eval():  # run the candidates now, even inside a caller's trace
        candidates = {form: candidate(form) for form in forms}
        # XLA compiles outside the GIL: the candidates compile side by side.
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            compiled = dict(zip(candidates, pool.map(_compile, candidates.values())))
        seconds = {form: _fastest(compiled[form], candidates[form].args) for form in candidates}
    choice = Choice(min(seconds, key=seconds.__getitem__), seconds)
    _write_cache(key, choice.form)
    return choice


def _compile(candidate: Candidate) -> Callable[..., Any]:
    return jax.jit(candidate.fn).lower(*candidate.args).compile()


def _fastest(compiled: Callable[..., Any], args: tuple[Any, ...], repeats: int = 2) -> float:
    """Seconds of the fastest of `repeats` calls, after one to warm up."""
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return best


def choices() -> dict[str, Choice]:
    """Every choice this process made or read, by cache key."""
    return dict(_memory)


def settings_key() -> tuple[bool, str | None, str | None, str]:
    """The settings a trace of the scan reads, for the static key of a layer's jitted call:
    under other settings (`config.update`) the call is traced again, as a new layer's was."""
    return (config.tune, config.forward_form, config.backward_form, config.cache_dir)


def forget() -> None:
    """Drops the choices held in memory (the cache file stays)."""
    _memory.clear()


@functools.cache
def machine() -> str:
    """The backend, processor model and jax version that a choice holds for."""
    return f"{jax.default_backend()}|{cpu_model()}|jax {jax.__version__}"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name, as `lscpu` prints it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(kind: str, signature: Signature) -> str:
    """The cache file's key for a choice: the machine, the kind and the signature."""
    d, b, t, f, u, dtype, g = signature
    return f"{machine()}|{kind}|{dtype} D={d} B={b} T={t} F={f} U={u} G={g}"


def cache_path() -> str:
    """The JSON file where choices are kept."""
    return os.path.join(config.cache_dir, "scan_forms.json")


def _read_cache() -> dict[str, str]:
    """The cache file's entries; a missing file is empty, a corrupt or foreign one is
    ignored with a warning (once), and so is any entry that names no known form."""
    path = cache_path()
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        return _distrust(path, f"unreadable ({type(error).__name__}: {error})")
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        return _distrust(path, f"not a jlstm form cache (expected format {CACHE_FORMAT!r})")
    if payload.get("version") != CACHE_VERSION or not isinstance(payload.get("entries"), dict):
        return _distrust(path, f"expected version {CACHE_VERSION} with an 'entries' object")
    known = set(FORWARD_FORMS + BACKWARD_FORMS)
    return {k: v for k, v in payload["entries"].items() if isinstance(k, str) and v in known}


def _distrust(path: str, why: str) -> dict[str, str]:
    if path not in _warned:
        _warned.add(path)
        warnings.warn(
            f"jlstm: ignoring the scan form cache {path}: {why}; forms are measured "
            "again and kept in memory only (delete the file to rebuild it)",
            stacklevel=3,
        )
    return {}


def _write_cache(key: str, form: str) -> None:
    """Adds one entry to the cache file, atomically; a file we distrust is left alone."""
    path = cache_path()
    entries = _read_cache()  # distrusting the file adds its path to _warned
    if path in _warned:
        return
    entries[key] = form
    payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": dict(sorted(entries.items()))}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, json.dumps(payload, indent=1).encode())
    except OSError as error:
        _distrust(path, f"not writable ({error})")


def dummy(shape: tuple[int, ...], dtype: Any, scale: float = 1.0, seed: int = 0) -> jax.Array:
    """A concrete array of uniform draws in [-scale, scale), for timing candidates."""
    draws = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return jnp.asarray(((2 * draws - 1) * scale).astype(dtype))
