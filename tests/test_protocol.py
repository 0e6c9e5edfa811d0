"""The kernel through jupyter_client: state, errors, stop_on_error,
interrupts (message and signal), control while busy, heartbeat, stdin,
runtime death, output limits, ordering, restart, shutdown, parent death."""
import os
import signal
import subprocess
import time
import re

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.utils import run_sync

from conftest import (CELLGATE, TIMEOUT, descendants, errors, kernel_pid, pid_alive, run,
                      stream_text, wait_until)


# ---- basics ----------------------------------------------------------------

def test_kernel_info_on_shell_and_control(python_kernel):
    km, kc = python_kernel
    kc.kernel_info()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    c = reply["content"]
    assert c["protocol_version"] == "5.3"
    assert c["implementation"] == "cellgate"
    li = c["language_info"]
    assert (li["name"], li["file_extension"], li["mimetype"]) == ("python", ".py", "text/x-python")
    assert re.match(r"3\.\d+\.\d+", li["version"])
    # jupyter_client parses the ISO 8601 date; it must carry a timezone.
    assert reply["header"]["date"].tzinfo is not None
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    reply = run_sync(kc.control_channel.get_msg)(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["language_info"]["name"] == "python"


@pytest.mark.parametrize("lang", ["c", "cpp", "go", "java", "kotlin", "rust", "swift"])
def test_compiled_kernel_info_names_the_toolchain_version(kernel_factory, tmp_path, lang):
    """A compiled language's version is its toolchain's (gcc's "12.2.0"),
    never the language's name: not before its runtime is up, nor after,
    in a new box whose driver has no version cached yet."""
    if f"cellgate-{lang}" not in KernelSpecManager().find_kernel_specs():
        pytest.skip(f"no {lang} toolchain on this machine")
    km, kc = kernel_factory(f"cellgate-{lang}", env={"CELLGATE_STATE_DIR": str(tmp_path)})

    def version():
        msg_id = kc.kernel_info()
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply["content"]["language_info"]["version"]

    first = version()
    assert re.fullmatch(r"\d+\.\d+\S*", first), first
    if lang in ("c", "cpp"):
        gcc = {"c": "/usr/bin/gcc", "cpp": "/usr/bin/g++"}[lang]
        assert first == subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True,
                                       check=True).stdout.strip()
    msg_id = kc.complete("x", 1)  # answered by the driver: it is up, its `ready` is in
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert version() == first


def test_busy_idle_around_every_request(python_kernel):
    km, kc = python_kernel
    msg_id = kc.kernel_info()
    states = []
    while len(states) < 2:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status":
            states.append(m["content"]["execution_state"])
    assert states == ["busy", "idle"]
    kc.get_shell_msg(timeout=TIMEOUT)


def test_python_state_result_and_count(python_kernel):
    km, kc = python_kernel
    r1, _ = run(kc, "x = 20")
    r2, out = run(kc, "x + 22")
    assert r2["content"]["execution_count"] == r1["content"]["execution_count"] + 1
    res = [m for m in out if m["msg_type"] == "execute_result"]
    assert len(res) == 1 and res[0]["content"]["data"]["text/plain"] == "42"
    assert res[0]["content"]["execution_count"] == r2["content"]["execution_count"]


def test_python_error_is_one_output_with_user_traceback(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "def f():\n    return 1/0\nf()")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ZeroDivisionError"
    errs = errors(out)
    assert len(errs) == 1 and len(out) == 1
    tb = "\n".join(errs[0]["content"]["traceback"])
    assert "1/0" in tb and "ZeroDivisionError" in tb
    assert "<string>" not in tb and "python.py" not in tb  # no driver frames
    assert "\x1b[" not in tb  # no colour unless asked


def test_silent_has_no_input_or_result(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "1+1", silent=True)
    assert reply["content"]["status"] == "ok"
    assert not [m for m in out if m["msg_type"] == "execute_result"]


def test_user_expressions(python_kernel, bash_kernel):
    km, kc = python_kernel
    reply, _ = run(kc, "y = 6", user_expressions={"a": "y * 7", "b": "undefined_name"})
    ue = reply["content"]["user_expressions"]
    assert ue["a"]["status"] == "ok" and ue["a"]["data"]["text/plain"] == "42"
    assert ue["b"]["status"] == "error" and ue["b"]["ename"] == "NameError"
    km, kc = bash_kernel
    reply, _ = run(kc, "Z=abc", user_expressions={"z": "echo $Z"})
    assert reply["content"]["user_expressions"]["z"]["data"]["text/plain"] == "abc"


