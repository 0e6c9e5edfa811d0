"""The protocol harness shared by the standalone driver tests in tests/drivers/.

It plays the kernel's side of kernel/drivers/PROTOCOL.md: start a driver
process with the fd layout the kernel's spawn gives it (fd 0 /dev/null, or
the code pipe for drivers that read their code from fd 0 like bash; fd 1/2
pipes; fd 3 one end of an AF_UNIX socketpair; for a code-on-fd-0 driver fd 2
is /dev/null and fd 4 the real stderr pipe), in its own session, then send
requests, read JSON-line records (the raw stream form, a header plus N raw
bytes, comes back in its text form; `sync` records are skipped unless
asked for) and pump the raw fd 1/2 pipes.  Every wait is bounded.

The test files say how to launch their language (Driver(argv, env, cwd,
...), or a subclass) and hold their own tests; nothing language-specific
lives here.
"""

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 10.0  # seconds: the bound on any single wait unless a test says less


def driver_source(name):
    """The text of kernel/drivers/<name>."""
    with open(os.path.join(ROOT, "kernel", "drivers", name), encoding="utf-8") as f:
        return f.read()


class Cell:
    """What one execute produced."""

    def __init__(self, records, raw_out, raw_err):
        self.records = records  # every record up to and including `done`
        self.raw_out = raw_out  # bytes on fd 1 before `done`
        self.raw_err = raw_err  # bytes on fd 2 (fd 4 for bash) before `done`

    def of(self, kind):
        return [r for r in self.records if r["t"] == kind]

    def text(self, name):
        return "".join(r["text"] for r in self.of("stream") if r["name"] == name)

    @property
    def stdout(self):
        return self.text("stdout")

    @property
    def stderr(self):
        return self.text("stderr")

    @property
    def errors(self):
        return self.of("error")

    @property
    def error(self):
        errors = self.errors
        assert len(errors) <= 1, errors
        return errors[0] if errors else None

    @property
    def inputs(self):
        return self.of("input")

    @property
    def result(self):
        results = self.of("result")
        assert len(results) <= 1, results
        return results[0] if results else None

    @property
    def value(self):
        """The text/plain of the result (None when there is none)."""
        return self.result["data"]["text/plain"] if self.result else None

    @property
    def done(self):
        assert self.records and self.records[-1]["t"] == "done", self.records
        return self.records[-1]


