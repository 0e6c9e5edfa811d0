"""Tests of cellgate's Python driver (kernel/drivers/python.py), standalone.

The driver is started exactly as the kernel starts it: `/usr/bin/python3 -I
-c <source>` in a new session, fd 3 one end of an AF_UNIX socketpair, fd 1/2
pipes, fd 0 /dev/null.  The tests speak the protocol of
kernel/drivers/PROTOCOL.md directly, through the shared harness
(tests/drivers/harness.py).

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_python_driver.py
"""

import os
import select
import socket
import time

import pytest

from harness import TIMEOUT, ok, wait_for_stdout
import harness

PYTHON = "/usr/bin/python3"
SOURCE = harness.driver_source("python.py")


class Driver(harness.Driver):
    """The harness's protocol client, starting python.py as the kernel does
    (the environment is ours plus the driver's two variables). These are the
    tests of the driver's own, hand-written code - what runs where the box
    has no IPython - so CELLGATE_PYTHON_IPYTHON=0 asks for it here; IPython's
    shell is tested through real kernels (test_ipython_parity.py,
    test_rich.py)."""

    def __init__(self):
        super().__init__([PYTHON, "-I", "-c", SOURCE],
                         env=dict(os.environ, CELLGATE_PYTHON_IPYTHON="0"))


driver, fresh = harness.fixtures(Driver)


# ---------------------------------------------------------------------------
# start-up, namespace, results

def test_ready_and_version(driver):
    import platform
    assert driver.ready == {"t": "ready", "language_version": platform.python_version()}
    assert driver.ready_after < 2.0  # generous: the target (~25 ms) is measured apart


def test_state_persists_across_cells(driver):
    ok(driver.run("state_a = 20"))
    ok(driver.run("def state_f(x):\n    return x + state_a"))
    cell = ok(driver.run("state_f(22)"))
    assert cell.result["data"]["text/plain"] == "42"


def test_last_expression_result(driver):
    cell = ok(driver.run("le_x = 40\nle_x + 2"))
    assert cell.result == {"t": "result", "data": {"text/plain": "42"}, "metadata": {}}
    assert ok(driver.run("le_x = 1")).result is None  # assignment: no value
    assert ok(driver.run("None")).result is None
    assert ok(driver.run("le_x + 1;  # the ; hides it")).result is None
    assert ok(driver.run("le_x + 1", silent=True)).result is None
    cell = ok(driver.run("[le_x] * 2\n"))
    assert cell.result["data"]["text/plain"] == "[1, 1]"


def test_underscore_history(driver):
    ok(driver.run("'first'"))
    ok(driver.run("'second'"))
    ok(driver.run("'third'"))
    cell = ok(driver.run("(_, __, ___)"))
    assert cell.result["data"]["text/plain"] == "('third', 'second', 'first')"
    cell = ok(driver.run("'kept'", count=900))
    assert ok(driver.run("_900, Out[900]")).result["data"]["text/plain"] == "('kept', 'kept')"


def test_user_code_runs_in_a_real_main_module(driver):
    code = ("import sys, pickle\n"
            "class Point:\n"
            "    def __init__(self, x): self.x = x\n"
            "p = pickle.loads(pickle.dumps(Point(3)))\n"
            "(__name__, sys.modules['__main__'].Point is Point, p.x, sys.path[0],\n"
            " type(__builtins__).__name__, 'state_a' in dir(sys.modules['__main__']))")
    cell = ok(driver.run(code))
    assert cell.result["data"]["text/plain"] == "('__main__', True, 3, '', 'module', True)"
    # the driver's own names are not in the user's namespace
    assert ok(driver.run("'handle_execute' in globals()")).result["data"]["text/plain"] == "False"


def test_top_level_await(driver):
    cell = ok(driver.run("import asyncio\nawait asyncio.sleep(0)\nawait asyncio.sleep(0, 'awaited')"))
    assert cell.result["data"]["text/plain"] == "'awaited'"


def test_future_imports_persist(driver):
    ok(driver.run("from __future__ import annotations"))
    cell = ok(driver.run("def fa(x: undefined_name) -> int: pass\nfa.__annotations__['x']"))
    assert cell.result["data"]["text/plain"] == "'undefined_name'"


# ---------------------------------------------------------------------------
# the display protocol