def test_bash_state_and_errors(bash_kernel):
    km, kc = bash_kernel
    run(kc, "V=41; f() { echo $((V+1)); }; cd /tmp; export E=yes; declare -a arr=(a b c)")
    reply, out = run(kc, "f; pwd; echo $E ${arr[2]}")
    assert stream_text(out, "stdout") == "42\n/tmp\nyes c\n"
    reply, out = run(kc, "echo before; false")
    assert reply["content"]["status"] == "error"
    assert "exit status 1" in reply["content"]["evalue"]
    assert len(errors(out)) == 1
    reply, out = run(kc, "false; true")
    assert reply["content"]["status"] == "ok"


def test_bash_child_killed_by_a_signal_leaves_stderr_alone(bash_kernel):
    # An interactive bash restores its terminal after a job dies of a
    # signal; started with /dev/null for one, it printed "bash: [2: 1 (255)]
    # tcsetattr: Inappropriate ioctl for device" into the cell. Its terminal
    # is a pseudo-terminal of its own, which the kernel closes with it.
    km, kc = bash_kernel
    for sig, status in (("KILL", 137), ("SEGV", 139), ("TERM", 143)):
        reply, out = run(kc, f"sh -c 'kill -{sig} $$'; echo after $?")
        assert stream_text(out, "stdout") == f"after {status}\n"
        assert stream_text(out, "stderr") == "", sig
        assert reply["content"]["status"] == "ok"
    reply, out = run(kc, "sh -c 'kill -KILL $$'")
    assert reply["content"]["evalue"] == "exit status 137"
    assert stream_text(out, "stderr") == ""
    # bash's own start-up chatter went to that terminal, not to a cell
    reply, out = run(kc, "echo $-; [ -t 255 ] && echo has-a-terminal; [ -t 2 ] || echo stderr-a-pipe")
    assert stream_text(out, "stdout") == "hiBs\nhas-a-terminal\nstderr-a-pipe\n"


@pytest.mark.parametrize("code", ["while :; do echo x >&255; done", "yes >&255"])
def test_bash_writing_to_its_terminal_never_blocks(bash_kernel, code):
    # The shell's terminal is a cell's to write to as any descriptor bash
    # has; the kernel reads and drops what arrives, so neither bash itself
    # (a builtin's write) nor a program blocks on a full terminal, and an
    # interrupt stops the cell as usual.
    km, kc = bash_kernel
    reply, out = run(kc, "for i in $(seq 3000); do printf '%080d\\n' $i >&255; done; "
                         "seq 3000 >&255; echo done")  # 250 KB, past any terminal buffer
    assert stream_text(out, "stdout") == "done\n"
    assert reply["content"]["status"] == "ok"
    _interrupted(kc, code, km.interrupt_kernel,
                 lambda r: r["content"]["evalue"] == "exit status 130 (interrupted)"
                 or pytest.fail(r["content"]))
    reply, out = run(kc, "echo alive")
    assert stream_text(out, "stdout") == "alive\n"


def test_bash_terminal_closes_with_its_shell(bash_kernel):
    # Each bash the kernel starts gets a pseudo-terminal; when it ends (here
    # `exit`, three times), the kernel's end of it is closed too.
    km, kc = bash_kernel

    def ptys():
        fd_dir = f"/proc/{kernel_pid(km)}/fd"
        return sum(os.readlink(f"{fd_dir}/{fd}") == "/dev/ptmx" for fd in os.listdir(fd_dir)
                   if os.path.exists(f"{fd_dir}/{fd}"))
    run(kc, "true")
    assert ptys() == 1
    for _ in range(3):
        run(kc, "exit 3")
        reply, out = run(kc, "echo again")
        assert stream_text(out, "stdout") == "again\n"
        assert ptys() == 1


def test_ordering_python(python_kernel):
    km, kc = python_kernel
    code = ("import sys, os\n"
            "for i in range(20):\n"
            "    print('out', i)\n"
            "    print('err', i, file=sys.stderr)\n"
            "sys.stdout.flush()\n"
            "os.system('echo from-child')\n"
            "print('after')")
    reply, out = run(kc, code)
    seq = [(m["content"]["name"], line) for m in out if m["msg_type"] == "stream"
           for line in m["content"]["text"].splitlines()]
    want = [x for i in range(20) for x in (("stdout", f"out {i}"), ("stderr", f"err {i}"))]
    assert seq == want + [("stdout", "from-child"), ("stdout", "after")]


