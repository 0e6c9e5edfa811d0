#!/usr/bin/python3
"""Package installs through the registry gateway against the same package
manager on the host going upstream directly, side by side in one run,
medians over --n rounds (issue 11's benchmark, not a timed test).

npm: `npm install` of a small dependency tree (--npm, ~20 packages) from
the real npm registry:
  direct      npm on the host, a fresh project and a fresh npm cache
  cold        npm in a fresh kernel's box, through a gateway whose artifact
              cache is empty (a fresh state directory)
  warm        npm in a second fresh kernel whose gateway shares the first
              one's artifact cache (the box's own npm cache is new)
pip: the same with pip against a PyPI-style index this script serves on
127.0.0.1 (wheels it builds), so only npm leaves the machine.

    /usr/bin/python3 bench/registrybench.py [--n 3] [--npm "yargs@17.7.2 chalk@4.1.2"]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from jupyter_client import KernelManager

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_packages import Index  # noqa: E402  (the tests' local index)

NPM_TREE = "yargs@17.7.2 chalk@4.1.2"
PIP_PACKAGES = [("cgbench%d" % i, "1.0", "VALUE = %d\n" % i) for i in range(10)]


def run_in_kernel(state, code, env, timeout=600):
    """Starts a cellgate-bash kernel with its state in `state`, runs code,
    returns the wall time of the cell in seconds."""
    km = KernelManager(kernel_name="cellgate-bash")
    km.start_kernel(env={**os.environ, "CELLGATE_STATE_DIR": state, **env})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("true", timeout=60)  # the box and its gateway are up
        t0 = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: None)
        elapsed = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        return elapsed
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def timed(cmd, cwd, env):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def npm_round(tree):
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "npm_config_cache": os.path.join(d, "cache"),
               "npm_config_audit": "false", "npm_config_fund": "false",
               "npm_config_update_notifier": "false"}
        os.mkdir(os.path.join(d, "proj"))
        direct = timed(["npm", "install", "--no-save", *tree.split()], os.path.join(d, "proj"),
                       env)
        state = os.path.join(d, "state")
        code = "cd /mnt/data && npm install --no-save %s >/dev/null 2>&1" % tree
        cold = run_in_kernel(state, code, {})
        warm = run_in_kernel(state, code, {})
    return direct, cold, warm


def pip_round(index):
    names = " ".join(p[0] for p in PIP_PACKAGES)
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_CACHE_DIR": os.path.join(d, "pipcache")}
        direct = timed([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", os.path.join(d, "target"), "--index-url",
                        index.url + "/simple/", *names.split()], d, env)
        state = os.path.join(d, "state")
        code = "python3 -m pip install -q --no-deps %s" % names
        kenv = {"CELLGATE_REGISTRY_PYPI": index.url + "/simple"}
        cold = run_in_kernel(state, code, kenv)
        warm = run_in_kernel(state, code, kenv)
    return direct, cold, warm


def report(name, rounds):
    direct, cold, warm = (statistics.median(r[i] for r in rounds) for i in range(3))
    print("%-4s direct %7.2f s | gateway cold %7.2f s (%.2fx, goal <= 1.3x) | "
          "warm %7.2f s (%.2fx of direct, goal <= 0.5x)"
          % (name, direct, cold, cold / direct, warm, warm / direct))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--npm", default=NPM_TREE, help="packages for npm install")
    ap.add_argument("--skip-npm", action="store_true")
    args = ap.parse_args()
    if not args.skip_npm and shutil.which("npm"):
        report("npm", [npm_round(args.npm) for _ in range(args.n)])
    index = Index(PIP_PACKAGES)
    try:
        report("pip", [pip_round(index) for _ in range(args.n)])
    finally:
        index.close()


if __name__ == "__main__":
    main()