RICH = '''
import base64
class Rich:
    def __repr__(self): return "Rich()"
    def _repr_html_(self): return "<b>rich</b>"
    def _repr_markdown_(self): return "**rich**"
    def _repr_svg_(self): return "<svg></svg>"
    def _repr_png_(self): return b"\\x89PNG"
    def _repr_jpeg_(self): return (b"\\xff\\xd8", {"width": 2})
    def _repr_latex_(self): return "$x$"
    def _repr_json_(self): return {"a": [1, 2]}
class Broken:
    def __repr__(self): return "Broken()"
    def _repr_html_(self): raise ValueError("no html today")
    def _repr_markdown_(self): return 42  # not a str: ignored
class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": "bundled", "text/html": "<i>b</i>"}, {"text/html": {"isolated": True}}
    def _repr_html_(self): return "<i>not used</i>"
    def _repr_latex_(self): return "$b$"
class BadRepr:
    def __repr__(self): raise RuntimeError("repr fails")
'''


def test_rich_result(driver):
    ok(driver.run(RICH))
    cell = ok(driver.run("Rich()"))
    data = cell.result["data"]
    assert data == {
        "text/plain": "Rich()", "text/html": "<b>rich</b>", "text/markdown": "**rich**",
        "image/svg+xml": "<svg></svg>", "image/png": "iVBORw==", "image/jpeg": "/9g=",
        "text/latex": "$x$", "application/json": {"a": [1, 2]}}
    assert cell.result["metadata"] == {"image/jpeg": {"width": 2}}


def test_repr_methods_that_fail_fall_back_to_text(driver):
    ok(driver.run(RICH))
    cell = ok(driver.run("Broken()"))
    assert cell.result["data"] == {"text/plain": "Broken()"}
    assert "no html today" in cell.stderr
    cell = ok(driver.run("BadRepr()"))
    assert cell.result["data"]["text/plain"].startswith("<__main__.BadRepr object at")
    assert "repr fails" in cell.stderr


def test_mimebundle_first_then_repr_methods(driver):
    ok(driver.run(RICH))
    cell = ok(driver.run("Bundle()"))
    assert cell.result["data"] == {"text/plain": "bundled", "text/html": "<i>b</i>",
                                   "text/latex": "$b$"}
    assert cell.result["metadata"] == {"text/html": {"isolated": True}}
    # a class is shown by repr only: its _repr_html_ is an unbound function
    cell = ok(driver.run("Rich"))
    assert cell.result["data"] == {"text/plain": "<class '__main__.Rich'>"}


def test_display(driver):
    ok(driver.run(RICH))
    cell = ok(driver.run("display(1, Rich()); print('after')"))
    first, second = cell.of("display")
    assert first == {"t": "display", "data": {"text/plain": "1"}, "metadata": {}}
    assert second["data"]["text/html"] == "<b>rich</b>"
    assert cell.records[2] == {"t": "stream", "name": "stdout", "text": "after\n"}
    cell = ok(driver.run("print('before'); h = display('a', display_id=True)\n"
                         "h.update('b')\nh"))
    assert cell.records[0] == {"t": "stream", "name": "stdout", "text": "before\n"}
    shown, updated = cell.of("display")
    display_id = shown["transient"]["display_id"]
    assert len(display_id) >= 16 and "update" not in shown
    assert shown["data"] == {"text/plain": "'a'"}
    assert updated["data"] == {"text/plain": "'b'"}
    assert updated["transient"] == {"display_id": display_id} and updated["update"] is True
    assert cell.result["data"]["text/plain"] == "<DisplayHandle display_id=%s>" % display_id


def test_cellgate_module(driver):
    code = ("import cellgate\n"
            "cellgate.display({'text/plain': 'raw', 'text/html': '<p>raw</p>'}, raw=True,\n"
            "                 display_id='mine', metadata={'k': 1})\n"
            "cellgate.update_display('new', display_id='mine')\n"
            "cellgate.clear_output(wait=True)\n"
            "cellgate.clear_output()\n"
            "print(cellgate.display is display)")
    cell = ok(driver.run(code))
    kinds = [r["t"] for r in cell.records]
    assert kinds == ["display", "display", "clear", "clear", "stream", "done"]
    raw, update, clear_wait, clear = cell.records[:4]
    assert raw == {"t": "display", "data": {"text/plain": "raw", "text/html": "<p>raw</p>"},
                   "metadata": {"k": 1}, "transient": {"display_id": "mine"}}
    assert update == {"t": "display", "data": {"text/plain": "'new'"}, "metadata": {},
                      "transient": {"display_id": "mine"}, "update": True}
    assert clear_wait == {"t": "clear", "wait": True} and clear == {"t": "clear", "wait": False}
    assert cell.stdout == "True\n"


# ---------------------------------------------------------------------------
# errors

