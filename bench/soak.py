#!/usr/bin/python3
"""soak.py - N cellgate-python kernels behind one `cellgate serve` gateway
for M minutes, each driven over the gateway's channels WebSocket by its own
thread with a random mix of cells:

  burst      thousands of numbered lines: every one must arrive, whole, in order
  error      an exception: an error reply and an error message naming it
  interrupt  a long sleep, POST .../interrupt: KeyboardInterrupt within seconds
  restart    POST .../restart: the same WebSocket goes on, the variables gone
  stdin      input() answered with an input_reply over the WebSocket
  download   the cellgate.download comm tool from an HTTP server on 127.0.0.1:
             size and sha256 as served, and the file in the box the same
  npm        npm install through the kernel's registry gateway (its upstream an
             npm registry served here on 127.0.0.1; --npm real: registry.npmjs.org)
  reconnect  the WebSocket closed mid-cell and opened again with the same
             session_id: the output still arrives complete and in order

It reports the gateway's and the kernels' memory (RSS, PSS) and open file
descriptors after a warm-up round and at the end, and every failure with the
seed that replays the same sequence of cells (--seed). Exit status 1 on any
failure or when the gateway's descriptors or memory grew.

  /usr/bin/python3 bench/soak.py [--kernels 4] [--minutes 8] [--seed S] [--npm local|real|off]

Everything runs on 127.0.0.1 (but --npm real). The binary is $CELLGATE_BIN
(default build/cellgate)."""
import argparse
import hashlib
import http.server
import json
import os
import random
import shutil
import sys
import threading
import time
import traceback
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import websocket  # noqa: E402
from proctree import descendants  # noqa: E402
from test_gateway import execute_request, kernel_pids, recv_data, start_gateway  # noqa: E402

TIMEOUT = 60
ACTIONS = ["burst", "burst", "error", "interrupt", "restart", "stdin", "download", "download",
           "npm", "reconnect", "reconnect"]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# ---- what the script serves on 127.0.0.1 -------------------------------------------

class Files:
    """Files of random bytes for cellgate.download, and a redirect to each."""

    def __init__(self, seed):
        rnd = random.Random(seed)
        self.bodies = {f"/f{i}.bin": rnd.randbytes(rnd.choice([0, 1, 1000, 70_000, 900_000]))
                       for i in range(8)}
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/r/"):
                    self.send_response(302)
                    self.send_header("Location", self.path[2:])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = bodies.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"no"
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- one kernel's driver ----------------------------------------------------------

