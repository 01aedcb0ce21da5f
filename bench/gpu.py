"""`python -m bench.gpu`: on a GPU, jlstm's scan and its cuDNN path beside Keras 3 (JAX
backend, cuDNN), Flax (`nn.RNN(OptimizedLSTMCell)`, a scan) and `torch.nn.LSTM` (cuDNN),
at the bench shapes and DeepBench's two LSTM shapes; forward and training-step medians
measured round robin in one process, with each time as a ratio to jlstm's cuDNN path.

It also checks, per shape, that jlstm's cuDNN path is the one taken (the `rnn_fwd`
primitive in the jaxpr) and that it agrees with the scan (float32, HIGHEST precision).
Off a GPU it says so and exits 0 (`--allow-cpu` runs what can run, to test the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras reads it once, at its first import

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import DIRECTIONS, SHAPES, Shape, lstm_flops, name_list  # noqa: E402
from bench.peers import (  # noqa: E402
    Contender,
    SkipPeer,
    flax_peer,
    jax_contender,
    jlstm_layer,
    keras_peer,
    mean_square,
    require,
)
from bench.timing import Timing, seconds, time_round_robin  # noqa: E402

# DeepBench's LSTM rows (input size = hidden size): one training shape, one inference shape.
DEEPBENCH = {
    "deepbench-train": (Shape("deepbench-train", 128, 25, 1024, 1024, repeats=10), ("train",)),
    "deepbench-infer": (Shape("deepbench-infer", 4, 150, 256, 256, repeats=10), ("forward",)),
}
ALL_SHAPES = {name: (shape, ("forward", "train")) for name, shape in SHAPES.items()} | DEEPBENCH
BASELINE = "jlstm-cudnn"


def jlstm_peer(**options: Any) -> Callable[[np.ndarray, int, bool], Contender]:
    def peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
        layer = jlstm_layer(units, bidirectional, **options)
        _, params = layer.init(jax.random.key(0), x.shape)
        return jax_contender(layer.apply, params, x)

    return peer


def torch_cudnn_peer(x: np.ndarray, units: int, bidirectional: bool) -> Contender:
    """`torch.nn.LSTM` on the GPU (cuDNN); every call synchronizes the device."""
    torch = require("torch")
    if not torch.cuda.is_available():
        raise SkipPeer("torch sees no CUDA device (a CPU-only torch build?)")
    torch.manual_seed(0)
    device = torch.device("cuda")
    lstm = torch.nn.LSTM(x.shape[-1], units, batch_first=True, bidirectional=bidirectional).to(device)
    inputs = torch.from_numpy(x).to(device)
    params = list(lstm.parameters())

    def forward() -> Any:
        with torch.no_grad():
            y = lstm(inputs)[0]
        torch.cuda.synchronize()
        return y

    def train() -> Any:
        loss = mean_square(lstm(inputs)[0])
        grads = torch.autograd.grad(loss, params)
        torch.cuda.synchronize()
        return loss, grads

    return Contender(forward, train, jitted=False)


PEERS: dict[str, Callable[[np.ndarray, int, bool], Contender]] = {
    "jlstm-scan": jlstm_peer(use_cudnn=False),
    "jlstm-cudnn": jlstm_peer(use_cudnn=True),
    "jlstm-cudnn-tf32": jlstm_peer(use_cudnn=True, cudnn_allow_tf32=True),
    "keras": keras_peer,
    "flax": flax_peer,
    "torch-cudnn": torch_cudnn_peer,
}
LABELS = {
    "jlstm-scan": "jlstm LSTM(use_cudnn=False): the lax.scan",
    "jlstm-cudnn": "jlstm LSTM(use_cudnn=True): cuDNN, float32",
    "jlstm-cudnn-tf32": "jlstm LSTM(use_cudnn=True, cudnn_allow_tf32=True): cuDNN, TF32 allowed",
    "keras": "keras.layers.LSTM, JAX backend (cuDNN without a mask), stateless_call under jit",
    "flax": "flax nn.RNN(OptimizedLSTMCell) / nn.Bidirectional (a scan)",
    "torch-cudnn": "torch.nn.LSTM on CUDA (cuDNN)",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shapes",
        type=name_list(ALL_SHAPES),
        default=list(ALL_SHAPES),
        help=f"comma-separated subset of {','.join(ALL_SHAPES)} (default all)",
    )
    parser.add_argument(
        "--directions",
        type=name_list(DIRECTIONS),
        default=list(DIRECTIONS),
        help="uni,bi (default both; DeepBench's shapes are uni only)",
    )
    parser.add_argument(
        "--peers",
        type=name_list(PEERS),
        default=list(PEERS),
        help=f"comma-separated subset of {','.join(PEERS)} (default all)",
    )
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: per shape)")
    parser.add_argument(
        "--matmul-precision",
        choices=["default", "high", "highest"],
        default="default",
        help="jax_default_matmul_precision for the JAX scans (the cuDNN rows set their own)",
    )
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the cuDNN-taken and cuDNN-against-scan checks"
    )
    parser.add_argument("--out", default=os.path.join("bench", "out"), help="directory for gpu.json and gpu.md")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run off a GPU too, to test this script (the cuDNN rows skip there)"
    )
    return parser.parse_args(argv)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check(shape: Shape, bidirectional: bool) -> dict[str, Any]:
    """Whether `use_cudnn=True` takes cuDNN here, and its largest difference from the scan
    (outputs, and gradients of the mean square w.r.t. params and inputs), HIGHEST precision."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(shape.batch, shape.timesteps, shape.features)), jnp.float32)
    layers = [jlstm_layer(shape.units, bidirectional, use_cudnn=flag) for flag in (True, False)]
    _, params = layers[0].init(jax.random.key(0), x.shape)
    taken = "rnn_fwd" in str(jax.make_jaxpr(layers[0].apply)(params, x))
    with jax.default_matmul_precision("highest"):
        results = [
            jax.jit(jax.value_and_grad(lambda p, x, layer=layer: mean_square(layer.apply(p, x)), argnums=(0, 1)))(
                params, x
            )
            for layer in layers
        ]
        outputs = [jax.jit(layer.apply)(params, x) for layer in layers]
    diff = lambda a, b: max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    return {
        "shape": shape.name,
        "direction": "bi" if bidirectional else "uni",
        "cudnn_taken": taken,
        "max_abs_diff_outputs": diff(*outputs),
        "max_abs_diff_grads": diff(results[0][1], results[1][1]),
    }


