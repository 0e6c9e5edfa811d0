#!/usr/bin/python3
"""A small agent harness: drives a cellgate kernel the way an assistant
does, through jupyter_client - run code, download a file into the sandbox,
show an image, run commands in a persistent shell session and type into a
running program.

    /usr/bin/python3 examples/agent.py            # after `make` (kernelspecs installed)

It serves one file from a local HTTP server on 127.0.0.1 for the download
step, so it needs no network; the download policy is the operator's and is
set here in the kernel's environment (CELLGATE_DOWNLOAD_ALLOW and, since the
server is on loopback, CELLGATE_DOWNLOAD_ALLOW_PRIVATE=1). A real harness
would instead append each URL the user approved to the file named by
CELLGATE_DOWNLOAD_SEEN.
"""
import argparse
import http.server
import os
import sys
import threading
import uuid

from jupyter_client.manager import KernelManager

TIMEOUT = 60


class Agent:
    """One kernel, used through messages only."""

    def __init__(self, kernel_name="cellgate-python", env=None):
        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel(env={**os.environ, **(env or {})})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def _collect(self, msg_id):
        """IOPub messages for one request, until its idle."""
        out = []
        while True:
            m = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "status":
                if m["content"]["execution_state"] == "idle":
                    return out
                continue
            out.append(m)

    def run(self, code):
        """Runs a cell; returns (status, outputs as (kind, text-or-bundle))."""
        msg_id = self.kc.execute(code, allow_stdin=False)
        out = self._collect(msg_id)
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        return reply["content"]["status"], [summarize(m) for m in out
                                            if m["msg_type"] != "execute_input"]

    def tool(self, target, **data):
        """Calls a cellgate.* tool; returns (result, other outputs)."""
        msg = self.kc.session.msg("comm_open", {"comm_id": uuid.uuid4().hex,
                                                "target_name": target, "data": data})
        self.kc.shell_channel.send(msg)
        out = self._collect(msg["header"]["msg_id"])
        result = next(m["content"]["data"] for m in out if m["msg_type"] == "comm_msg")
        return result, [summarize(m) for m in out if m["msg_type"] not in ("comm_msg",
                                                                           "comm_close")]


def summarize(m):
    c = m["content"]
    if m["msg_type"] == "stream":
        return (c["name"], c["text"])
    if m["msg_type"] == "error":
        return ("error", f'{c["ename"]}: {c["evalue"]}')
    if m["msg_type"] in ("display_data", "execute_result"):
        kinds = sorted(c["data"])
        return (m["msg_type"], kinds)
    return (m["msg_type"], c)


def serve_one_file(path):
    """An HTTP server on 127.0.0.1 serving path's directory; returns (server, base URL)."""
    directory = os.path.dirname(os.path.abspath(path))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def tiny_png():
    """A 2x2 red PNG, made without libraries."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    raw = b"".join(b"\0" + b"\xff\0\0" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", default="cellgate-python")
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), "build", "agent"))
    args = ap.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    served = os.path.join(args.workdir, "red.png")
    with open(served, "wb") as f:
        f.write(tiny_png())
    server, base = serve_one_file(served)
    agent = Agent(args.kernel, env={"CELLGATE_DOWNLOAD_ALLOW": base + "/*",
                                    "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1"})
    ok = True

    def step(title, value):
        print(f"== {title}")
        print(f"   {value}")

    try:
        status, out = agent.run("import sys\nprint(sys.version.split()[0])\n21 * 2")
        step("run code", (status, out))
        ok &= status == "ok"

        result, out = agent.tool("cellgate.download", url=base + "/red.png", path="red.png")
        step("download into /mnt/data", result)
        ok &= result["status"] == "ok"

        result, out = agent.tool("cellgate.open_image", path="red.png")
        step("show the image", (result, out))
        ok &= result.get("mime") == "image/png"

        result, out = agent.tool("cellgate.download", url="http://127.0.0.1:9/other")
        step("a URL the operator did not allow", result)
        ok &= result["status"] == "error"

        result, _ = agent.tool("cellgate.exec", cmd="cd /tmp && export N=3 && echo ready",
                               session_name="work")
        step("start a shell session", result)
        result, _ = agent.tool("cellgate.exec", cmd="pwd; echo N=$N", session_name="work")
        step("state survives in the session", result["output"])
        ok &= result["output"] == "/tmp\nN=3\n"

        result, _ = agent.tool("cellgate.exec", cmd="/usr/bin/python3 -q -i",
                               session_name="work", timeout=1)
        step("start an interactive program (still running at its timeout)", result)
        result, _ = agent.tool("cellgate.feed", session_name="work", chars="print(6 * 7)\n",
                               yield_ms=1000)
        step("type into it", result["output"])
        ok &= "42" in result["output"]
        result, _ = agent.tool("cellgate.feed", session_name="work", chars="\u0004",
                               yield_ms=2000)
        step("Ctrl-D ends it", (result["running"], result.get("exit_code")))
    finally:
        agent.close()
        server.shutdown()
    print("agent example:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