def test_error_traceback_shows_only_user_frames(driver):
    ok(driver.run("def inner():\n    return 1 / 0\n\ndef outer():\n    return inner()"))
    cell = driver.run("x = 1\nouter()")
    error = cell.error
    assert error["ename"] == "ZeroDivisionError" and error["evalue"] == "division by zero"
    text = "\n".join(error["traceback"])
    assert text.startswith("Traceback (most recent call last):")
    assert "line 2, in <module>\n    outer()" in text
    assert "in outer\n    return inner()" in text and "return 1 / 0" in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "<string>" not in text and "\x1b" not in text
    assert cell.done == {"t": "done", "user_expressions": {}}
    assert [r["t"] for r in cell.records] == ["error", "done"]


def test_users_own_string_frames_are_kept(driver):
    # driver frames are recognised by their globals, not by "<string>"
    cell = driver.run("exec('def g():\\n    return 1/0')\ng()")
    text = "\n".join(cell.error["traceback"])
    assert 'File "<string>", line 2, in g' in text and "g()" in text


def test_error_in_color(driver):
    cell = driver.run("raise KeyError('k')", color=True)
    assert cell.error["ename"] == "KeyError"
    text = "\n".join(cell.error["traceback"])
    assert "\x1b[0;31m" in text and "\x1b[0m" in text and "<cell" in text


def test_chained_error_and_driver_frames_from_calls_into_driver(driver):
    cell = driver.run("try:\n    {}['a']\nexcept KeyError as e:\n    raise ValueError('v') from e")
    text = "\n".join(cell.error["traceback"])
    assert "KeyError: 'a'" in text and "direct cause" in text and "ValueError: v" in text
    # input() is driver code: its frames are dropped too
    cell = driver.run("input('?')")
    text = "\n".join(cell.error["traceback"])
    assert "<string>" not in text and "input('?')" in text


def test_syntax_error(driver):
    cell = driver.run("x = (1 +\n")
    assert cell.error["ename"] == "SyntaxError"
    cell = driver.run("a = 1\nb = 1 + * 2")
    error = cell.error
    assert error["ename"] == "SyntaxError"
    text = "\n".join(error["traceback"])
    assert "line 2" in text and "b = 1 + * 2" in text and "^" in text
    assert "Traceback" not in text and "<string>" not in text
    assert [r["t"] for r in cell.records] == ["error", "done"]


def test_indentation_error(driver):
    cell = driver.run("if True:\nprint(1)")
    assert cell.error["ename"] == "IndentationError"
    assert "expected an indented block" in cell.error["evalue"]


def test_system_exit_is_an_error_not_an_exit(driver):
    ok(driver.run("se_kept = 'still here'"))
    cell = driver.run("import sys; sys.exit(3)")
    assert cell.error["ename"] == "SystemExit" and cell.error["evalue"] == "3"
    cell = driver.run("exit()")
    assert cell.error["ename"] == "SystemExit"
    assert ok(driver.run("se_kept")).result["data"]["text/plain"] == "'still here'"
    assert driver.proc.poll() is None


# ---------------------------------------------------------------------------
# interrupts

def test_keyboard_interrupt_during_sleep(fresh):
    ok(fresh.run("ki_before = 'kept'"))
    fresh.start("import time\nprint('started', flush=True)\ntime.sleep(30)\nki_after = 1")
    wait_for_stdout(fresh, "started")
    time.sleep(0.1)  # let the cell get from print() into sleep()
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    text = "\n".join(cell.error["traceback"])
    assert "time.sleep(30)" in text and "<string>" not in text
    cell = ok(fresh.run("ki_before, 'ki_after' in globals()"))
    assert cell.result["data"]["text/plain"] == "('kept', False)"


def test_sigint_between_requests_is_ignored(fresh):
    ok(fresh.run("ig = 5"))
    harness.sigint_between_cells(fresh, settle=0.1)
    assert ok(fresh.run("ig")).result["data"]["text/plain"] == "5"


def trickle(driver, pieces):
    """Read fd 3 slowly: up to pieces times 4 KiB, until `done` shows up."""
    for _ in range(pieces):
        if b'"t":"done"' in driver.inbox:
            return
        if not select.select([driver.sock], [], [], TIMEOUT)[0]:
            raise TimeoutError("the driver went quiet")
        driver.inbox += driver.sock.recv(4096)


def test_interrupt_during_a_flood_of_output_keeps_lines_whole(fresh):
    # recv() parses every record as strict UTF-8 JSON.  We read slowly, in
    # small pieces, so the driver is often blocked half-way through writing
    # a line when SIGINT comes; the line must still be finished.
    for round_ in range(20):
        fresh.start("import sys\nprint('go', flush=True)\n"
                    "while True:\n    sys.stdout.write('%d' * 5000)" % (round_ % 10))
        wait_for_stdout(fresh, "go")
        trickle(fresh, round_ % 10 * 5)
        fresh.interrupt()
        trickle(fresh, 1000)  # keep reading slowly while the interrupt lands
        cell = fresh.finish(timeout=5.0)
        assert cell.error["ename"] == "KeyboardInterrupt"
        assert set(cell.stdout) <= {str(round_ % 10)}
    assert ok(fresh.run("1")).result["data"]["text/plain"] == "1"


