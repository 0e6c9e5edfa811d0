"""Hostile input on the wire, sent by a raw ZeroMQ client (pyzmq): unsigned,
badly signed, replayed, malformed and oversized messages are dropped with a
log line, and the kernel keeps serving."""
import hashlib
import hmac
import json
import uuid

import pytest
import zmq

from conftest import run


class Raw:
    """A bare DEALER on the kernel's shell (or control) port."""

    def __init__(self, km, channel="shell"):
        info = km.get_connection_info()
        self.key = info["key"] if isinstance(info["key"], bytes) else info["key"].encode()
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://{info['ip']}:{info[channel + '_port']}")

    def parts(self, msg_type, content=None):
        header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "raw",
                  "username": "raw", "date": "2026-01-01T00:00:00Z", "version": "5.3"}
        return [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content or {}).encode()]

    def sign(self, parts):
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def send(self, frames):
        self.sock.send_multipart(frames)

    def signed(self, msg_type, content=None):
        p = self.parts(msg_type, content)
        return [b"<IDS|MSG>", self.sign(p)] + p

    def replies(self, timeout=1.0):
        out = []
        while self.sock.poll(int(timeout * 1000)):
            out.append(self.sock.recv_multipart())
            timeout = 0.2
        return out

    def close(self):
        self.sock.close()


def reply_types(frames_list):
    out = []
    for frames in frames_list:
        i = frames.index(b"<IDS|MSG>")
        out.append(json.loads(frames[i + 2])["msg_type"])
    return out


@pytest.fixture
def raw(python_kernel):
    km, kc = python_kernel
    r = Raw(km)
    yield r
    r.close()
    # Whatever was thrown at it, the kernel still serves a real client.
    reply, out = run(kc, "print('still serving')")
    assert reply["content"]["status"] == "ok"


def test_valid_raw_message_is_answered(raw):
    raw.send(raw.signed("kernel_info_request"))
    assert reply_types(raw.replies()) == ["kernel_info_reply"]


def test_bad_signature_dropped(raw):
    p = raw.parts("kernel_info_request")
    raw.send([b"<IDS|MSG>", b"0" * 64] + p)
    raw.send([b"<IDS|MSG>", raw.sign(p)[:-1]] + p)  # wrong length
    raw.send([b"<IDS|MSG>", b""] + p)  # unsigned
    assert raw.replies() == []


def test_replay_dropped(raw):
    frames = raw.signed("kernel_info_request")
    raw.send(frames)
    raw.send(frames)
    assert reply_types(raw.replies()) == ["kernel_info_reply"]


def test_replayed_execute_runs_once(python_kernel):
    km, kc = python_kernel
    r = Raw(km)
    run(kc, "counter = 0")
    frames = r.signed("execute_request", {"code": "counter += 1", "silent": False,
                                          "store_history": True, "user_expressions": {},
                                          "allow_stdin": False, "stop_on_error": True})
    r.send(frames)
    r.send(frames)
    assert reply_types(r.replies(2.0)) == ["execute_reply"]
    r.close()
    reply, out = run(kc, "counter")
    assert out[-1]["content"]["data"]["text/plain"] == "1"


@pytest.mark.parametrize("frames", [
    [b"no delimiter at all"],
    [b"<IDS|MSG>"],
    [b"<IDS|MSG>", b"", b"{}"],
    [b"id"] * 40 + [b"<IDS|MSG>", b"", b"{}", b"{}", b"{}", b"{}"],  # too many identities
    [b"<IDS|MSG>", b""] + [b"{}"] * 200,  # too many frames
])
def test_malformed_frames_dropped(raw, frames):
    raw.send(frames)
    assert raw.replies(0.5) == []


@pytest.mark.parametrize("bad", [
    b"{not json",
    b"[1, 2]",
    b'{"msg_id": "x"}',  # no msg_type
])
def test_signed_but_malformed_header_dropped(raw, bad):
    p = raw.parts("kernel_info_request")
    p[0] = bad
    raw.send([b"<IDS|MSG>", raw.sign(p)] + p)
    assert raw.replies(0.5) == []


@pytest.mark.parametrize("part,bad,why", [
    (3, b"\xff\xfe", "content is not JSON"),  # not UTF-8
    (3, b'{"code": "a\\u0000b"}', "content is not JSON"),  # NUL: jansson refuses it
    (3, b"[]", "content is not a JSON object"),
    (1, b"{" * 100000, "parent_header is not JSON"),  # deep nesting
])
def test_signed_request_with_malformed_content_gets_an_error(raw, part, bad, why):
    """A signed request whose header is good is answered, with what is wrong."""
    p = raw.parts("execute_request")
    p[part] = bad
    raw.send([b"<IDS|MSG>", raw.sign(p)] + p)
    replies = raw.replies()
    assert reply_types(replies) == ["execute_reply"]
    content = json.loads(replies[0][-1])
    assert content["status"] == "error" and content["ename"] == "BadRequest"
    assert content["evalue"].startswith(why)
    raw.send(raw.signed("kernel_info_request"))
    assert reply_types(raw.replies()) == ["kernel_info_reply"]


def test_unknown_message_type_ignored(raw):
    raw.send(raw.signed("no_such_request"))
    raw.send(raw.signed("kernel_info_request"))
    assert reply_types(raw.replies()) == ["kernel_info_reply"]


def test_bad_types_in_content_answered_not_crashed(raw):
    raw.send(raw.signed("execute_request", {"code": 12}))
    raw.send(raw.signed("complete_request", {"code": None}))
    raw.send(raw.signed("history_request", {"hist_access_type": 5}))
    got = reply_types(raw.replies())
    assert got == ["execute_reply", "complete_reply", "history_reply"]


def test_huge_valid_message_runs(python_kernel):
    km, kc = python_kernel
    big = "x = '" + "a" * (8 << 20) + "'\nprint(len(x))"
    reply, out = run(kc, big, timeout=60)
    assert "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream") == \
        f"{8 << 20}\n"


def test_control_bad_signature_dropped(python_kernel):
    km, kc = python_kernel
    r = Raw(km, "control")
    p = r.parts("shutdown_request", {"restart": False})
    r.send([b"<IDS|MSG>", b"f" * 64] + p)
    assert r.replies(0.5) == []
    r.close()
    assert km.is_alive()
