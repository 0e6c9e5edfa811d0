"""Packages-only egress through real kernels (issue 11): pip and npm in the box
reach the registry gateway on the box's loopback and nothing else.

pip goes to a PyPI-style index this test serves on 127.0.0.1, with a wheel
it builds itself; npm goes to the real npm registry (the only outside
traffic the tests send), for one tiny package."""
import hashlib
import http.server
import json
import os
import shutil
import threading

import pytest

from conftest import TIMEOUT, errors, run, stream_text
from wheels import build_wheel

BOXED = not os.environ.get("CELLGATE_SANDBOX", "1") == "0"
pytestmark = pytest.mark.skipif(not BOXED, reason="package egress is the box's")


# ---- a PyPI-style index on 127.0.0.1 ----------------------------------------

class Index:
    """Serves /simple/NAME/ (HTML, or PEP 691 JSON when asked) and
    /files/WHEEL; counts what was fetched."""

    def __init__(self, packages):
        self.wheels = {}     # file name -> bytes
        self.projects = {}   # normalised name -> [file names]
        self.hits = {}
        for name, version, text in packages:
            fname = f"{name}-{version}-py3-none-any.whl"
            meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
            self.wheels[fname] = build_wheel(name, version, text, meta)
            self.projects.setdefault(name.replace("_", "-"), []).append(fname)
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                index.hits[self.path] = index.hits.get(self.path, 0) + 1
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:1] == ["simple"] and len(parts) == 2 and parts[1] in index.projects:
                    self.project(parts[1])
                elif parts[:1] == ["files"] and len(parts) == 2 and parts[1] in index.wheels:
                    self.send(200, "application/octet-stream", index.wheels[parts[1]])
                else:
                    self.send(404, "text/plain", b"not here\n")

            def project(self, name):
                links = [(f, hashlib.sha256(index.wheels[f]).hexdigest())
                         for f in index.projects[name]]
                if "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", ""):
                    doc = {"meta": {"api-version": "1.0"}, "name": name, "files": [
                        {"filename": f, "url": f"/files/{f}", "hashes": {"sha256": h}}
                        for f, h in links]}
                    self.send(200, "application/vnd.pypi.simple.v1+json",
                              json.dumps(doc).encode())
                    return
                body = "<!DOCTYPE html><html><body>" + "".join(
                    f'<a href="/files/{f}#sha256={h}">{f}</a><br/>' for f, h in links)
                self.send(200, "text/html", (body + "</body></html>").encode())

            def send(self, code, ctype, body):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def index():
    ix = Index([("cgdemo", "1.0", "VALUE = 42\n"),
                ("evil_pkg", "1.0", "VALUE = 'should never install'\n")])
    yield ix
    ix.close()


def start(kernel_factory, name, tmp_path, **env):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    base = {"CELLGATE_STATE_DIR": str(state)}
    return kernel_factory(name, env={**base, **env})


def ok(kc, code, timeout=TIMEOUT):
    reply, out = run(kc, code, timeout=timeout)
    assert reply["content"]["status"] == "ok", (code, errors(out), stream_text(out))
    return stream_text(out)


# ---- the box's side ---------------------------------------------------------

def test_package_managers_are_pointed_at_the_gateway(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-bash", tmp_path)
    out = ok(kc, "echo $PIP_INDEX_URL; npm config get registry; "
                 "python3 -m pip config list 2>/dev/null | grep -c index-url || true")
    lines = out.split()
    assert lines[0] == "http://127.0.0.1:3141/pypi/simple/"
    assert lines[1] == "http://127.0.0.1:3141/npm/"


def test_only_the_gateway_is_reachable(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path)
    out = ok(kc, """
import socket, errno
s = socket.create_connection(("127.0.0.1", 3141), timeout=5); s.close()
print("gateway: connected")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.connect(("192.0.2.1", 443))   # a route lookup only: no packet leaves
except OSError as e:
    print("out:", errno.errorcode[e.errno])
""")
    assert "gateway: connected" in out
    assert "out: ENETUNREACH" in out


def _gateways(km):
    from conftest import descendants, kernel_pid
    found = []
    for pid in descendants(kernel_pid(km)):
        try:
            if os.readlink(f"/proc/{pid}/exe").endswith("/cellgate-registry"):
                found.append(pid)
        except OSError:
            pass
    return found


def test_the_gateway_starts_at_first_use(kernel_factory, tmp_path):
    """A kernel that installs nothing never runs the gateway program: it
    starts when a package manager first connects (and then serves it)."""
    km, kc = start(kernel_factory, "cellgate-python", tmp_path)
    ok(kc, "x = 1")
    assert _gateways(km) == []
    out = ok(kc, """
import http.client
c = http.client.HTTPConnection("127.0.0.1", 3141, timeout=30)
c.request("PUT", "/npm/x"); print(c.getresponse().status)
""")
    assert out.strip() == "405"
    assert len(_gateways(km)) == 1


def test_the_port_cannot_be_taken_by_code(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path)
    out = ok(kc, """
import socket, errno
s = socket.socket()
try:
    s.bind(("127.0.0.1", 3141)); print("bound?!")
except OSError as e:
    print(errno.errorcode[e.errno])
""")
    assert out.strip() == "EADDRINUSE"


def test_egress_off_means_no_port(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path, CELLGATE_REGISTRIES="none")
    out = ok(kc, """
import os, socket, errno
print(os.environ.get("PIP_INDEX_URL"))
try:
    socket.create_connection(("127.0.0.1", 3141), timeout=5)
except OSError as e:
    print(errno.errorcode[e.errno])
""")
    assert out.split() == ["None", "ECONNREFUSED"]


def test_writes_and_bad_paths_are_answered_by_the_gateway(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path)
    out = ok(kc, r"""
import http.client
def ask(method, path, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", 3141, timeout=30)
    if raw:
        c.connect(); c.sock.sendall(raw)
        r = http.client.HTTPResponse(c.sock); r.begin()
    else:
        c.request(method, path); r = c.getresponse()
    print(method, path or raw[:20], r.status)
    c.close()
ask("PUT", "/npm/left-pad")
ask("DELETE", "/npm/left-pad")
ask("POST", "/pypi/simple/requests/")
ask("GET", "/npm/../../etc/passwd")
ask("GET", "/npm/a%2f..%2f..%2fx")
ask("GET", None, raw=b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\n\r\n")
""")
    codes = [line.split()[-1] for line in out.splitlines()]
    assert codes == ["405", "405", "405", "400", "400", "400"], out


# ---- pip through the gateway, from the test's own index -----------------------

def test_pip_installs_from_the_index_and_imports_at_once(kernel_factory, tmp_path, index):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path,
                   CELLGATE_REGISTRY_PYPI=index.url + "/simple")
    out = ok(kc, "%pip install cgdemo", timeout=180)
    assert "Successfully installed cgdemo-1.0" in out, out
    assert ok(kc, "import cgdemo; print(cgdemo.VALUE)").strip() == "42"
    # installed under the user's home in the box, never /usr
    assert "/mnt/data/.local/lib/python3" in ok(kc, "print(cgdemo.__file__)")


