"""The bench's results as a printed table, JSON and Markdown, all from the same tables."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

Table = tuple[list[str], list[list[str]]]  # headers, rows of cells


def _number(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


NOISY = 2.0  # a median this many times the fastest call says the machine was busy


def _noisy(row: dict[str, Any], call: str) -> str:
    return " !" if row[f"{call}_ms"] > NOISY * row[f"{call}_min_ms"] else ""


def main_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Per shape, direction and peer: median times, ratios to jlstm, GFLOP/s, compile seconds."""
    headers = [
        "shape (B,T,F,U)",
        "dir",
        "peer",
        "fwd ms",
        "train ms",
        "fwd ×",
        "train ×",
        "fwd GFLOP/s",
        "train GFLOP/s",
        "compile fwd s",
        "compile train s",
    ]
    cells = [
        [
            f"{r['shape']} ({r['batch']},{r['timesteps']},{r['features']},{r['units']})",
            r["direction"],
            r["peer"],
            _number(r["forward_ms"], 3) + _noisy(r, "forward"),
            _number(r["train_ms"], 3) + _noisy(r, "train"),
            _number(r["forward_ratio"], 2, "x"),
            _number(r["train_ratio"], 2, "x"),
            _number(r["forward_gflops"], 1),
            _number(r["train_gflops"], 1),
            _number(r["forward_compile_s"], 2),
            _number(r["train_compile_s"], 2),
        ]
        for r in rows
    ]
    return headers, cells


def forms_table(results: dict[str, Any]) -> Table:
    """The forms jlstm's tuner chose per shape, the static rule's, and the time with the
    static rule's over the tuned time (the jlstm-static rows)."""
    static = {(r["shape"], r["direction"]): r for r in results["rows"] if r["peer"] == "jlstm-static"}
    cells = []
    for f in results["forms"]:
        ratio = static.get((f["shape"], f["direction"]))
        how = "tuned" if f["tuned"] else "static rule (too small to tune)"
        cells.append(
            [
                f["shape"],
                f["direction"],
                how,
                f"{f['forward'] or f['forward_static']} ({f['forward_static']})",
                f"{f['backward'] or f['backward_static']} ({f['backward_static']})",
                _number(ratio and ratio["forward_ratio"], 2, "x"),
                _number(ratio and ratio["train_ratio"], 2, "x"),
            ]
        )
    return [
        "shape",
        "dir",
        "chosen by",
        "forward form (static rule)",
        "backward form (static rule)",
        "static / tuned fwd",
        "static / tuned train",
    ], cells


def sweep_tables(sweep: Sequence[dict[str, Any]]) -> list[tuple[str, Table]]:
    """jlstm's time with each form forced, one table for the forward forms (forward pass) and
    one for the backward forms (training step); `*` marks the fastest in each row."""
    tables = []
    for call, kind in (("forward", "forward pass, each forward form"), ("train", "training step, each backward form")):
        rows = [r for r in sweep if r["call"] == call]
        forms = list(dict.fromkeys(r["form"] for r in rows))
        groups: dict[tuple[str, str], dict[str, float]] = {}
        for r in rows:
            groups.setdefault((r["shape"], r["direction"]), {})[r["form"]] = r["min_ms"]
        cells = []
        for (shape, direction), times in groups.items():
            best = min(times.values())
            cells.append(
                [shape, direction]
                + [_number(times.get(form), 2) + (" *" if times.get(form) == best else "") for form in forms]
            )
        if cells:
            tables.append((f"jlstm's {kind} (fastest call, ms)", (["shape", "dir", *forms], cells)))
    return tables


