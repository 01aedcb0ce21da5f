"""What the bench measures beside the main table: the machine and its matmul roofline, jlstm's
agreement with torch on shared weights, compile time against sequence length, the peak
memory of a long training step with and without rematerialization, and time and memory per
step of remat=True at a 10x longer sequence."""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench import SCALING_TIMESTEPS, Shape
from bench.peers import SkipPeer, cpu_count, forms, jlstm_layer, mean_square, require, signature, static_forms
from bench.timing import seconds, time_calls
from jlstm import tuning
from jlstm.interop import to_torch

AGREEMENT_TOLERANCE = 1e-4
SCALING_LIMIT = 2.0
# Per step, the 10x longer sequence over the shorter one. Both would be 1 if time and memory
# grew linearly. Memory: XLA's buffer assignment may keep one more sequence-sized buffer at one
# length than at the other (+25% in the forward); a quadratic term would read 10x. Time: the
# fastest call is timed, against noise; a sequence whose buffers outgrow the CPU's last-level
# cache runs each step slower than one that fits, and 1.3x does not hide that.
REMAT_TIME_LIMIT = 1.3
REMAT_MEMORY_LIMIT = 2.0


def machine() -> dict[str, Any]:
    """The CPU, cores, library versions and jlstm's commit this run measured."""
    return {
        "cpu": tuning.cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "versions": {name: _version(name) for name in ("jax", "jaxlib", "torch", "flax", "keras", "equinox", "numpy")},
        "jlstm_commit": _git_commit(),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine skews every timing
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


# The instruction sets that decide which matmul kernels a CPU runs.
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in _FLAGS if flag in flags]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "jlstm"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty jlstm/" if dirty.stdout.strip() else "")


def roofline(size: int, repeats: int) -> dict[str, Any]:
    """f32 GFLOP/s of a `size`² @ `size`² matmul in JAX and (if installed) torch, from the
    fastest call (the machine's ceiling; a busy neighbour only ever slows a call down)."""
    a, b = np.random.default_rng(0).standard_normal((2, size, size), dtype=np.float32)
    flops = 2 * size**3
    matmul = jax.jit(jnp.matmul)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    fastest = time_calls(lambda: matmul(ja, jb).block_until_ready(), repeats).min_s
    result: dict[str, Any] = {"size": size, "jax_gflops": flops / fastest / 1e9}
    try:
        torch = require("torch")
    except SkipPeer as skip:
        result["torch_note"] = str(skip)
        return result
    torch.set_num_threads(cpu_count())
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    result["torch_gflops"] = flops / time_calls(lambda: torch.matmul(ta, tb), repeats).min_s / 1e9
    return result


def torch_agreement(x: np.ndarray, units: int, bidirectional: bool) -> dict[str, Any]:
    """Max |jlstm - torch| of the forward sequence, torch given jlstm's weights."""
    torch = require("torch")
    layer = jlstm_layer(units, bidirectional)
    _, params = layer.init(jax.random.key(1), x.shape)
    ours = np.asarray(jax.jit(layer.apply)(params, jnp.asarray(x)))
    lstm = to_torch(layer, params)  # torch holds jlstm's weights: gates i, f, g, o = Keras's i, f, c, o
    with torch.no_grad():
        theirs = lstm(torch.from_numpy(x))[0].numpy()
    error = float(np.max(np.abs(ours - theirs)))
    return {"max_abs_err": error, "ok": error <= AGREEMENT_TOLERANCE}


def _lowered(shape: Shape, timesteps: int, bidirectional: bool, train: bool, **options: Any) -> jax.stages.Lowered:
    """jlstm's forward (or training step) at `timesteps`, lowered on abstract inputs: nothing allocated."""
    layer = jlstm_layer(shape.units, bidirectional, **options)
    input_shape = (shape.batch, timesteps, shape.features)
    params = jax.eval_shape(lambda key: layer.init(key, input_shape)[1], jax.random.key(0))
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    fn = jax.value_and_grad(lambda p, x: mean_square(layer.apply(p, x))) if train else layer.apply
    return jax.jit(fn).lower(params, x)


