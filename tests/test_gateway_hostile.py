"""test_gateway_hostile.py - `cellgate serve` against hostile clients on
127.0.0.1: slow clients sending headers a byte at a time while a normal
client is served, connections beyond the limit, oversized headers, bodies
and WebSocket messages, and a WebSocket client that never reads while its
kernel prints a lot. Every loop is bounded in count and time.

The helpers (start_gateway, the WebSocket and execute helpers) are those
of test_gateway.py."""
import json
import os
import socket
import threading
import time
import uuid

import pytest

# kernel: test_gateway's fixture, on this module's gw
from test_gateway import (GATEWAY, TIMEOUT, assert_serves_a_new_websocket, execute_request,
                          kernel, run_ws,  # noqa: F401
                          start_gateway, wait_for, websocket)

pytestmark = pytest.mark.skipif(not os.access(GATEWAY, os.X_OK), reason=f"{GATEWAY} is not built")

REQUEST_TIMEOUT = 4      # --request-timeout of the gateway below
SEND_QUEUE = 4 << 20     # --max-send-queue
MAX_MESSAGE = 1 << 20    # --max-message-size
SLOW = 200               # slow connections at once


@pytest.fixture(scope="module")
def gw():
    yield from start_gateway("--request-timeout", str(REQUEST_TIMEOUT),
                             "--max-connections", str(SLOW + 50),
                             "--max-send-queue", str(SEND_QUEUE),
                             "--max-message-size", str(MAX_MESSAGE),
                             "--max-body-size", "65536",
                             # the kernels' own bound on a cell's output, off
                             env=dict(os.environ, CELLGATE_OUTPUT_LIMIT="0"))


