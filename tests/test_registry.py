"""test_registry.py - cellgate-registry, the package registry gateway, run
directly as the kernel runs it: a listening socket on 127.0.0.1 handed over
as fd 3, the operator's settings in CELLGATE_REGISTRY_*. The upstreams are a
fake npm registry and a fake PyPI (simple index and files host) served here
on 127.0.0.1, with tarballs and wheels built by the test; no traffic leaves
the machine. The fake upstream counts every request it gets, so a test can
say that something refused was never forwarded, and that a second fetch of
an artifact came from the cache.

The binary is $CELLGATE_REGISTRY_BIN (default build/cellgate-registry)."""
import base64
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time

import pytest

from wheels import build_wheel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("CELLGATE_REGISTRY_BIN",
                                     os.path.join(ROOT, "build", "cellgate-registry")))
PYTHON = "/usr/bin/python3"
MAX_BYTES = 1 << 20
TIMEOUT_S = 2
HANG_S = 10          # the fake upstream's hang, ended early at teardown
HUGE = 2 * MAX_BYTES

pytestmark = pytest.mark.skipif(not os.access(BIN, os.X_OK), reason=f"{BIN} is not built")


# ---- what the fake upstream serves ---------------------------------------------

def npm_tarball(name, version):
    """A real npm package tarball (package/package.json, package/index.js)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        files = {
            "package/package.json": json.dumps({"name": name, "version": version,
                                                "main": "index.js"}).encode(),
            "package/index.js": b"module.exports = function pad(s) { return ' ' + s; };\n"
                                + f"module.exports.version = {version!r};\n".encode(),
        }
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1700000000
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def wheel_metadata(version):
    return f"Metadata-Version: 2.1\nName: demo-pkg\nVersion: {version}\n" \
           "Requires-Python: >=3.7\n".encode()


def wheel(version):
    """A pure-Python wheel for the project demo-pkg, with a valid RECORD."""
    return build_wheel("demo_pkg", version, f"VALUE = {version!r}\n", wheel_metadata(version))


class Upstream:
    """npm under /registry, the PyPI simple index under /simple, its files
    under /files: three bases on one server."""

    def __init__(self, tls=None):
        self.lock = threading.Lock()
        self.hits = []           # (host header, path) of every request
        self.accepts = {}        # path -> the last Accept header
        self.peers = []          # (path, the client's port) of every request
        self.release = threading.Event()
        self.tarballs = {}       # upstream path -> bytes
        self.files = {}          # upstream path -> bytes
        self.packuments = {}     # upstream path -> dict
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.npm = self.url + "/registry"
        self.pypi = self.url + "/simple"
        self.pypi_files = self.url + "/files"
        self.add_npm("left-pad", ["1.2.0", "1.3.0"])
        self.add_npm("@demo/scoped", ["1.0.0"])
        self.add_npm("evil-pkg", ["1.0.0"])
        self.add_npm("tiny-a", ["1.0.0"])
        self.add_npm("tiny-b", ["1.0.0"])
        self.add_npm("tiny-c", ["1.0.0"])
        for name in ("huge", "huge-stream"):
            self.packuments[f"/registry/{name}"] = {"name": name, "versions": {}}
        self.tarballs["/registry/huge/-/huge-1.0.0.tgz"] = b"\0" * HUGE
        self.wheels = {}
        for v in ("1.0", "2.0"):
            data = wheel(v)
            digest = hashlib.sha256(data).hexdigest()
            path = f"/files/packages/{digest[:2]}/{digest[2:4]}/{digest[4:64]}/" \
                   f"demo_pkg-{v}-py3-none-any.whl"
            self.files[path] = data
            self.files[path + ".metadata"] = wheel_metadata(v)   # PEP 658
            self.wheels[v] = (path, digest, data)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_npm(self, name, versions):
        doc = {"name": name, "dist-tags": {"latest": versions[-1]}, "versions": {}}
        base = name.split("/")[-1]
        for v in versions:
            data = npm_tarball(name, v)
            path = f"/registry/{name}/-/{base}-{v}.tgz"
            self.tarballs[path] = data
            doc["versions"][v] = {
                "name": name, "version": v, "main": "index.js",
                "dist": {"tarball": self.url + path,
                         "shasum": hashlib.sha1(data).hexdigest(),
                         "integrity": "sha512-" + base64.b64encode(
                             hashlib.sha512(data).digest()).decode()},
            }
        self.packuments["/registry/" + name.replace("/", "%2f")] = doc

    def count(self, path=None, host=None):
        with self.lock:
            return sum(1 for h, p in self.hits
                       if (path is None or p == path) and (host is None or h.startswith(host)))

    def total(self):
        with self.lock:
            return len(self.hits)

    def project_page(self, accept):
        def meta(p):
            return hashlib.sha256(self.files[p + ".metadata"]).hexdigest()
        if "application/vnd.pypi.simple.v1+json" in accept:
            files = [{"filename": p.rsplit("/", 1)[1], "url": self.url + p,
                      "hashes": {"sha256": d}, "requires-python": ">=3.7",
                      # as PyPI writes it since PEP 714 ("dist-info-metadata" as
                      # a dict breaks Debian's pip 23.0.1)
                      "core-metadata": {"sha256": meta(p)},
                      "data-dist-info-metadata": {"sha256": meta(p)}}
                     for p, d, _ in self.wheels.values()]
            body = {"meta": {"api-version": "1.0"}, "name": "demo-pkg", "files": files}
            return "application/vnd.pypi.simple.v1+json", json.dumps(body).encode()
        anchors = "".join(
            f'<a href="{self.url}{p}#sha256={d}" data-requires-python="&gt;=3.7" '
            f'data-core-metadata="sha256={meta(p)}" '
            f'data-dist-info-metadata="sha256={meta(p)}">'
            f'{p.rsplit("/", 1)[1]}</a><br/>\n' for p, d, _ in self.wheels.values())
        page = f"<!DOCTYPE html><html><body><h1>Links for demo-pkg</h1>\n{anchors}</body></html>"
        return "text/html", page.encode()

    def handler(self):
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive: the gateway reuses connections

            def log_message(self, *args):
                pass

            def send(self, status, body, ctype="application/octet-stream", length=True):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    for at in range(0, len(body), 65536):
                        self.wfile.write(body[at:at + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                path = self.path
                with up.lock:
                    up.hits.append((self.headers.get("Host", ""), path))
                    up.accepts[path] = self.headers.get("Accept", "")
                    up.peers.append((path, self.client_address[1]))
                accept = self.headers.get("Accept", "")
                if path == "/registry/hang":
                    up.release.wait(HANG_S)
                    return self.send(200, b"{}", "application/json")
                if path == "/registry/broken":
                    return self.send(500, b"internal error", "text/plain")
                if path == "/registry/garbage":
                    return self.send(200, b"this is { not a packument", "application/json")
                if path == "/registry/redir":
                    self.send_response(302)
                    self.send_header("Location",
                                     f"http://localhost:{up.port}/registry/left-pad")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if path == "/registry/redir-ok":
                    self.send_response(301)
                    self.send_header("Location", "/registry/left-pad")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if path == "/registry/huge-stream/-/huge-stream-1.0.0.tgz":
                    # no Content-Length: the size shows only while streaming
                    return self.send(200, b"\0" * HUGE, length=False)
                if path in up.packuments:
                    doc = up.packuments[path]
                    if "application/vnd.npm.install-v1+json" in accept:
                        doc = {"name": doc["name"], "dist-tags": doc.get("dist-tags", {}),
                               "versions": doc["versions"], "modified": "2024-01-01T00:00:00Z"}
                        return self.send(200, json.dumps(doc).encode(),
                                         "application/vnd.npm.install-v1+json")
                    return self.send(200, json.dumps(doc).encode(), "application/json")
                if path in up.tarballs:
                    return self.send(200, up.tarballs[path])
                if path in ("/simple/demo-pkg/", "/simple/evil-pkg/"):
                    ctype, body = up.project_page(accept)
                    return self.send(200, body, ctype)
                if path == "/simple/garbage-pkg/":
                    return self.send(200, b"{\"files\": [ nope", "application/vnd.pypi.simple.v1+json")
                if path in up.files:
                    return self.send(200, up.files[path])
                return self.send(404, b'{"error":"Not found"}', "application/json")

        return Handler

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---- the gateway -----------------------------------------------------------------

class Gateway:
    """cellgate-registry on a fresh 127.0.0.1 port, its listening socket as fd 3."""

    def __init__(self, upstream, cache_dir, stderr_path, **settings):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr_path = stderr_path
        self.proc = start(self.sock, self.base, cache_dir, stderr_path,
                          gateway_env(upstream, **settings))
        self.sock.close()

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def audit(self):
        return [line for line in self.stderr().splitlines() if "registry: kernel=" in line
                and " cache=" in line]

    def get(self, path, method="GET", headers=None, timeout=20):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def raw(self, request, timeout=10):
        """Sends request bytes as they are; returns the status line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as c:
            c.sendall(request)
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n" not in data and time.monotonic() < deadline:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n", 1)[0].decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def gateway_env(upstream, **settings):
    """A clean environment (no proxies, no settings of the user's) with the
    fake upstream's bases and the given CELLGATE_REGISTRY_* settings."""
    env = {"PATH": "/usr/bin:/bin", "CELLGATE_LOG": "info"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):   # make SANITIZE=... collects reports
        if k in os.environ:
            env[k] = os.environ[k]
    if upstream is not None:
        env.update(CELLGATE_REGISTRY_NPM=upstream.npm, CELLGATE_REGISTRY_PYPI=upstream.pypi,
                   CELLGATE_REGISTRY_PYPI_FILES=upstream.pypi_files)
    for k, v in settings.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def start(sock, base, cache_dir, stderr_path, env, args=None):
    """Starts the gateway with sock as its fd 3 (bash moves it there,
    as the kernel's spawn does)."""
    fd = sock.fileno()
    move = f"3<&{fd} {fd}<&-" if fd != 3 else ""
    argv = ["/bin/bash", "-c", f'exec "$0" "$@" {move}', BIN]
    argv += args if args is not None else ["--listen-fd", "3", "--base", base,
                                           "--cache", cache_dir, "--kernel", "k-test"]
    with open(stderr_path, "ab") as err:
        return subprocess.Popen(argv, pass_fds=[fd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)


@pytest.fixture(scope="module")
def upstream():
    up = Upstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="cellgate-registry-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def gw(upstream, workdir):
    """The gateway most tests talk to: both ecosystems, evil-* denied, a
    1 MiB artifact bound, a 2 s upstream timeout, and metadata fetched for
    every request (what the upstream answered is what these tests check;
    test_metadata_is_kept_for_its_ttl checks the metadata cache)."""
    g = Gateway(upstream, os.path.join(workdir, "cache"), os.path.join(workdir, "gw.err"),
                CELLGATE_REGISTRY_DENY="npm:evil-*,pypi:evil-*",
                CELLGATE_REGISTRY_MAX_BYTES=str(MAX_BYTES),
                CELLGATE_REGISTRY_TIMEOUT=str(TIMEOUT_S),
                CELLGATE_REGISTRY_METADATA_TTL="0")
    yield g
    g.stop()


@pytest.fixture
def make_gateway(upstream, tmp_path):
    made = []

    def make(cache_dir=None, **settings):
        n = len(made)
        g = Gateway(upstream, cache_dir or str(tmp_path / f"cache{n}"),
                    str(tmp_path / f"gw{n}.err"), **settings)
        made.append(g)
        return g
    yield make
    for g in made:
        g.stop()


def refused_at_start(tmp_path, env, args=None):
    """Runs the gateway with settings it must refuse; returns (status, stderr)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    err = str(tmp_path / "refused.err")
    proc = start(sock, f"http://127.0.0.1:{sock.getsockname()[1]}", str(tmp_path / "cache"),
                 err, env, args)
    sock.close()
    try:
        status = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("the gateway did not refuse to start")
    with open(err, errors="replace") as f:
        return status, f.read()


# ---- npm -------------------------------------------------------------------------------

def test_packument_tarballs_point_at_the_gateway(gw, upstream):
    status, headers, body = gw.get("/npm/left-pad")
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert sorted(doc["versions"]) == ["1.2.0", "1.3.0"]
    assert doc["dist-tags"]["latest"] == "1.3.0"
    want = upstream.packuments["/registry/left-pad"]["versions"]
    for v, meta in doc["versions"].items():
        assert meta["dist"]["tarball"] == f"{gw.base}/npm/left-pad/-/left-pad-{v}.tgz"
        assert meta["dist"]["integrity"] == want[v]["dist"]["integrity"]
        assert meta["dist"]["shasum"] == want[v]["dist"]["shasum"]
    assert upstream.url.encode() not in body


def test_packument_is_refreshed_every_time(gw, upstream):
    before = upstream.count("/registry/tiny-a")
    for _ in range(2):
        assert gw.get("/npm/tiny-a")[0] == 200
    assert upstream.count("/registry/tiny-a") == before + 2


def test_metadata_is_kept_for_its_ttl(make_gateway, upstream, tmp_path):
    """With a TTL, a packument or project page is fetched once and served
    from the shared cache, also to another kernel's gateway; each Accept
    form is kept apart; a stale record is fetched again."""
    cache = str(tmp_path / "shared")
    a = make_gateway(cache, CELLGATE_REGISTRY_METADATA_TTL="300")
    before = upstream.count("/registry/tiny-a")
    full = a.get("/npm/tiny-a")
    assert full[0] == 200
    abbrev = a.get("/npm/tiny-a", headers={"Accept": "application/vnd.npm.install-v1+json"})
    assert abbrev[0] == 200
    assert upstream.count("/registry/tiny-a") == before + 2       # one per form
    b = make_gateway(cache, CELLGATE_REGISTRY_METADATA_TTL="300")
    again = b.get("/npm/tiny-a")
    def same(x, y):   # rewritten the same, each for its own base
        return x.replace(a.base.encode(), b"BASE") == y.replace(b.base.encode(), b"BASE")
    assert again[0] == 200 and same(full[2], again[2])
    assert again[1]["content-type"] == full[1]["content-type"]
    assert same(abbrev[2], b.get("/npm/tiny-a", headers={
        "Accept": "application/vnd.npm.install-v1+json"})[2])
    assert upstream.count("/registry/tiny-a") == before + 2       # none upstream
    pypi_before = len(upstream.hits)
    assert a.get("/pypi/simple/demo-pkg/")[0] == 200
    assert b.get("/pypi/simple/demo-pkg/")[0] == 200
    assert len(upstream.hits) == pypi_before + 1
    short = make_gateway(cache, CELLGATE_REGISTRY_METADATA_TTL="1")
    time.sleep(2.1)
    assert short.get("/npm/tiny-a")[0] == 200
    assert upstream.count("/registry/tiny-a") == before + 3       # stale: fetched again


def test_upstream_connections_are_reused(gw, upstream):
    for _ in range(5):
        assert gw.get("/npm/tiny-b")[0] == 200
    with upstream.lock:
        ports = {port for path, port in upstream.peers[-5:]}
    assert len(ports) < 5, ports


def test_abbreviated_packument_keeps_its_accept_and_type(gw, upstream):
    status, headers, body = gw.get("/npm/left-pad",
                                   headers={"Accept": "application/vnd.npm.install-v1+json; "
                                                      "q=1.0, application/json; q=0.8, */*"})
    assert status == 200, body
    assert headers["content-type"].startswith("application/vnd.npm.install-v1+json")
    assert "application/vnd.npm.install-v1+json" in upstream.accepts["/registry/left-pad"]
    assert "modified" in json.loads(body)
    status, headers, _ = gw.get("/npm/left-pad", headers={"Accept": "application/json"})
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert "vnd.npm" not in upstream.accepts["/registry/left-pad"]


def test_tarball_bytes_identical_then_from_the_cache(gw, upstream):
    path = "/registry/left-pad/-/left-pad-1.3.0.tgz"
    for round_ in range(2):
        status, headers, body = gw.get("/npm/left-pad/-/left-pad-1.3.0.tgz")
        assert status == 200, body
        assert body == upstream.tarballs[path]
        assert headers["content-type"] == "application/octet-stream"
        assert int(headers["content-length"]) == len(body)
    assert upstream.count(path) == 1
    size = len(upstream.tarballs[path])
    lines = [line for line in gw.audit() if "name=left-pad version=1.3.0" in line]
    assert len(lines) == 2, gw.stderr()
    assert lines[0].endswith(f"registry: kernel=k-test eco=npm name=left-pad version=1.3.0 "
                             f"bytes={size} cache=miss")
    assert lines[1].endswith(f"bytes={size} cache=hit")
    assert ": info: " in lines[0]


def test_head_answers_headers_only(gw, upstream):
    path = "/registry/left-pad/-/left-pad-1.2.0.tgz"
    status, headers, body = gw.get("/npm/left-pad/-/left-pad-1.2.0.tgz", method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) == len(upstream.tarballs[path])
    status, _, body = gw.get("/npm/left-pad/-/left-pad-1.2.0.tgz")
    assert body == upstream.tarballs[path]
    assert upstream.count(path) == 1
    status, headers, body = gw.get("/npm/left-pad", method="HEAD")
    assert status == 200 and body == b""


def test_scoped_names_in_both_forms(gw, upstream):
    docs = []
    for path in ("/npm/@demo%2fscoped", "/npm/@demo%2Fscoped", "/npm/@demo/scoped"):
        status, _, body = gw.get(path)
        assert status == 200, (path, body)
        docs.append(json.loads(body))
    assert docs[0] == docs[1] == docs[2]
    tarball = docs[0]["versions"]["1.0.0"]["dist"]["tarball"]
    assert tarball == f"{gw.base}/npm/@demo/scoped/-/scoped-1.0.0.tgz"
    status, _, body = gw.get(tarball[len(gw.base):])
    assert status == 200
    assert body == upstream.tarballs["/registry/@demo/scoped/-/scoped-1.0.0.tgz"]
    # what went upstream: the scope's slash encoded, as npm's registry wants
    assert upstream.count("/registry/@demo%2fscoped") == 3


def test_unknown_package_is_404(gw):
    status, _, body = gw.get("/npm/no-such-package")
    assert status == 404
    assert "not found" in json.loads(body)["error"]


# ---- PyPI ----------------------------------------------------------------------------

def test_pypi_html_page_links_to_the_gateway(gw, upstream):
    status, headers, body = gw.get("/pypi/simple/demo-pkg/", headers={"Accept": "text/html"})
    assert status == 200, body
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    for path, digest, _ in upstream.wheels.values():
        link = f"{gw.base}/pypi/files{path[len('/files'):]}#sha256={digest}"
        assert link in page
    assert "data-requires-python" in page
    assert upstream.url not in page
    assert "text/html" in upstream.accepts["/simple/demo-pkg/"]


def test_pypi_json_page_links_to_the_gateway(gw, upstream):
    status, headers, body = gw.get(
        "/pypi/simple/demo-pkg/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json, "
                           "application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"})
    assert status == 200, body
    assert headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")
    doc = json.loads(body)
    urls = sorted(f["url"] for f in doc["files"])
    want = sorted(f"{gw.base}/pypi/files{p[len('/files'):]}" for p, _, _ in
                  upstream.wheels.values())
    assert urls == want
    assert sorted(f["hashes"]["sha256"] for f in doc["files"]) == \
        sorted(d for _, d, _ in upstream.wheels.values())
    assert "application/vnd.pypi.simple.v1+json" in upstream.accepts["/simple/demo-pkg/"]


def test_pypi_metadata_files_are_served(gw, upstream):
    path, _, _ = upstream.wheels["1.0"]
    status, _, page = gw.get("/pypi/simple/demo-pkg/", headers={"Accept": "text/html"})
    assert b"data-core-metadata" in page
    status, _, body = gw.get("/pypi" + path + ".metadata")
    assert status == 200
    assert body == upstream.files[path + ".metadata"]


def test_pypi_names_are_normalised(gw, upstream):
    before = upstream.count("/simple/demo-pkg/")
    for name in ("Demo_Pkg", "demo.pkg", "DEMO-PKG"):
        status, _, body = gw.get(f"/pypi/simple/{name}/", headers={"Accept": "text/html"})
        assert status == 200, (name, body)
    assert upstream.count("/simple/demo-pkg/") == before + 3


def test_pypi_file_served_and_cached(gw, upstream):
    path, _, data = upstream.wheels["2.0"]
    for _ in range(2):
        status, _, body = gw.get("/pypi" + path)
        assert status == 200
        assert body == data
    assert upstream.count(path) == 1
    lines = [line for line in gw.audit() if "eco=pypi name=demo-pkg version=2.0" in line]
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["cache=miss", "cache=hit"]
    assert f"bytes={len(data)}" in lines[0]


# ---- refused locally, never forwarded -------------------------------------------------

@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH", "OPTIONS"])
def test_writes_are_405(gw, upstream, method):
    before = upstream.total()
    for path in ("/npm/left-pad", "/npm/left-pad/-/left-pad-1.3.0.tgz",
                 "/pypi/simple/demo-pkg/", "/npm/-/npm/v1/security/advisories/bulk"):
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request(method, path, body=b'{"x": 1}' if method in ("PUT", "POST") else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 405, (method, path, body)
        assert resp.getheader("Allow") == "GET, HEAD"
        assert b"read-only" in body
    assert upstream.total() == before


@pytest.mark.parametrize("path", [
    "/npm/../pypi/simple/demo-pkg/",
    "/npm/%2e%2e/left-pad",
    "/npm/left-pad/-/..%2f..%2fetc%2fpasswd",
    "/npm/left-pad%2f..%2fx",
    "/pypi/files/packages/../../../etc/passwd",
    "/pypi/files/packages%2fab%2fcd%2fdemo_pkg-1.0-py3-none-any.whl",
    "/pypi/simple/demo%2fpkg/",
    "//evil.example/npm/left-pad",
    "/evil.example/npm/left-pad",
    "/127.0.0.1:9/registry/left-pad",
    "/npm/http:%2f%2fevil.example%2fleft-pad",
    "/npm/@Types/node",
    "/npm/left%20pad",
    "/npm/left-pad%00",
])
def test_malformed_paths_are_400(gw, upstream, path):
    before = upstream.total()
    status, _, body = gw.get(path)
    assert status == 400, (path, status, body)
    assert b"cellgate registry" in body
    assert upstream.total() == before


def test_absolute_form_and_proxy_requests_are_refused(gw, upstream):
    before = upstream.total()
    for target in (f"http://127.0.0.1:{gw.port}/npm/left-pad",
                   f"{upstream.npm}/left-pad",
                   f"http://127.0.0.1:{gw.port}/"):
        line = gw.raw(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
                      f"Connection: close\r\n\r\n".encode())
        assert line.startswith("HTTP/1.1 400"), (target, line)
    line = gw.raw(f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{upstream.port}\r\n\r\n".encode())
    assert line.split(" ")[1] in ("400", "405"), line
    assert upstream.total() == before


def test_denied_packages_are_403_with_the_rule(gw, upstream):
    before = upstream.total()
    status, _, body = gw.get("/npm/evil-pkg")
    assert status == 403
    msg = json.loads(body)["error"]       # npm prints this after the status
    assert "evil-pkg" in msg and "npm:evil-*" in msg
    status, _, body = gw.get("/npm/evil-pkg/-/evil-pkg-1.0.0.tgz")
    assert status == 403
    status, _, body = gw.get("/pypi/simple/evil-pkg/")
    assert status == 403
    assert b"evil-pkg" in body and b"pypi:evil-*" in body
    status, _, body = gw.get("/pypi/files/packages/aa/bb/evil_pkg-1.0-py3-none-any.whl")
    assert status == 403
    assert upstream.total() == before


# ---- upstream failures ---------------------------------------------------------------

def test_garbage_metadata_is_502(gw):
    status, _, body = gw.get("/npm/garbage")
    assert status == 502
    assert "not a packument" in json.loads(body)["error"]
    status, _, body = gw.get("/pypi/simple/garbage-pkg/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert status == 502
    assert b"garbage-pkg" in body
    assert gw.get("/npm/left-pad")[0] == 200


@pytest.mark.parametrize("name", ["huge", "huge-stream"])
def test_oversized_artifact_is_502(gw, workdir, name):
    status, _, body = gw.get(f"/npm/{name}/-/{name}-1.0.0.tgz")
    assert status == 502
    msg = json.loads(body)["error"]
    assert f"artifact larger than CELLGATE_REGISTRY_MAX_BYTES ({MAX_BYTES} bytes)" in msg
    # nothing of it stays in the cache, not even a temporary file
    for d, _, files in os.walk(os.path.join(workdir, "cache")):
        for f in files:
            assert os.path.getsize(os.path.join(d, f)) <= MAX_BYTES, f
    assert gw.get("/npm/left-pad/-/left-pad-1.3.0.tgz")[0] == 200


def test_upstream_failure_is_502(gw):
    status, _, body = gw.get("/npm/broken")
    assert status == 502
    assert "HTTP 500" in json.loads(body)["error"]


def test_hanging_upstream_times_out_and_others_are_served(gw):
    result = {}

    def hang():
        t0 = time.monotonic()
        result["status"], _, result["body"] = gw.get("/npm/hang", timeout=HANG_S + 5)
        result["took"] = time.monotonic() - t0
    t = threading.Thread(target=hang)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert gw.get("/npm/left-pad")[0] == 200     # while the other one hangs
    assert time.monotonic() - t0 < 1.5
    t.join(HANG_S + 10)
    assert not t.is_alive()
    assert result["status"] in (504, 502), result
    assert result["took"] < TIMEOUT_S + 3, result
    assert b"CELLGATE_REGISTRY_TIMEOUT" in result["body"]


def test_redirect_to_another_host_is_not_followed(gw, upstream):
    status, _, body = gw.get("/npm/redir")
    assert status == 502
    assert "not followed" in json.loads(body)["error"]
    assert upstream.count(host="localhost") == 0


def test_redirect_on_the_same_host_is_followed(gw, upstream):
    status, _, body = gw.get("/npm/redir-ok")
    assert status == 200, body
    assert json.loads(body)["name"] == "left-pad"


def test_many_connections_at_once(gw, upstream):
    """Metadata always goes upstream, artifacts race into the cache: 48
    requests at once, over connections the gateway shares between threads."""
    paths = ["/npm/left-pad", "/npm/tiny-c/-/tiny-c-1.0.0.tgz", "/pypi/simple/demo-pkg/",
             "/npm/@demo%2fscoped"] * 12
    results = []

    def one(path):
        status, _, body = gw.get(path)
        results.append((path, status, len(body)))
    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r[1] for r in results) == [200] * len(paths), results
    tarball = upstream.tarballs["/registry/tiny-c/-/tiny-c-1.0.0.tgz"]
    assert all(n == len(tarball) for p, _, n in results if p.endswith(".tgz"))


# ---- settings --------------------------------------------------------------------------

def test_an_ecosystem_that_is_off_is_404(make_gateway, upstream):
    g = make_gateway(CELLGATE_REGISTRIES="npm")
    status, _, body = g.get("/pypi/simple/demo-pkg/")
    assert status == 404
    assert b"off" in body and b"CELLGATE_REGISTRIES" in body
    assert g.get("/npm/left-pad")[0] == 200


@pytest.mark.parametrize("settings,words", [
    ({"CELLGATE_REGISTRIES": "none"}, ["off"]),
    ({"CELLGATE_REGISTRIES": "npm,cargo"}, ["CELLGATE_REGISTRIES"]),
    ({"CELLGATE_REGISTRY_MAX_BYTES": "lots"}, ["CELLGATE_REGISTRY_MAX_BYTES"]),
    ({"CELLGATE_REGISTRY_NPM": "ftp://registry.example"}, ["CELLGATE_REGISTRY_NPM"]),
    ({"CELLGATE_REGISTRY_DENY": "left-pad"}, ["CELLGATE_REGISTRY_DENY"]),
    ({"CELLGATE_REGISTRY_TIMEOUT": "-5"}, ["CELLGATE_REGISTRY_TIMEOUT"]),
    ({"CELLGATE_REGISTRY_CACHE_BYTES": "big"}, ["CELLGATE_REGISTRY_CACHE_BYTES"]),
])
def test_bad_settings_refuse_to_start(tmp_path, upstream, settings, words):
    status, err = refused_at_start(tmp_path, gateway_env(upstream, **settings))
    assert status == 2, err
    assert err.startswith("cellgate-registry: "), err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("args", [
    [],
    ["--listen-fd", "3", "--base", "http://127.0.0.1:1"],
    ["--listen-fd", "0", "--base", "http://127.0.0.1:1", "--cache", "/tmp/x"],
    ["--listen-fd", "3", "--base", "ftp://x", "--cache", "/tmp/x"],
    ["--listen-fd", "3", "--base", "http://127.0.0.1:1", "--cache", "/tmp/x", "--bogus", "1"],
])
def test_bad_command_lines_exit_2(tmp_path, upstream, args):
    status, err = refused_at_start(tmp_path, gateway_env(upstream), args=args)
    assert status == 2
    assert "cellgate-registry" in err


def test_confined(gw):
    with open(f"/proc/{gw.proc.pid}/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    fds = os.listdir(f"/proc/{gw.proc.pid}/fd")
    assert "3" in fds


def test_dies_with_its_parent(tmp_path, upstream):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    fd = sock.fileno()
    move = f"3<&{fd} {fd}<&-" if fd != 3 else ""
    out = subprocess.run(
        ["/bin/bash", "-c", f'"$0" "$@" {move} 2>/dev/null & echo $!; sleep 0.5', BIN,
         "--listen-fd", "3", "--base", "http://127.0.0.1:1", "--cache", str(tmp_path / "c")],
        pass_fds=[fd], env=gateway_env(upstream), capture_output=True, timeout=20, text=True)
    sock.close()
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the gateway outlived the process that started it")


def test_cache_is_shared_between_gateways(make_gateway, upstream, tmp_path):
    cache = str(tmp_path / "shared")
    first = make_gateway(cache_dir=cache)
    path = "/registry/tiny-b/-/tiny-b-1.0.0.tgz"
    assert first.get("/npm/tiny-b/-/tiny-b-1.0.0.tgz")[2] == upstream.tarballs[path]
    second = make_gateway(cache_dir=cache)
    assert second.get("/npm/tiny-b/-/tiny-b-1.0.0.tgz")[2] == upstream.tarballs[path]
    assert upstream.count(path) == 1
    assert second.audit()[-1].endswith("cache=hit")


def test_cache_is_bounded_least_recently_used_first(make_gateway, upstream, tmp_path):
    cache = tmp_path / "small"
    sizes = {n: len(upstream.tarballs[f"/registry/{n}/-/{n}-1.0.0.tgz"])
             for n in ("tiny-a", "tiny-b", "tiny-c")}
    # room for two of the three tarballs, not three
    bound = sizes["tiny-a"] + sizes["tiny-b"] + sizes["tiny-c"] - 1
    g = make_gateway(cache_dir=str(cache), CELLGATE_REGISTRY_CACHE_BYTES=str(bound))
    before = {n: upstream.count(f"/registry/{n}/-/{n}-1.0.0.tgz") for n in sizes}
    for n in ("tiny-a", "tiny-b"):
        assert g.get(f"/npm/{n}/-/{n}-1.0.0.tgz")[0] == 200
        time.sleep(0.05)
    assert g.get("/npm/tiny-a/-/tiny-a-1.0.0.tgz")[0] == 200    # a hit: a is used again
    time.sleep(0.05)
    assert g.get("/npm/tiny-c/-/tiny-c-1.0.0.tgz")[0] == 200    # evicts b, the oldest
    total = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    assert total <= bound
    assert g.get("/npm/tiny-a/-/tiny-a-1.0.0.tgz")[0] == 200
    assert g.get("/npm/tiny-b/-/tiny-b-1.0.0.tgz")[0] == 200
    after = {n: upstream.count(f"/registry/{n}/-/{n}-1.0.0.tgz") - before[n] for n in sizes}
    assert after == {"tiny-a": 1, "tiny-b": 2, "tiny-c": 1}


# ---- TLS upstream ------------------------------------------------------------------------

@pytest.fixture
def tls_upstream(tmp_path):
    """The fake npm upstream behind https, with a certificate for 127.0.0.1
    from a CA made here; yields (upstream, the CA's PEM file)."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    up = Upstream(tls=ctx)
    yield up, str(cert)
    up.close()


def test_tls_upstream_is_verified(tls_upstream, tmp_path):
    up, ca = tls_upstream
    g = Gateway(up, str(tmp_path / "cache"), str(tmp_path / "tls0.err"),
                CELLGATE_REGISTRY_TIMEOUT="10")
    try:
        status, _, body = g.get("/npm/left-pad")   # the system's CAs do not know this one
    finally:
        g.stop()
    assert status == 502, body
    assert "certificate" in json.loads(body)["error"].lower()
    g = Gateway(up, str(tmp_path / "cache"), str(tmp_path / "tls1.err"),
                CELLGATE_REGISTRY_TIMEOUT="10", CELLGATE_REGISTRY_CA_FILE=ca)
    try:
        status, _, body = g.get("/npm/left-pad")   # the operator's CA file does
        assert status == 200, body
        tarball = json.loads(body)["versions"]["1.3.0"]["dist"]["tarball"]
        assert tarball == f"{g.base}/npm/left-pad/-/left-pad-1.3.0.tgz"
        status, _, body = g.get("/npm/left-pad/-/left-pad-1.3.0.tgz")
        assert status == 200
        assert body == up.tarballs["/registry/left-pad/-/left-pad-1.3.0.tgz"]
    finally:
        g.stop()


# ---- real package managers against the gateway ------------------------------------------

def clean_env(**extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": extra.pop("HOME"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def test_pip_downloads_through_the_gateway(gw, upstream, tmp_path):
    if subprocess.run([PYTHON, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("no pip for /usr/bin/python3")
    env = clean_env(HOME=str(tmp_path), PIP_CONFIG_FILE=os.devnull)
    out = subprocess.run(
        [PYTHON, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "--disable-pip-version-check", "--index-url", gw.base + "/pypi/simple/",
         "-d", str(tmp_path / "dl"), "demo-pkg==1.0"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    path, _, data = upstream.wheels["1.0"]
    got = (tmp_path / "dl" / path.rsplit("/", 1)[1]).read_bytes()
    assert got == data


def test_npm_installs_through_the_gateway(gw, tmp_path):
    npm = shutil.which("npm", path="/usr/bin:/bin")
    if not npm:
        pytest.skip("no npm")
    env = clean_env(HOME=str(tmp_path), npm_config_cache=str(tmp_path / "npm-cache"),
                    npm_config_userconfig=str(tmp_path / "npmrc"),
                    npm_config_audit="false", npm_config_fund="false",
                    npm_config_update_notifier="false")
    proj = tmp_path / "proj"
    proj.mkdir()
    out = subprocess.run([npm, "install", "--registry", gw.base + "/npm/", "left-pad",
                          "@demo/scoped"], cwd=proj, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (proj / "node_modules" / "left-pad" / "index.js").exists()
    assert (proj / "node_modules" / "@demo" / "scoped" / "package.json").exists()
    lock = json.loads((proj / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/left-pad"]["version"] == "1.3.0"
    out = subprocess.run([npm, "view", "--registry", gw.base + "/npm/", "evil-pkg"], cwd=proj,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "npm:evil-*" in out.stderr, out.stderr
