"""The client's tools as comms (issue 5, first tool): cellgate.open_image,
through jupyter_client. A path is resolved inside the box: relative to
/mnt/data, and no symlink or ".." planted by code in the box reaches a
host file."""
import base64
import os
import uuid

import pytest

from conftest import TIMEOUT, run

PNG_3x2 = ("import struct, zlib\n"
           "def chunk(t, b): return struct.pack('>I', len(b)) + t + b + "
           "struct.pack('>I', zlib.crc32(t + b))\n"
           "raw = b''.join(b'\\0' + b'\\xff\\0\\0' * 3 for _ in range(2))\n"
           "png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 3, 2, 8, 2, "
           "0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))\n")


def comm(kc, target, data, msg_type="comm_open", comm_id=None):
    """Sends a comm message; returns (comm_id, IOPub messages between busy and idle)."""
    comm_id = comm_id or uuid.uuid4().hex
    content = {"comm_id": comm_id, "data": data}
    if msg_type == "comm_open":
        content["target_name"] = target
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if m["msg_type"] == "status":
            if m["content"]["execution_state"] == "idle":
                return comm_id, out
            continue
        out.append(m)


@pytest.fixture(scope="module")
def box(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, PNG_3x2 + "open('plot.png', 'wb').write(png)\n"
                     "open('/tmp/in-tmp.gif', 'wb').write(b'GIF89a\\x05\\x00\\x07\\x00' + bytes(20))\n"
                     "open('notes.txt', 'w').write('not an image')\n"
                     "open('big.png', 'wb').write(png[:24] + bytes(17 << 20))\n"
                     "import os\nos.makedirs('adir', exist_ok=True)\n"
                     "os.symlink('/tmp/cellgate-host-secret.png', 'hostlink.png')\n"
                     "os.symlink('/proc/1/root/tmp/cellgate-host-secret.png', 'proclink.png')\n")
    assert reply["content"]["status"] == "ok", reply["content"]
    return km, kc


def test_open_image_shows_and_answers(box):
    km, kc = box
    comm_id, out = comm(kc, "cellgate.open_image", {"path": "plot.png"})
    assert [m["msg_type"] for m in out] == ["display_data", "comm_msg", "comm_close"]
    shown = out[0]["content"]["data"]
    assert base64.b64decode(shown["image/png"]).startswith(b"\x89PNG")
    assert out[1]["content"] == {"comm_id": comm_id, "data": {
        "status": "ok", "mime": "image/png", "width": 3, "height": 2}}
    assert out[2]["content"]["comm_id"] == comm_id


def test_absolute_paths_are_the_boxs(box):
    km, kc = box
    _, out = comm(kc, "cellgate.open_image", {"path": "/tmp/in-tmp.gif"})
    assert out[1]["content"]["data"]["mime"] == "image/gif"
    assert (out[1]["content"]["data"]["width"], out[1]["content"]["data"]["height"]) == (5, 7)


@pytest.mark.parametrize("path,ename", [
    ("missing.png", "FileNotFoundError"),
    ("notes.txt", "NotAnImage"),
    ("adir", "NotAnImage"),
    ("big.png", "ImageTooLarge"),
    ("", "ValueError"),
])
def test_open_image_errors(box, path, ename):
    km, kc = box
    _, out = comm(kc, "cellgate.open_image", {"path": path})
    assert [m["msg_type"] for m in out] == ["comm_msg", "comm_close"]
    assert out[0]["content"]["data"]["status"] == "error"
    assert out[0]["content"]["data"]["ename"] == ename


@pytest.mark.parametrize("path", ["hostlink.png", "proclink.png",
                                  "../../../../tmp/cellgate-host-secret.png"])
def test_planted_links_never_reach_the_host(box, path):
    km, kc = box
    secret = "/tmp/cellgate-host-secret.png"  # a real image on the host
    with open(secret, "wb") as f:
        f.write(b"GIF89a\x01\x00\x01\x00" + bytes(20))
    try:
        _, out = comm(kc, "cellgate.open_image", {"path": path})
        assert not [m for m in out if m["msg_type"] == "display_data"], path
        assert out[0]["content"]["data"]["status"] == "error"
    finally:
        os.remove(secret)


def test_comm_kept_open_serves_several_requests(box):
    km, kc = box
    comm_id, out = comm(kc, "cellgate.open_image", {})
    assert out == []  # open, no request yet
    kc.comm_info(target_name="cellgate.open_image")
    info = kc.get_shell_msg(timeout=TIMEOUT)["content"]["comms"]
    assert info == {comm_id: {"target_name": "cellgate.open_image"}}
    for path in ("plot.png", "/tmp/in-tmp.gif"):
        _, out = comm(kc, None, {"path": path}, "comm_msg", comm_id)
        assert [m["msg_type"] for m in out] == ["display_data", "comm_msg"]
    comm(kc, None, {}, "comm_close", comm_id)
    kc.comm_info()
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["comms"] == {}