def raw(gw, data=b"", timeout=10):
    """A plain TCP connection to the gateway that has sent data."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def read_answer(s, limit=1 << 16):
    """What the server sends until it closes (at most limit bytes); b"" on
    a reset."""
    got = b""
    try:
        while len(got) < limit:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    return got


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- slow and many connections ---------------------------------------------------

def test_slow_connections_do_not_delay_a_normal_client(gw, kernel):
    start = time.monotonic()
    slow = [raw(gw, b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(SLOW)]
    answers = [b""] * SLOW
    done = threading.Event()

    def trickle():
        """A header byte on every slow connection about every 0.5 s, and what
        the server answers, until every one is closed or 3 timeouts pass."""
        for s in slow:
            s.setblocking(False)
        open_ = set(range(SLOW))
        deadline = time.monotonic() + 3 * REQUEST_TIMEOUT
        while open_ and time.monotonic() < deadline:
            for i in list(open_):
                try:
                    chunk = slow[i].recv(4096)
                    answers[i] += chunk
                    if not chunk:
                        open_.discard(i)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    open_.discard(i)
                    continue
                try:
                    slow[i].send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    open_.discard(i)
            time.sleep(0.5)
        done.set()

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # The normal client, while every slow connection is still open.
        for _ in range(5):
            t0 = time.monotonic()
            status, kernels, _ = gw.call("GET", "/api/kernels")
            assert status == 200 and any(k["id"] == kernel for k in kernels)
            assert time.monotonic() - t0 < 1.0, "GET /api/kernels took over 1 s"
        ws = gw.ws(kernel)
        try:
            reply, outputs = run_ws(ws, "print(6 * 7)")
        finally:
            ws.close()
        assert reply["content"]["status"] == "ok"
        assert outputs[-1]["content"]["text"] == "42\n"
        assert time.monotonic() - start < REQUEST_TIMEOUT, "the slow ones were gone already"
        # Every slow connection is answered 408 and closed after the timeout.
        assert done.wait(4 * REQUEST_TIMEOUT)
        closed = [status_of(a) for a in answers]
        assert closed.count(408) == SLOW, closed
        assert time.monotonic() - start < 3 * REQUEST_TIMEOUT
    finally:
        t.join(4 * REQUEST_TIMEOUT)
        for s in slow:
            s.close()
    assert gw.call("GET", "/api")[0] == 200


def test_connections_beyond_the_limit_are_refused_while_others_are_served():
    for server in start_gateway("--max-connections", "8", "--request-timeout", "10"):
        held = [raw(server, b"GET /api HTTP/1.1\r\nHost: x\r\n") for _ in range(8)]
        try:
            time.sleep(0.3)  # accepted, one by one, by the loop
            for _ in range(3):  # one too many, each refused at once
                t0 = time.monotonic()
                extra = raw(server)
                assert status_of(read_answer(extra)) == 503
                assert time.monotonic() - t0 < 1.0
                extra.close()
            # The connections within the limit are still served.
            for s in held[:4]:
                s.sendall(f"Authorization: token {server.token}\r\nConnection: close\r\n\r\n"
                          .encode())
                answer = read_answer(s)
                assert status_of(answer) == 200 and b'"version"' in answer
        finally:
            for s in held:
                s.close()
        # Once they are gone, a new client gets in.
        assert wait_for(lambda: server.call("GET", "/api")[0] == 200, timeout=5)


# ---- oversized requests ----------------------------------------------------------

def test_oversized_header_is_431(gw):
    s = raw(gw, b"GET /api HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    try:
        assert status_of(read_answer(s)) == 431
    finally:
        s.close()
    assert gw.call("GET", "/api")[0] == 200


def test_oversized_body_is_413(gw):
    status, body, _ = gw.call("POST", "/api/kernels", {"name": "x" * 70000})
    assert status == 413, body
    assert "--max-body-size" in body["message"]
    # The same without Content-Length: a chunked body, read and answered.
    s = raw(gw, f"POST /api/kernels HTTP/1.1\r\nHost: x\r\nAuthorization: token {gw.token}\r\n"
                f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
    try:
        for _ in range(4):
            s.sendall(b"8000\r\n" + b"a" * 0x8000 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        assert status_of(read_answer(s)) == 413
    finally:
        s.close()


def close_code(ws, limit=100000):
    """Reads frames until the server's close; returns (its code, the JSON
    messages read before it)."""
    msgs = []
    for _ in range(limit):
        frame = ws.recv_frame()  # raw: the server may be gone before we answer its close
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big"), msgs
        if frame.opcode == websocket.ABNF.OPCODE_TEXT:
            msgs.append(json.loads(frame.data))
    raise AssertionError("no close frame")


def test_oversized_websocket_message_is_closed_with_1009(gw, kernel):
    ws = gw.ws(kernel)
    try:
        ws.send("x" * (MAX_MESSAGE + 1))
        assert close_code(ws)[0] == 1009
    except (ConnectionResetError, BrokenPipeError, websocket.WebSocketConnectionClosedException):
        # The gateway closes as soon as the frame's header says too much:
        # the unread rest of it may reset the connection before the client
        # reads the close frame.
        pass
    finally:
        ws.close()
    assert_serves_a_new_websocket(gw, kernel)


# ---- a client that does not read -------------------------------------------------

CHUNKS, CHUNK = 480, 1 << 18  # 120 MiB printed
BACKLOG = 32 << 20            # CHANNELS_BACKLOG_BYTES


def test_a_client_that_does_not_read_is_bounded_closed_and_replayed(gw, kernel):
    sid = uuid.uuid4().hex
    # A small receive buffer: the client's kernel holds little for it.
    ws = gw.ws(kernel, session_id=sid, skip_utf8_validation=True,
               sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16),))
    mid, msg = execute_request(
        "import sys, time\n"
        f"for i in range({CHUNKS}):\n"
        f"    sys.stdout.write('%05d' % i + 'x' * {CHUNK - 6} + '\\n'); sys.stdout.flush()\n"
        # no faster than the gateway takes it: what waits in ZeroMQ's queues
        # (1000 messages) is not the gateway's bound
        "    time.sleep(0.004)\n",
        sid)
    before = rss_kib(gw.proc.pid)
    ws.send(json.dumps(msg))
    # The client reads nothing until the gateway gave up on it; then it
    # reads (the gateway lingers while it does): what was queued, then a
    # close with 1008. The cell goes on printing meanwhile.
    closed = {}

    def read_to_close():
        closed["code"], closed["first"] = close_code(ws)

    reader = threading.Thread(target=read_to_close, daemon=True)
    peak, busy = before, False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(gw.proc.pid))
        if not reader.is_alive() and "code" not in closed:
            with open(gw.log_path) as f:
                if "a client closed (1008)" in f.read():
                    reader.start()
        state = gw.call("GET", f"/api/kernels/{kernel}")[1]["execution_state"]
        if busy and state == "idle":
            break
        busy |= state == "busy"
        time.sleep(0.1)
    else:
        raise AssertionError("the cell did not end")
    peak = max(peak, rss_kib(gw.proc.pid))
    printed = CHUNKS * CHUNK
    # The send queue and the session's backlog (decoded), not all of it:
    # 40-60 MiB here.
    assert (peak - before) * 1024 < printed * 3 // 4, (before, peak)
    reader.join(TIMEOUT)
    ws.close()
    code, first = closed["code"], closed["first"]
    assert code == 1008
    # The same session gets the rest.
    again = gw.ws(kernel, session_id=sid, skip_utf8_validation=True)
    rest, idle, replied = [], False, False
    again.settimeout(TIMEOUT)
    try:
        while not (idle and replied):
            m = json.loads(again.recv())
            if m["parent_header"].get("msg_id") != mid:
                continue
            rest.append(m)
            idle |= m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            replied |= m["msg_type"] == "execute_reply"
    finally:
        again.close()
    text = "".join(m["content"]["text"] for m in first + rest if m["msg_type"] == "stream")
    want = "".join("%05d" % i + "x" * (CHUNK - 6) + "\n" for i in range(CHUNKS))
    if text != want:  # the backlog's bound dropped the oldest: the log says so
        with open(gw.log_path) as f:
            assert "were dropped while it was away" in f.read()
        lines = text.splitlines()
        assert lines == sorted(set(lines)) and lines[-1] == want.splitlines()[-1]