def targets_table(results: dict[str, Any]) -> Table:
    """The speed issue's targets, judged on this run's rows."""
    rows = {(r["shape"], r["direction"], r["peer"]): r for r in results["rows"]}
    shapes = list(dict.fromkeys(r["shape"] for r in results["rows"]))
    dirs = list(dict.fromkeys(r["direction"] for r in results["rows"]))

    def ratios(peer: str, shape_names: Sequence[str]) -> list[tuple[str, float]]:
        return [
            (f"{s} {d} {call}", rows[(s, d, peer)][f"{call}_ratio"])
            for s in shape_names
            for d in dirs
            for call in ("forward", "train")
            if (s, d, peer) in rows
        ]

    def judged(target: str, pairs: list[tuple[str, float]], at_least: float) -> list[str]:
        if not pairs:
            return [target, "not measured", "-"]
        worst = min(pairs, key=lambda p: p[1])
        met = all(v >= at_least for _, v in pairs)
        return [
            target,
            f"lowest {worst[1]:.2f}x ({worst[0]}); all: " + ", ".join(f"{v:.2f}" for _, v in pairs),
            "yes" if met else "no",
        ]

    cells = [
        judged(f"at least 1.15x {peer}, every shape, forward and training, uni and bi", ratios(peer, shapes), 1.15)
        for peer in ("flax", "keras", "equinox")
    ]
    cells.append(judged("at least 3x torch at the seed shape", ratios("torch", ["seed"]), 3.0))
    cells.append(
        judged("at least 0.8x torch at mid, large, long", ratios("torch", [s for s in shapes if s != "seed"]), 0.8)
    )
    large = rows.get(("large", "uni", "jlstm"))
    if large:
        share = large["forward_gflops"] / results["roofline"]["jax_gflops"]
        cells.append(
            [
                "large forward at 55% of the XLA matmul roofline",
                f"{large['forward_gflops']:.1f} of {results['roofline']['jax_gflops']:.1f} GFLOP/s = {share:.0%}",
                "yes" if share >= 0.55 else "no",
            ]
        )
    bi = [
        (f"{s} {call}", rows[(s, "bi", "jlstm")][f"{call}_ms"] / rows[(s, "uni", "jlstm")][f"{call}_ms"])
        for s in shapes
        for call in ("forward", "train")
        if (s, "bi", "jlstm") in rows and (s, "uni", "jlstm") in rows
    ]
    if bi:
        worst = max(bi, key=lambda p: p[1])
        cells.append(
            [
                "Bidirectional at most 2.1x the unidirectional time",
                f"highest {worst[1]:.2f}x ({worst[0]}); all: " + ", ".join(f"{v:.2f}" for _, v in bi),
                "yes" if worst[1] <= 2.1 else "no",
            ]
        )
    if results.get("long_remat"):
        cells.append(long_remat_target(results["long_remat"]))
    return ["target", "this run", "met"], cells


def long_remat_target(long: dict[str, Any]) -> list[str]:
    """remat=True at the 10x longer sequence: time and memory per step against the shorter one's."""
    short, longest = long["timesteps"]
    return [
        f"T={longest:,} remat: per-step memory within {long['memory_limit']:g}x of T={short:,}, "
        f"per-step time within {long['time_limit']:g}x",
        "; ".join(f"{r['call']} time {r['time_ratio']:.2f}x, memory {r['memory_ratio']:.2f}x" for r in long["rows"]),
        "yes" if long["ok"] else "no",
    ]


def agreement_table(checks: Sequence[dict[str, Any]]) -> Table:
    """jlstm's forward against torch's on the same weights."""
    return ["shape", "dir", "max |jlstm - torch|", "within 1e-4"], [
        [c["shape"], c["direction"], f"{c['max_abs_err']:.2e}", "yes" if c["ok"] else "NO"] for c in checks
    ]


def scaling_table(rows: Sequence[dict[str, Any]]) -> Table:
    """jlstm's compile seconds at a short and a long sequence."""
    return ["dir", "call", "T", "compile s", "long / short", "within 2x"], [
        [
            r["direction"],
            r["call"],
            " vs ".join(map(str, r["timesteps"])),
            " vs ".join(f"{s:.2f}" for s in r["seconds"]),
            f"{r['ratio']:.2f}",
            "yes" if r["ok"] else "NO",
        ]
        for r in rows
    ]


def memory_table(rows: Sequence[dict[str, Any]]) -> Table:
    """XLA's memory analysis of jlstm's training step at the long sequence."""
    return ["dir", "remat", "(B,T,F,U)", "temp", "arguments", "outputs", "peak (args+outs+temp)"], [
        [
            r["direction"],
            "yes" if r["remat"] else "no",
            "(" + ",".join(map(str, r["shape"])) + ")",
            _bytes(r["temp_bytes"]),
            _bytes(r["argument_bytes"]),
            _bytes(r["output_bytes"]),
            _bytes(r["peak_bytes"]),
        ]
        for r in rows
    ]


