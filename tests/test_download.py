"""cellgate.download through jupyter_client against an HTTP server on
127.0.0.1 (issue 5): allowed, refused by policy, redirected out of the
policy or to a refused address, oversized, interrupted, and the symlink and
".." tricks code in the box can play on the kernel that writes the file;
and https against a throwaway CA the operator trusts
(CELLGATE_DOWNLOAD_CA_FILE) or does not. No traffic leaves this machine:
refused addresses are refused before a socket exists."""
import contextlib
import hashlib
import http.server
import os
import shutil
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import TIMEOUT, run, stream_text
from test_tools import comm

BODY = os.urandom(50_000)


class Handler(http.server.BaseHTTPRequestHandler):
    seen = []

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Handler.seen.append(self.path)
        if self.path == "/file.bin":
            self.reply(200, BODY, [("Content-Type", "application/octet-stream")])
        elif self.path == "/redir-ok":
            self.reply(302, headers=[("Location", "/file.bin")])
        elif self.path == "/redir-out":
            self.reply(302, headers=[("Location", "/secret")])
        elif self.path == "/redir-meta":
            self.reply(302, headers=[("Location", "http://169.254.169.254/latest/meta-data")])
        elif self.path == "/big":
            self.reply(200, b"x" * 5000)
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            try:
                for _ in range(300):
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        else:
            self.reply(404, b"no")


@contextlib.contextmanager
def serving(tls=None):
    """Serves Handler on 127.0.0.1, over TLS when tls is a (key, cert) pair
    of paths; yields the base URL."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        key, cert = tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def server():
    with serving() as url:
        yield url


def download(kc, **data):
    _, out = comm(kc, "cellgate.download", data)
    assert [m["msg_type"] for m in out] == ["comm_msg", "comm_close"], out
    return out[0]["content"]["data"]


def box_run(kc, code):
    reply, out = run(kc, code)
    assert reply["content"]["status"] == "ok", out
    return stream_text(out, "stdout")


def box_files(kc):
    """The names in the box's /mnt/data."""
    return box_run(kc, "import os\nprint(sorted(os.listdir('.')))")


def assert_box_empty(kc):
    """Nothing, not even a half-written file, is left in /mnt/data."""
    assert box_files(kc) == "[]\n"


@pytest.fixture
def allowed(kernel_factory, server):
    """A kernel whose operator allows the test server's URLs (and, since it
    listens on loopback, private addresses)."""
    km, kc = kernel_factory("cellgate-python", env={
        "CELLGATE_DOWNLOAD_ALLOW": f"{server}/file.bin, {server}/redir-*, {server}/big, "
                                   f"{server}/slow, {server}/missing, "
                                   "http://169.254.169.254/*",
        "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1",
    })
    return kc


def test_download_writes_the_file_in_the_box(allowed, server):
    r = download(allowed, url=f"{server}/file.bin", path="in/sub/dir/f.bin")
    assert r == {"status": "ok", "path": "/mnt/data/in/sub/dir/f.bin", "size": len(BODY),
                 "sha256": hashlib.sha256(BODY).hexdigest(),
                 "content_type": "application/octet-stream", "url": f"{server}/file.bin"}
    out = box_run(allowed, "import hashlib, os\n"
                           "b = open('in/sub/dir/f.bin', 'rb').read()\n"
                           "print(hashlib.sha256(b).hexdigest(), os.stat('in/sub/dir/f.bin').st_uid,"
                           " sorted(os.listdir('in/sub/dir')))")
    assert out == f"{hashlib.sha256(BODY).hexdigest()} 1000 ['f.bin']\n"


def test_default_name_and_redirect_within_the_policy(allowed, server):
    r = download(allowed, url=f"{server}/redir-ok")
    assert r["status"] == "ok" and r["path"] == "/mnt/data/redir-ok"
    assert r["url"] == f"{server}/file.bin" and r["size"] == len(BODY)
    r = download(allowed, url=f"{server}/file.bin", path="/tmp/x.bin")
    assert r["path"] == "/tmp/x.bin"


