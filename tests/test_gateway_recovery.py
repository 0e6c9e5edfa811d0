"""test_gateway_recovery.py - `cellgate serve` recovering from deaths, through
real clients on 127.0.0.1 (urllib, websocket-client) and real kernels:

- a kernel process killed with SIGKILL is restarted under the same id
  (clients see status "restarting", then a working kernel with a fresh
  namespace); killed again and again it is given up: status "dead" with a
  reason, until a POST .../restart;
- the gateway killed with SIGKILL and started again with the same settings
  and --state-dir re-adopts its kernels: listed, variables intact, and what a
  cell printed while no gateway ran reaches the client that reconnects;
- SIGTERM stops the kernels, unless --keep-kernels.

Every wait is bounded; every process a test starts is stopped at teardown."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from test_gateway import (CELLGATE, GATEWAY, TIMEOUT, Server, execute_request, free_port,
                          kernel_pids, recv_data, run_ws, stop, wait_for, wait_http,
                          wait_kernel_info)
from proctree import alive, pids_where

websocket = pytest.importorskip("websocket")
pytestmark = pytest.mark.skipif(not os.access(GATEWAY, os.X_OK), reason=f"{GATEWAY} is not built")


def kernel_process(kid):
    """The pid of kid's `cellgate kernel` process, or None."""
    found = pids_where(kernel_pids(kid), lambda argv: argv[1:2] == [b"kernel"])
    return found[0] if found else None