def long_remat_table(long: dict[str, Any]) -> Table:
    """jlstm's LSTM(remat=True) at a long and a 10x longer sequence, per step."""
    vs = lambda values, fmt: " vs ".join(fmt(v) for v in values)  # noqa: E731
    headers = [
        "call",
        "(B,F,U)",
        "T",
        "ms",
        "µs / step",
        "peak",
        "bytes / step",
        "long / short per step",
        "within limits",
    ]
    return headers, [
        [
            r["call"],
            "(" + ",".join(map(str, long["shape"])) + ")",
            vs(long["timesteps"], lambda t: f"{t:,}"),
            vs(r["ms"], lambda v: f"{v:,.1f}"),
            vs(r["us_per_step"], lambda v: f"{v:.2f}"),
            vs(r["peak_bytes"], _bytes),
            vs(r["bytes_per_step"], lambda v: f"{v:,.0f}"),
            f"time {r['time_ratio']:.2f}x, memory {r['memory_ratio']:.2f}x",
            "yes" if r["ok"] else "no",
        ]
        for r in long["rows"]
    ]


def render_text(table: Table) -> str:
    """A fixed-width table."""
    headers, cells = table
    widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]

    def line(row: list[str]) -> str:  # text columns (the first three) left, numbers right
        return "  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table."""
    headers, cells = table
    row = lambda cells: "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # noqa: E731
    return "\n".join(map(row, [headers, ["---"] * len(headers), *cells]))


def roofline_line(roofline: dict[str, Any]) -> str:
    """The machine's f32 matmul GFLOP/s, JAX's and torch's."""
    n = roofline["size"]
    torch = (
        f"{roofline['torch_gflops']:,.1f} GFLOP/s"
        if "torch_gflops" in roofline
        else f"skipped ({roofline.get('torch_note', 'not measured')})"
    )
    return f"f32 matmul {n}x{n} @ {n}x{n} (fastest call): jax {roofline['jax_gflops']:,.1f} GFLOP/s, torch {torch}"


def machine_line(m: dict[str, Any]) -> str:
    """When and where the run was, with what versions, and how busy the machine was."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    load = f"{m['load_average_1m']:.2f} at the start, {m.get('load_average_1m_end', float('nan')):.2f} at the end"
    flags = f" with {' '.join(m['cpu_flags'])}" if m.get("cpu_flags") else ""
    return (
        f"{m['date']} on {m['cpu']}{flags}, {m['cores']} cores ({m['platform']}, Python {m['python']}, "
        f"JAX backend {m['jax_backend']}); jlstm at {m['jlstm_commit']}; {versions}. Load average (1 min) {load}."
    )


def _notes(notes: Sequence[dict[str, Any]]) -> list[str]:
    return [f"- {n['kind']}: {n['where']}: {n['note']}" for n in notes]


def text(results: dict[str, Any]) -> str:
    """What `python -m bench` prints: roofline, the main table, the extra rows and the notes."""
    parts = [
        machine_line(results["machine"]),
        roofline_line(results["roofline"]),
        "",
        render_text(main_table(results["rows"])),
        f"Median ms; × = peer time / jlstm time (above 1: jlstm faster); ! = median over {NOISY:g}x the fastest call.",
    ]
    for title, table in _tables(results):
        parts += ["", title, render_text(table)]
    if results["notes"]:
        parts += ["", "Notes:", *_notes(results["notes"])]
    return "\n".join(parts)


def _tables(results: dict[str, Any]) -> list[tuple[str, Table]]:
    """The tables after the main one, titled, for whatever this run measured."""
    tables = []
    if results.get("forms"):
        tables.append(("The scan's forms per shape (jlstm.tuning)", forms_table(results)))
    tables += sweep_tables(results.get("form_sweep", []))
    if results["rows"]:
        tables.append(("The speed targets, judged on this run", targets_table(results)))
    tables += [(title, table(results[key])) for title, key, table in _extra_tables() if results[key]]
    return tables


def _extra_tables():
    return [
        ("Agreement with torch.nn.LSTM on the same weights (forward, return_sequences)", "agreement", agreement_table),
        ("jlstm compile time against sequence length (trace + lower + compile)", "compile_scaling", scaling_table),
        ("jlstm training-step memory at the long sequence (XLA memory analysis)", "remat_memory", memory_table),
        (
            "jlstm LSTM(remat=True), uni, at a long and a 10x longer sequence (fastest call; XLA memory analysis)",
            "long_remat",
            long_remat_table,
        ),
    ]


def markdown(results: dict[str, Any]) -> str:
    """One run's section of RESULTS.md: machine, roofline, main table, extra tables, notes."""
    parts = [
        f"## {results['machine']['cpu']}",
        "",
        f"Run with `python -m bench` {machine_line(results['machine'])}",
        "",
        f"Roofline: {roofline_line(results['roofline'])}.",
        "",
        render_markdown(main_table(results["rows"])),
    ]
    for title, table in _tables(results):
        parts += ["", f"### {title}", "", render_markdown(table)]
    if results["notes"]:
        parts += ["", "### Notes", "", *_notes(results["notes"])]
    return "\n".join(parts) + "\n"


