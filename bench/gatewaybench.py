#!/usr/bin/python3
"""The same kernelspec served by jupyter_server and by `cellgate serve`, side by
side in one run, through the API both speak (REST /api/kernels and the
/api/kernels/{id}/channels WebSocket), medians over --n rounds that take the
servers in turn (issue 12's benchmark, not a timed test):

  start        POST /api/kernels until the kernel answers an execute
  connect      open the channels WebSocket and run one execute
  warm         execute round trip over one open WebSocket (median of --warm)
  many         --many kernels started, used and deleted, --batch at a time

plus the same kernel driven directly over ZeroMQ by jupyter_client (the warm
round trip the gateway hop is compared with), and each server's memory. A
third column is `cellgate serve --pool KERNEL=--many`: kernels started ahead
and handed out by POST /api/kernels, the pool refilled before each round
(its steady state; a burst beyond the pool starts kernels as without one).

--scale N instead keeps N kernels alive at once behind one `cellgate serve`
(started --batch at a time, each answering a cell over its WebSocket), then
runs a cell on every one of them again and reports the times, the gateway's
own memory and the kernels' memory (PSS of their process trees).

    /usr/bin/python3 bench/gatewaybench.py [--kernel cellgate-python] [--n 3]
    /usr/bin/python3 bench/gatewaybench.py --scale 100
"""
import argparse
import concurrent.futures
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import websocket  # Debian python3-websocket
from jupyter_client.manager import start_new_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLGATE = os.path.abspath(os.environ.get("CELLGATE_BIN", os.path.join(ROOT, "build", "cellgate")))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Jupyter-API server on 127.0.0.1 with a token."""

    def __init__(self, kind, env, extra=()):
        self.kind, self.port, self.token = kind, free_port(), secrets.token_hex(16)
        if kind.startswith("cellgate"):
            argv = [CELLGATE, "serve", "--ip", "127.0.0.1", "--port", str(self.port),
                    "--token", self.token, *extra]
        else:
            argv = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip", "127.0.0.1",
                    "--port", str(self.port), f"--ServerApp.token={self.token}",
                    "--ServerApp.port_retries=0", "--allow-root"]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.call("GET", "/api/kernelspecs")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{kind} did not answer on port {self.port}")

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return json.loads(data) if data else None

    def connect(self, kid):
        # TCP_NODELAY: websocket-client writes a frame's header and payload
        # apart, and Nagle with delayed ACKs would add ~40 ms to each message
        return websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kid}/channels?token={self.token}",
            timeout=60, sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))

    def rss_mb(self):
        """The server process's own resident memory (cellgate serve execs
        cellgate-gateway in the same process)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def kernel_processes(self):
        """How many kernel processes the server runs (pooled ones too)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return 0
        n = 0
        for pid in kids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    n += b"kernel\0-f" in f.read()
            except OSError:
                pass
        return n

    def settle(self, n):
        """Waits (at most 120 s) until n kernel processes run, then 1 s."""
        deadline = time.monotonic() + 120
        while self.kernel_processes() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)

    def children_pss_mb(self):
        """Proportional memory of every process under the server but itself
        (its kernels and their boxes)."""
        kids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    more = [int(c) for c in f.read().split()]
            except OSError:
                continue
            kids += more
            todo += more
        total = 0
        for pid in kids:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def execute(ws, code="1+1"):
    """One execute_request over ws; returns when its reply and idle came."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"channel": "shell", "header": {
        "msg_id": msg_id, "msg_type": "execute_request", "username": "bench",
        "session": "bench", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "content": {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}}))
    replied = idle = False
    while not (replied and idle):
        m = json.loads(ws.recv())
        if m.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "execute_reply":
            assert m["content"]["status"] == "ok", m["content"]
            replied = True
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True


def start_and_use(srv, kernel):
    t0 = time.perf_counter()
    kid = srv.call("POST", "/api/kernels", {"name": kernel})["id"]
    ws = srv.connect(kid)
    execute(ws)
    started = time.perf_counter() - t0
    ws.close()
    return kid, started


def round_of(srv, kernel, warm_n, many, batch):
    kid, start = start_and_use(srv, kernel)
    t0 = time.perf_counter()
    ws = srv.connect(kid)
    execute(ws)
    connect = time.perf_counter() - t0
    warm = []
    for _ in range(warm_n):
        t = time.perf_counter()
        execute(ws)
        warm.append(time.perf_counter() - t)
    ws.close()
    srv.call("DELETE", f"/api/kernels/{kid}")
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(batch) as pool:
        for i in range(0, many, batch):
            kids = list(pool.map(lambda _: start_and_use(srv, kernel)[0], range(batch)))
            list(pool.map(lambda k: srv.call("DELETE", f"/api/kernels/{k}"), kids))
    return start, connect, statistics.median(warm), time.perf_counter() - t0


