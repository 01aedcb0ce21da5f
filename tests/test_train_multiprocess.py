"""fit on several hosts, really run: two processes on localhost (CPU devices, gloo collectives)
each own half of every batch and give one process's losses, params, evaluation and predictions."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4  # in all, split evenly over the processes
TIMEOUT_S = 300
GRACE_S = 20

# argv: process id, process count, coordinator port, output file. XLA_FLAGS gives each process
# its share of the devices; one process skips jax.distributed.
RUN = """
import json, sys
process_id, processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # jax 0.10's default, named to be sure
if processes > 1:
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=processes, process_id=process_id, initialization_timeout=120
    )
jax.config.update("jax_default_matmul_precision", "highest")
import numpy as np
sys.path.insert(0, "tests")
from jlstm import train
from tests.test_train import model_and_params, run_fit, toy
assert (jax.device_count(), jax.process_count()) == (4, processes), jax.devices()
data = toy(n=45)
model = model_and_params(dropout=0.2)
params, history = run_fit(data, data, batch_size=10, model=model, dropout=True)  # 10 rows padded to 12
(rows,) = train._shard((np.arange(12),), train.data_mesh())
with open(out, "w") as f:
    json.dump({
        "history": history,
        "params": [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(params)],
        "evaluation": train.evaluate(model[0], params, data, loss=train.sparse_categorical_crossentropy),
        "predictions": train.predict(model[0], params, data[0], data[2]).tolist(),
        "rows": sorted(int(i) for shard in rows.addressable_shards for i in np.asarray(shard.data)),
    }, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(process_id: int, processes: int, port: int, stem: Path) -> subprocess.Popen:
    """A run writing its results to `stem`.json and its stderr to `stem`.err (stdout, gloo's
    connection chatter, is dropped)."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES // processes}",
        "JAX_PLATFORMS": "cpu",
    }
    argv = [sys.executable, "-c", textwrap.dedent(RUN), str(process_id), str(processes), str(port), f"{stem}.json"]
    with open(f"{stem}.err", "w") as stderr:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def _wait(procs: list[subprocess.Popen]) -> None:
    # A process that fails leaves its peer waiting on it: the others get a grace period, then are killed.
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.returncode for p in procs):
            deadline = min(deadline, time.monotonic() + GRACE_S)
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _results(runs: dict[str, subprocess.Popen], directory: Path) -> dict[str, dict]:
    """Each run's results, or, where one did not exit 0, a failure showing every run's stderr."""
    failed = [name for name, proc in runs.items() if proc.returncode != 0]
    shown = "\n".join(
        f"--- {name} (exit {proc.returncode}) stderr:\n{(directory / f'{name}.err').read_text()[-3000:]}"
        for name, proc in runs.items()
    )
    assert not failed, f"{failed} failed (a negative exit: killed after the others failed or {TIMEOUT_S} s)\n{shown}"
    return {name: json.loads((directory / f"{name}.json").read_text()) for name in runs}


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
    port = _free_port()
    plan = {"process 0 of 2": (0, 2), "process 1 of 2": (1, 2), "one process": (0, 1)}
    runs = {name: _start(pid, count, port, tmp_path / name) for name, (pid, count) in plan.items()}
    _wait(list(runs.values()))
    got = _results(runs, tmp_path)
    one = got.pop("one process")
    assert one["rows"] == list(range(12))
    assert got["process 0 of 2"]["rows"] == list(range(6)) and got["process 1 of 2"]["rows"] == list(range(6, 12))
    for name, run in got.items():
        assert sorted(run["history"]) == sorted(one["history"]), name
        for key, values in one["history"].items():
            np.testing.assert_allclose(run["history"][key], values, rtol=1e-5, atol=1e-5, err_msg=f"{name}: {key}")
        for ours, theirs in zip(run["params"], one["params"], strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=f"{name}: params")
        np.testing.assert_allclose(run["predictions"], one["predictions"], rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(run["evaluation"]["loss"], one["evaluation"]["loss"], rtol=1e-5, atol=1e-5)