HEADER = """# jlstm beside its peers

The last full `python -m bench` run on each CPU model it has run on, newest first: a scan form
that wins on one x86 CPU can lose on another, so no CPU's figures replace another's. On a CPU,
`pip install -e '.[bench]' && python -m bench --results bench/RESULTS.md` replaces that CPU's
section and keeps the others (`--quick` for a smoke run; `--shapes`, `--directions`, `--peers`,
`--repeats` to pick).

Times are medians after warm-up; `×` is the peer's time over jlstm's (above 1: jlstm is faster).
GFLOP/s counts 2·B·T·(F+U)·4U per direction forward and 3x that for a training step (value and
grad of the mean square of the output sequence w.r.t. the params). Compile is the first call
minus the median (JAX libraries only; for jlstm it includes tuning the scan's form once per
shape). `!` marks a median over 2x the fastest call: the machine was busy, read that time with
care. `jlstm-static` is jlstm with the static rule's forms (`JLSTM_TUNE=0`) instead of the tuned ones.
`jlstm-bf16` is jlstm under the `mixed_bfloat16` dtype policy (float32 params, bfloat16 compute)
and `torch-bf16` torch's LSTM in bfloat16; their `×` is over float32 jlstm's time too.
"""


def _section_markers(cpu: str) -> tuple[str, str]:
    return f"<!-- bench run: {cpu} -->", f"<!-- end of bench run: {cpu} -->"


def merge_section(existing: str, section: str, cpu: str) -> str:
    """RESULTS.md with this CPU's section replaced, or added first; the rest kept as it was."""
    start, end = _section_markers(cpu)
    block = f"{start}\n{section.rstrip()}\n{end}\n"
    if start in existing and end in existing:
        before, rest = existing.split(start, 1)
        return before + block + rest.split(end, 1)[1].lstrip("\n")
    if "<!-- bench run: " in existing:
        before, rest = existing.split("<!-- bench run: ", 1)
        return before + block + "\n<!-- bench run: " + rest
    return (existing.rstrip() + "\n\n" if existing.strip() else HEADER + "\n") + block


def write(results: dict[str, Any], out_dir: str, markdown_copy: str | None = None) -> list[str]:
    """Writes results.json and results.md under `out_dir`, and merges the run into
    `markdown_copy` as its CPU model's section."""
    os.makedirs(out_dir, exist_ok=True)
    section = markdown(results)
    paths = {
        os.path.join(out_dir, "results.json"): json.dumps(results, indent=2) + "\n",
        os.path.join(out_dir, "results.md"): HEADER + "\n" + section,
    }
    if markdown_copy:
        existing = open(markdown_copy).read() if os.path.exists(markdown_copy) else ""
        paths[markdown_copy] = merge_section(existing, section, results["machine"]["cpu"])
    for path, content in paths.items():
        with open(path, "w") as f:
            f.write(content)
    return list(paths)