# ---------------------------------------------------------------------------
# input

def test_input_with_allow_stdin(driver):
    driver.start("print('asking')\nname = input('Name? ')\nprint('hello', name)",
                 allow_stdin=True)
    records = []
    while True:
        record = driver.recv()
        records.append(record)
        if record["t"] == "input":
            break
    # streams are flushed before the input request
    assert records == [{"t": "stream", "name": "stdout", "text": "asking\n"},
                       {"t": "input", "prompt": "Name? ", "password": False}]
    driver.send(t="input_reply", value="Ada")
    cell = ok(driver.finish())
    assert cell.stdout == "hello Ada\n"


def test_getpass_asks_with_password_true(driver):
    driver.start("import getpass\nsecret = getpass.getpass()\nlen(secret)", allow_stdin=True)
    assert driver.recv() == {"t": "input", "prompt": "Password: ", "password": True}
    driver.send(t="input_reply", value="hunter2")
    assert ok(driver.finish()).result["data"]["text/plain"] == "7"


def test_input_without_allow_stdin(driver):
    cell = driver.run("input('x')", allow_stdin=False)
    assert cell.error["ename"] == "StdinNotImplementedError"
    assert cell.error["evalue"] == ("input() was called, but this client does not support "
                                    "input requests (allow_stdin is false)")
    assert not cell.of("input")


def test_stray_input_reply_is_ignored(driver):
    driver.send(t="input_reply", value="nobody asked")
    assert ok(driver.run("'fine'")).result["data"]["text/plain"] == "'fine'"


def test_interrupt_during_input(fresh):
    harness.interrupt_during_input(fresh, "answer = input('wait: ')", "KeyboardInterrupt")
    cell = ok(fresh.run("'answer' in globals()"))
    assert cell.result["data"]["text/plain"] == "False"


# ---------------------------------------------------------------------------
# streams

def test_stdout_stderr_order_is_exact(driver):
    cell = ok(driver.run("import sys\nfor i in range(5):\n"
                         "    print('out', i)\n    print('err', i, file=sys.stderr)"))
    streams = [(r["name"], r["text"]) for r in cell.of("stream")]
    expected = []
    for i in range(5):
        expected += [("stdout", "out %d\n" % i), ("stderr", "err %d\n" % i)]
    assert streams == expected


def test_subprocess_output_arrives_on_the_raw_pipe_before_done(driver):
    cell = ok(driver.run("import os\nprint('py')\nos.system('echo hi; echo oops >&2')\n"
                         "os.write(1, b'direct\\n');"))
    assert cell.raw_out == b"hi\ndirect\n"
    assert cell.raw_err == b"oops\n"
    assert cell.stdout == "py\n"


def test_buffered_text_goes_out_before_a_subprocess_starts(fresh):
    # The kernel drains the raw pipes before it handles a record, so text
    # printed before a subprocess starts must be on fd 3 before the child
    # runs.  With the background flush made slow (through the driver's
    # globals), only the flush before the spawn can deliver 'first' in time.
    ok(fresh.run("display.__globals__['FLUSH_DELAY'] = 30"))
    fresh.start("import subprocess\nprint('first')\n"
                "subprocess.run(['sh', '-c', 'sleep 0.5; echo second'])\n"
                "print('third')\nimport os\nos.system('echo fourth')")
    assert fresh.recv(timeout=0.4) == {"t": "stream", "name": "stdout", "text": "first\n"}
    assert fresh.drain_raw() == (b"", b"")
    assert fresh.recv() == {"t": "stream", "name": "stdout", "text": "third\n"}
    cell = ok(fresh.finish())
    assert cell.raw_out == b"second\nfourth\n"


def test_sync_marks_raw_output_written_before_a_record(fresh):
    # Raw output still unread in the pipe when a record goes out was written
    # first: the driver says so with a `sync` just before that record.
    fresh.pump_raw = False  # leave the raw bytes in the pipe, unread
    fresh.start("import os\nos.system('echo raw')\nprint('after')")
    records = []
    while not records or records[-1]["t"] != "done":
        records.append(fresh.recv(keep_sync=True))
    kinds = [r["t"] for r in records]
    assert kinds[:2] == ["sync", "stream"] and records[1]["text"] == "after\n"
    fresh.pump_raw = True
    assert fresh.drain_raw() == (b"raw\n", b"")
    # Nothing waiting in the pipes: no sync.
    fresh.start("print('plain')")
    assert fresh.recv(keep_sync=True)["t"] == "stream"