def zmq_warm(kernel, n):
    km, kc = start_new_kernel(kernel_name=kernel)
    try:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: None)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def scale(env, kernel, n, batch):
    """n live kernels behind one cellgate serve; prints what it took."""
    srv = Server("cellgate", env, ("--max-kernels", str(n)))
    rss0 = srv.rss_mb()
    conns = []
    try:
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(batch) as pool:
            for i in range(0, n, batch):
                def one(_):
                    kid = srv.call("POST", "/api/kernels", {"name": kernel})["id"]
                    ws = srv.connect(kid)
                    execute(ws, "print('hi')")
                    return kid, ws
                conns += pool.map(one, range(min(batch, n - i)))
        started = time.perf_counter() - t0
        listed = len(srv.call("GET", "/api/kernels"))
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(batch) as pool:
            list(pool.map(lambda c: execute(c[1], "x = 6 * 7"), conns))
        again = time.perf_counter() - t0
        rss, pss = srv.rss_mb(), srv.children_pss_mb()
        print(f"{n} live {kernel} kernels behind one cellgate serve ({listed} listed)")
        print(f"  started and each answered a cell, {batch} at a time: {started:.2f} s")
        print(f"  one more cell on every kernel, {batch} at a time: {again:.2f} s "
              f"({again / n * 1000:.1f} ms per cell)")
        print(f"  gateway RSS: {rss0:.1f} MB idle, {rss:.1f} MB with {n} kernels "
              f"and {n} WebSockets")
        print(f"  kernels' memory (PSS of their process trees): {pss:.0f} MB, "
              f"{pss / n:.1f} MB per kernel")
    finally:
        for kid, ws in conns:
            ws.close()
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(batch) as pool:
            list(pool.map(lambda c: srv.call("DELETE", f"/api/kernels/{c[0]}"), conns))
        print(f"  deleted in {time.perf_counter() - t0:.2f} s")
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="cellgate-python")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--many", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--scale", type=int, default=0, metavar="N")
    args = ap.parse_args()

    prefix = tempfile.mkdtemp(prefix="cellgate-gwbench-")
    subprocess.run([CELLGATE, "install", "--prefix", prefix], check=True,
                   stdout=subprocess.DEVNULL)
    env = {**os.environ, "JUPYTER_PATH": os.path.join(prefix, "share", "jupyter")}
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]
    if args.scale:
        return scale(env, args.kernel, args.scale, args.batch)
    results, rss = {}, {}
    kinds = {"jupyter_server": (), "cellgate": (),
             "cellgate --pool": ("--pool", f"{args.kernel}={args.many}")}
    # Rounds interleave the servers (all three up at once), so a change in
    # the machine's load falls on each of them alike.
    servers = {}
    try:
        for kind, extra in kinds.items():
            servers[kind] = Server(kind, env, extra)
        rounds = {kind: [] for kind in kinds}
        direct = []
        for _ in range(args.n):
            for kind, srv in servers.items():
                if kinds[kind]:  # the pool is full before the clock starts
                    srv.settle(args.many)
                rounds[kind].append(round_of(srv, args.kernel, args.warm, args.many,
                                             args.batch))
            direct.append(zmq_warm(args.kernel, args.warm))
        for kind, srv in servers.items():
            results[kind] = [statistics.median(r[i] for r in rounds[kind]) for i in range(4)]
            rss[kind] = srv.rss_mb()
    finally:
        for srv in servers.values():
            srv.stop()
    direct = statistics.median(direct)
    names = ["start (POST to first reply) s", "connect + execute s", "warm round trip ms",
             f"{args.many} kernels, {args.batch} at a time s"]
    print(f"{'figure':40} {'jupyter_server':>15} {'cellgate serve':>15} {'ratio':>7}"
          f" {'with --pool':>12} {'ratio':>7}")
    for i, name in enumerate(names):
        js, cg, cp = (results[k][i] for k in kinds)
        f = 1000 if "ms" in name else 1
        print(f"{name:40} {js * f:15.3f} {cg * f:15.3f} {cg / js:7.2f} {cp * f:12.3f}"
              f" {cp / js:7.2f}")
    print(f"{'warm round trip, ZeroMQ direct ms':40} {'':>15} {direct * 1000:15.3f} "
          f"{results['cellgate'][2] / direct:7.2f}  (gateway / direct, goal <= 1.5)")
    print(f"{'server RSS MB':40} {rss['jupyter_server']:15.1f} {rss['cellgate']:15.1f}"
          f" {'':>7} {rss['cellgate --pool']:12.1f}")


if __name__ == "__main__":
    main()
