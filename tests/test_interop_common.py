"""What interop does without any of the other libraries."""


def test_interop_does_not_import_the_other_libraries():
    import subprocess
    import sys

    code = "import sys, jlstm; print(sorted(m for m in ('torch', 'flax', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