def measure(
    shape: Shape,
    calls: Sequence[str],
    bidirectional: bool,
    peers: Sequence[str],
    repeats: int,
    notes: list[dict[str, str]],
) -> list[dict[str, Any]]:
    """Rows for one shape and direction: each peer's median per call, round robin."""
    x = np.random.default_rng(0).normal(size=(shape.batch, shape.timesteps, shape.features)).astype(np.float32)
    where = f"{shape.name} {'bi' if bidirectional else 'uni'}"
    contenders, firsts = {}, {}
    for peer in peers:
        try:
            contender = PEERS[peer](x, shape.units, bidirectional)
            firsts[peer] = {call: seconds(getattr(contender, call)) for call in calls}
            contenders[peer] = contender
        except SkipPeer as skip:
            notes.append({"where": f"{where} {peer}", "note": f"skipped: {skip}"})
        except Exception as error:  # noqa: BLE001 - a peer that fails is reported, the others run
            notes.append({"where": f"{where} {peer}", "note": f"failed: {type(error).__name__}: {error}"})
    timings: dict[str, dict[str, Timing]] = {peer: {} for peer in contenders}
    for call in calls:
        timed = time_round_robin(
            {peer: getattr(c, call) for peer, c in contenders.items()},
            {peer: firsts[peer][call] for peer in contenders},
            repeats,
        )
        for peer, timing in timed.items():
            timings[peer][call] = timing
    rows = []
    for peer, by_call in timings.items():
        row: dict[str, Any] = {
            **shape.fields(bidirectional),
            "peer": peer,
            "repeats": repeats,
        }
        for call, timing in by_call.items():
            base = timings.get(BASELINE, {}).get(call)
            flops = lstm_flops(shape, 2 if bidirectional else 1, train=call == "train")
            row[f"{call}_ms"] = timing.median_s * 1e3
            row[f"{call}_tflops"] = flops / timing.median_s / 1e12
            row[f"{call}_x_cudnn"] = timing.median_s / base.median_s if base else None
            if contenders[peer].jitted:
                row[f"{call}_compile_s"] = timing.compile_s
        rows.append(row)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    def ms(row, call):
        return "" if f"{call}_ms" not in row else f"{row[f'{call}_ms']:.3f}"

    def ratio(row, call):
        value = row.get(f"{call}_x_cudnn")
        return "" if value is None else f"{value:.2f}x"

    header = ["shape", "dir", "peer", "forward ms", "x cuDNN", "train ms", "x cuDNN"]
    return [header] + [
        [
            r["shape"],
            r["direction"],
            r["peer"],
            ms(r, "forward"),
            ratio(r, "forward"),
            ms(r, "train"),
            ratio(r, "train"),
        ]
        for r in rows
    ]