def test_redirect_out_of_the_policy_is_refused(allowed, server):
    Handler.seen.clear()
    r = download(allowed, url=f"{server}/redir-out", path="out.bin")
    assert r["status"] == "error" and r["ename"] == "DownloadRefused"
    assert f"{server}/secret" in r["evalue"] and "CELLGATE_DOWNLOAD_ALLOW" in r["evalue"]
    assert "/secret" not in Handler.seen


def test_redirect_to_a_metadata_address_is_refused(allowed, server):
    r = download(allowed, url=f"{server}/redir-meta", path="meta.bin")
    assert r["status"] == "error" and r["ename"] == "DownloadRefused"
    assert "169.254.169.254" in r["evalue"]
    assert box_run(allowed, "import os\nprint(os.path.exists('meta.bin'))") == "False\n"


def test_http_errors_and_bad_requests(allowed, server):
    r = download(allowed, url=f"{server}/missing", path="m.bin")
    assert r["ename"] == "HTTPError" and "404" in r["evalue"]
    for data, ename in [({}, None), ({"url": 5}, "ValueError"), ({"url": "ftp://x/y"},
                        "DownloadRefused"), ({"url": f"{server}/file.bin", "path": 3},
                        "ValueError"), ({"url": "http://user@127.0.0.1/file.bin"},
                        "DownloadRefused")]:
        if not data:
            continue  # empty data keeps the comm open: not a request
        r = download(allowed, **data)
        assert r["status"] == "error" and r["ename"] == ename, (data, r)
    r = download(allowed, url=f"{server}/file.bin", path="/etc/passwd")
    assert r["ename"] == "PermissionError"
    # Nothing half-written was left behind.
    assert_box_empty(allowed)


def test_nothing_is_allowed_by_default(kernel_factory, server):
    km, kc = kernel_factory("cellgate-python")
    r = download(kc, url=f"{server}/file.bin")
    assert r["ename"] == "DownloadRefused"
    assert "CELLGATE_DOWNLOAD_ALLOW" in r["evalue"] and "CELLGATE_DOWNLOAD_SEEN" in r["evalue"]


def test_loopback_is_refused_without_allow_private(kernel_factory, server):
    Handler.seen.clear()
    km, kc = kernel_factory("cellgate-python",
                            env={"CELLGATE_DOWNLOAD_ALLOW": f"{server}/*"})
    r = download(kc, url=f"{server}/file.bin")
    assert r["ename"] == "DownloadRefused"
    assert "127.0.0.1" in r["evalue"] and "CELLGATE_DOWNLOAD_ALLOW_PRIVATE" in r["evalue"]
    assert Handler.seen == []


def test_seen_file_is_reread_on_each_request(kernel_factory, server, tmp_path):
    seen = tmp_path / "seen.txt"
    seen.write_text("\n")
    km, kc = kernel_factory("cellgate-python", env={
        "CELLGATE_DOWNLOAD_SEEN": str(seen), "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1"})
    assert download(kc, url=f"{server}/file.bin")["ename"] == "DownloadRefused"
    seen.write_text(f"  {server}/file.bin  \n")
    assert download(kc, url=f"{server}/file.bin")["status"] == "ok"
    assert download(kc, url=f"{server}/big")["ename"] == "DownloadRefused"


def test_size_cap(kernel_factory, server):
    km, kc = kernel_factory("cellgate-python", env={
        "CELLGATE_DOWNLOAD_ALLOW": f"{server}/*", "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1",
        "CELLGATE_DOWNLOAD_MAX_BYTES": "4000"})
    r = download(kc, url=f"{server}/big", path="big.bin")
    assert r["ename"] == "DownloadTooLarge"
    r = download(kc, url=f"{server}/slow", path="slow.bin")  # no early Content-Length verdict
    assert r["ename"] == "DownloadTooLarge"
    assert_box_empty(kc)


