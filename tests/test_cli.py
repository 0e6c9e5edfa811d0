"""The cellgate command line: --help/--version everywhere, install, doctor,
and errors that name what was wrong."""
import json
import os
import subprocess

import pytest

from conftest import CELLGATE


def cg(*args, **kw):
    if args[:1] == ("doctor",) and "env" not in kw:
        # doctor asks each registry upstream whether it answers: tests keep
        # that on this machine (test_doctor_reports_the_registry_gateway)
        kw["env"] = {**os.environ, "CELLGATE_REGISTRIES": "none"}
    return subprocess.run([CELLGATE, *args], capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.parametrize("cmd", [[], ["kernel"], ["install"], ["doctor"]])
def test_help_and_version(cmd):
    r = cg(*cmd, "--help")
    assert r.returncode == 0 and "usage: cellgate" in r.stdout
    r = cg(*cmd, "--version")
    assert r.returncode == 0 and r.stdout.startswith("cellgate ")


def test_unknown_command_and_option():
    r = cg("frobnicate")
    assert r.returncode == 2 and "unknown command \"frobnicate\"" in r.stderr
    r = cg("kernel")
    assert r.returncode == 2 and "-f CONNECTION_FILE is required" in r.stderr
    r = cg("kernel", "-f", "x.json", "--language", "cobol")
    assert r.returncode == 2 and "unknown language \"cobol\"" in r.stderr
    r = cg("kernel", "-f", "x.json", "--output-limit", "lots")
    assert r.returncode == 2 and "--output-limit lots" in r.stderr


def test_bad_connection_files(tmp_path):
    r = cg("kernel", "-f", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "missing.json" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"shell_port": 1, "iopub_port": 2}')
    r = cg("kernel", "-f", str(bad))
    assert r.returncode == 1 and "stdin_port" in r.stderr


def test_install_prefix(tmp_path):
    r = cg("install", "--prefix", str(tmp_path))
    assert r.returncode == 0, r.stderr
    kdir = tmp_path / "share" / "jupyter" / "kernels"
    names = sorted(os.listdir(kdir))
    assert {"cellgate", "cellgate-bash", "cellgate-python"} <= set(names)
    # One kernelspec per language whose toolchain runs here, none for the rest.
    doctor = cg("doctor").stdout
    for line in doctor.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in ("yes", "no") and not line.startswith("  box"):
            assert (f"cellgate-{parts[0]}" in names) == (parts[1] == "yes"), line
    for n in names:
        spec = json.loads((kdir / n / "kernel.json").read_text())
        assert os.path.isabs(spec["argv"][0]) and spec["argv"][1] == "kernel"
        assert "{connection_file}" in spec["argv"]
        assert (kdir / n / "logo-64x64.png").read_bytes().startswith(b"\x89PNG")
    py = json.loads((kdir / "cellgate-python" / "kernel.json").read_text())
    assert py["language"] == "python" and py["env"]["CELLGATE_LANGUAGE_VERSION"].startswith("3.")
    bash = json.loads((kdir / "cellgate-bash" / "kernel.json").read_text())
    assert bash["language"] == "bash"


def test_install_user_uses_jupyter_data_dir(tmp_path):
    r = cg("install", "--user", env={**os.environ, "JUPYTER_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0
    assert (tmp_path / "kernels" / "cellgate-python" / "kernel.json").exists()


def test_install_unwritable_names_path(tmp_path):
    (tmp_path / "share").write_text("a file, not a directory")
    r = cg("install", "--prefix", str(tmp_path))
    assert r.returncode == 1 and str(tmp_path / "share") in r.stderr


def test_doctor():
    r = cg("doctor")
    assert r.returncode == 0
    assert "python     yes  /usr/bin/python3     3." in r.stdout
    assert "bash       yes  /bin/bash            5." in r.stdout
    assert "libzmq" in r.stdout and "libsodium" in r.stdout and "jansson" in r.stdout
    assert "user namespaces" in r.stdout
    fetch = os.path.join(os.path.dirname(CELLGATE), "cellgate-fetch")
    assert f"cellgate.download    by {fetch}" in r.stdout


def test_doctor_reports_the_registry_gateway():
    import http.server
    import threading

    class Upstream(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            ok = self.path in ("/-/ping", "/simple/pip/")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    try:
        env = {**os.environ, "CELLGATE_REGISTRY_NPM": url, "CELLGATE_REGISTRY_PYPI": url + "/simple",
               "CELLGATE_REGISTRY_DENY": "npm:left-*"}
        out = cg("doctor", env=env).stdout
        assert f"npm   on   CELLGATE_REGISTRY_NPM={url}" in out, out
        assert f"pypi  on   CELLGATE_REGISTRY_PYPI={url}/simple, files {url}" in out
        assert out.count("upstream answers") == 2 and "1 deny rules" in out
        down = {**env, "CELLGATE_REGISTRY_PYPI": "http://127.0.0.1:9/simple",
                "CELLGATE_REGISTRIES": "pypi"}
        out = cg("doctor", env=down).stdout
        assert "npm   off" in out and "upstream DOES NOT ANSWER" in out, out
        out = cg("doctor", env={**env, "CELLGATE_REGISTRIES": "pypi,cargo"}).stdout
        assert "settings WRONG" in out and "cargo" in out, out
    finally:
        srv.shutdown()
        srv.server_close()
