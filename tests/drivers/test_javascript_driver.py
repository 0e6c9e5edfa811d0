"""Tests of cellgate's JavaScript driver (kernel/drivers/javascript.js), standalone.

The driver is started as the kernel starts it: `/usr/bin/node -e <source>`
in a new session, fd 3 one end of an AF_UNIX socketpair, fd 1/2 pipes, fd 0
/dev/null, a temporary directory as cwd and HOME.  The tests speak the
protocol of kernel/drivers/PROTOCOL.md directly, through the shared
harness (tests/drivers/harness.py).

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_javascript_driver.py --noconftest
"""

import os
import socket
import subprocess
import time

import pytest

import harness
from harness import TIMEOUT, ok, wait_for_stdout

NODE = "/usr/bin/node"
SOURCE = harness.driver_source("javascript.js")

pytestmark = pytest.mark.skipif(not os.path.exists(NODE), reason="no /usr/bin/node")


def launch(argv, cwd):
    """A driver started as the kernel starts it: cwd and HOME a directory of
    its own, a minimal environment."""
    return harness.Driver(argv, cwd=str(cwd), env={
        "HOME": str(cwd), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})


workdir, driver, fresh = harness.dir_fixtures(
    lambda cwd: launch([NODE, "-e", SOURCE], cwd), "jsdriver")


# ---------------------------------------------------------------------------
# start-up, state, results

def test_ready(driver):
    version = subprocess.run([NODE, "-p", "process.versions.node"], capture_output=True,
                             text=True, timeout=TIMEOUT).stdout.strip()
    assert driver.ready == {"t": "ready", "language_version": version}
    assert driver.ready_after < 2.0
    print("\nnode driver ready after %.0f ms" % (driver.ready_after * 1000))


def test_state_persists_across_cells(driver):
    ok(driver.run("let sa = 20\nconst sb = 1\nvar sc = 1"))
    ok(driver.run("function sf(x) { return x + sa + sb + sc }"))
    ok(driver.run("class SK { get v() { return sf(20) } }"))
    assert ok(driver.run("new SK().v")).value == "42"
    # re-running a cell with let/const/class declarations works
    ok(driver.run("let sa = 30\nconst sb = 2\nclass SK { get v() { return 7 } }"))
    assert ok(driver.run("[sa, sb, new SK().v]")).value == "[ 30, 2, 7 ]"


def test_require_from_cwd_node_modules(driver, workdir):
    package = workdir / "node_modules" / "cg-answer"
    package.mkdir(parents=True)
    (package / "index.js").write_text("module.exports = { answer: () => 42 };\n")
    ok(driver.run("const cga = require('cg-answer')"))
    assert ok(driver.run("cga.answer()")).value == "42"
    assert ok(driver.run("const os = require('os'); typeof os.cpus")).value == "'function'"


def test_results(driver):
    assert ok(driver.run("40 + 2")).result == {
        "t": "result", "data": {"text/plain": "42"}, "metadata": {}}
    assert ok(driver.run("({a: [1, 'x']})")).value == "{ a: [ 1, 'x' ] }"
    assert ok(driver.run("undefined")).result is None
    assert ok(driver.run("console.log('x')")).result is None
    assert ok(driver.run("let rz = 5")).result is None
    assert ok(driver.run("null")).value == "null"
    assert ok(driver.run("1 + 1", silent=True)).result is None


def test_top_level_await(driver):
    cell = ok(driver.run("const tw = await new Promise(r => setTimeout(() => r(21), 10))\n"
                         "function twf() { return tw * 2 }\n"
                         "class TwK {}\n"
                         "twf()"))
    assert cell.value == "42"
    assert ok(driver.run("[tw, twf(), typeof TwK]")).value == "[ 21, 42, 'function' ]"
    assert ok(driver.run("await Promise.resolve(undefined)")).result is None
    cell = ok(driver.run("for (const i of [1, 2]) { await null }\nlet {ta, tb: [tc]} = {ta: 1, tb: [2]}"))
    assert cell.result is None
    assert ok(driver.run("[ta, tc]")).value == "[ 1, 2 ]"


