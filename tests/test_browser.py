"""cellgate in a real browser: classic Notebook 6 (Debian's python3-notebook)
served on 127.0.0.1 with the kernelspecs under test (JUPYTER_PATH from
conftest), driven by Debian's Chromium through playwright-core
(tests/browser/notebook.js). Through the UI: a typed cell prints, a
matplotlib plot shows as a PNG <img>, the interrupt button stops a sleep,
Kernel > Restart forgets variables, a %%bash cell prints; then a
screenshot. Skipped only when Chromium or tests/browser/node_modules is
missing (scripts/deps.sh installs both)."""
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request

import nbformat
import pytest

from conftest import ROOT, descendants, pid_alive, wait_until

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
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if arg.encode() in f.read():
                        out.append(int(p))
            except OSError:
                pass
    return out


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def notebook_server(tmp_path):
    """A notebook server on 127.0.0.1 with its own config, data and runtime
    dirs; yields (base_url, token, notebook_dir, log). At the end: SIGTERM
    (the server shuts its kernels down), then SIGKILL for anything left;
    a kernel still alive after the grace period fails the test."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    log = tmp_path / "notebook.log"
    token = secrets.token_hex(24)
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp_path / sub)
    env.pop("JUPYTER_TOKEN", None)
    port = free_port()
    with open(log, "wb") as logf:
        server = subprocess.Popen(
            ["/usr/bin/python3", "-m", "notebook", "--no-browser", "--ip", "127.0.0.1",
             "--port", str(port), "--port-retries", "0",
             f"--NotebookApp.token={token}", "--notebook-dir", str(nbdir)]
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
        yield base, token, nbdir, log
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


def test_notebook_in_chromium(notebook_server, tmp_path):
    base, token, nbdir, log = notebook_server
    spec = kernelspec("cellgate")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "cellgate", "display_name": spec["display_name"],
                                 "language": spec["language"]}
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
                    f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}\n{tail(log)}")
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
                    f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}")
    with open(tmp_path / "results.json", "w") as f:
        json.dump(res, f, indent=1)
    steps = res["steps"]
    context = (f"\nsteps: {json.dumps(steps, indent=1)[:6000]}\nnode stderr: {err[-2000:]}"
               f"\npage errors: {res['page_errors']}\nconsole errors: {res['console']}"
               f"\nserver log:\n{tail(log)}")
    assert res["ok"], f"browser step {res.get('failed_step')!r} failed: {res.get('error')}{context}"
    print("step times (ms):", {k: v["ms"] for k, v in steps.items()})

    def texts(name, cls):
        return "".join(o["text"] for o in steps[name]["outputs"] if cls in o["classes"])

    # The page is the notebook, on the cellgate kernel of the build under test.
    assert steps["open"]["cells"] == len(CELLS), context
    assert steps["open"]["kernel_name"] == spec["display_name"], context

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
    assert "slept through" not in intr["text"], context
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

    # Nothing left 127.0.0.1, and the page raised nothing.
    assert res["foreign_requests"] == [], context
    assert res["page_errors"] == [], context

    # (6) the screenshot exists and is a PNG of the page.
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(screenshot) > 20_000
