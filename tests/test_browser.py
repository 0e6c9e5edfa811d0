"""cellgate in a real browser: classic Notebook 6 (Debian's python3-notebook)
on 127.0.0.1, driven by Debian's Chromium through playwright-core
(tests/browser/notebook.js). Through the UI: a typed cell prints, a
matplotlib plot shows as a PNG <img>, the interrupt button stops a sleep,
Kernel > Restart forgets variables, a %%bash cell prints, an ipywidgets
slider moved with the keyboard reaches the kernel; then a
screenshot. Twice, with the same driver and the same checks:

- test_notebook_in_chromium: the notebook server starts the kernelspecs
  under test itself (JUPYTER_PATH from conftest);
- test_notebook_through_the_gateway: the notebook server runs with
  --gateway-url pointing at `cellgate serve` (no JUPYTER_PATH: it has no
  kernelspec of its own), so the kernel is started, driven, interrupted,
  restarted and deleted by the gateway; the gateway's kernel list and log
  show it.

Skipped only when Chromium or tests/browser/node_modules is missing
(scripts/deps.sh installs both), the gateway test also when
build/cellgate-gateway is not built."""
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import types
import urllib.request

import nbformat
import pytest

from conftest import ROOT, descendants, pid_alive, wait_until
from proctree import all_pids, argv_of, pids_where

CHROMIUM = "/usr/bin/chromium"
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
DRIVER = os.path.join(BROWSER_DIR, "notebook.js")
PLAYWRIGHT = os.path.join(BROWSER_DIR, "node_modules", "playwright-core")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing (Debian package chromium)"),
    pytest.mark.skipif(not os.path.isdir(PLAYWRIGHT),
                       reason="tests/browser/node_modules/playwright-core is missing "
                              "(npm ci --prefix tests/browser)"),
]

# The notebook.js driver runs these by index (see its header comment).
CELLS = [
    "",  # typed in the browser: print('hello')
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    "x = 42\nprint('x is', x)",
    "print('sleeping', flush=True)\nimport time\ntime.sleep(30)\nprint('slept through')",
    "print('after the interrupt x is', x)",
    "print(x)",
    '%%bash\necho "bash says $((6 * 7)) in ${BASH_VERSION%%.*}"',
    "import ipywidgets as w\ns = w.IntSlider(value=3, min=0, max=10)\ns",
    "print('slider at', s.value)",
]

SERVER_START = 60   # seconds for the notebook server to answer
DRIVER_TIMEOUT = 420  # the whole browser session (each of its waits is bounded too)
GRACE = 20          # for the server and its kernels to go after SIGTERM


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def kernelspec(name):
    path = os.path.join(os.environ["JUPYTER_PATH"], "kernels", name, "kernel.json")
    with open(path) as f:
        return json.load(f)


