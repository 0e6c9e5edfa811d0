"""jupyter console (Debian's jupyter-console) driving cellgate kernels, as
the README shows: lines typed at its prompt run in the kernel."""
import subprocess

import pytest


@pytest.mark.parametrize("kernel,lines,want", [
    ("cellgate-python", "x = 6 * 7\nprint(x)\n", "42"),
    ("cellgate-bash", "n=6\necho $((n * 7))\n", "42"),
])
def test_console(kernel, lines, want, tmp_path):
    r = subprocess.run(["/usr/bin/python3", "-m", "jupyter_console", "--kernel", kernel,
                        "--simple-prompt"], input=lines + "exit\n", capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert want in r.stdout, r.stdout + r.stderr