def test_raw_output_last_in_a_cell_python(python_kernel):
    """Raw bytes on fd 1/2 as the last thing a cell does come before its
    reply and idle, and in order with what the value and prints show:
    the driver sends `done` (and `started`) without a sync check, the
    kernel drains the pipes at `done`."""
    km, kc = python_kernel
    for code, want in (("import os\nos.write(1, b'direct\\n');", ["direct"]),
                       ("os.system('echo child; echo err >&2');", ["child", "err"]),
                       ("print('text', flush=True)\nos.write(2, b'after\\n');", ["text", "after"]),
                       ("os.write(1, b'before\\n')\n7", ["before", "7"])):
        reply, out = run(kc, code)
        assert reply["content"]["status"] == "ok"
        seq = [line for m in out if m["msg_type"] in ("stream", "execute_result")
               for line in (m["content"]["text"] if m["msg_type"] == "stream"
                            else m["content"]["data"]["text/plain"]).splitlines()]
        assert seq == want, code


# ---- stop_on_error -----------------------------------------------------------

def replies(kc, n):
    """The next n shell replies, by the msg_id they answer."""
    out = {}
    while len(out) < n:
        r = kc.get_shell_msg(timeout=TIMEOUT)
        out[r["parent_header"]["msg_id"]] = r
    return out


def test_stop_on_error_aborts_queued_executes(python_kernel):
    km, kc = python_kernel
    first = kc.execute("import time; time.sleep(0.5); raise RuntimeError('stop')")
    second = kc.execute("aborted_var = 1")
    info = kc.kernel_info()
    got = replies(kc, 3)
    assert got[first]["content"]["status"] == "error"
    assert got[second]["content"]["status"] == "aborted"
    assert got[info]["content"]["status"] == "ok"  # other requests still served
    reply, out = run(kc, "'aborted_var' in dir()")
    assert [m["content"]["data"]["text/plain"] for m in out
            if m["msg_type"] == "execute_result"] == ["False"]


def test_stop_on_error_false_keeps_going(python_kernel):
    km, kc = python_kernel
    first = kc.execute("import time; time.sleep(0.3); raise RuntimeError('x')", stop_on_error=False)
    second = kc.execute("went_on = 1")
    got = replies(kc, 2)
    assert got[first]["content"]["status"] == "error"
    assert got[second]["content"]["status"] == "ok"


# ---- interrupts ----------------------------------------------------------------

def _interrupted(kc, code, interrupt, lang_check):
    t0 = time.monotonic()
    msg_id = kc.execute(code)
    time.sleep(0.5)
    interrupt()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert time.monotonic() - t0 < 0.5 + 1.5, "interrupt took more than a second"
    assert reply["content"]["status"] == "error"
    lang_check(reply)


@pytest.mark.parametrize("how", ["message", "signal"])
def test_interrupt_python(python_kernel, how):
    km, kc = python_kernel
    run(kc, "kept = 'still here'")
    interrupt = km.interrupt_kernel if how == "message" else (
        lambda: os.kill(kernel_pid(km), signal.SIGINT))
    _interrupted(kc, "import time\nwhile True: time.sleep(0.01)", interrupt,
                 lambda r: r["content"]["ename"] == "KeyboardInterrupt" or
                 pytest.fail(r["content"]))
    reply, out = run(kc, "kept")
    assert out[-1]["content"]["data"]["text/plain"] == "'still here'"


def test_interrupt_of_a_new_kernels_first_cell(kernel_factory):
    """An interrupt sent the moment a fresh kernel's first cell is busy - its
    driver may still be making IPython's shell, and SIGINT outside user code
    is ignored - is held until the cell starts, then ends it (it was lost
    1 time in 3 through the gateway before). Four fresh kernels."""
    for _ in range(4):
        km, kc = kernel_factory("cellgate-python")
        msg_id = kc.execute("import time; time.sleep(60)")
        t0 = time.monotonic()
        while True:
            m = kc.get_iopub_msg(timeout=TIMEOUT)
            if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                    and m["content"]["execution_state"] == "busy"):
                break
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"].get("ename") == "KeyboardInterrupt", reply["content"]
        assert time.monotonic() - t0 < TIMEOUT
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("how", ["message", "signal"])
def test_interrupt_bash(bash_kernel, how):
    km, kc = bash_kernel
    run(kc, "KEPT=yes")
    interrupt = km.interrupt_kernel if how == "message" else (
        lambda: os.kill(kernel_pid(km), signal.SIGINT))
    _interrupted(kc, "sleep 30; echo not-reached", interrupt, lambda r: None)
    reply, out = run(kc, "echo $KEPT")
    assert stream_text(out) == "yes\n"