class Driver:
    """One kernel, one WebSocket session, one random sequence of cells."""

    def __init__(self, gw, kid, index, seed, files, npm):
        self.gw, self.kid, self.index, self.files, self.npm = gw, kid, index, files, npm
        self.seed = seed
        self.rnd = random.Random(seed)
        self.sid = uuid.uuid4().hex
        self.ws = self.connect()
        self.counts, self.failures, self.step = {}, [], 0

    def connect(self):
        return self.gw.ws(self.kid, session_id=self.sid)

    def send(self, msg):
        self.ws.send(json.dumps(msg))

    def collect(self, mid, deadline, on_msg=None):
        """(reply, outputs) of request mid: its iopub messages between busy and
        idle (not execute_input or status), deduplicated by msg_id (a message
        replayed after a reconnect counts once)."""
        reply, outputs, idle, seen = None, [], False, set()
        while reply is None or not idle:
            check(time.monotonic() < deadline, f"no reply/idle in time; got {len(outputs)} outputs")
            m = json.loads(recv_data(self.ws, deadline))
            if m["parent_header"].get("msg_id") != mid:
                continue
            if m["header"]["msg_id"] in seen:
                continue
            seen.add(m["header"]["msg_id"])
            if on_msg and on_msg(m):
                continue
            if m["channel"] == "shell":
                reply = m
            elif m["msg_type"] == "status":
                idle = idle or m["content"]["execution_state"] == "idle"
            elif m["msg_type"] != "execute_input":
                outputs.append(m)
        return reply, outputs

    def execute(self, code, timeout=TIMEOUT, allow_stdin=False, on_msg=None):
        mid, msg = execute_request(code, self.sid)
        msg["content"]["allow_stdin"] = allow_stdin
        self.send(msg)
        return self.collect(mid, time.monotonic() + timeout, on_msg)

    def ok(self, code, timeout=TIMEOUT):
        reply, outputs = self.execute(code, timeout)
        check(reply["content"]["status"] == "ok", f"{code[:60]!r}: {reply['content']}")
        return stream(outputs)

    # -- the cells --

    def burst(self):
        n, tag = self.rnd.choice([100, 2000, 20000]), uuid.uuid4().hex[:8]
        width = self.rnd.choice([1, 80, 500])
        text = self.ok(f"import sys\nfor i in range({n}):\n"
                       f"    sys.stdout.write(f'{{i}} {tag} ' + 'x' * {width} + '\\n')\n")
        want = "".join(f"{i} {tag} " + "x" * width + "\n" for i in range(n))
        check(text == want, f"burst of {n}: {describe_diff(text, want)}")

    def error(self):
        tag = uuid.uuid4().hex[:8]
        reply, outputs = self.execute(f"raise ValueError('soak {tag}')")
        check(reply["content"]["status"] == "error" and reply["content"]["ename"] == "ValueError",
              f"error reply: {reply['content']}")
        errs = [m for m in outputs if m["msg_type"] == "error"]
        check(len(errs) == 1 and tag in errs[0]["content"]["evalue"], f"error messages: {errs}")

    def interrupt(self):
        delay = self.rnd.uniform(0.1, 1.5)

        def on_msg(m):
            if m["msg_type"] == "stream" and "sleeping" in m["content"]["text"]:
                threading.Timer(delay, lambda: self.gw.call(
                    "POST", f"/api/kernels/{self.kid}/interrupt")).start()
            return False

        t0 = time.monotonic()
        reply, outputs = self.execute("import time\nprint('sleeping', flush=True)\n"
                                      "time.sleep(120)", timeout=40, on_msg=on_msg)
        check(reply["content"]["status"] == "error"
              and reply["content"].get("ename") == "KeyboardInterrupt",
              f"interrupted cell: {reply['content']}")
        check(time.monotonic() - t0 < 30, "the interrupt took more than 30 s")
        check(self.ok("print(6 * 7)") == "42\n", "no answer after the interrupt")

    def restart(self):
        self.ok("soak_mark = 1")
        status, model, _ = self.gw.call("POST", f"/api/kernels/{self.kid}/restart")
        check(status == 200 and model["id"] == self.kid, f"restart: {status} {model}")
        check(self.ok("print('soak_mark' in dir())") == "False\n", "a variable outlived restart")

    def stdin(self):
        word = uuid.uuid4().hex[:12]
        asked = []

        def on_msg(m):
            if m["channel"] == "stdin" and m["msg_type"] == "input_request":
                asked.append(m["content"]["prompt"])
                reply = {"channel": "stdin", "header": {
                    "msg_id": uuid.uuid4().hex, "msg_type": "input_reply", "session": self.sid,
                    "username": "soak", "date": "2026-01-01T00:00:00.000000Z",
                    "version": "5.3"}, "parent_header": m["header"], "metadata": {},
                    "content": {"value": word}}
                self.send(reply)
                return True
            return False

        reply, outputs = self.execute("x = input('word? ')\nprint(x[::-1])", allow_stdin=True,
                                      on_msg=on_msg)
        check(asked == ["word? "], f"input_request prompts: {asked}")
        check(reply["content"]["status"] == "ok", f"stdin cell: {reply['content']}")
        check(stream(outputs) == word[::-1] + "\n", f"stdin echo: {stream(outputs)!r}")

    def download(self):
        path = self.rnd.choice(sorted(self.files.bodies))
        body = self.files.bodies[path]
        url = self.files.url + (("/r" + path) if self.rnd.random() < 0.3 else path)
        target = f"dl/{uuid.uuid4().hex[:8]}.bin"
        result = self.comm("cellgate.download", {"url": url, "path": target})
        check(result.get("status") == "ok", f"download {url}: {result}")
        check(result["size"] == len(body) and result["sha256"] == hashlib.sha256(body).hexdigest(),
              f"download {url}: {result}, want {len(body)} bytes")
        got = self.ok(f"import hashlib, os\np = {target!r}\n"
                      "print(hashlib.sha256(open(p, 'rb').read()).hexdigest())\nos.remove(p)")
        check(got.strip() == hashlib.sha256(body).hexdigest(), "the box's file differs")

    def comm(self, target, data, timeout=TIMEOUT):
        mid, msg = execute_request("", self.sid)
        msg["header"]["msg_type"] = "comm_open"
        msg["content"] = {"comm_id": uuid.uuid4().hex, "target_name": target, "data": data}
        self.send(msg)
        results = []

        def on_msg(m):
            if m["msg_type"] == "comm_msg":
                results.append(m["content"]["data"])
            return m["channel"] == "shell"  # comms have no reply

        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            check(time.monotonic() < deadline, f"{target}: no idle in time")
            m = json.loads(recv_data(self.ws, deadline))
            if m["parent_header"].get("msg_id") != mid:
                continue
            on_msg(m)
            idle = m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
        check(len(results) == 1, f"{target}: results {results}")
        return results[0]

    def npm_install(self):
        if self.npm == "off":
            return
        pkg = self.rnd.choice(["tiny-a", "tiny-b", "left-pad"] if self.npm == "local"
                              else ["is-number@7.0.0", "left-pad@1.3.0"])
        d = f"/mnt/data/npm-{uuid.uuid4().hex[:8]}"
        name = pkg.split("@")[0]
        out = self.ok("import subprocess, shutil\n"
                      f"r = subprocess.run('mkdir -p {d} && cd {d} && npm install --no-save "
                      f"--no-audit --no-fund {pkg} 2>&1', shell=True, capture_output=True, "
                      "text=True)\n"
                      f"print(r.returncode, open('{d}/node_modules/{name}/package.json').read()"
                      " if r.returncode == 0 else r.stdout[-2000:])\n"
                      f"shutil.rmtree('{d}', ignore_errors=True)", timeout=240)
        check(out.startswith("0 ") and f'"name": "{name}"' in out.replace('":"', '": "'),
              f"npm install {pkg}: {out[-1500:]}")

    def reconnect(self):
        n, tag = self.rnd.choice([50, 300]), uuid.uuid4().hex[:8]
        pause = self.rnd.uniform(0, 1.5)
        mid, msg = execute_request(f"import time\nfor i in range({n}):\n"
                                   f"    print(i, '{tag}', flush=True)\n"
                                   f"    time.sleep({2.0 / n})\n", self.sid)
        self.send(msg)
        deadline = time.monotonic() + TIMEOUT
        first, seen = [], set()
        cut_after = self.rnd.randint(0, 10)
        while len(first) <= cut_after:  # some output, then the client goes away
            m = json.loads(recv_data(self.ws, deadline))
            if m["parent_header"].get("msg_id") == mid and m["msg_type"] == "stream":
                first.append(m)
                seen.add(m["header"]["msg_id"])
        # A clean close: what the gateway sent before its Close frame is
        # read here, what comes after must wait for the same session.
        self.ws.send_close()
        while True:
            check(time.monotonic() < deadline, "no Close frame from the gateway")
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                m = json.loads(frame.data)
                if m["parent_header"].get("msg_id") == mid and m["msg_type"] == "stream" \
                        and m["header"]["msg_id"] not in seen:
                    first.append(m)
                    seen.add(m["header"]["msg_id"])
        self.ws.shutdown()
        time.sleep(pause)
        self.ws = self.connect()
        reply, outputs = self.collect(mid, deadline, on_msg=lambda m: m["header"]["msg_id"] in seen)
        check(reply["content"]["status"] == "ok", f"reconnected cell: {reply['content']}")
        text = stream(first) + stream(outputs)
        want = "".join(f"{i} {tag}\n" for i in range(n))
        check(text == want, f"after reconnect ({pause:.2f} s away): {describe_diff(text, want)}")

    # -- the loop --

    def run_one(self, action):
        self.step += 1
        fn = {"npm": self.npm_install}.get(action) or getattr(self, action)
        t0 = time.monotonic()
        try:
            fn()
            self.counts[action] = self.counts.get(action, 0) + 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, with its seed
            what = e.args[0] if isinstance(e, Failure) else traceback.format_exc()[-1500:]
            self.failures.append({"kernel": self.index, "seed": self.seed, "step": self.step,
                                  "action": action, "after_s": round(time.monotonic() - t0, 1),
                                  "what": str(what)[:2000]})
            log(f"kernel {self.index} step {self.step} {action}: FAILED {str(what)[:300]}")
            try:  # an interrupt and a fresh WebSocket: one failure must not poison the rest
                self.gw.call("POST", f"/api/kernels/{self.kid}/interrupt")
                self.ws.close()
                self.ws = self.connect()
            except Exception:  # noqa: BLE001
                pass

    def soak(self, until):
        while time.monotonic() < until:
            self.run_one(self.rnd.choice(ACTIONS))