def test_pip_from_bash_then_python_imports(kernel_factory, tmp_path, index):
    km, kc = start(kernel_factory, "cellgate", tmp_path,
                   CELLGATE_REGISTRY_PYPI=index.url + "/simple")
    out = ok(kc, "%%bash\npython3 -m pip install -q cgdemo && echo installed", timeout=180)
    assert "installed" in out
    assert ok(kc, "import cgdemo; print(cgdemo.VALUE)").strip() == "42"


def test_a_second_kernel_gets_the_wheel_from_the_cache(kernel_factory, tmp_path, index):
    env = {"CELLGATE_REGISTRY_PYPI": index.url + "/simple"}
    for _ in range(2):
        km, kc = start(kernel_factory, "cellgate-python", tmp_path, **env)
        ok(kc, "%pip install -q cgdemo", timeout=180)
        assert ok(kc, "import cgdemo; print(cgdemo.VALUE)").strip() == "42"
    wheel = "/files/cgdemo-1.0-py3-none-any.whl"
    assert index.hits.get(wheel) == 1, index.hits
    # the project page too, for CELLGATE_REGISTRY_METADATA_TTL (300 s)
    assert index.hits.get("/simple/cgdemo/") == 1, index.hits


def test_a_denied_package_is_refused_with_the_rule(kernel_factory, tmp_path, index):
    km, kc = start(kernel_factory, "cellgate-python", tmp_path,
                   CELLGATE_REGISTRY_PYPI=index.url + "/simple",
                   CELLGATE_REGISTRY_DENY="pypi:evil-*,npm:left-*")
    reply, out = run(kc, "!python3 -m pip install evil_pkg", timeout=180)
    # pip logs an index page's 4xx at debug level only: it says no version
    # was found. The gateway's answer itself names the rule:
    assert "No matching distribution found for evil_pkg" in stream_text(out)
    out = ok(kc, """
import urllib.request, urllib.error
for path in ("/pypi/simple/Evil.Pkg/", "/npm/left-pad"):
    try:
        urllib.request.urlopen("http://127.0.0.1:3141" + path, timeout=30)
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
""")
    assert out.count("403") == 2 and "pypi:evil-*" in out and "npm:left-*" in out, out
    assert "evil-pkg" in out and "left-pad" in out
    assert not any(p.startswith("/files/evil") for p in index.hits)
    assert "/simple/evil-pkg/" not in index.hits  # never asked upstream
    # the gateway and the kernel go on serving
    ok(kc, "%pip install -q cgdemo", timeout=180)
    assert ok(kc, "import cgdemo; print(cgdemo.VALUE)").strip() == "42"


@pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")
def test_npm_prints_why_a_package_is_denied(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-bash", tmp_path,
                   CELLGATE_REGISTRY_DENY="npm:left-*")
    reply, out = run(kc, "cd /mnt/data && npm install --no-save left-pad 2>&1", timeout=180)
    text = stream_text(out)
    assert "403" in text and "npm:left-*" in text, text


# ---- npm through the gateway, from the real registry ---------------------------

@pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")
def test_npm_install_and_require(kernel_factory, tmp_path):
    km, kc = start(kernel_factory, "cellgate-bash", tmp_path)
    out = ok(kc, "cd /mnt/data && npm install --no-save is-number@7.0.0 2>&1 | tail -3; "
                 "ls node_modules", timeout=300)
    assert "is-number" in out, out
    out = ok(kc, "%%javascript\nconsole.log(require('is-number')(5), require('is-number')('x'))")
    assert out.strip() == "true false"
    # npx fetches a package's command through the gateway and runs it
    assert ok(kc, "cd /mnt/data && npx --yes semver@7.5.4 1.2.3", timeout=300).strip() == "1.2.3"