class Driver:
    """One driver process and our ends of its fd 1, 2 and 3 (and 0 and 4
    when the code goes on fd 0).

    argv: the command; env: the environment besides CELLGATE_DRIVER and
    CELLGATE_CONTROL_FD (nothing else is inherited); cwd: its directory;
    code_on_stdin: fd 0 is the code pipe, fd 2 /dev/null, fd 4 the stderr
    pipe (bash); first_input: bytes written to fd 0 right after the start
    (bash: the driver source and possibly a first request).
    """

    cell_class = Cell
    keep_sync = False  # whether recv()/finish() return `sync` records

    def __init__(self, argv, env=None, cwd=None, code_on_stdin=False, first_input=b""):
        self.started = 0  # "started" records seen: one per execute from python and bash
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        environment = {"CELLGATE_DRIVER": "1", "CELLGATE_CONTROL_FD": "3"}
        environment.update(env or {})
        self.code_w = None
        child_fds = [out_w, err_w]
        if code_on_stdin:
            code_r, self.code_w = os.pipe()
            devnull = os.open(os.devnull, os.O_WRONLY)
            child_fds += [code_r, devnull]
            stdin, stderr = code_r, devnull
            # Copies above 9, close-on-exec: the child dup2s them onto 3
            # and 4 and these copies vanish at exec.
            high = [fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 10),
                    fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, 10)]
        else:
            stdin, stderr = subprocess.DEVNULL, err_w
            high = [fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)]
        child_fds += high

        def place_fds():  # the socket becomes fd 3 (the stderr pipe fd 4)
            for target, fd in enumerate(high, 3):
                os.dup2(fd, target)

        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=stdin, stdout=out_w, stderr=stderr, env=environment,
            start_new_session=True, close_fds=False, preexec_fn=place_fds)
        theirs.close()
        for fd in child_fds:
            os.close(fd)
        self.sock = ours
        self.out_fd, self.err_fd = out_r, err_r
        self.open_pipes = {out_r, err_r}  # until their end of file
        self.inbox = bytearray()
        self.eof = False
        self.raw = {out_r: bytearray(), err_r: bytearray()}
        self.pump_raw = True  # False: leave fd 1/2 unread (to see `sync`)
        self.count = 0
        if first_input:
            self.write(first_input)
        ready = self.recv(TIMEOUT)
        self.ready_after = time.perf_counter() - self.started
        assert ready["t"] == "ready", ready
        self.ready = ready

    # -- low level ---------------------------------------------------------

    def send(self, **message):
        """One JSON-line request on fd 3."""
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def write(self, data):
        """Bytes (or text) on the code pipe, fd 0 (code_on_stdin drivers)."""
        if isinstance(data, str):
            data = data.encode()
        os.write(self.code_w, data)

    def _read_pipe(self, fd):
        chunk = os.read(fd, 1 << 20)
        if chunk:
            self.raw[fd] += chunk
        else:
            self.open_pipes.discard(fd)
        return chunk

    def _pump(self, timeout):
        """Wait up to timeout for any fd to be readable; read what is there."""
        fds = (sorted(self.open_pipes) if self.pump_raw else []) + \
            ([] if self.eof else [self.sock])
        readable, _, _ = select.select(fds, [], [], max(timeout, 0))
        for fd in readable:
            if fd is self.sock:
                chunk = self.sock.recv(1 << 20)
                self.eof = not chunk
                self.inbox += chunk
            else:
                self._read_pipe(fd)
        return bool(readable)

    def _line(self, deadline, need=0):
        """Wait until the inbox holds a whole line (plus need bytes after it)."""
        timeout = deadline - time.monotonic()
        while b"\n" not in self.inbox or \
                len(self.inbox) - self.inbox.index(b"\n") - 1 < need:
            if self.eof:
                raise EOFError("the driver closed fd 3; stderr=%r"
                               % bytes(self.raw[self.err_fd]))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no record within %.1f s; stderr=%r"
                                   % (timeout, bytes(self.raw[self.err_fd])))
            self._pump(left)

    def recv(self, timeout=TIMEOUT, keep_sync=None):
        """The next record from fd 3 (raises on timeout). A raw stream
        record (header + bytes) is returned in its text form; `sync`
        records are skipped unless keep_sync (default: self.keep_sync)."""
        keep_sync = self.keep_sync if keep_sync is None else keep_sync
        deadline = time.monotonic() + timeout
        while True:
            self._line(deadline)
            line, _, rest = bytes(self.inbox).partition(b"\n")
            record = json.loads(line.decode("utf-8"))  # strict: valid UTF-8
            if record.get("t") == "stream" and "bytes" in record:
                n = record.pop("bytes")
                self._line(deadline, n)
                line, _, rest = bytes(self.inbox).partition(b"\n")
                record["text"] = rest[:n].decode("utf-8")  # strict here too
                rest = rest[n:]
            self.inbox = bytearray(rest)
            if record.get("t") == "started":
                self.started += 1  # acknowledged an execute (PROTOCOL.md)
                continue
            if record.get("t") != "sync" or keep_sync:
                return record

    def recv_eof(self, timeout=TIMEOUT):
        """True once fd 3 reached end of file with no record left over."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        ack = b'{"t":"started"}\n'
        while self.inbox.startswith(ack):  # an execute's acknowledgement is no leftover
            del self.inbox[:len(ack)]
            self.started += 1
        return self.eof and not self.inbox

    def drain_raw(self):
        """Bytes already in the fd 1/2 pipes and read before (nothing waits)."""
        while self.open_pipes:
            readable, _, _ = select.select(sorted(self.open_pipes), [], [], 0)
            if not readable:
                break
            for fd in readable:
                self._read_pipe(fd)
        out, err = bytes(self.raw[self.out_fd]), bytes(self.raw[self.err_fd])
        self.raw[self.out_fd].clear()
        self.raw[self.err_fd].clear()
        return out, err

    # -- requests ----------------------------------------------------------

    def start(self, code, silent=False, allow_stdin=False, user_expressions=None,
              color=False, store_history=None, count=None):
        """Send an execute request (store_history defaults to not silent)."""
        self.count += 1
        self.send(t="execute", code=code, silent=silent,
                  store_history=(not silent) if store_history is None else store_history,
                  allow_stdin=allow_stdin, user_expressions=user_expressions or {},
                  execution_count=count or self.count, color=color)

    def answer_input(self, value):
        self.send(t="input_reply", value=value)

    def finish(self, timeout=TIMEOUT, inputs=None):
        """Records up to `done`; raw pipe bytes read by the time it arrived.
        With inputs (a list), `input` records are answered from it, and an
        unexpected one, or one left over, fails."""
        deadline = time.monotonic() + timeout
        inputs = None if inputs is None else list(inputs)
        records = []
        while not records or records[-1]["t"] != "done":
            records.append(self.recv(deadline - time.monotonic()))
            if records[-1]["t"] == "input" and inputs is not None:
                assert inputs, "unexpected input request %r" % records[-1]
                self.answer_input(inputs.pop(0))
        assert not inputs, "inputs left over: %r" % inputs
        # Kernel rule: fd 1/2 are drained before a record is handled.  A
        # 0 s select after `done` arrived sees all bytes written before it.
        out, err = self.drain_raw()
        return self.cell_class(records, out, err)

    def execute(self, code, timeout=TIMEOUT, inputs=None, **options):
        self.start(code, **options)
        return self.finish(timeout, inputs)

    def run(self, code, timeout=TIMEOUT, **options):
        return self.execute(code, timeout, **options)

    def request(self, kind, timeout=TIMEOUT, **members):
        self.send(t=kind, **members)
        reply = self.recv(timeout)
        assert reply["t"] == "reply", reply
        return reply

    def complete(self, code, cursor_pos=None):
        return self.request("complete", code=code,
                            cursor_pos=len(code) if cursor_pos is None else cursor_pos)

    def inspect(self, code, cursor_pos=None, detail_level=0):
        return self.request("inspect", code=code, detail_level=detail_level,
                            cursor_pos=len(code) if cursor_pos is None else cursor_pos)

    def is_complete(self, code):
        return self.request("is_complete", code=code)

    def interrupt(self):
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self):
        """End of file on fd 3 (and fd 0); the driver's exit status."""
        if self.code_w is not None:
            try:
                os.close(self.code_w)
            except OSError:
                pass
        self.sock.close()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(TIMEOUT)
        os.close(self.out_fd)
        os.close(self.err_fd)
        return self.proc.returncode


