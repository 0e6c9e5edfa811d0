"""Rich output from Python (issue 5): matplotlib works with no set-up —
every figure shown with plt.show(), and every figure still open when a cell
ends, appears once as display_data (image/png + text/plain) and is closed;
IPython.display objects, display handles and clear_output produce real
display messages; DataFrames and PIL images are rich results; and cells take
IPython's `!cmd`, `var = !cmd`, `%pip`, `%cd` and `%env`, `%time`, `%timeit`
and cell magics (`%%time`, `%%writefile`, `%%capture`, `%%html`, ...)."""
import base64
import re
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import (TIMEOUT, descendants, errors, kernel_pid, pid_alive, run, stream_text,
                      wait_until)
from proctree import pids_where

# The box shares this machine's /usr: with IPython installed, the driver runs
# cells through IPython's shell and behaves as ipykernel does (issue 13).
# CELLGATE_PYTHON_IPYTHON=0 in the environment of the test run (the kernels
# inherit it) tests the hand-written fallback instead, as where IPython is
# missing.
IPYTHON_INSTALLED = bool(__import__("importlib.util").util.find_spec("IPython"))
HAVE_IPYTHON = IPYTHON_INSTALLED and __import__("os").environ.get("CELLGATE_PYTHON_IPYTHON") != "0"

needs_matplotlib = pytest.mark.skipif(
    not __import__("importlib.util").util.find_spec("matplotlib"), reason="no matplotlib")



def run_notebook(tmp_path, *cells):
    """Runs code cells through nbclient with cellgate-python; the notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, kernel_name="cellgate-python", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb

@needs_matplotlib
def test_figures_inline_through_nbclient(tmp_path):
    nb = run_notebook(tmp_path,
                      "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\n"
                      "plt.show()\nprint('after show')",
                      "fig, axes = plt.subplots(1, 2)\nfig2 = plt.figure()",
                      "print(plt.get_fignums())")
    first = nb.cells[0].outputs
    assert [o.output_type for o in first] == ["display_data", "stream"]  # in order
    png = base64.b64decode(first[0].data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert first[0].data["text/plain"].startswith("<Figure size")
    second = [o for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert len(second) == 2  # both figures left open, each once
    assert "with 2 Axes" in second[0].data["text/plain"]
    assert nb.cells[2].outputs[0].text == "[]\n"  # and closed


def test_matplotlib_is_not_imported_until_used(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "import sys\nprint('matplotlib' in sys.modules, "
                         "'numpy' in sys.modules, 'pandas' in sys.modules)")
    assert stream_text(out, "stdout") == "False False False\n"


@needs_matplotlib
def test_users_backend_choice_wins(kernel_factory):
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, "import matplotlib\nmatplotlib.use('agg')\n"
                         "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.close('all')\n"
                         "print(matplotlib.get_backend())")
    assert stream_text(out, "stdout") == "agg\n"
    assert not [m for m in out if m["msg_type"] == "display_data"]


# ---------------------------------------------------------------------------
# IPython.display, DataFrames and PIL images

needs_ipython = pytest.mark.skipif(not IPYTHON_INSTALLED, reason="no IPython")
needs_ipython_shell = pytest.mark.skipif(not HAVE_IPYTHON, reason="no IPython, or its shell not used")


def outputs_of(out, *kinds):
    return [m for m in out if m["msg_type"] in kinds]


@needs_ipython_shell
def test_ipythons_shell_runs_the_cells(python_kernel):
    """Where the box has IPython, its shell runs the cells, as under
    ipykernel (issue 13; this test used to say IPython is never imported):
    get_ipython() is that shell for IPython's own code too, and nothing
    heavy (matplotlib, pandas) is imported until the user's code does."""
    km, kc = python_kernel
    reply, out = run(kc, "import sys, IPython\n"
                         "print(IPython.get_ipython() is get_ipython(),\n"
                         "      type(get_ipython()).__name__,\n"
                         "      'matplotlib' in sys.modules, 'pandas' in sys.modules)")
    assert stream_text(out, "stdout") == "True ZMQInteractiveShell False False\n"