def test_underscore_is_left_alone_once_the_user_takes_it(driver):
    ok(driver.run("'a value'"))
    ok(driver.run("for _ in range(3): pass"))
    ok(driver.run("'another value'"))
    assert ok(driver.run("_")).result["data"]["text/plain"] == "2"


def test_output_is_flushed_promptly_while_the_cell_runs(driver):
    driver.start("import time\nprint(1)\ntime.sleep(1.5)")
    sent = time.monotonic()
    record = driver.recv(timeout=1.0)
    assert record == {"t": "stream", "name": "stdout", "text": "1\n"}
    assert time.monotonic() - sent < 0.5
    ok(driver.finish())


def test_large_output_arrives_complete(driver):
    code = "import sys\nw = sys.stdout.write\nfor _ in range(100_000):\n    w('x' * 99 + '\\n')"
    started = time.perf_counter()
    cell = ok(driver.run(code, timeout=60))
    elapsed = time.perf_counter() - started
    text = cell.stdout
    assert len(text) == 10_000_000 and text == ("x" * 99 + "\n") * 100_000
    records = cell.of("stream")
    assert max(len(r["text"]) for r in records) <= 1 << 20
    print("\n10 MB through the driver: %.3f s, %.1f MB/s, %d records"
          % (elapsed, 10 / elapsed, len(records)))


def test_stream_objects_behave_like_text_files(driver):
    code = ("import sys, io\n"
            "s = sys.stdout\n"
            "try:\n    s.fileno()\nexcept io.UnsupportedOperation:\n    fileno = 'unsupported'\n"
            "try:\n    s.write(b'x')\nexcept TypeError:\n    typeerror = True\n"
            "n = s.write('abc')\n"
            "s.writelines(['d', 'e\\n'])\n"
            "(s.isatty(), s.encoding, s.name, sys.stderr.name, s.readable(), s.writable(),\n"
            " s.seekable(), fileno, typeerror, n, isinstance(s, io.TextIOBase))")
    cell = ok(driver.run(code))
    assert cell.result["data"]["text/plain"] == (
        "(False, 'utf-8', '<stdout>', '<stderr>', False, True, False, 'unsupported', "
        "True, 3, True)")
    assert cell.stdout == "abcde\n"


def test_lone_surrogates_become_valid_unicode(driver):
    cell = ok(driver.run("print('a\\ud800b')\n'\\udcff'"))  # recv() decodes strictly
    assert cell.stdout in ("a?b\n", "a\ufffdb\n")
    assert cell.result["data"]["text/plain"] in ("'?'", "'\\udcff'")


def test_stream_text_is_escaped_exactly(driver):
    # plain text takes the driver's fast escaping path, text with other
    # control characters the json path: both must round-trip exactly
    samples = ['quote " backslash \\ tab \t cr \r nl \n', 'ñ 😀 \x7f',
               '\x1b[31mred\x1b[0m \x00 \x08 \x0c', '\\"\\n']
    ok(driver.run("samples = %r" % (samples,)))
    for index, sample in enumerate(samples):
        cell = ok(driver.run("import sys\nsys.stdout.write(samples[%d]); sys.stdout.flush()"
                             % index))
        assert cell.stdout == sample


def test_writes_from_threads_are_all_delivered(driver):
    code = ("import sys, threading\n"
            "def spam(n):\n"  # one write() per line: print() makes two
            "    for i in range(5000):\n"
            "        sys.stdout.write('t%d %d\\n' % (n, i))\n"
            "        sys.stderr.write('e%d %d\\n' % (n, i))\n"
            "threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]\n"
            "for t in threads: t.start()\n"
            "for t in threads: t.join()")
    cell = ok(driver.run(code, timeout=60))
    for name, letter in (("stdout", "t"), ("stderr", "e")):
        lines = cell.text(name).splitlines()
        assert sorted(lines) == sorted("%s%d %d" % (letter, n, i)
                                       for n in range(4) for i in range(5000))
        for n in range(4):  # each thread's lines keep their order
            mine = [line for line in lines if line.startswith("%s%d " % (letter, n))]
            assert mine == ["%s%d %d" % (letter, n, i) for i in range(5000)]