def fixtures(launch):
    """The usual pair of fixtures over launch() (which returns a started
    Driver): `driver`, one per module, and `fresh`, one per test.  Use as
    `driver, fresh = harness.fixtures(launch)`."""

    @pytest.fixture(scope="module")
    def driver():
        d = launch()
        yield d
        d.close()

    @pytest.fixture
    def fresh():
        d = launch()
        yield d
        if d.proc.poll() is None:
            d.close()

    return driver, fresh


def dir_fixtures(launch, prefix):
    """Like fixtures(), for a launch(directory) that runs the driver in a
    directory of its own: `workdir` (one per module, the shared driver's),
    `driver` in it, and `fresh` in the test's tmp_path.  Use as
    `workdir, driver, fresh = harness.dir_fixtures(launch, prefix)`."""

    @pytest.fixture(scope="module")
    def workdir(tmp_path_factory):
        return tmp_path_factory.mktemp(prefix)

    @pytest.fixture(scope="module")
    def driver(workdir):
        d = launch(workdir)
        yield d
        d.close()

    @pytest.fixture
    def fresh(tmp_path):
        d = launch(tmp_path)
        yield d
        if d.proc.poll() is None:
            d.close()

    return workdir, driver, fresh


def ok(cell):
    """The cell ran without an error record."""
    assert cell.error is None, "\n".join(cell.error["traceback"])
    return cell


def check_is_complete(driver, code, status, indent):
    """An is_complete request answers status, with indent only when
    incomplete."""
    reply = driver.request("is_complete", code=code)
    assert reply["status"] == status
    if status == "incomplete":
        assert reply["indent"] == indent
    else:
        assert "indent" not in reply


def wait_for_stdout(driver, text, timeout=TIMEOUT):
    """Read records until a stdout stream containing text; return them
    (fails if the cell ends first)."""
    records = []
    deadline = time.monotonic() + timeout
    while True:
        record = driver.recv(deadline - time.monotonic())
        records.append(record)
        if record["t"] == "stream" and text in record["text"]:
            return records
        assert record["t"] != "done", records


def interrupt_cell(driver, timeout=TIMEOUT, within=1.0):
    """SIGINT the running cell and return it; its `done` must come within
    `within` seconds of the signal (finish() waits up to timeout)."""
    sent = time.monotonic()
    driver.interrupt()
    cell = driver.finish(timeout=timeout)
    assert time.monotonic() - sent < within
    return cell


def sigint_between_cells(driver, settle=0.2):
    """Three SIGINTs while no cell runs: the driver must ignore them (it
    is still running settle seconds later)."""
    for _ in range(3):
        driver.interrupt()
    time.sleep(settle)
    assert driver.proc.poll() is None


def interrupt_during_input(driver, code, ename, timeout=1.0, input_timeout=TIMEOUT):
    """Start code, which asks for input; SIGINT it while it waits, check the
    cell ends with the error ename (within timeout), then send the reply
    too late, as a reply racing the interrupt would be (the driver must
    ignore it).  Returns the cell."""
    driver.start(code, allow_stdin=True)
    assert driver.recv(input_timeout)["t"] == "input"
    driver.interrupt()
    cell = driver.finish(timeout=timeout)
    assert cell.error["ename"] == ename
    driver.send(t="input_reply", value="too late")
    return cell