def stream(outputs):
    return "".join(m["content"]["text"] for m in outputs
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def describe_diff(got, want):
    g, w = got.splitlines(), want.splitlines()
    for i, (a, b) in enumerate(zip(g, w)):
        if a != b:
            return f"line {i} is {a[:80]!r}, want {b[:80]!r} ({len(g)} lines, want {len(w)})"
    return f"{len(g)} lines, want {len(w)}"


# ---- resources --------------------------------------------------------------------

def proc_figures(pid):
    """(rss_kib, pss_kib, fds) of pid; fds None when not ours to read."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    return rss, pss, fds


def with_descendants(pids):
    """pids and every process under them (the box's init and runtime)."""
    out = list(pids)
    for pid in pids:
        out += [p for p in descendants(pid) if p not in out]
    return out


def figures(gw_pid, kids):
    rss, pss, fds = proc_figures(gw_pid)
    out = {"gateway": {"rss_kib": rss, "pss_kib": pss, "fds": fds}, "kernels": {}}
    for i, kid in enumerate(kids):
        t = {"procs": 0, "rss_kib": 0, "pss_kib": 0, "fds": 0, "fds_unreadable": 0, "comms": []}
        for pid in with_descendants(kernel_pids(kid)):
            r, p, f = proc_figures(pid)
            t["procs"] += 1
            try:
                with open(f"/proc/{pid}/comm") as c:
                    t["comms"].append(c.read().strip())
            except OSError:
                pass
            t["rss_kib"] += r
            t["pss_kib"] += p
            if f is None:
                t["fds_unreadable"] += 1
            else:
                t["fds"] += f
        out["kernels"][i] = t
    return out


def log(text):
    print(time.strftime("%H:%M:%S"), text, flush=True)


# ---- main ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--npm", choices=["local", "real", "off"], default="local")
    ap.add_argument("--json", help="write the figures and failures to this file")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    npm = a.npm if shutil.which("npm") else "off"
    log(f"seed {seed}: {a.kernels} kernels for {a.minutes} min (npm: {npm}); replay with "
        f"--seed {seed}")
    files = Files(seed)
    env = dict(os.environ, CELLGATE_DOWNLOAD_ALLOW=files.url + "/*",
               CELLGATE_DOWNLOAD_ALLOW_PRIVATE="1")
    upstream = None
    if npm == "local":
        from test_registry import Upstream
        upstream = Upstream()
        env["CELLGATE_REGISTRY_NPM"] = upstream.npm
    servers = start_gateway(env=env)
    gw = next(servers)
    drivers, result = [], {"seed": seed, "kernels": a.kernels, "minutes": a.minutes, "npm": npm}
    try:
        kids = []
        for i in range(a.kernels):
            status, model, _ = gw.call("POST", "/api/kernels", {"name": "cellgate-python"})
            if status != 201:
                raise SystemExit(f"starting kernel {i}: {status} {model}")
            kids.append(model["id"])
        drivers = [Driver(gw, kid, i, seed * 1000 + i, files, npm) for i, kid in enumerate(kids)]
        log("warm-up: one cell of each kind per kernel")
        warm = [threading.Thread(target=lambda d=d: [d.run_one(x) for x in sorted(set(ACTIONS))])
                for d in drivers]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        time.sleep(2)
        result["start"] = figures(gw.proc.pid, kids)
        log(f"start: {json.dumps(result['start'])}")
        until = time.monotonic() + a.minutes * 60
        threads = [threading.Thread(target=d.soak, args=(until,)) for d in drivers]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        result["samples"] = []
        while any(t.is_alive() for t in threads):  # the gateway once a minute: a trend
            for t in threads:
                t.join(timeout=max(0.1, 60 / len(threads)))
            g = proc_figures(gw.proc.pid)
            result["samples"].append([round(time.monotonic() - t0), *g])
            log(f"gateway at {result['samples'][-1][0]} s: RSS {g[0]} KiB, PSS {g[1]} KiB, "
                f"{g[2]} fds")
        result["soak_s"] = round(time.monotonic() - t0, 1)
        for d in drivers:  # the same state as at the start: no cell running, connected
            d.ok("print(1)")
        time.sleep(2)
        result["end"] = figures(gw.proc.pid, kids)
        log(f"end: {json.dumps(result['end'])}")
    finally:
        for d in drivers:
            try:
                d.ws.close()
            except Exception:  # noqa: BLE001
                pass
        servers.close()
        files.close()
        if upstream:
            upstream.close()
    result["cells"] = {}
    for d in drivers:
        for k, v in d.counts.items():
            result["cells"][k] = result["cells"].get(k, 0) + v
    result["failures"] = [f for d in drivers for f in d.failures]
    s, e = result["start"]["gateway"], result["end"]["gateway"]
    leaks = []
    if e["fds"] is not None and s["fds"] is not None and e["fds"] > s["fds"] + 2:
        leaks.append(f"gateway fds {s['fds']} -> {e['fds']}")
    if e["rss_kib"] > s["rss_kib"] * 1.25 + 4096:
        leaks.append(f"gateway RSS {s['rss_kib']} -> {e['rss_kib']} KiB")
    for i, ks in result["start"]["kernels"].items():
        ke = result["end"]["kernels"][i]
        if ke["procs"] == ks["procs"] and ke["fds"] > ks["fds"] + 4:
            leaks.append(f"kernel {i} fds {ks['fds']} -> {ke['fds']}")
    result["leaks"] = leaks
    log(f"cells: {json.dumps(result['cells'])}")
    for f in result["failures"]:
        log(f"FAILURE (replay: --seed {seed}): {json.dumps(f)}")
    for line in leaks:
        log(f"GREW: {line}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    log(f"{sum(result['cells'].values())} cells, {len(result['failures'])} failures, "
        f"{len(leaks)} resources grew; seed {seed}")
    return 1 if result["failures"] or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
