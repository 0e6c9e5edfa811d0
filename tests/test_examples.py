"""The examples a newcomer runs from the README keep working."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_agent_harness(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "agent.py"),
                        "--workdir", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.rstrip().endswith("agent example: ok")
    assert "'status': 'ok', 'path': '/mnt/data/red.png'" in p.stdout