def test_interrupt_stops_a_download(allowed, server):
    msg = allowed.session.msg("comm_open", {"comm_id": uuid.uuid4().hex,
                                            "target_name": "cellgate.download",
                                            "data": {"url": f"{server}/slow", "path": "s.bin"}})
    allowed.shell_channel.send(msg)
    time.sleep(0.5)
    t0 = time.monotonic()
    allowed.session.send(allowed.control_channel.socket,
                         allowed.session.msg("interrupt_request", {}))
    while True:
        m = allowed.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] \
                and m["msg_type"] == "comm_msg":
            break
    assert time.monotonic() - t0 < 1.5
    assert m["content"]["data"]["ename"] == "Interrupted"
    assert_box_empty(allowed)


def test_symlinks_and_dotdot_planted_in_the_box(allowed, server, tmp_path):
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    victim = host_dir / "victim.txt"
    victim.write_text("host file")
    name = f"cellgate-dl-{uuid.uuid4().hex}"
    box_run(allowed, f"import os\n"
                     f"os.symlink({str(host_dir)!r}, 'dirlink')\n"
                     f"os.symlink({str(victim)!r}, 'filelink')\n"
                     f"os.symlink('/proc/1/root' + {str(host_dir)!r}, 'proclink')\n")
    r = download(allowed, url=f"{server}/file.bin", path="dirlink/new.bin")
    assert r["status"] == "error" and r["ename"] == "PathRefused"
    r = download(allowed, url=f"{server}/file.bin", path="proclink/new.bin")
    assert r["status"] == "error"
    r = download(allowed, url=f"{server}/file.bin", path="filelink")
    assert r["status"] == "ok"  # the link itself is replaced, never followed
    r = download(allowed, url=f"{server}/file.bin", path=f"../../../../tmp/{name}")
    assert r["status"] == "ok" and r["path"] == f"/tmp/{name}"
    assert not (host_dir / "new.bin").exists() and victim.read_text() == "host file"
    assert not os.path.exists(f"/tmp/{name}")  # the box's /tmp, not the host's
    out = box_run(allowed, f"import os\nprint(os.path.islink('filelink'), "
                           f"os.path.getsize('filelink'), os.path.getsize('/tmp/{name}'))")
    assert out == f"False {len(BODY)} {len(BODY)}\n"


def test_without_the_box(kernel_factory, server, tmp_path):
    km, kc = kernel_factory("cellgate-python", env={
        "CELLGATE_SANDBOX": "0", "CELLGATE_DOWNLOAD_ALLOW": f"{server}/*",
        "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1"})
    r = download(kc, url=f"{server}/file.bin", path=str(tmp_path / "plain" / "f.bin"))
    assert r["status"] == "ok"
    assert (tmp_path / "plain" / "f.bin").read_bytes() == BODY


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def new_key_and_request(key, out, subject, *extra):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", subject, "-keyout", key, "-out", out, *extra)