def pids_with_arg(arg):
    """Processes whose command line holds arg (the Chromium profile dir:
    only this test's Chromium has it)."""
    return pids_where(all_pids(), lambda argv: any(arg.encode() in a for a in argv))


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@contextlib.contextmanager
def running_notebook_server(tmp_path, args=(), env_set=None, env_drop=()):
    """A notebook server on 127.0.0.1 with its own config, data and runtime
    dirs, args added to its command line, env_set/env_drop applied to its
    environment; yields .base (URL), .token, .dir (the notebook dir), .log,
    .pid. On leaving:
    SIGTERM (the server shuts its kernels down), then SIGKILL for anything
    left; a process of the server still alive after the grace period fails
    the test."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    log = tmp_path / "notebook.log"
    token = secrets.token_hex(24)
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp_path / sub)
    for var in ("JUPYTER_TOKEN", *env_drop):
        env.pop(var, None)
    env.update(env_set or {})
    port = free_port()
    with open(log, "wb") as logf:
        server = subprocess.Popen(
            ["/usr/bin/python3", "-m", "notebook", "--no-browser", "--ip", "127.0.0.1",
             "--port", str(port), "--port-retries", "0",
             f"--NotebookApp.token={token}", "--notebook-dir", str(nbdir), *args]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START
        while True:
            if server.poll() is not None:
                pytest.fail(f"notebook server exited with {server.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"notebook server not answering after {SERVER_START} s:\n{tail(log)}")
            time.sleep(0.2)
        yield types.SimpleNamespace(base=base, token=token, dir=nbdir, log=log, pid=server.pid)
    finally:
        kids = descendants(server.pid)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(GRACE)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        left = [p for p in kids if pid_alive(p)]
        if left and not wait_until(lambda: not any(pid_alive(p) for p in left), timeout=GRACE):
            alive = [p for p in left if pid_alive(p)]
            kill_all(alive)
            pytest.fail(f"processes of the notebook server (kernels) alive {GRACE} s after "
                        f"it stopped, killed: {alive}\n{tail(log)}")


@pytest.fixture
def notebook_server(tmp_path):
    """A notebook server starting the kernelspecs under test itself."""
    with running_notebook_server(tmp_path) as server:
        yield server


@pytest.fixture
def gateway():
    """`cellgate serve` on a free port with its own token, started as
    test_gateway.py starts it (a test_gateway.Server: .base, .token, .call,
    .proc, .log_path). Imported here so that a missing websocket-client
    skips only the gateway test."""
    test_gateway = pytest.importorskip("test_gateway")
    if not os.access(test_gateway.GATEWAY, os.X_OK):
        pytest.skip(f"{test_gateway.GATEWAY} is not built")
    yield from test_gateway.start_gateway()


def drive_notebook(server, tmp_path, display_name, more_context=lambda: ""):
    """Writes browser.ipynb (CELLS on the cellgate kernel) into the notebook
    server's dir, drives it in Chromium with notebook.js and checks what the
    DOM showed. more_context() is added to every failure message. Returns
    notebook.js's results."""
    base, token, nbdir, log = server.base, server.token, server.dir, server.log
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "cellgate", "display_name": display_name,
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, str(nbdir / "browser.ipynb"))

    profile = str(tmp_path / "chromium-profile")
    screenshot = str(tmp_path / "notebook.png")
    t0 = time.monotonic()
    driver = subprocess.Popen(
        ["node", DRIVER, base, token, "browser.ipynb", screenshot, profile],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        out, err = driver.communicate(timeout=DRIVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        out, err = driver.communicate()
        pytest.fail(f"notebook.js still running after {DRIVER_TIMEOUT} s\n"
                    f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}\n{tail(log)}{more_context()}")
    finally:
        # Chromium is playwright's child in its own process group: find it
        # by its profile dir.
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        kill_all(pids_with_arg(profile))
    elapsed = time.monotonic() - t0
    print(f"browser session: {elapsed:.1f} s; screenshot {screenshot}")

    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"notebook.js printed no JSON (exit {driver.returncode})\n"
                    f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}{more_context()}")
    with open(tmp_path / "results.json", "w") as f:
        json.dump(res, f, indent=1)
    steps = res["steps"]
    context = (f"\nsteps: {json.dumps(steps, indent=1)[:6000]}\nnode stderr: {err[-2000:]}"
               f"\npage errors: {res['page_errors']}\nconsole errors: {res['console']}"
               f"\nserver log:\n{tail(log)}{more_context()}")
    assert res["ok"], f"browser step {res.get('failed_step')!r} failed: {res.get('error')}{context}"
    print("step times (ms):", {k: v["ms"] for k, v in steps.items()})

    def texts(name, cls):
        return "".join(o["text"] for o in steps[name]["outputs"] if cls in o["classes"])

    # The page is the notebook, on the cellgate kernel of the build under test.
    assert steps["open"]["cells"] == len(CELLS), context
    assert steps["open"]["kernel_name"] == display_name, context

    # (1) typed into CodeMirror, run with Shift+Enter, output in the DOM.
    hello = steps["hello"]
    assert hello["source"] == "print('hello')", context
    assert hello["prompt"] == "In [1]:", context
    assert texts("hello", "output_stdout") == "hello\n", context

    # (2) the plot is a PNG data URL <img> of a plot's size, decoded by Chromium.
    images = [im for o in steps["matplotlib"]["outputs"] for im in o["images"]]
    assert len(images) == 1, context
    img = images[0]
    assert img["src_start"] == "data:image/png;base64,", context
    assert img["png_magic"] and 5_000 < img["png_bytes"] < 2_000_000, context
    assert 200 <= img["width"] <= 3000 and 150 <= img["height"] <= 3000, context
    assert not any("output_error" in o["classes"] for o in steps["matplotlib"]["outputs"]), context

    assert texts("set_x", "output_stdout") == "x is 42\n", context

    # (3) the interrupt button: KeyboardInterrupt within seconds, not after
    # the 30 s sleep; the kernel keeps its state.
    intr = steps["interrupt"]
    assert "KeyboardInterrupt" in texts("interrupt", "output_error"), context
    # (IPython's traceback shows the cell's lines around the one interrupted)
    assert "slept through" not in texts("interrupt", "output_stdout"), context
    assert "<cellgate python driver>" not in intr["text"], context
    assert intr["interrupt_ms"] < 10_000, context
    assert texts("after_interrupt", "output_stdout") == "after the interrupt x is 42\n", context

    # (4) Kernel > Restart, confirmed in the dialog: x is gone, counting restarts.
    restart = steps["restart"]
    assert restart["dialog_title"] == "Restart kernel?", context
    after = steps["after_restart"]
    assert "NameError" in texts("after_restart", "output_error"), context
    assert "'x' is not defined" in after["text"], context
    assert after["prompt"] == "In [1]:", context

    # (5) a %%bash cell in the restarted kernel.
    assert texts("bash", "output_stdout") == "bash says 42 in 5\n", context
    assert steps["bash"]["prompt"] == "In [2]:", context

    # (6) an ipywidgets slider, moved in the browser: the kernel sees it
    # (comms both ways in the Python kernel, issue 13).
    assert steps["widget"]["readout"] == "10", context
    assert texts("widget_value", "output_stdout") == "slider at 10\n", context

    # Nothing left 127.0.0.1, and the page raised and logged no error (a
    # message the page did not expect is a console error: classic Notebook
    # logs 'unrecognized message channel control' for a reply it never asked for).
    assert res["foreign_requests"] == [], context
    assert res["page_errors"] == [], context
    assert res["console"] == [], context

    # (7) the screenshot exists and is a PNG of the page.
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(screenshot) > 20_000
    return res


def test_notebook_in_chromium(notebook_server, tmp_path):
    drive_notebook(notebook_server, tmp_path, kernelspec("cellgate")["display_name"])


def process_cmdlines(pids):
    out = {}
    for pid in pids:
        argv = argv_of(pid)
        if argv:
            out[pid] = b" ".join(argv).decode(errors="replace").strip()
    return out


def is_kernel(cmdline):
    return " kernel -f " in f" {cmdline} " and "cellgate" in cmdline


def test_notebook_through_the_gateway(gateway, tmp_path):
    def gw_log():
        return f"\ngateway log:\n{tail(gateway.log_path, 80)}"

    def gw_kernels():
        status, body, _ = gateway.call("GET", "/api/kernels")
        assert status == 200, (status, body)
        return body

    status, spec, _ = gateway.call("GET", "/api/kernelspecs/cellgate")
    assert status == 200, spec
    assert gw_kernels() == [], gw_log()

    # No JUPYTER_PATH: the notebook server has no cellgate kernelspec of its
    # own, only the gateway's (GatewayClient reads the token from the env).
    with running_notebook_server(
            tmp_path, ["--gateway-url", gateway.base, "--GatewayClient.request_timeout=60"],
            env_set={"JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token},
            env_drop=("JUPYTER_PATH", "JUPYTER_GATEWAY_URL")) as server:
        drive_notebook(server, tmp_path, spec["spec"]["display_name"], gw_log)

        # The notebook's kernel (still open: the server keeps it after the
        # page closed) is the one kernel of the gateway, a child of the
        # gateway; the notebook server has no kernel process of its own.
        with urllib.request.urlopen(f"{server.base}api/sessions?token={server.token}",
                                    timeout=30) as r:
            sessions = json.load(r)
        assert len(sessions) == 1, sessions
        kid = sessions[0]["kernel"]["id"]
        kernels = gw_kernels()
        assert [(k["id"], k["name"]) for k in kernels] == [(kid, "cellgate")], \
            f"{kernels} {sessions}{gw_log()}"
        behind_gateway = process_cmdlines(descendants(gateway.proc.pid))
        assert any(is_kernel(c) for c in behind_gateway.values()), \
            f"no kernel process below the gateway: {behind_gateway}{gw_log()}"
        local = process_cmdlines(descendants(server.pid))
        assert not any(is_kernel(c) for c in local.values()), local

        # The gateway's log shows the kernel's whole life through it.
        with open(gateway.log_path, errors="replace") as f:
            lines = f.read().splitlines()

        def logged(method, path, status):
            return [ln for ln in lines if re.search(
                rf"\b{method} {re.escape(path)}(\?\S*)? {status}\b", ln)]
        assert len(logged("POST", "/api/kernels", 201)) == 1, gw_log()
        assert logged("GET", f"/api/kernels/{kid}/channels", 101), gw_log()
        assert logged("POST", f"/api/kernels/{kid}/interrupt", 204), gw_log()
        assert logged("POST", f"/api/kernels/{kid}/restart", 200), gw_log()

    # The notebook server stopped: it deleted its kernel at the gateway.
    assert wait_until(lambda: gw_kernels() == [], timeout=GRACE), f"{gw_kernels()}{gw_log()}"
    with open(gateway.log_path, errors="replace") as f:
        assert re.search(rf"\bDELETE /api/kernels/{kid} 204\b", f.read()), gw_log()
