"""The benchmark scripts `make bench` runs print what they say, on the
kernelspecs under test (conftest's JUPYTER_PATH): a few rounds each, no
figure checked - timing belongs in benchmarks, not in tests."""
import os
import re
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")


def bench(*args):
    r = subprocess.run([sys.executable, *args], cwd=BENCH, capture_output=True, text=True,
                       timeout=120, env=os.environ)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_clientcpu_prints_round_trip_and_client_cpu():
    out = bench("clientcpu.py", "cellgate-python", "--n", "20")
    row = re.search(r"^cellgate-python\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert row, out
    p50, cpu, ratio = map(float, row.groups())
    assert p50 > 0 and cpu > 0
    assert abs(ratio - cpu / p50) < 0.01, out


def test_ready_prints_ready_and_first_cell():
    out = bench("ready.py", "cellgate-python", "--rounds", "1")
    for metric in ("ready_ms", "first_cell_ms"):
        assert re.search(rf"^{metric}\s+[\d.]+", out, re.M), out