def make_ca(d, name):
    """A self-signed CA in d: returns (key, cert) paths."""
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    new_key_and_request(key, cert, f"/CN=cellgate test {name}", "-x509", "-days", "1",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def make_cert(d, name, ca, san):
    """A server certificate in d for the subjectAltName san, signed by ca:
    returns (key, cert) paths."""
    key, csr, cert, ext = (d / f"{name}{x}" for x in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    new_key_and_request(key, csr, f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-days", "1",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-extfile", ext,
            "-out", cert)
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA; certificates it signed for localhost and 127.0.0.1
    ("good") and for other.example only ("wrong_name"); and one for
    localhost and 127.0.0.1 from another CA that nobody trusts
    ("stranger")."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make certificates (scripts/deps.sh installs it)")
    d = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = make_ca(d, "ca"), make_ca(d, "stranger-ca")
    return {"ca": ca[1],
            "good": make_cert(d, "localhost", ca, "DNS:localhost,IP:127.0.0.1"),
            "wrong_name": make_cert(d, "other.example", ca, "DNS:other.example"),
            "stranger": make_cert(d, "stranger", stranger_ca, "DNS:localhost,IP:127.0.0.1")}


def tls_kernel(kernel_factory, **env):
    """A kernel allowed http and https on 127.0.0.1, any port."""
    km, kc = kernel_factory("cellgate-python", env={
        "CELLGATE_DOWNLOAD_ALLOW": "http*://127.0.0.1:*/*",
        "CELLGATE_DOWNLOAD_ALLOW_PRIVATE": "1", **env})
    return kc


def test_tls_is_verified(kernel_factory, pki):
    """Without CELLGATE_DOWNLOAD_CA_FILE, a certificate from a CA the system
    does not trust is refused (the same one the next test accepts with the
    CA file), and nothing is written."""
    kc = tls_kernel(kernel_factory)
    Handler.seen.clear()
    with serving(pki["good"]) as base:
        r = download(kc, url=f"{base}/file.bin", path="tls.bin")
    assert r["status"] == "error" and r["ename"] == "DownloadFailed", r
    assert "certificate" in r["evalue"].lower(), r
    assert Handler.seen == []  # refused in the handshake, before any request
    assert_box_empty(kc)


def test_tls_with_the_operators_ca(kernel_factory, pki):
    """With CELLGATE_DOWNLOAD_CA_FILE naming the throwaway CA, its server
    certificate is trusted; one it signed for another name, or one from
    another CA, is still refused: the file adds no way around verification."""
    kc = tls_kernel(kernel_factory, CELLGATE_DOWNLOAD_CA_FILE=str(pki["ca"]))
    with serving(pki["good"]) as base:
        r = download(kc, url=f"{base}/file.bin", path="tls.bin")
    assert r == {"status": "ok", "path": "/mnt/data/tls.bin", "size": len(BODY),
                 "sha256": hashlib.sha256(BODY).hexdigest(),
                 "content_type": "application/octet-stream", "url": f"{base}/file.bin"}
    out = box_run(kc, "import hashlib\n"
                      "print(hashlib.sha256(open('tls.bin', 'rb').read()).hexdigest())")
    assert out == f"{hashlib.sha256(BODY).hexdigest()}\n"

    Handler.seen.clear()
    with serving(pki["wrong_name"]) as base:
        r = download(kc, url=f"{base}/file.bin", path="wrong-name.bin")
    assert r["status"] == "error" and r["ename"] == "DownloadFailed", r
    # Refused on the name (curl: "no alternative certificate subject name
    # matches target host name"), not on trust: the CA signed it.
    assert "name" in r["evalue"] and "issuer" not in r["evalue"], r
    with serving(pki["stranger"]) as base:
        r = download(kc, url=f"{base}/file.bin", path="stranger.bin")
    assert r["status"] == "error" and r["ename"] == "DownloadFailed", r
    assert "certificate" in r["evalue"].lower(), r
    assert Handler.seen == []
    assert box_files(kc) == "['tls.bin']\n"


def test_ca_file_that_cannot_be_read(kernel_factory, pki, server, tmp_path):
    """A CA file that is not there fails every download, http too, with an
    error naming the variable: never a fallback to another store."""
    missing = tmp_path / "no-such-ca.pem"
    kc = tls_kernel(kernel_factory, CELLGATE_DOWNLOAD_CA_FILE=str(missing))
    Handler.seen.clear()
    with serving(pki["good"]) as base:
        for url in (f"{base}/file.bin", f"{server}/file.bin"):
            r = download(kc, url=url, path="ca.bin")
            assert r["status"] == "error" and r["ename"] == "DownloadConfigError", r
            assert f"CELLGATE_DOWNLOAD_CA_FILE names {missing}" in r["evalue"], r
            assert "cannot be read" in r["evalue"], r
    assert Handler.seen == []
    assert_box_empty(kc)