class Gateway:
    """`cellgate serve` with a fixed port, token and --state-dir, so it can be
    killed and started again "with the same settings"."""

    def __init__(self, tmp, *args):
        self.port, self.token, self.args = free_port(), uuid.uuid4().hex, args
        self.state = os.path.join(tmp, "state")
        self.log_path = os.path.join(tmp, "server.log")
        self.server, self.kernels = None, set()

    def start(self):
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen([CELLGATE, "serve", "--ip", "127.0.0.1", "--port",
                                     str(self.port), "--token", self.token, "--state-dir",
                                     self.state, *self.args], stdout=log, stderr=subprocess.STDOUT)
        self.server = Server(proc, self.port, self.token)
        wait_http(f"http://127.0.0.1:{self.port}/api", proc, timeout=120)
        return self.server

    def new_kernel(self, name="cellgate-python"):
        status, model, _ = self.server.call("POST", "/api/kernels", {"name": name})
        assert status == 201, model
        self.kernels.add(model["id"])
        return model["id"]

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        """Deletes what it started (also with --keep-kernels), stops it, and
        kills any kernel process left."""
        if self.server and self.server.proc.poll() is None:
            for kid in self.kernels:
                try:
                    self.server.call("DELETE", f"/api/kernels/{kid}")
                except OSError:
                    pass
            stop(self.server.proc)
        for kid in self.kernels:
            for pid in kernel_pids(kid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def gateway():
    """A factory of Gateways (args: extra options), each closed afterwards."""
    made = []
    tmp = tempfile.mkdtemp(prefix="cellgate-gw-rec-")

    def make(*args):
        g = Gateway(os.path.join(tmp, str(len(made))), *args)
        os.makedirs(os.path.dirname(g.log_path))
        made.append(g)
        g.start()
        return g
    yield make
    for g in made:
        g.close()
    subprocess.run(["rm", "-rf", tmp])


def wait_status(ws, states, timeout=TIMEOUT):
    """Reads ws until an iopub status in states; returns that message."""
    deadline = time.monotonic() + timeout
    while True:
        m = json.loads(recv_data(ws, deadline))
        if m["msg_type"] == "status" and m["content"]["execution_state"] in states:
            return m


def kill_kernel(kid, timeout=TIMEOUT):
    """SIGKILLs kid's kernel process (once it has one); returns its pid."""
    assert wait_for(lambda: kernel_process(kid), timeout), "no kernel process"
    pid = kernel_process(kid)
    os.kill(pid, signal.SIGKILL)
    return pid


# ---- a kernel dies under the gateway ------------------------------------------

def test_killed_kernel_is_restarted_under_its_id(gateway):
    g = gateway()
    kid = g.new_kernel()
    ws = g.server.ws(kid)
    try:
        assert run_ws(ws, "x = 41")[0]["content"]["status"] == "ok"
        old = kill_kernel(kid)
        wait_status(ws, ("restarting",))
        wait_kernel_info(ws, tries=60)  # the same WebSocket, a working kernel
        reply, outputs = run_ws(ws, "print('x' in dir(), 6 * 7)")
        assert reply["content"]["status"] == "ok"
        assert outputs[-1]["content"]["text"] == "False 42\n"  # a fresh namespace
        assert kernel_process(kid) not in (None, old)
        status, model, _ = g.server.call("GET", f"/api/kernels/{kid}")
        assert status == 200 and model["id"] == kid and model["execution_state"] == "idle"
        assert [m["id"] for m in g.server.call("GET", "/api/kernels")[1]] == [kid]
    finally:
        ws.close()


def test_kernel_dying_again_and_again_is_given_up(gateway):
    g = gateway("--restart-limit", "2")
    kid = g.new_kernel()
    ws = g.server.ws(kid)
    try:
        wait_kernel_info(ws)
        for _ in range(2):  # the limit: each death restarts it
            kill_kernel(kid)
            wait_status(ws, ("restarting",))
            wait_kernel_info(ws, tries=60)
        kill_kernel(kid)  # one more within 10 s: given up
        dead = wait_status(ws, ("dead", "restarting"))
        assert dead["content"]["execution_state"] == "dead"
        assert "gave up" in dead["content"]["reason"], dead["content"]
        status, model, _ = g.server.call("GET", f"/api/kernels/{kid}")
        assert model["execution_state"] == "dead" and "gave up" in model["reason"]
        assert "gave up" in g.log()
        status, err, _ = g.server.call("POST", f"/api/kernels/{kid}/interrupt")
        assert status == 409 and err["reason"]
        # The client may still revive it.
        status, model, _ = g.server.call("POST", f"/api/kernels/{kid}/restart")
        assert status == 200 and model["execution_state"] == "idle", model
        assert run_ws(ws, "print(1 + 1)")[1][-1]["content"]["text"] == "2\n"
    finally:
        ws.close()


def test_restart_limit_zero_never_restarts(gateway):
    g = gateway("--restart-limit", "0")
    kid = g.new_kernel()
    ws = g.server.ws(kid)
    try:
        wait_kernel_info(ws)
        kill_kernel(kid)
        assert wait_status(ws, ("dead", "restarting"))["content"]["execution_state"] == "dead"
    finally:
        ws.close()


# ---- the gateway dies -----------------------------------------------------------

def test_gateway_killed_and_started_again_readopts_its_kernels(gateway):
    g = gateway()
    kid = g.new_kernel()
    sid = uuid.uuid4().hex
    ws = g.server.ws(kid, session_id=sid)
    run_ws(ws, "v = 1234")
    pid = kernel_process(kid)
    # A cell that prints once the gateway is gone: the gateway is killed as
    # soon as the kernel says busy.
    mid, msg = execute_request("import time\ntime.sleep(2)\nprint('done-meanwhile')", sid)
    ws.send(json.dumps(msg))
    wait_status(ws, ("busy",))
    g.server.proc.kill()
    g.server.proc.wait(timeout=10)
    ws.close()
    time.sleep(3)  # the cell ends while no gateway runs
    assert alive(pid), "the kernel died with its gateway"
    g.start()
    status, models, _ = g.server.call("GET", "/api/kernels")
    assert status == 200 and [m["id"] for m in models] == [kid], models
    assert "re-adopted 1 kernels" in g.log()
    ws = g.server.ws(kid, session_id=sid)
    try:
        deadline = time.monotonic() + TIMEOUT
        texts = []
        while "done-meanwhile\n" not in texts:
            m = json.loads(recv_data(ws, deadline))
            if m["msg_type"] == "stream":
                texts.append(m["content"]["text"])
                assert m["parent_header"].get("msg_id") == mid
        wait_kernel_info(ws)
        reply, outputs = run_ws(ws, "print(v)")
        assert outputs[-1]["content"]["text"] == "1234\n"  # its variables intact
        assert kernel_process(kid) == pid  # the same process
        assert g.server.call("GET", f"/api/kernels/{kid}")[1]["execution_state"] == "idle"
    finally:
        ws.close()
    # And it stays usable after a restart by the new gateway (not its child).
    status, model, _ = g.server.call("POST", f"/api/kernels/{kid}/restart")
    assert status == 200 and model["execution_state"] == "idle"
    assert wait_for(lambda: not alive(pid), 10), "the adopted process outlived its restart"


def test_adopted_kernel_killed_is_restarted(gateway):
    g = gateway()
    kid = g.new_kernel()
    g.server.proc.kill()
    g.server.proc.wait(timeout=10)
    g.start()
    ws = g.server.ws(kid)
    try:
        wait_kernel_info(ws)
        kill_kernel(kid)  # not the new gateway's child: /proc tells it
        wait_status(ws, ("restarting",))
        wait_kernel_info(ws, tries=60)
        assert run_ws(ws, "print(3)")[1][-1]["content"]["text"] == "3\n"
    finally:
        ws.close()


def test_sigterm_stops_kernels(gateway):
    g = gateway()
    kid = g.new_kernel()
    pid = kernel_process(kid)
    g.server.proc.send_signal(signal.SIGTERM)
    assert g.server.proc.wait(timeout=20) == 0
    assert wait_for(lambda: not alive(pid), 10), "SIGTERM left the kernel running"
    g.start()  # nothing to re-adopt
    assert g.server.call("GET", "/api/kernels")[1] == []


def test_keep_kernels_keeps_them_across_sigterm(gateway):
    g = gateway("--keep-kernels")
    kid = g.new_kernel()
    ws = g.server.ws(kid)
    try:
        run_ws(ws, "w = 7")
    finally:
        ws.close()
    pid = kernel_process(kid)
    g.server.proc.send_signal(signal.SIGTERM)
    assert g.server.proc.wait(timeout=20) == 0
    time.sleep(1)
    assert alive(pid), "--keep-kernels: SIGTERM stopped the kernel"
    g.start()
    assert [m["id"] for m in g.server.call("GET", "/api/kernels")[1]] == [kid]
    ws = g.server.ws(kid)
    try:
        wait_kernel_info(ws)
        assert run_ws(ws, "print(w)")[1][-1]["content"]["text"] == "7\n"
    finally:
        ws.close()


def test_a_second_gateway_on_the_same_state_is_refused(gateway):
    g = gateway()
    proc = subprocess.run([CELLGATE, "serve", "--ip", "127.0.0.1", "--port", str(g.port),
                           "--token", g.token, "--state-dir", g.state],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "another gateway" in proc.stderr
    assert g.server.call("GET", "/api")[0] == 200


def test_a_failed_start_leaves_kernels_to_readopt(gateway):
    """A gateway that cannot start (its port taken) must not remove what the
    kernels it would have re-adopted need (their sockets' directory)."""
    g = gateway("--keep-kernels")
    kid = g.new_kernel()
    pid = kernel_process(kid)
    g.server.proc.send_signal(signal.SIGTERM)
    assert g.server.proc.wait(timeout=20) == 0
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", g.port))
        taken.listen()
        proc = subprocess.run([CELLGATE, "serve", "--ip", "127.0.0.1", "--port", str(g.port),
                               "--token", g.token, "--state-dir", g.state, "--keep-kernels"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, proc.stderr
    assert alive(pid)
    g.start()
    assert [m["id"] for m in g.server.call("GET", "/api/kernels")[1]] == [kid]
    ws = g.server.ws(kid)
    try:
        wait_kernel_info(ws)
        assert run_ws(ws, "print(5)")[1][-1]["content"]["text"] == "5\n"
    finally:
        ws.close()