def _compile(shape: Shape, timesteps: int, bidirectional: bool, train: bool) -> None:
    _lowered(shape, timesteps, bidirectional, train).compile()


def _mean_square_of(apply: Callable[..., Any], params: Any, x: jax.Array) -> Any:
    return mean_square(apply(params, x))


def _blocking(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """A call of fn(*args) that returns once its results are computed."""
    return lambda: jax.block_until_ready(fn(*args))


def compile_scaling(
    shape: Shape, directions: Sequence[bool], calls: Sequence[str] = ("forward", "train")
) -> list[dict[str, Any]]:
    """Trace-lower-compile seconds of jlstm's `calls` at the short and long SCALING_TIMESTEPS, per
    direction, with the static rule's forms (tuning, once per shape, is not compiling)."""
    with forms(*static_forms(signature((shape.batch, SCALING_TIMESTEPS[-1], shape.features), shape.units, False))):
        return _compile_scaling(shape, directions, calls)


def _compile_scaling(shape: Shape, directions: Sequence[bool], calls: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for bidirectional in directions:
        for train in (call == "train" for call in calls):
            _lowered(shape, 3, bidirectional, train).compile()  # first-compile overheads off the clock
            times = {t: seconds(functools.partial(_compile, shape, t, bidirectional, train)) for t in SCALING_TIMESTEPS}
            short, long = (times[t] for t in SCALING_TIMESTEPS)
            rows.append(
                {
                    "direction": "bi" if bidirectional else "uni",
                    "call": "train" if train else "forward",
                    "timesteps": list(SCALING_TIMESTEPS),
                    "seconds": [short, long],
                    "ratio": long / short,
                    "ok": long / short <= SCALING_LIMIT,
                }
            )
    return rows


def remat_memory(shape: Shape, directions: Sequence[bool], remat_options: Sequence[bool]) -> list[dict[str, Any]]:
    """XLA's memory analysis of a training step at the longest SCALING_TIMESTEPS, per direction."""
    timesteps = SCALING_TIMESTEPS[-1]
    rows = []
    for bidirectional in directions:
        for remat in remat_options:
            options = {"remat": True} if remat else {}
            stats = _memory_analysis(_lowered(shape, timesteps, bidirectional, True, **options).compile())
            rows.append(
                {
                    "direction": "bi" if bidirectional else "uni",
                    "remat": remat,
                    "shape": [shape.batch, timesteps, shape.features, shape.units],
                    "temp_bytes": stats.temp_size_in_bytes,
                    "argument_bytes": stats.argument_size_in_bytes,
                    "output_bytes": stats.output_size_in_bytes,
                    "peak_bytes": _peak_bytes(stats),
                }
            )
    return rows


def _memory_analysis(compiled: Any) -> Any:
    """A compiled call's XLA memory analysis; a RuntimeError on a backend without one."""
    stats = compiled.memory_analysis()
    if stats is None:
        raise RuntimeError(f"bench: XLA has no memory analysis on the {jax.default_backend()} backend")
    return stats


def _peak_bytes(stats: Any) -> int:
    """What a compiled call holds at once, from its XLA memory analysis."""
    return (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


def long_remat(shape: Shape, timesteps: Sequence[int], repeats: int) -> dict[str, Any]:
    """jlstm's LSTM(remat=True) forward and training step at a short and a long sequence
    (unidirectional, the static rule's forms): the fastest call's time and XLA's peak memory,
    per step, and the long sequence's per-step figures over the short one's."""
    with forms(*static_forms(signature((shape.batch, timesteps[-1], shape.features), shape.units, False))):
        rows = [_long_remat_row(shape, timesteps, call, repeats) for call in ("forward", "train")]
    return {
        "shape": [shape.batch, shape.features, shape.units],
        "timesteps": list(timesteps),
        "time_limit": REMAT_TIME_LIMIT,
        "memory_limit": REMAT_MEMORY_LIMIT,
        "rows": rows,
        "ok": all(row["ok"] for row in rows),
    }


def _long_remat_row(shape: Shape, timesteps: Sequence[int], call: str, repeats: int) -> dict[str, Any]:
    times, peaks = zip(*(_run_remat(shape, t, call == "train", repeats) for t in timesteps))
    per_step_s = [s / t for s, t in zip(times, timesteps)]
    per_step_bytes = [b / t for b, t in zip(peaks, timesteps)]
    time_ratio, memory_ratio = per_step_s[-1] / per_step_s[0], per_step_bytes[-1] / per_step_bytes[0]
    return {
        "call": call,
        "ms": [s * 1e3 for s in times],
        "us_per_step": [s * 1e6 for s in per_step_s],
        "time_ratio": time_ratio,
        "peak_bytes": list(peaks),
        "bytes_per_step": per_step_bytes,
        "memory_ratio": memory_ratio,
        "ok": time_ratio <= REMAT_TIME_LIMIT and memory_ratio <= REMAT_MEMORY_LIMIT,
    }


def _run_remat(shape: Shape, timesteps: int, train: bool, repeats: int) -> tuple[float, int]:
    """Seconds of the fastest of `repeats` calls (a busy neighbour only slows a call down) and peak bytes."""
    compiled = _lowered(shape, timesteps, False, train, remat=True).compile()
    input_shape = (shape.batch, timesteps, shape.features)
    _, params = jlstm_layer(shape.units, False, remat=True).init(jax.random.key(0), input_shape)
    x = jnp.asarray(np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32))
    fastest = time_calls(lambda: jax.block_until_ready(compiled(params, x)), repeats).min_s
    return fastest, _peak_bytes(_memory_analysis(compiled))


def tuned_forms(shape: Shape, bidirectional: bool) -> dict[str, Any]:
    """The forms jlstm's tuner chose for this shape (after jlstm ran), and the static rule's."""
    sig = signature((shape.batch, shape.timesteps, shape.features), shape.units, bidirectional)
    static = static_forms(sig)
    chosen = tuning.choices()
    row: dict[str, Any] = {"shape": shape.name, "direction": "bi" if bidirectional else "uni"}
    for kind, default in zip(("forward", "backward"), static):
        choice = chosen.get(tuning.cache_key(kind, sig))
        row[kind] = choice.form if choice else None
        row[f"{kind}_static"] = default
    row["tuned"] = tuning.flops(sig) >= tuning.SMALL_FLOPS
    return row


def form_sweep(x: np.ndarray, shape: Shape, bidirectional: bool, repeats: int) -> list[dict[str, Any]]:
    """jlstm's forward time with each forward form, and its training step with each backward
    form (the forward tuned), at the full shape: what each tried form gave. Each form gets a
    layer of its own: a layer's compiled call keeps the forms it was traced with."""
    _, params = jlstm_layer(shape.units, bidirectional).init(jax.random.key(0), x.shape)
    inputs = jnp.asarray(x)
    rows = []
    for call, kind in (("forward", "forward"), ("train", "backward")):
        for form in tuning.FORMS[kind]:
            apply = jlstm_layer(shape.units, bidirectional).apply
            fn = apply if call == "forward" else jax.value_and_grad(functools.partial(_mean_square_of, apply))
            with forms(form if kind == "forward" else None, form if kind == "backward" else None):
                compiled = jax.jit(fn).lower(params, inputs).compile()
            timing = time_calls(_blocking(compiled, params, inputs), repeats)
            rows.append(
                {
                    "shape": shape.name,
                    "direction": "bi" if bidirectional else "uni",
                    "call": call,
                    "form": form,
                    "min_ms": timing.min_s * 1e3,
                }
            )
    return rows