def render(lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines[1:]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    )


def machine() -> dict[str, Any]:
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "jax": jax.__version__,
        "matmul_precision": str(jax.config.values["jax_default_matmul_precision"]),
    }


def report(results: dict[str, Any], markdown: bool) -> str:
    m = results["machine"]
    title = f"jlstm on {m['device']} ({m['backend']}, jax {m['jax']}, default matmul precision {m['matmul_precision']})"
    lines = [
        f"# {title}" if markdown else title,
        "",
        "Medians of round-robin calls; `x cuDNN` is the time over jlstm's cuDNN path (float32) in the same run.",
        "",
        render(table(results["rows"]), markdown),
        "",
    ]
    lines += [f"- {peer}: {LABELS[peer]}" for peer in dict.fromkeys(r["peer"] for r in results["rows"])]
    if results["checks"]:
        lines += ["", "cuDNN path checks (use_cudnn=True against the scan, HIGHEST precision):", ""]
        lines += [
            f"- {c['shape']} {c['direction']}: cuDNN taken: {c['cudnn_taken']}, max |diff| outputs "
            f"{c['max_abs_diff_outputs']:.2e}, gradients {c['max_abs_diff_grads']:.2e}"
            for c in results["checks"]
        ]
    if results["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n['where']}: {n['note']}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backend = jax.default_backend()
    if backend != "gpu" and not args.allow_cpu:
        print(
            f"bench.gpu: skipped: jax.default_backend() is {backend!r}, not 'gpu'. On a machine with "
            "an NVIDIA GPU: pip install -e '.[gpu,bench]' && python -m bench.gpu"
        )
        return 0
    if args.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    results: dict[str, Any] = {"machine": machine(), "rows": [], "checks": [], "notes": []}
    for name in args.shapes:
        shape, calls = ALL_SHAPES[name]
        for direction in args.directions:
            bidirectional = DIRECTIONS[direction]
            if name in DEEPBENCH and bidirectional:
                continue
            progress(f"{name} {direction}")
            repeats = args.repeats or shape.repeats
            results["rows"] += measure(shape, calls, bidirectional, args.peers, repeats, results["notes"])
            if args.check:
                try:
                    results["checks"].append(check(shape, bidirectional))
                except ValueError as error:  # use_cudnn=True off a GPU
                    results["notes"].append({"where": f"{name} {direction} check", "note": f"skipped: {error}"})
    print(report(results, markdown=False))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write(report(results, markdown=True))
    print(f"wrote {os.path.join(args.out, 'gpu.json')} and gpu.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
