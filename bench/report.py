"""The bench's results as a printed table, JSON and Markdown, all from the same tables."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

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
    headers = ["shape (B,T,F,U)", "dir", "peer", "fwd ms", "train ms", "fwd ×", "train ×",
               "fwd GFLOP/s", "train GFLOP/s", "compile fwd s", "compile train s"]
    cells = [[
        f"{r['shape']} ({r['batch']},{r['timesteps']},{r['features']},{r['units']})", r["direction"], r["peer"],
        _number(r["forward_ms"], 3) + _noisy(r, "forward"), _number(r["train_ms"], 3) + _noisy(r, "train"),
        _number(r["forward_ratio"], 2, "x"), _number(r["train_ratio"], 2, "x"),
        _number(r["forward_gflops"], 1), _number(r["train_gflops"], 1),
        _number(r["forward_compile_s"], 2), _number(r["train_compile_s"], 2),
    ] for r in rows]
    return headers, cells


def agreement_table(checks: Sequence[dict[str, Any]]) -> Table:
    """jlstm's forward against torch's on the same weights."""
    return ["shape", "dir", "max |jlstm - torch|", "within 1e-4"], [
        [c["shape"], c["direction"], f"{c['max_abs_err']:.2e}", "yes" if c["ok"] else "NO"] for c in checks
    ]


def scaling_table(rows: Sequence[dict[str, Any]]) -> Table:
    """jlstm's compile seconds at a short and a long sequence."""
    return ["dir", "call", "T", "compile s", "long / short", "within 2x"], [
        [r["direction"], r["call"], " vs ".join(map(str, r["timesteps"])),
         " vs ".join(f"{s:.2f}" for s in r["seconds"]), f"{r['ratio']:.2f}", "yes" if r["ok"] else "NO"]
        for r in rows
    ]


def memory_table(rows: Sequence[dict[str, Any]]) -> Table:
    """XLA's memory analysis of jlstm's training step at the long sequence."""
    return ["dir", "remat", "(B,T,F,U)", "temp", "arguments", "outputs", "peak (args+outs+temp)"], [
        [r["direction"], "yes" if r["remat"] else "no", "(" + ",".join(map(str, r["shape"])) + ")",
         _bytes(r["temp_bytes"]), _bytes(r["argument_bytes"]), _bytes(r["output_bytes"]), _bytes(r["peak_bytes"])]
        for r in rows
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
    torch = (f"{roofline['torch_gflops']:,.1f} GFLOP/s" if "torch_gflops" in roofline
             else f"skipped ({roofline.get('torch_note', 'not measured')})")
    return f"f32 matmul {n}x{n} @ {n}x{n} (fastest call): jax {roofline['jax_gflops']:,.1f} GFLOP/s, torch {torch}"


def machine_line(m: dict[str, Any]) -> str:
    """When and where the run was, with what versions, and how busy the machine was."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    load = f"{m['load_average_1m']:.2f} at the start, {m.get('load_average_1m_end', float('nan')):.2f} at the end"
    return (f"{m['date']} on {m['cpu']}, {m['cores']} cores ({m['platform']}, Python {m['python']}, "
            f"JAX backend {m['jax_backend']}); jlstm at {m['jlstm_commit']}; {versions}. Load average (1 min) {load}.")


def _notes(notes: Sequence[dict[str, Any]]) -> list[str]:
    return [f"- {n['kind']}: {n['where']}: {n['note']}" for n in notes]


def text(results: dict[str, Any]) -> str:
    """What `python -m bench` prints: roofline, the main table, the extra rows and the notes."""
    parts = [machine_line(results["machine"]), roofline_line(results["roofline"]), "",
             render_text(main_table(results["rows"])),
             f"Median ms; × = peer time / jlstm time (above 1: jlstm faster); "
             f"! = median over {NOISY:g}x the fastest call."]
    for title, key, table in _extra_tables():
        if results[key]:
            parts += ["", title, render_text(table(results[key]))]
    if results["notes"]:
        parts += ["", "Notes:", *_notes(results["notes"])]
    return "\n".join(parts)


def _extra_tables():
    return [
        ("Agreement with torch.nn.LSTM on the same weights (forward, return_sequences)", "agreement", agreement_table),
        ("jlstm compile time against sequence length (trace + lower + compile)", "compile_scaling", scaling_table),
        ("jlstm training-step memory at the long sequence (XLA memory analysis)", "remat_memory", memory_table),
    ]


def markdown(results: dict[str, Any]) -> str:
    """The full report: machine, roofline, main table, extra rows, notes."""
    parts = [
        "# jlstm beside its peers", "",
        f"Run with `python -m bench` {machine_line(results['machine'])}", "",
        "Reproduce: `pip install -e '.[bench]' && python -m bench --results bench/RESULTS.md` "
        "(`--quick` for a smoke run; `--shapes`, `--directions`, `--peers`, `--repeats` to pick).", "",
        "Times are medians after warm-up; `×` is the peer's time over jlstm's (above 1: jlstm is faster). "
        "GFLOP/s counts 2·B·T·(F+U)·4U per direction forward and 3x that for a training step "
        "(value and grad of the mean square of the output sequence w.r.t. the params). "
        "Compile is the first call minus the median (JAX libraries only). "
        f"`!` marks a median over {NOISY:g}x the fastest call: the machine was busy, read that time with care.", "",
        f"Roofline: {roofline_line(results['roofline'])}.", "",
        render_markdown(main_table(results["rows"])),
    ]
    for title, key, table in _extra_tables():
        if results[key]:
            parts += ["", f"## {title}", "", render_markdown(table(results[key]))]
    if results["notes"]:
        parts += ["", "## Notes", "", *_notes(results["notes"])]
    return "\n".join(parts) + "\n"


def write(results: dict[str, Any], out_dir: str, markdown_copy: str | None = None) -> list[str]:
    """Writes results.json and results.md under `out_dir` (and the Markdown to `markdown_copy`)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {os.path.join(out_dir, "results.json"): json.dumps(results, indent=2) + "\n",
             os.path.join(out_dir, "results.md"): markdown(results)}
    if markdown_copy:
        paths[markdown_copy] = paths[os.path.join(out_dir, "results.md")]
    for path, content in paths.items():
        with open(path, "w") as f:
            f.write(content)
    return list(paths)
