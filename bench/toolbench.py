#!/usr/bin/python3
"""Round-trip times of the client's tools through jupyter_client: comm_open
to the result comm_msg, medians and p90 over --n runs. Downloads come from
an HTTP server on 127.0.0.1 (no traffic leaves the machine).

    /usr/bin/python3 bench/toolbench.py [--kernel cellgate-python] [--n 30]
"""
import argparse
import http.server
import os
import statistics
import sys
import threading
import time
import uuid

from jupyter_client.manager import start_new_kernel

BIG = os.urandom(32 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = BIG if self.path == "/big" else b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def call(kc, target, data):
    msg = kc.session.msg("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": target,
                                       "data": data})
    t0 = time.perf_counter()
    kc.shell_channel.send(msg)
    while True:
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] \
                and m["msg_type"] == "comm_msg":
            result = m["content"]["data"]
            elapsed = time.perf_counter() - t0
            break
    while True:  # to idle, so runs do not overlap
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] \
                and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    assert result.get("status") == "ok", result
    return elapsed, result


def measure(kc, n, target, data):
    times = sorted(call(kc, target, data)[0] for _ in range(n))
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="cellgate-python")
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    os.environ["CELLGATE_DOWNLOAD_ALLOW"] = base + "/*"
    os.environ["CELLGATE_DOWNLOAD_ALLOW_PRIVATE"] = "1"
    km, kc = start_new_kernel(kernel_name=args.kernel)
    try:
        call(kc, "cellgate.exec", {"cmd": "true", "session_name": "b"})  # start the session
        rows = [
            ("exec once: true", "cellgate.exec", {"cmd": "true"}),
            ("exec once: argv", "cellgate.exec", {"cmd": ["echo", "hi"]}),
            ("exec in a session: true", "cellgate.exec", {"cmd": "true", "session_name": "b"}),
            ("feed, yield 0", "cellgate.feed", {"session_name": "b", "chars": "",
                                                "yield_ms": 0}),
            ("download 1 kB", "cellgate.download", {"url": base + "/small", "path": "s"}),
        ]
        print(f"{'tool':28} {'median ms':>10} {'p90 ms':>8}   ({args.n} runs, {args.kernel})")
        for name, target, data in rows:
            med, p90 = measure(kc, args.n, target, data)
            print(f"{name:28} {med * 1000:10.2f} {p90 * 1000:8.2f}")
        t, r = call(kc, "cellgate.download", {"url": base + "/big", "path": "big"})
        print(f"download 32 MiB: {t * 1000:.0f} ms, {r['size'] / t / 1e6:.0f} MB/s")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