def test_user_expressions(driver):
    ok(driver.run("var ue = 21"))
    cell = ok(driver.run("ue = ue * 2", user_expressions={"v": "ue", "bad": "nope_nope"}))
    exprs = cell.done["user_expressions"]
    assert exprs["v"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["ename"] == "ReferenceError"


# ---------------------------------------------------------------------------
# errors

def test_error_has_class_name_and_user_frames_only(driver):
    ok(driver.run("function inner() { return null.x }\nfunction outer() { return inner() }"))
    cell = driver.run("let ea = 1\nouter()")
    error = cell.error
    assert error["ename"] == "TypeError"
    assert error["evalue"] == "Cannot read properties of null (reading 'x')"
    text = "\n".join(error["traceback"])
    assert "at inner (<cell" in text and "at outer (<cell" in text
    assert "[eval]" not in text and "node:vm" not in text and "node:internal" not in text
    assert [r["t"] for r in cell.records] == ["error", "done"]
    assert cell.done == {"t": "done", "user_expressions": {}}


def test_error_after_await(driver):
    cell = driver.run("await null\nthrow new RangeError('far')")
    assert cell.error["ename"] == "RangeError" and cell.error["evalue"] == "far"
    assert "node:internal" not in "\n".join(cell.error["traceback"])


def test_thrown_non_error(driver):
    cell = driver.run("throw 'plain'")
    assert cell.error["ename"] == "String" and cell.error["evalue"] == "'plain'"


def test_syntax_error(driver):
    cell = driver.run("let sy = 1\nsy = 1 + * 2")
    assert cell.error["ename"] == "SyntaxError"
    assert cell.error["evalue"] == "Unexpected token '*'"
    text = "\n".join(cell.error["traceback"])
    assert "sy = 1 + * 2" in text and "^" in text and "[eval]" not in text
    assert driver.run("await x(").error["ename"] == "SyntaxError"


# ---------------------------------------------------------------------------
# streams

def test_stdout_stderr_order_is_exact(driver):
    cell = ok(driver.run("for (let i = 0; i < 5; i++) {\n"
                         "  console.log('out', i)\n  console.error('err', i)\n}\n"
                         "process.stdout.write('w')"))
    streams = [(r["name"], r["text"]) for r in cell.of("stream")]
    expected = []
    for i in range(5):
        expected += [("stdout", "out %d\n" % i), ("stderr", "err %d\n" % i)]
    assert streams == expected + [("stdout", "w")]


def test_child_process_output_on_raw_pipe_before_done(driver):
    cell = ok(driver.run("console.log('js')\n"
                         "require('child_process').execSync('echo hi; echo oops >&2', {stdio: 'inherit'})\n"
                         "undefined"))
    assert cell.raw_out == b"hi\n" and cell.raw_err == b"oops\n"
    assert cell.text("stdout") == "js\n"


def test_output_shows_while_the_cell_waits(driver):
    driver.start("console.log(1)\nawait new Promise(r => setTimeout(r, 1500))")
    sent = time.monotonic()
    assert driver.recv(timeout=1.0) == {"t": "stream", "name": "stdout", "text": "1\n"}
    assert time.monotonic() - sent < 0.5
    ok(driver.finish())


def test_large_output_arrives_complete(driver):
    started = time.perf_counter()
    cell = ok(driver.run("const line = 'x'.repeat(99)\n"
                         "for (let i = 0; i < 50000; i++) console.log(line)", timeout=60))
    elapsed = time.perf_counter() - started
    assert cell.text("stdout") == ("x" * 99 + "\n") * 50000
    assert max(len(r["text"]) for r in cell.of("stream")) <= 1 << 20
    print("\n5 MB through the node driver: %.3f s" % elapsed)


# ---------------------------------------------------------------------------
# interrupts

@pytest.mark.parametrize("code", [
    "console.log('started')\nwhile (true) {}",
    "console.log('started')\nawait new Promise(r => setTimeout(r, 30000))\nvar ki_after = 1",
])
def test_interrupt_keeps_state(fresh, code):
    ok(fresh.run("var ki_before = 'kept'"))
    fresh.start(code)
    wait_for_stdout(fresh, "started")
    time.sleep(0.2)
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "Interrupt"
    assert ok(fresh.run("[ki_before, typeof ki_after]")).value == "[ 'kept', 'undefined' ]"


def test_sigint_between_cells_is_ignored(fresh):
    ok(fresh.run("var ig = 5"))
    harness.sigint_between_cells(fresh)
    assert ok(fresh.run("ig")).value == "5"


# ---------------------------------------------------------------------------
# input

def test_input_with_allow_stdin(driver):
    driver.start("console.log('asking')\nconst who = await input('Name? ')\nconsole.log('hello', who)",
                 allow_stdin=True)
    assert driver.recv() == {"t": "stream", "name": "stdout", "text": "asking\n"}
    assert driver.recv() == {"t": "input", "prompt": "Name? ", "password": False}
    driver.send(t="input_reply", value="Ada")
    assert ok(driver.finish()).text("stdout") == "hello Ada\n"


def test_input_without_allow_stdin(driver):
    cell = driver.run("await input('x')")
    assert cell.error["ename"] == "StdinNotImplementedError"
    assert "allow_stdin is false" in cell.error["evalue"]
    assert not cell.of("input")


def test_stray_input_reply_is_ignored(driver):
    driver.send(t="input_reply", value="nobody asked")
    assert ok(driver.run("'fine'")).value == "'fine'"


# ---------------------------------------------------------------------------
# is_complete, complete, inspect

@pytest.mark.parametrize("code, status, indent", [
    ("x = 1", "complete", None),
    ("", "complete", None),
    ("await foo()", "complete", None),
    ("if (x) {", "incomplete", "  "),
    ("foo(1,", "incomplete", ""),
    ("  let a = [", "incomplete", "    "),
    ("x = `abc", "incomplete", ""),
    ("await foo(", "incomplete", "  "),
    ("1 + * 2", "invalid", None),
    (")", "invalid", None),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)


def test_complete(driver):
    ok(driver.run("var completion_target_1 = {alpha: 1, alpine: 2}, completion_target_2 = 0"))
    reply = driver.request("complete", code="completion_tar", cursor_pos=14)
    assert reply["matches"] == ["completion_target_1", "completion_target_2"]
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == 14
    code = "x = 'é😀'; completion_target_1.al"
    reply = driver.request("complete", code=code, cursor_pos=len(code))
    assert reply["matches"] == ["completion_target_1.alpha", "completion_target_1.alpine"]
    assert reply["cursor_start"] == code.index("c") and reply["cursor_end"] == len(code)
    assert "console" in driver.request("complete", code="cons", cursor_pos=4)["matches"]
    assert "Math.floor" in driver.request("complete", code="Math.fl", cursor_pos=7)["matches"]


def test_inspect(driver):
    reply = driver.request("inspect", code="Math.floor", cursor_pos=7, detail_level=0)
    assert reply["found"] and "floor" in reply["data"]["text/plain"]
    assert driver.request("inspect", code="no_such_thing", cursor_pos=3,
                          detail_level=0)["found"] is False


def test_end_of_file_exits_0(fresh):
    ok(fresh.run("1"))
    fresh.sock.shutdown(socket.SHUT_WR)
    assert fresh.proc.wait(TIMEOUT) == 0