def test_sigint_while_idle_is_harmless(python_kernel):
    km, kc = python_kernel
    os.kill(kernel_pid(km), signal.SIGINT)
    time.sleep(0.2)
    reply, out = run(kc, "1")
    assert reply["content"]["status"] == "ok"


def test_control_and_heartbeat_while_busy(python_kernel):
    km, kc = python_kernel
    msg_id = kc.execute("import time; time.sleep(2)")
    time.sleep(0.3)
    t0 = time.monotonic()
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    reply = run_sync(kc.control_channel.get_msg)(timeout=TIMEOUT)
    assert time.monotonic() - t0 < 1.0
    assert reply["content"]["status"] == "ok"
    assert kc.hb_channel.is_beating()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id


# ---- stdin -----------------------------------------------------------------------

def test_python_input_and_getpass(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "name = input('name? ')\nimport getpass\npw = getpass.getpass('pw: ')\n"
                         "print(name, len(pw))", stdin=["ada", "secret"])
    reqs = [m for m in out if m["msg_type"] == "input_request"]
    assert [(r["content"]["prompt"], r["content"]["password"]) for r in reqs] == [
        ("name? ", False), ("pw: ", True)]
    assert "ada 6" in stream_text(out, "stdout")


def test_python_input_without_stdin_is_an_error(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "input('x')")  # run() sends allow_stdin=False
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StdinNotImplementedError"


def test_bash_read(bash_kernel):
    km, kc = bash_kernel
    reply, out = run(kc, "read -p 'who? ' who; echo hi $who", stdin=["bob"])
    assert [m["content"]["prompt"] for m in out if m["msg_type"] == "input_request"] == ["who? "]
    assert "hi bob" in stream_text(out)
    reply, out = run(kc, "read x")
    assert reply["content"]["status"] == "error"
    assert "allow_stdin" in stream_text(out, "stderr")


def test_interrupt_cancels_input(python_kernel):
    km, kc = python_kernel
    msg_id = kc.execute("input('never answered')", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=TIMEOUT)
    assert req["msg_type"] == "input_request"
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    reply, out = run(kc, "2+2")
    assert reply["content"]["status"] == "ok"


# ---- runtime death ---------------------------------------------------------------

