"""Every Python snippet in README.md runs as pasted, in a fresh namespace, as a user runs it
(JAX's default promotion, jlstm's config restored after)."""

import contextlib
import io
import pathlib
import re

import pytest
from helpers import reference

import jlstm

README = pathlib.Path(__file__).parents[1] / "README.md"


def python_snippets() -> list[tuple[int, str]]:
    """(line number, code) of each ```python block in README.md."""
    text = README.read_text()
    return [
        (text[: m.start()].count("\n") + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    ]


@pytest.fixture
def restored_config():
    saved = {name: getattr(jlstm.config, name) for name in ("forward_form", "backward_form", "tune")}
    yield
    jlstm.config.update(**saved)


def test_readme_has_snippets():
    assert len(python_snippets()) >= 5


@pytest.mark.parametrize("line, code", python_snippets(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_readme_snippet_runs(line, code, restored_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands here
    out = io.StringIO()
    with reference(), contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    expected = re.findall(r"^print\(jlstm\.count_params\(params\)\)\s+# (\d+)$", code, flags=re.MULTILINE)
    if expected:  # the API example's count, as its comment says
        assert out.getvalue().splitlines()[0] == expected[0]
