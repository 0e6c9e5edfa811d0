"""Shared fixtures: the kernelspecs are installed into a temporary prefix
(`cellgate install --prefix`) and JUPYTER_PATH points there, so the tests
use the binary just built, never whatever a user installed."""
import os
import queue
import shutil
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The binary under test: `make test` passes the one it built (so a
# sanitizer build in another directory is the one tested).
CELLGATE = os.path.abspath(os.environ.get("CELLGATE_BIN", os.path.join(ROOT, "build", "cellgate")))
PREFIX = tempfile.mkdtemp(prefix="cellgate-specs-")

subprocess.run([CELLGATE, "install", "--prefix", PREFIX], check=True, stdout=subprocess.DEVNULL)
# CELLGATE_WRAPPER (e.g. "valgrind -q ...") runs every test kernel under a tool.
if os.environ.get("CELLGATE_WRAPPER"):
    import json
    import shlex
    _kernels = os.path.join(PREFIX, "share", "jupyter", "kernels")
    for _name in os.listdir(_kernels):
        _path = os.path.join(_kernels, _name, "kernel.json")
        with open(_path) as _f:
            _spec = json.load(_f)
        _spec["argv"] = shlex.split(os.environ["CELLGATE_WRAPPER"]) + _spec["argv"]
        with open(_path, "w") as _f:
            json.dump(_spec, _f)
os.environ["JUPYTER_PATH"] = os.path.join(PREFIX, "share", "jupyter")
# Keep jupyter_client's runtime files (connection files) and the boxes'
# /mnt/data directories out of $HOME and /var/lib.
os.environ.setdefault("JUPYTER_RUNTIME_DIR", tempfile.mkdtemp(prefix="cellgate-rt-"))
os.environ.setdefault("CELLGATE_STATE_DIR", tempfile.mkdtemp(prefix="cellgate-state-"))

from jupyter_client.manager import KernelManager, start_new_kernel  # noqa: E402

from proctree import descendants, alive as pid_alive  # noqa: E402,F401 - for the test modules

TIMEOUT = 20


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(PREFIX, ignore_errors=True)


def run(kc, code, timeout=TIMEOUT, stdin=None, **kw):
    """Executes code; returns (reply, outputs) where outputs are the IOPub
    messages between busy and idle (execute_input excluded). stdin, if
    given, is a list of answers for input_requests."""
    msg_id = kc.execute(code, allow_stdin=stdin is not None, **kw)
    outputs, answers = [], list(stdin or [])
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no idle for {code!r}; got {outputs}")
        if stdin is not None:
            try:
                req = kc.get_stdin_msg(timeout=0.01)
                assert req["msg_type"] == "input_request"
                outputs.append(req)
                kc.input(answers.pop(0))
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=min(left, 0.05 if stdin is not None else left))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        if msg["msg_type"] != "execute_input":
            outputs.append(msg)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return reply, outputs


def stream_text(outputs, name=None):
    return "".join(m["content"]["text"] for m in outputs
                   if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name))


def errors(outputs):
    return [m for m in outputs if m["msg_type"] == "error"]


@pytest.fixture
def kernel_factory():
    """Starts kernels by kernelspec name (with optional env); shuts them all
    down afterwards."""
    started = []

    def start(name, env=None):
        km = KernelManager(kernel_name=name)
        kw = {}
        if env:
            kw["env"] = {**os.environ, **env}
        km.start_kernel(**kw)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        started.append((km, kc))
        return km, kc

    yield start
    for km, kc in started:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


def _module_kernel(name):
    """A fixture: one kernel of kernelspec name shared by a test module."""
    @pytest.fixture(scope="module")
    def fixture():
        km, kc = start_new_kernel(kernel_name=name)
        yield km, kc
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return fixture


python_kernel = _module_kernel("cellgate-python")
bash_kernel = _module_kernel("cellgate-bash")
multi_kernel = _module_kernel("cellgate")


def kernel_pid(km):
    return km.provisioner.process.pid


def wait_until(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
