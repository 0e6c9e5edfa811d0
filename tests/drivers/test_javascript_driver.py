"""Tests of cellgate's JavaScript driver (kernel/drivers/javascript.js), standalone.

The driver is started as the kernel starts it: `/usr/bin/node -e <source>`
in a new session, fd 3 one end of an AF_UNIX socketpair, fd 1/2 pipes, fd 0
/dev/null, a temporary directory as cwd and HOME.  The tests speak the
protocol of kernel/drivers/PROTOCOL.md directly.

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_javascript_driver.py --noconftest
"""

import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

NODE = "/usr/bin/node"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "kernel", "drivers", "javascript.js"), encoding="utf-8") as _f:
    SOURCE = _f.read()

TIMEOUT = 10.0  # seconds: the bound on any single wait unless a test says less

pytestmark = pytest.mark.skipif(not os.path.exists(NODE), reason="no /usr/bin/node")


class Cell:
    """What one execute produced."""

    def __init__(self, records, raw_out, raw_err):
        self.records = records  # every record up to and including `done`
        self.raw_out = raw_out  # bytes on fd 1 before `done`
        self.raw_err = raw_err

    def of(self, kind):
        return [r for r in self.records if r["t"] == kind]

    def text(self, name):
        return "".join(r["text"] for r in self.of("stream") if r["name"] == name)

    @property
    def error(self):
        errors = self.of("error")
        assert len(errors) <= 1, errors
        return errors[0] if errors else None

    @property
    def result(self):
        results = self.of("result")
        assert len(results) <= 1, results
        return results[0] if results else None

    @property
    def value(self):
        return self.result["data"]["text/plain"] if self.result else None

    @property
    def done(self):
        return self.records[-1]


class Driver:
    """One driver process and our ends of its fd 1, 2 and 3."""

    def __init__(self, argv, cwd):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = {"CELLGATE_DRIVER": "1", "CELLGATE_CONTROL_FD": "3", "HOME": str(cwd),
               "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            env=env, start_new_session=True, close_fds=False,
            preexec_fn=lambda: os.dup2(theirs.fileno(), 3))  # the socket becomes fd 3
        theirs.close()
        os.close(out_w)
        os.close(err_w)
        self.sock = ours
        self.out_fd, self.err_fd = out_r, err_r
        self.inbox = bytearray()
        self.eof = False
        self.raw = {out_r: bytearray(), err_r: bytearray()}
        self.count = 0
        ready = self.recv(TIMEOUT)
        self.ready_after = time.perf_counter() - self.started
        assert ready["t"] == "ready", ready
        self.ready = ready

    def send(self, **message):
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def _pump(self, timeout):
        fds = [self.out_fd, self.err_fd] + ([] if self.eof else [self.sock])
        readable, _, _ = select.select(fds, [], [], max(timeout, 0))
        for fd in readable:
            if fd is self.sock:
                chunk = self.sock.recv(1 << 20)
                self.eof = not chunk
                self.inbox += chunk
            else:
                self.raw[fd] += os.read(fd, 1 << 20)
        return bool(readable)

    def _line(self, deadline, need=0):
        """Wait until the inbox holds a whole line (plus need bytes after it)."""
        while b"\n" not in self.inbox or \
                len(self.inbox) - self.inbox.index(b"\n") - 1 < need:
            if self.eof:
                raise EOFError("the driver closed fd 3")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no record in time")
            self._pump(left)

    def recv(self, timeout=TIMEOUT):
        """The next record (raw stream records in text form; `sync` skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            self._line(deadline)
            line, _, rest = bytes(self.inbox).partition(b"\n")
            record = json.loads(line.decode("utf-8"))
            if record.get("t") == "stream" and "bytes" in record:
                n = record.pop("bytes")
                self._line(deadline, n)
                line, _, rest = bytes(self.inbox).partition(b"\n")
                record["text"] = rest[:n].decode("utf-8")  # strict: valid UTF-8
                rest = rest[n:]
            self.inbox = bytearray(rest)
            if record.get("t") != "sync":
                return record

    def drain_raw(self):
        while self._pump(0) and not self.eof:
            pass
        out, err = bytes(self.raw[self.out_fd]), bytes(self.raw[self.err_fd])
        self.raw[self.out_fd].clear()
        self.raw[self.err_fd].clear()
        return out, err

    def start(self, code, silent=False, allow_stdin=False, user_expressions=None):
        self.count += 1
        self.send(t="execute", code=code, silent=silent, store_history=True,
                  allow_stdin=allow_stdin, user_expressions=user_expressions or {},
                  execution_count=self.count, color=False)

    def finish(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        records = []
        while not records or records[-1]["t"] != "done":
            records.append(self.recv(deadline - time.monotonic()))
        out, err = self.drain_raw()  # the kernel drains fd 1/2 at `done`
        return Cell(records, out, err)

    def run(self, code, timeout=TIMEOUT, **options):
        self.start(code, **options)
        return self.finish(timeout)

    def request(self, kind, **members):
        self.send(t=kind, **members)
        reply = self.recv()
        assert reply["t"] == "reply", reply
        return reply

    def interrupt(self):
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(TIMEOUT)
        os.close(self.out_fd)
        os.close(self.err_fd)
        return self.proc.returncode


def ok(cell):
    assert cell.error is None, "\n".join(cell.error["traceback"])
    return cell


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("jsdriver")


@pytest.fixture(scope="module")
def driver(workdir):
    d = Driver([NODE, "-e", SOURCE], workdir)
    yield d
    d.close()


@pytest.fixture
def fresh(tmp_path):
    d = Driver([NODE, "-e", SOURCE], tmp_path)
    yield d
    if d.proc.poll() is None:
        d.close()


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

def wait_for_stdout(driver, text):
    deadline = time.monotonic() + TIMEOUT
    while True:
        record = driver.recv(deadline - time.monotonic())
        assert record["t"] != "done", record
        if record["t"] == "stream" and text in record["text"]:
            return


@pytest.mark.parametrize("code", [
    "console.log('started')\nwhile (true) {}",
    "console.log('started')\nawait new Promise(r => setTimeout(r, 30000))\nvar ki_after = 1",
])
def test_interrupt_keeps_state(fresh, code):
    ok(fresh.run("var ki_before = 'kept'"))
    fresh.start(code)
    wait_for_stdout(fresh, "started")
    time.sleep(0.2)
    sent = time.monotonic()
    fresh.interrupt()
    cell = fresh.finish(timeout=1.0)
    assert time.monotonic() - sent < 1.0
    assert cell.error["ename"] == "Interrupt"
    assert ok(fresh.run("[ki_before, typeof ki_after]")).value == "[ 'kept', 'undefined' ]"


def test_sigint_between_cells_is_ignored(fresh):
    ok(fresh.run("var ig = 5"))
    for _ in range(3):
        fresh.interrupt()
    time.sleep(0.2)
    assert fresh.proc.poll() is None
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
    reply = driver.request("is_complete", code=code)
    assert reply["status"] == status
    if status == "incomplete":
        assert reply["indent"] == indent


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