def test_forked_child_output_goes_to_the_raw_pipe(driver):
    code = ("import os\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    print('from the child')\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "print('from the parent')")
    cell = ok(driver.run(code))
    assert cell.raw_out == b"from the child\n"
    assert cell.stdout == "from the parent\n"
    assert ok(driver.run("'alive'")).result["data"]["text/plain"] == "'alive'"


def test_forked_child_falling_off_the_cell_exits(driver):
    cell = ok(driver.run("import os\nfc_pid = os.fork()\nif fc_pid:\n    os.waitpid(fc_pid, 0)"))
    assert [r["t"] for r in cell.records] == ["done"]  # only the parent's done
    assert ok(driver.run("fc_pid > 0")).result["data"]["text/plain"] == "True"


# ---------------------------------------------------------------------------
# user_expressions

def test_user_expressions(driver):
    ok(driver.run("ue = 21"))
    cell = ok(driver.run("ue2 = ue * 2",
                         user_expressions={"double": "ue2", "bad": "1/0", "html": "Rich()"}))
    exprs = cell.done["user_expressions"]
    assert exprs["double"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["ename"] == "ZeroDivisionError"
    assert exprs["bad"]["evalue"] == "division by zero"
    assert isinstance(exprs["bad"]["traceback"], list)
    assert "text/html" in exprs["html"]["data"]
    # after a failed cell, like ipykernel, no expressions are evaluated
    cell = driver.run("1/0", user_expressions={"double": "ue2"})
    assert cell.done == {"t": "done", "user_expressions": {}}


# ---------------------------------------------------------------------------
# complete

def complete(driver, code, cursor_pos=None):
    reply = driver.complete(code, cursor_pos)
    assert reply["cursor_end"] == (len(code) if cursor_pos is None else cursor_pos)
    assert reply["metadata"] == {}
    return reply


def test_complete_attributes(driver):
    ok(driver.run("import os"))
    reply = complete(driver, "x = os.pa")
    assert {"os.path", "os.pathsep"} <= set(reply["matches"])
    assert all(m.startswith("os.pa") for m in reply["matches"])
    assert reply["cursor_start"] == 4
    reply = complete(driver, "os.path.jo")
    assert reply["matches"] == ["os.path.join"] and reply["cursor_start"] == 0


def test_complete_names_builtins_keywords(driver):
    ok(driver.run("completion_target_1 = completion_target_2 = 0"))
    assert complete(driver, "completion_tar")["matches"] == [
        "completion_target_1", "completion_target_2"]
    assert "print" in complete(driver, "pri")["matches"]
    assert "while" in complete(driver, "whi")["matches"]
    assert "_private" not in complete(driver, "")["matches"]


def test_complete_positions_are_code_points(driver):
    ok(driver.run("ñandú_count = 1"))
    code = "s = 'é😀'; ñandú_c"
    reply = complete(driver, code)
    assert reply["matches"] == ["ñandú_count"]
    assert reply["cursor_start"] == code.index("ñ")
    # cursor in the middle of a line: only text before it counts
    reply = complete(driver, "ñandú_c + 1", cursor_pos=7)
    assert reply["matches"] == ["ñandú_count"] and reply["cursor_start"] == 0


def test_complete_modules(driver):
    reply = complete(driver, "import jso")
    assert "json" in reply["matches"] and reply["cursor_start"] == 7
    assert all(m.startswith("jso") for m in reply["matches"])
    assert "os.path" in complete(driver, "import os.pa")["matches"]
    assert "json.decoder" in complete(driver, "import sys, json.de")["matches"]
    reply = complete(driver, "from os import pa")
    assert {"path", "pathsep"} <= set(reply["matches"]) and reply["cursor_start"] == 15
    assert "decoder" in complete(driver, "from json import de")["matches"]
    assert "collections.abc" in complete(driver, "from collections.a")["matches"]
    assert complete(driver, "from json im")["matches"] == ["import"]


def test_complete_paths_in_strings(driver, tmp_path):
    (tmp_path / "alpha.txt").write_text("")
    (tmp_path / "alps").mkdir()
    code = "open('%s/al" % tmp_path
    reply = complete(driver, code)
    assert reply["matches"] == ["%s/alpha.txt" % tmp_path, "%s/alps/" % tmp_path]
    assert reply["cursor_start"] == code.index("'") + 1


def test_complete_runs_no_user_code(driver):
    ok(driver.run("calls = []\ndef side_effect():\n    calls.append(1)\n    return 1"))
    assert complete(driver, "side_effect().")["matches"] == []
    assert complete(driver, "side_effect().real")["matches"] == []
    assert ok(driver.run("calls")).result["data"]["text/plain"] == "[]"


# ---------------------------------------------------------------------------
# inspect

def test_inspect(driver):
    reply = driver.inspect("print")
    assert reply["found"] is True and reply["metadata"] == {}
    assert "Prints the values to a stream" in reply["data"]["text/plain"]
    ok(driver.run("import os"))
    text = driver.inspect("os.path.join")["data"]["text/plain"]
    assert "os.path.join(a, *p)" in text and "posixpath.py" in text
    text = driver.inspect("x = len(")["data"]["text/plain"]
    assert "Signature: len(obj, /)" in text
    text = driver.inspect("len(undefined_thing, ")["data"]["text/plain"]
    assert "len(obj, /)" in text
    text = driver.inspect("os.getcwd()", cursor_pos=5)["data"]["text/plain"]
    assert "getcwd" in text
    assert driver.inspect("no_such_name_here") == {
        "t": "reply", "found": False, "data": {}, "metadata": {}}
    assert driver.inspect("")["found"] is False


def test_inspect_detail_shows_source(driver):
    ok(driver.run("def documented(a, b=2):\n    '''Adds things.'''\n    return a + b"))
    text = driver.inspect("documented")["data"]["text/plain"]
    assert "Signature: documented(a, b=2)" in text and "Adds things." in text
    assert "return a + b" not in text
    text = driver.inspect("documented", detail_level=1)["data"]["text/plain"]
    assert "return a + b" in text


def test_inspect_never_calls_user_objects(driver):
    ok(driver.run("touched = []\nclass Touchy:\n"
                  "    def __call__(self): touched.append('call')\n"
                  "    def __repr__(self): touched.append('repr'); return 'T'\n"
                  "touchy = Touchy()"))
    reply = driver.inspect("touchy")
    assert reply["found"] and "Type:      Touchy" in reply["data"]["text/plain"]
    ok(driver.run("touchy?"))
    assert ok(driver.run("touched")).result["data"]["text/plain"] == "[]"


# ---------------------------------------------------------------------------
# is_complete

@pytest.mark.parametrize("code, status, indent", [
    ("x = 1", "complete", None),
    ("print('hi')\n", "complete", None),
    ("", "complete", None),
    ("if True:", "incomplete", "    "),
    ("def f(x):", "incomplete", "    "),
    ("for i in range(3):  # loop", "incomplete", "    "),
    ("if True:\n    x = 1", "incomplete", "    "),
    ("if True:\n    x = 1\n", "complete", None),
    ("if True:\n    x = 1\n\n", "complete", None),
    ("class A:\n    def f(self):", "incomplete", "        "),
    ("print(1,", "incomplete", ""),
    ("    x = [1,", "incomplete", "    "),
    ("s = '''abc", "incomplete", ""),
    ("x = 1 + \\", "incomplete", ""),
    ("1 + * 2", "invalid", None),
    (")", "invalid", None),
    ("len?", "complete", None),
    ("!ls -l", "complete", None),
    ("files = !ls", "complete", None),
    ("%pip install x", "complete", None),
    ("for f in files:\n    !echo {f}", "incomplete", "    "),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)


# ---------------------------------------------------------------------------
# the pager: obj? and obj??

def test_pager(driver):
    cell = ok(driver.run("len?"))
    assert [r["t"] for r in cell.records] == ["page", "done"]
    text = cell.of("page")[0]["data"]["text/plain"]
    assert "Return the number of items in a container." in text
    ok(driver.run("def paged(x):\n    'Doc of paged.'\n    return x * 3"))
    text = ok(driver.run("paged??")).of("page")[0]["data"]["text/plain"]
    assert "return x * 3" in text
    text = ok(driver.run("?paged")).of("page")[0]["data"]["text/plain"]
    assert "Doc of paged." in text and "return x * 3" not in text
    cell = ok(driver.run("nothing_by_this_name?"))
    assert cell.stdout == "Object `nothing_by_this_name` not found.\n" and not cell.of("page")


# ---------------------------------------------------------------------------
# the request loop

def test_unknown_requests_are_ignored(driver):
    driver.drain_raw()
    driver.send(t="frobnicate", x=1)
    deadline = time.monotonic() + TIMEOUT
    err = b""
    while b"frobnicate" not in err and time.monotonic() < deadline:
        driver._pump(0.1)
        err += driver.drain_raw()[1]
    assert b"frobnicate" in err
    assert not driver.inbox  # nothing was sent for it
    assert ok(driver.run("'next'")).result["data"]["text/plain"] == "'next'"


def test_end_of_file_exits_0(fresh):
    ok(fresh.run("import atexit\natexit.register(print, 'bye')"))
    fresh.sock.shutdown(socket.SHUT_WR)
    assert fresh.proc.wait(TIMEOUT) == 0
    out, _ = fresh.drain_raw()
    assert out == b"bye\n"  # atexit output goes to the raw pipe
    assert fresh.recv_eof()


def test_indented_cell_runs_like_ipython(driver):
    cell = ok(driver.run("    ind = 1\n    if ind:\n        ind += 1\n    ind"))
    assert cell.result["data"]["text/plain"] == "2"


def test_execute_is_acknowledged_before_user_code(fresh):
    # `started` comes before anything the cell does, so a driver that dies
    # without sending it never ran the cell (the kernel may resend it).
    before = fresh.started
    ok(fresh.run("x = 1"))
    assert fresh.started == before + 1


# ---------------------------------------------------------------------------
# IPython compatibility: its display functions, _ipython_display_, !cmd, %magic

needs_ipython = pytest.mark.skipif(
    not __import__("importlib.util").util.find_spec("IPython"), reason="no IPython")


@needs_ipython
def test_ipython_display_functions_are_the_drivers(fresh):
    cell = ok(fresh.run(
        "import sys\nprint('IPython' in sys.modules)\n"
        "import inspect, IPython.core.display_functions as functions\n"
        "from IPython.display import display as shown, publish_display_data, DisplayHandle\n"
        "print(shown is display, DisplayHandle is type(display(display_id='e')))\n"
        "print(type(functions.__loader__).__name__, type(functions.__spec__.loader).__name__,\n"
        "      'def _new_id' in inspect.getsource(functions._new_id))\n"
        "publish_display_data({'image/png': b'PNG', 'text/plain': 'p'}, {'m': 1},\n"
        "                     transient={'display_id': 'x'}, update=True)\n"
        "from IPython.display import GeoJSON\n"
        "GeoJSON({'type': 'Point', 'coordinates': [1, 2]})"))
    assert cell.stdout == "False\nTrue True\nSourceFileLoader SourceFileLoader True\n"
    empty, published, geo = cell.of("display")
    assert empty == {"t": "display", "data": {}, "metadata": {},
                     "transient": {"display_id": "e"}}
    assert published == {"t": "display", "data": {"image/png": "UE5H", "text/plain": "p"},
                         "metadata": {"m": 1}, "transient": {"display_id": "x"},
                         "update": True}
    # GeoJSON displays itself (_ipython_display_): no execute_result
    assert geo["data"]["application/geo+json"] == {"type": "Point", "coordinates": [1, 2]}
    assert cell.result is None


def test_objects_that_display_themselves(driver):
    cell = ok(driver.run(
        "class Self:\n"
        "    def _ipython_display_(self):\n"
        "        display({'text/plain': 'shown by itself'}, raw=True)\n"
        "    def __repr__(self):\n"
        "        return 'repr'\n"
        "class Broken(Self):\n"
        "    def _ipython_display_(self):\n"
        "        raise ValueError('no')\n"
        "display(Self(), Broken())\n"
        "Self()"))
    itself, broken, value = cell.of("display")
    assert itself["data"] == value["data"] == {"text/plain": "shown by itself"}
    assert broken["data"] == {"text/plain": "repr"}  # fell back to formatting
    assert "_ipython_display_() of a Broken object raised ValueError: no" in cell.stderr
    assert cell.result is None
    cell = driver.run("display('x', update=True)")
    assert cell.error["ename"] == "TypeError"


def test_double_bang_and_slist(driver):
    cell = ok(driver.run("!!echo a b"))
    assert cell.value == "['a b']"
    cell = ok(driver.run("lines = !printf 'ab\\ncd\\n'\n"
                         "print(lines.grep('c'), lines.grep('c', prune=True), lines.l is lines,\n"
                         "      type(lines).__name__, type(lines.p[0]).__name__, lines.n == 'ab\\ncd')"))
    assert cell.stdout == "['cd'] ['ab'] True SList PosixPath True\n"


def test_shell_escapes_work_without_the_cellgate_module(fresh):
    cell = ok(fresh.run("import sys\ndel sys.modules['cellgate']\n!echo still here"))
    assert cell.raw_out == b"still here\n"


def test_matplotlib_magic(driver):
    cell = ok(driver.run("%matplotlib inline"))
    assert cell.records[-1]["t"] == "done" and len(cell.records) == 1
    cell = ok(driver.run("%matplotlib qt"))
    assert "%matplotlib qt is ignored" in cell.stderr


def test_interrupted_shell_command_shows_only_the_users_line(fresh):
    fresh.start("!echo go; sleep 100")
    deadline = time.monotonic() + TIMEOUT
    while b"go" not in fresh.raw[fresh.out_fd]:
        assert time.monotonic() < deadline, "the command did not start"
        fresh._pump(0.1)
    fresh.interrupt()
    cell = fresh.finish()
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert cell.error["traceback"] == [
        "Traceback (most recent call last):",
        '  File "<cell 1>", line 1, in <module>\n    !echo go; sleep 100',
        "KeyboardInterrupt"]
    assert ok(fresh.run("!echo next")).raw_out == b"next\n"