@needs_ipython
def test_ipython_display_objects_become_display_data(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, (
        "from PIL import Image as PILImage\n"
        "PILImage.new('RGB', (3, 2), 'red').save('/tmp/dot.png')\n"
        "png = open('/tmp/dot.png', 'rb').read()\n"
        "from IPython.display import display, HTML, Markdown, Image\n"
        "display(HTML('<b>bold</b>'), Markdown('*md*'))\n"
        "display(Image(filename='/tmp/dot.png'))\n"
        "display(Image(data=png, width=30))\n"
        "print('after')"), timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(out) == "after\n"  # IPython's own display() would print reprs
    html, md, from_file, from_data = outputs_of(out, "display_data")
    assert html["content"]["data"]["text/html"] == "<b>bold</b>"
    assert "HTML object" in html["content"]["data"]["text/plain"]
    assert md["content"]["data"]["text/markdown"] == "*md*"
    for image in (from_file, from_data):
        png = base64.b64decode(image["content"]["data"]["image/png"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert png[16:24] == (3).to_bytes(4, "big") + (2).to_bytes(4, "big")  # IHDR 3x2
    assert from_data["content"]["metadata"] == {"image/png": {"width": 30}}
    assert out[-1]["msg_type"] == "stream"  # in order: the displays came first


@needs_ipython
def test_ipython_display_handles_update_and_clear(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, (
        "from IPython.display import display, update_display, clear_output, HTML\n"
        "h = display(HTML('<p>one</p>'), display_id=True)\n"
        "h.update(HTML('<p>two</p>'))\n"
        "update_display('three', display_id=h.display_id)\n"
        "clear_output(wait=True)\n"
        "print(type(h).__name__)"), timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    kinds = [m["msg_type"] for m in out]
    assert kinds == ["display_data", "update_display_data", "update_display_data",
                     "clear_output", "stream"]
    shown, second, third, clear, printed = out
    display_id = shown["content"]["transient"]["display_id"]
    assert display_id and second["content"]["transient"] == {"display_id": display_id}
    assert second["content"]["data"]["text/html"] == "<p>two</p>"
    assert third["content"]["data"] == {"text/plain": "'three'"}
    assert third["content"]["transient"] == {"display_id": display_id}
    assert clear["content"] == {"wait": True}
    assert printed["content"]["text"] == "DisplayHandle\n"


def test_dataframe_pil_and_display_updates_through_nbclient(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("PIL")
    nb = run_notebook(tmp_path,
                      "import pandas as pd\npd.DataFrame({'name': ['ada', 'bob'], 'n': [1, 2]})",
                      "from PIL import Image\nImage.new('RGB', (5, 4), 'blue')",
                      "h = display('first', display_id=True)\nh.update('second')")
    frame, image, updated = (cell.outputs for cell in nb.cells)
    assert [o.output_type for o in frame] == ["execute_result"]
    assert "<table" in frame[0].data["text/html"] and "ada" in frame[0].data["text/html"]
    assert frame[0].data["text/plain"].split() == "name n 0 ada 1 1 bob 2".split()
    assert [o.output_type for o in image] == ["execute_result"]
    png = base64.b64decode(image[0].data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[16:24] == bytes([0, 0, 0, 5, 0, 0, 0, 4])
    # nbclient applies update_display_data to the output it updates
    assert [o.output_type for o in updated] == ["display_data"]
    assert updated[0].data["text/plain"] == "'second'"


# ---------------------------------------------------------------------------
# !cmd, %pip, %cd, %env

def stream_runs(out):
    """The stream output as (name, text) runs, adjacent same-name text merged."""
    runs = []
    for m in outputs_of(out, "stream"):
        name, text = m["content"]["name"], m["content"]["text"]
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + text)
        else:
            runs.append((name, text))
    return runs


def test_shell_command_output_keeps_its_place(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "print('a')\n!echo b\n!echo err >&2\nprint('c')\n"
                         "if True:\n    !echo d\n_exit_code")
    assert reply["content"]["status"] == "ok", reply["content"]
    if HAVE_IPYTHON:  # as under ipykernel (a pty there): a command's stderr is stdout
        assert stream_runs(out) == [("stdout", "a\nb\nerr\nc\nd\n")]
    else:
        assert stream_runs(out) == [("stdout", "a\nb\n"), ("stderr", "err\n"),
                                    ("stdout", "c\nd\n")]
    assert out[-1]["content"]["data"]["text/plain"] == "0"


def test_shell_assignment_and_exit_status(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "files = !printf 'x\\ny z\\n'; echo oops >&2\n"
                         "print(files, files.n.split(), files.s)\n"
                         "print(isinstance(files, list), len(files))\n"
                         "!exit 3\n"
                         "print('status', _exit_code)")
    assert reply["content"]["status"] == "ok", reply["content"]  # a failure does not raise
    assert stream_text(out, "stdout") == (
        "['x', 'y z', 'oops'] ['x', 'y', 'z', 'oops'] x y z oops\n"
        "True 3\nstatus 3\n")


def test_shell_commands_expand_python_names(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, (
        "name, n = 'world', 21\n"
        "%env CG_SHELL_ONLY=from-the-shell\n"
        "!echo 1 $name {n * 2} {{braces}}\n"
        "!echo 2 $$CG_SHELL_ONLY '$name'\n"
        "!echo 3 $CG_SHELL_ONLY\n"  # not a Python name: the shell expands it
        "!echo 4 {no_such_name} $name\n"  # any failure: the command runs as written
        "def f(word):\n"
        "    !echo 5 $word {len(word)}\n"
        "f('local')"))
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(out, "stdout").splitlines() == [
        "env: CG_SHELL_ONLY=from-the-shell",
        "1 world 42 {braces}",
        "2 from-the-shell $name",
        "3 from-the-shell",
        "4 {no_such_name}",
        "5 local 5",
    ]


def test_bang_and_percent_keep_their_python_meaning(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, (
        "x = 2\n"
        "a = (x\n"
        "!= 1)\n"
        "b = x \\\n"
        "!= 2\n"
        "s = '''\n"
        "!not a command\n"
        "%not a magic\n"
        "'''\n"
        "t = 'it''s' # = !no\n"
        "print(a, b, repr(s), t, 7 %3)"))
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(out, "stdout") == (
        "True False '\\n!not a command\\n%not a magic\\n' its 1\n")


def test_shell_lines_keep_line_numbers(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "!true\nfor i in range(1):\n    !echo {i} \\\n  more\n\n1/0\n")
    assert stream_text(out, "stdout") == "0 more\n"
    error = reply["content"]
    assert error["ename"] == "ZeroDivisionError"
    if not HAVE_IPYTHON:
        assert any("line 6" in line and "1/0" in line for line in error["traceback"]), \
            error["traceback"]
    else:  # IPython joins the continued `!` line first, as under ipykernel
        assert any("----> 5 1/0" in line for line in error["traceback"]), error["traceback"]


def test_unknown_magic_is_a_usage_error(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "%nosuchmagic 1")
    assert reply["content"]["ename"] == "UsageError"
    if HAVE_IPYTHON:  # as under ipykernel: a message on stderr, no error output
        assert stream_text(out, "stderr") == (
            "UsageError: Line magic function `%nosuchmagic` not found.\n")
        assert not errors(out)
    else:
        assert reply["content"]["traceback"] == [
            "UsageError: Line magic function `%nosuchmagic` not found."]


def test_pip_magic_runs_pip_of_this_python(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "%pip --version", timeout=60)
    assert reply["content"]["status"] == "ok"
    # the box's /usr is this machine's
    if __import__("importlib.util").util.find_spec("pip"):
        assert stream_text(out, "stdout").startswith("pip ")
        assert "python 3." in stream_text(out, "stdout")
    else:
        assert "No module named pip" in stream_text(out, "stderr")


def test_pip_magic_without_pip_says_so(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, (
        "!/usr/bin/python3 -m venv --without-pip /tmp/nopip\n"
        "import sys\n"
        "real, sys.executable = sys.executable, '/tmp/nopip/bin/python3'\n"
        "package = 'cellgate-test-nothing'\n"
        "try:\n"
        "    %pip install {package}\n"
        "finally:\n"
        "    sys.executable = real\n"
        "print('status', _exit_code)"), timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    # IPython's %pip runs it as `!` does: its stderr is stdout, as under ipykernel
    err = stream_text(out, "stdout" if HAVE_IPYTHON else "stderr")
    assert "/tmp/nopip/bin/python3: No module named pip" in err
    if HAVE_IPYTHON:  # IPython's %pip, as under ipykernel
        assert stream_text(out, "stdout").endswith("status 1\n")
    else:
        assert ("cellgate: %pip ran `/tmp/nopip/bin/python3 -m pip install "
                "cellgate-test-nothing`, but pip is not installed") in err
        assert stream_text(out, "stdout") == "status 1\n"


def test_cd_and_env_magics(kernel_factory):
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, "%cd /tmp\nimport os\nprint(os.getcwd())\n!pwd\n"
                         "%cd -q -\n%pwd")
    assert stream_text(out, "stdout") == "/tmp\n/tmp\n/tmp\n"
    assert out[-1]["content"]["data"]["text/plain"] == "'/mnt/data'"
    reply, out = run(kc, "%cd /no/such/dir\n%pwd")
    # IPython's %cd prints the error on stdout (ipykernel does the same)
    assert "No such file or directory" in stream_text(out, "stdout" if HAVE_IPYTHON else "stderr")
    assert out[-1]["content"]["data"]["text/plain"] == "'/mnt/data'"
    reply, out = run(kc, "value = 'v 1'\n%env CG_A={value}\n%env CG_B two\n"
                         "!echo $CG_A/$CG_B\nimport os\nprint(os.environ['CG_B'])\n%env CG_A")
    assert stream_text(out, "stdout") == "env: CG_A=v 1\nenv: CG_B=two\nv 1/two\ntwo\n"
    assert out[-1]["content"]["data"]["text/plain"] == "'v 1'"
    reply, out = run(kc, "%env CG_NOT_SET")
    assert reply["content"]["ename"] == "UsageError"
    reply, out = run(kc, "%env CG_SECRET_TOKEN=hush\nenv = %env\nenv['CG_SECRET_TOKEN'], env['CG_B']")
    assert out[-1]["content"]["data"]["text/plain"] == "('<hidden>', 'two')"


def test_interrupt_stops_a_shell_command(kernel_factory):
    km, kc = kernel_factory("cellgate-python")
    msg_id = kc.execute("!echo started; sleep 137; echo not-reached\nprint('not reached')")
    deadline = time.monotonic() + 20
    seen = ""
    while "started" not in seen:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
            seen += msg["content"]["text"]

    def sleepers():
        found = pids_where(descendants(kernel_pid(km)), lambda argv: argv[:2] == [b"sleep", b"137"])
        return [pid for pid in found if pid_alive(pid)]

    assert wait_until(lambda: sleepers()), "the command is not running"
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert wait_until(lambda: not sleepers()), "sleep survived the interrupt"
    reply, out = run(kc, "!echo alive\nprint('and well')")
    assert stream_text(out, "stdout") == "alive\nand well\n"


# ---------------------------------------------------------------------------
# %time, %timeit and cell magics

TIME = r"\d+(?:\.\d+)? (?:s|ms|µs|ns)"


def test_magics_through_nbclient(tmp_path):
    nb = run_notebook(tmp_path,
                      "%%time\nx = 6\nx * 7",
                      "%timeit -n 10 -r 2 sum(range(10))",
                      "%%writefile magic.txt\nhello from {x}",
                      "print(repr(open('magic.txt').read()))",
                      "%%html\n<b>bold</b>",
                      "%%markdown\n# Title",
                      "%%capture captured\nprint('hidden')\n!echo hidden too\ndisplay(x)",
                      "captured.stdout, [o.data for o in captured.outputs]")
    timed = nb.cells[0].outputs
    assert [o.output_type for o in timed] == ["stream", "execute_result"]
    assert re.fullmatch(r"CPU times: user {0}, sys: {0}, total: {0}\nWall time: {0}\n"
                        .format(TIME), timed[0].text), timed[0].text
    assert timed[1].data["text/plain"] == "42"
    text = nb.cells[1].outputs[0].text
    # As IPython, %timeit warns first when the slowest run took over 4x the
    # fastest (a loaded machine, with microsecond runs); the line is exact.
    slow = (r"(?:The slowest run took \d+\.\d\d times longer than the fastest\. This could "
            r"mean that an intermediate result is being cached\.\n)?")
    assert re.fullmatch(slow + r"{0} ± {0} per loop \(mean ± std\. dev\. of 2 runs, 10 loops "
                        r"each\)\n".format(TIME), text), text
    assert nb.cells[2].outputs[0].text == "Writing magic.txt\n"
    assert nb.cells[3].outputs[0].text == repr("hello from {x}\n") + "\n"  # the body as written
    html, markdown = nb.cells[4].outputs[0], nb.cells[5].outputs[0]
    assert html.output_type == markdown.output_type == "display_data"
    assert html.data["text/html"] == "<b>bold</b>\n"
    assert markdown.data["text/markdown"] == "# Title\n"
    assert nb.cells[6].outputs == []
    assert nb.cells[7].outputs[0].data["text/plain"] == repr(
        ("hidden\nhidden too\n", [{"text/plain": "6"}]))


def test_cell_magics_in_the_cellgate_kernel(multi_kernel):
    km, kc = multi_kernel
    reply, out = run(kc, "\n%%time\nimport time\ntime.sleep(0.2)\n1/0")
    if HAVE_IPYTHON:  # IPython's %%time shows the error and the cell succeeds
        assert reply["content"]["status"] == "ok"
        assert [e["content"]["ename"] for e in errors(out)] == ["ZeroDivisionError"]
    else:
        assert reply["content"]["ename"] == "ZeroDivisionError"
        assert any("line 5" in line and "1/0" in line for line in reply["content"]["traceback"])
    reply, out = run(kc, "tr = %timeit -o -q -n 3 -r 2 sum(range(5))\n(tr.loops, tr.repeat)")
    assert out[-1]["content"]["data"]["text/plain"] == "(3, 2)"
    reply, out = run(kc, "%%sh\necho $0")  # %%sh is Bash here: a language of the kernel
    assert stream_text(out, "stdout") == "/bin/bash\n"
    reply, out = run(kc, "%%nosuchmagic\nx")
    assert reply["content"]["evalue"] == "Cell magic `%%nosuchmagic` not found."
    for code, status in (("%%time\nx = 1", "incomplete"), ("%%time\nx = 1\n\n", "complete")):
        kc.is_complete(code)
        assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == status


def test_get_ipython_runs_what_nbconvert_scripts_call(python_kernel):
    """`jupyter nbconvert --to script` writes magics and !cmd as calls on
    get_ipython(); those run, while IPython's own get_ipython() stays None so
    libraries do not take the kernel for IPython's shell."""
    km, kc = python_kernel
    reply, out = run(kc, "n = 3\n"
                         "get_ipython().run_line_magic('env', 'CG_SHIM=v$n')\n"
                         "get_ipython().run_cell_magic('writefile', 'shim.txt', 'n={n}\\n')\n"
                         "get_ipython().system('echo sys $n; cat shim.txt')\n"
                         "lines = get_ipython().getoutput('echo a; echo b')\n"
                         "t = get_ipython().run_line_magic('time', 'n * 2')\n"
                         "get_ipython().push({'pushed': 1})\n"
                         "import os\n"
                         "(os.environ['CG_SHIM'], lines, t, get_ipython().ev('pushed + n'),\n"
                         " type(get_ipython()).__name__)")
    assert reply["content"]["status"] == "ok", reply["content"]
    text = stream_text(out, "stdout")
    assert text.startswith("env: CG_SHIM=v3\nWriting shim.txt\nsys 3\nn={n}\nCPU times: ")
    shell = "ZMQInteractiveShell" if HAVE_IPYTHON else "Shell"
    assert out[-1]["content"]["data"]["text/plain"] == "('v3', ['a', 'b'], 6, 4, %r)" % shell
    if not HAVE_IPYTHON:
        return
    reply, out = run(kc, "try:\n    import IPython\nexcept ImportError:\n    print(None)\n"
                         "else:\n    print(IPython.get_ipython() is get_ipython())")
    assert stream_text(out, "stdout") == "True\n"


PLOTLY_FIGURE = ("import plotly.graph_objects as go\n"
                 "fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))\n")


def test_plotly_figures_show_as_in_a_notebook(kernel_factory):
    """fig.show() and a figure as the last value give plotly's mimetype, as
    under ipykernel; a renderer the user chose wins; scripts run from a cell
    keep plotly's own choice."""
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, PLOTLY_FIGURE + "fig.show()")
    assert reply["content"]["status"] == "ok", reply["content"]
    shown = [m["content"]["data"] for m in out if m["msg_type"] == "display_data"]
    figures = [d for d in shown if "application/vnd.plotly.v1+json" in d]
    assert len(figures) == 1 and figures[0]["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3, 1, 2]
    reply, out = run(kc, "fig")
    assert "application/vnd.plotly.v1+json" in out[-1]["content"]["data"]
    reply, out = run(kc, "!/usr/bin/python3 -c 'import plotly.io as p; print(p.renderers.default)'")
    assert "plotly_mimetype" not in stream_text(out, "stdout")
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, "import os\nos.environ['PLOTLY_RENDERER'] = 'json'\n"
                         + PLOTLY_FIGURE + "fig.show()")
    shown = [m["content"]["data"] for m in out if m["msg_type"] == "display_data"]
    assert [list(d) for d in shown] == [["application/json"]]


# ---------------------------------------------------------------------------
# ipywidgets: comms both ways in the Python kernel (issue 13)

needs_ipywidgets = pytest.mark.skipif(
    not HAVE_IPYTHON or not __import__("importlib.util").util.find_spec("ipywidgets"),
    reason="no IPython or ipywidgets")


def iopub_until_quiet(kc, wait=1.0):
    msgs = []
    while True:
        try:
            msgs.append(kc.get_iopub_msg(timeout=wait))
        except Exception:  # queue.Empty
            return msgs


@needs_ipywidgets
def test_ipywidgets_slider_both_ways(kernel_factory):
    """A slider's model opens as a comm on IOPub; the front-end moving it
    (a comm_msg) changes the value the code sees and runs its observers;
    the code setting it sends the front-end an update."""
    import uuid
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, "import ipywidgets as w\ns = w.IntSlider(value=3)\ns")
    assert reply["content"]["status"] == "ok", reply["content"]
    models = {m["content"]["data"].get("_model_name"): m["content"]["comm_id"]
              for m in out if m["msg_type"] == "comm_open"}
    cid = models["IntSliderModel"]
    views = [m for m in out if m["msg_type"] == "display_data"]
    assert views[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"] == {
        "model_id": cid}
    run(kc, "seen = []\ns.observe(lambda change: seen.append(change['new']), 'value')")
    kc.shell_channel.send(kc.session.msg("comm_msg", {
        "comm_id": cid, "data": {"method": "backbone", "sync_data": {"value": 7}}}))
    iopub_until_quiet(kc, 0.5)
    reply, out = run(kc, "print(s.value, seen)")
    assert stream_text(out, "stdout") == "7 [7]\n"
    reply, out = run(kc, "s.value = 11")
    updates = [m["content"] for m in out if m["msg_type"] == "comm_msg"]
    assert updates and updates[-1]["comm_id"] == cid
    assert updates[-1]["data"]["state"] == {"value": 11}
    # a comm the code never registered a target for is closed
    other = uuid.uuid4().hex
    kc.shell_channel.send(kc.session.msg("comm_open", {
        "comm_id": other, "target_name": "no.such.target", "data": {}}))
    closed = [m for m in iopub_until_quiet(kc) if m["msg_type"] == "comm_close"]
    assert [m["content"]["comm_id"] for m in closed] == [other]


def test_hand_written_fallback_still_runs(kernel_factory):
    """CELLGATE_PYTHON_IPYTHON=0 (the operator's choice, passed into the
    box) runs the driver's own code, as where IPython is missing: its own
    get_ipython(), magics and display, and IPython is never imported by it."""
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_PYTHON_IPYTHON": "0"})
    reply, out = run(kc, "import sys\n"
                         "print(type(get_ipython()).__name__, 'IPython' in sys.modules)\n"
                         "!echo shell\n"
                         "%env CG_FALLBACK=1\n"
                         "int")
    assert stream_text(out, "stdout") == "Shell False\nshell\nenv: CG_FALLBACK=1\n"
    assert out[-1]["content"]["data"]["text/plain"] == "<class 'int'>"
    reply, out = run(kc, "%nosuchmagic 1")
    assert reply["content"]["traceback"] == [
        "UsageError: Line magic function `%nosuchmagic` not found."]
    if IPYTHON_INSTALLED:
        reply, out = run(kc, "from IPython.display import display, HTML\n"
                             "display(HTML('<b>x</b>'))")
        assert out[-1]["content"]["data"]["text/html"] == "<b>x</b>"