@pytest.mark.parametrize("kernel,code,why", [
    ("cellgate-python", "import os; os._exit(3)", "exited with status 3"),
    ("cellgate-python", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal 9"),
    ("cellgate-bash", "exit 3", "exited with status 3"),
    ("cellgate-bash", "kill -9 $$", "signal 9"),
])
def test_runtime_death(kernel_factory, kernel, code, why):
    km, kc = kernel_factory(kernel)
    setup = "a = 1" if "python" in kernel else "a=1"
    run(kc, setup)
    reply, out = run(kc, code)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RuntimeExited"
    assert why in reply["content"]["evalue"] and "state" in reply["content"]["evalue"]
    assert len(errors(out)) == 1
    check = "print('a' in dir())" if "python" in kernel else "echo \"a=${a:-unset}\""
    reply, out = run(kc, check)
    assert reply["content"]["status"] == "ok"
    assert "fresh" in stream_text(out, "stderr")
    assert stream_text(out, "stdout") in ("False\n", "a=unset\n")


# ---- output limit ------------------------------------------------------------------

def test_output_limit(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_OUTPUT_LIMIT": "100K"})
    reply, out = run(kc, "for i in range(200000): print('x' * 99)")
    assert reply["content"]["status"] == "ok"
    text = stream_text(out, "stdout")
    assert 90_000 <= len(text) <= 100 * 1024
    assert "output passed the limit" in stream_text(out, "stderr")
    reply, out = run(kc, "print('next cell fine')")
    assert stream_text(out, "stdout") == "next cell fine\n"


def test_large_output_arrives_complete(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "import sys\nfor i in range(100000): sys.stdout.write('%07d\\n' % i)")
    lines = stream_text(out, "stdout").splitlines()
    assert lines == ["%07d" % i for i in range(100000)]


# ---- magics ------------------------------------------------------------------------

def test_cellgate_kernel_runs_bash_and_python_in_one_session(multi_kernel, bash_kernel):
    km, kc = multi_kernel
    reply, out = run(kc, "%%bash\necho shared > cg_shared_file.txt; echo $BASH_VERSION")
    assert reply["content"]["status"] == "ok"
    reply, out = run(kc, "print(open('cg_shared_file.txt').read().strip())\n"
                         "import os; os.remove('cg_shared_file.txt')")
    assert stream_text(out) == "shared\n"
    reply, out = run(kc, "%%python\n40 + 2")
    assert out[-1]["content"]["data"]["text/plain"] == "42"
    # Python takes %%names that are no language: they are its cell magics
    reply, out = run(kc, "%%nosuchlang\nx")
    assert reply["content"]["ename"] == "UsageError"
    assert reply["content"]["evalue"] == "Cell magic `%%nosuchlang` not found."
    km, kc = bash_kernel
    reply, out = run(kc, "%%nosuchlang\nx")
    assert reply["content"]["ename"] == "UnknownLanguage"
    assert reply["content"]["evalue"] == 'no language named "nosuchlang" in %%nosuchlang'


def test_magic_complete_and_is_complete(multi_kernel):
    km, kc = multi_kernel
    code = "%%bash\nech"
    kc.complete(code, len(code))
    r = kc.get_shell_msg(timeout=TIMEOUT)["content"]
    assert "echo" in r["matches"]
    assert (r["cursor_start"], r["cursor_end"]) == (len(code) - 3, len(code))
    kc.is_complete("%%bash\nif true; then")
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "incomplete"
    kc.is_complete("%%bash\necho hi")
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "complete"


# ---- comms -------------------------------------------------------------------------

def test_unknown_comm_is_closed(python_kernel):
    km, kc = python_kernel
    msg = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "nope", "data": {}})
    kc.shell_channel.send(msg)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["msg_type"] == "comm_close":
            assert m["content"]["comm_id"] == "c1"
            break
    else:
        pytest.fail("no comm_close")
    kc.comm_info()
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["comms"] == {}


# ---- lifecycle -----------------------------------------------------------------------

def test_restart_gives_fresh_state(kernel_factory):
    km, kc = kernel_factory("cellgate-python")
    run(kc, "gone = 1")
    old = kernel_pid(km)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=TIMEOUT)
    assert kernel_pid(km) != old
    reply, out = run(kc, "'gone' in dir()")
    assert out[-1]["content"]["data"]["text/plain"] == "False"


def test_shutdown_leaves_no_processes(kernel_factory):
    km, kc = kernel_factory("cellgate")
    run(kc, "import subprocess\np = subprocess.Popen(['sleep', '300'], start_new_session=True)")
    run(kc, "%%bash\n(setsid sleep 301 &) ; sleep 302 &")
    # The host's view of everything the kernel started, box or no box.
    def sleepers():
        found = []
        for p in descendants(kernel_pid(km)):
            try:
                with open(f"/proc/{p}/comm") as f:
                    found += [p] if f.read().strip() == "sleep" else []
            except OSError:
                pass
        return found
    assert wait_until(lambda: len(sleepers()) == 3, timeout=5), sleepers()
    tree = descendants(kernel_pid(km))
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert wait_until(lambda: not any(pid_alive(p) for p in tree), timeout=10), \
        [p for p in tree if pid_alive(p)]


def test_kernel_exits_when_parent_dies(tmp_path):
    from jupyter_client.connect import write_connection_file
    cf, info = write_connection_file(str(tmp_path / "k.json"), key=b"k")
    # The kernel's parent is a shell that we kill outright.
    sh = subprocess.Popen(["/bin/sh", "-c", f"'{CELLGATE}' kernel -f '{cf}' & wait"],
                          start_new_session=True)
    assert wait_until(lambda: len(descendants(sh.pid)) >= 2, timeout=10)  # kernel + runtime
    tree = descendants(sh.pid)
    os.kill(sh.pid, signal.SIGKILL)
    sh.wait()
    assert wait_until(lambda: not any(pid_alive(p) for p in tree), timeout=10), \
        [p for p in tree if pid_alive(p)]
