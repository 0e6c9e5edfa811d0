"""cellgate.exec and cellgate.feed through jupyter_client (issue 5): a
command once (pipes, timeout kill, interrupt) or in a named shell session on
a terminal in the box (state survives, "running" at the timeout, feed types
into it, Ctrl-C), and the kernel serving on through all of it."""
import os
import signal
import time
import uuid

import pytest

from conftest import TIMEOUT, run, stream_text
from proctree import argv_of, box_inits
from test_tools import comm


def result(out):
    msgs = [m for m in out if m["msg_type"] == "comm_msg"]
    assert len(msgs) == 1, out
    return msgs[0]["content"]["data"]


def streams(out):
    return [(m["content"]["name"], m["content"]["text"]) for m in out
            if m["msg_type"] == "stream"]


def ex(kc, **data):
    _, out = comm(kc, "cellgate.exec", data)
    assert out[-1]["msg_type"] == "comm_close"
    return result(out), out


def feed(kc, **data):
    _, out = comm(kc, "cellgate.feed", data)
    return result(out), out


def exec_running(kc, data):
    """Opens a cellgate.exec comm and gives its command half a second to
    get going; the comm_open message."""
    msg = kc.session.msg("comm_open", {"comm_id": uuid.uuid4().hex,
                                       "target_name": "cellgate.exec", "data": data})
    kc.shell_channel.send(msg)
    time.sleep(0.5)
    return msg


def exec_result(kc, msg):
    """The result the tool sends for the exec opened by msg (its first
    comm_msg)."""
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] \
                and m["msg_type"] == "comm_msg":
            return m["content"]["data"]


def interrupted(km, kc, data):
    """Starts an exec, interrupts the kernel half a second later; the
    result, which must come within two seconds of the interrupt."""
    msg = exec_running(kc, data)
    t0 = time.monotonic()
    km.interrupt_kernel()
    r = exec_result(kc, msg)
    assert time.monotonic() - t0 < 2
    return r


@pytest.fixture
def kernel(kernel_factory):
    return kernel_factory("cellgate-python")


# ---- once --------------------------------------------------------------------

def test_shell_string_streams_and_answers(python_kernel):
    km, kc = python_kernel
    r, out = ex(kc, cmd="echo out; sleep 0.1; echo err >&2; sleep 0.1; pwd; exit 3")
    assert streams(out) == [("stdout", "out\n"), ("stderr", "err\n"), ("stdout", "/mnt/data\n")]
    assert r == {"status": "ok", "exit_code": 3, "timed_out": False,
                 "output": "out\nerr\n/mnt/data\n"}


def test_runs_in_the_box(python_kernel):
    km, kc = python_kernel
    r, _ = ex(kc, cmd="hostname; id -u; ls /sys/class/net 2>/dev/null || cat /proc/net/dev")
    lines = r["output"].split("\n")
    assert lines[0] == "cellgate" and lines[1] == "1000"
    assert "eth0" not in r["output"]


def test_argv_list_is_not_reparsed(python_kernel):
    km, kc = python_kernel
    r, _ = ex(kc, cmd=["printf", "%s|", "a b", "c'd", "$HOME", "*"])
    assert r["output"] == "a b|c'd|$HOME|*|" and r["exit_code"] == 0
    r, _ = ex(kc, cmd=["no-such-program-here"])
    assert r["exit_code"] == 127 and "not found" in r["output"]


def test_workdir_and_env(python_kernel):
    km, kc = python_kernel
    ex(kc, cmd="mkdir -p sub/dir")
    r, _ = ex(kc, cmd="pwd; echo \"$GREETING\"", workdir="sub/dir",
              env={"GREETING": "hi 'there' $x"})
    assert r["output"] == "/mnt/data/sub/dir\nhi 'there' $x\n"
    r, _ = ex(kc, cmd="pwd", workdir="/tmp")
    assert r["output"] == "/tmp\n"
    r, _ = ex(kc, cmd="pwd", workdir="no/such/dir")
    assert r["status"] == "error" and r["ename"] == "FileNotFoundError"


@pytest.mark.parametrize("data,ename", [
    ({"cmd": None}, "ValueError"),
    ({"cmd": ""}, "ValueError"),
    ({"cmd": []}, "ValueError"),
    ({"cmd": [1, 2]}, "ValueError"),
    ({"cmd": "true", "timeout": -1}, "ValueError"),
    ({"cmd": "true", "timeout": "5"}, "ValueError"),
    ({"cmd": "true", "env": {"1BAD": "x"}}, "ValueError"),
    ({"cmd": "true", "env": {"A": 5}}, "ValueError"),
    ({"cmd": "true", "session_name": "no spaces"}, "ValueError"),
])
def test_bad_requests(python_kernel, data, ename):
    km, kc = python_kernel
    r, _ = ex(kc, **data)
    assert r["status"] == "error" and r["ename"] == ename, r
    assert r["evalue"]


def test_timeout_kills(python_kernel):
    km, kc = python_kernel
    t0 = time.monotonic()
    r, _ = ex(kc, cmd="echo before; sleep 30", timeout=1)
    assert time.monotonic() - t0 < 5
    assert r["timed_out"] is True and r["exit_code"] == 137 and r["signal"] == 9
    assert r["output"] == "before\n"


def test_interrupt_stops_a_command_and_the_kernel_serves_on(python_kernel):
    km, kc = python_kernel
    r = interrupted(km, kc, {"cmd": "sleep 30"})
    assert r["interrupted"] is True and r["exit_code"] == 130 and r["timed_out"] is False
    reply, out = run(kc, "print(6 * 7)")
    assert stream_text(out, "stdout") == "42\n"


def test_shell_requests_wait_behind_a_running_command(python_kernel):
    km, kc = python_kernel
    cid = uuid.uuid4().hex
    opened = kc.session.msg("comm_open", {"comm_id": cid, "target_name": "cellgate.exec",
                                          "data": {"cmd": "sleep 0.5; echo done"}})
    kc.shell_channel.send(opened)
    execute_id = kc.execute("print('cell')")
    order = []
    while len(order) < 2:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        parent = m["parent_header"].get("msg_id")
        if parent == opened["header"]["msg_id"] and m["msg_type"] == "comm_msg":
            order.append("tool")
        if parent == execute_id and m["msg_type"] == "stream":
            order.append("cell")
    assert order == ["tool", "cell"]
    kc.get_shell_msg(timeout=TIMEOUT)


def test_huge_output_is_capped_in_the_reply(python_kernel):
    km, kc = python_kernel
    r, out = ex(kc, cmd="head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail")
    assert r["exit_code"] == 0
    assert len(r["output"]) < (1 << 20) + 200
    assert "more bytes of output are not in this reply" in r["output"]
    shown = "".join(t for _, t in streams(out))
    assert shown.count("x") >= 1 << 20  # the stream is limited by the kernel's limit only
    reply, out = run(kc, "print('still here')")
    assert stream_text(out, "stdout") == "still here\n"


def test_output_cut_mid_character_stays_valid(python_kernel):
    km, kc = python_kernel
    r, _ = ex(kc, cmd="for i in $(seq 3000); do printf '\\360\\237\\231\\202'; done; "
                      "printf '\\377'")
    assert r["output"] == "\U0001F642" * 3000 + "\ufffd"


def test_a_comm_kept_open_takes_several_requests(python_kernel):
    km, kc = python_kernel
    cid, out = comm(kc, "cellgate.exec", {})
    assert out == []
    for word in ("one", "two"):
        _, out = comm(kc, None, {"cmd": "echo " + word}, msg_type="comm_msg", comm_id=cid)
        assert result(out)["output"] == word + "\n"
        assert not [m for m in out if m["msg_type"] == "comm_close"]


# ---- sessions ------------------------------------------------------------------

def test_session_keeps_state(kernel):
    km, kc = kernel
    r, _ = ex(kc, cmd="cd /tmp && export X=5 && f() { echo \"f$1\"; }", session_name="s")
    assert r["exit_code"] == 0 and r["running"] is False and r["output"] == ""
    r, out = ex(kc, cmd="pwd; echo $X; f 2; false", session_name="s")
    assert r["output"] == "/tmp\n5\nf2\n" and r["exit_code"] == 1
    assert streams(out) and all(name == "stdout" for name, _ in streams(out))
    r, _ = ex(kc, cmd="sleep 100 & echo started", session_name="s")
    r, _ = ex(kc, cmd="jobs", session_name="s")
    assert "sleep 100" in r["output"]
    r, _ = ex(kc, cmd="tty; test -t 0 && echo terminal", session_name="s")
    assert "terminal" in r["output"]
    r, _ = ex(kc, cmd="pwd", session_name="other")
    assert r["output"] == "/mnt/data\n"  # sessions are separate


def test_session_env_is_the_commands_workdir_stays(kernel):
    km, kc = kernel
    r, _ = ex(kc, cmd="echo \"$A\"; sh -c 'echo \"child $A\"'; export KEPT=$A; B=2",
              session_name="s", env={"A": "it's $1 `x`"}, workdir="/tmp")
    assert r["output"] == "it's $1 `x`\nchild it's $1 `x`\n" and r["exit_code"] == 0
    r, _ = ex(kc, cmd="echo \"[$A] $KEPT $B $(pwd)\"", session_name="s")
    assert r["output"] == "[] it's $1 `x` 2 /tmp\n"


def test_session_timeout_leaves_it_running_and_feed_follows(kernel):
    km, kc = kernel
    prog = "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done"
    r, _ = ex(kc, cmd=prog, session_name="s", timeout=1)
    assert r["running"] is True and r["exit_code"] is None and r["timed_out"] is True
    assert r["output"].startswith("line1\n")
    r2, _ = ex(kc, cmd="echo no", session_name="s")
    assert r2["status"] == "error" and r2["ename"] == "SessionBusy"
    r3, _ = feed(kc, session_name="s", chars="", yield_ms=5000)
    assert r3["running"] is False and r3["exit_code"] == 0
    assert (r["output"] + r3["output"]) == "".join(f"line{i}\n" for i in range(1, 7))


def test_feed_types_into_a_program_and_ctrl_c_stops_it(kernel):
    km, kc = kernel
    r, _ = ex(kc, cmd="cat", session_name="s", timeout=0.5)
    assert r["running"] is True
    r, _ = feed(kc, session_name="s", chars="hello cat\n", yield_ms=500)
    assert r["output"] == "hello cat\n" and r["running"] is True
    r, _ = feed(kc, session_name="s", chars="\u0003", yield_ms=2000)
    assert r["running"] is False and r["exit_code"] == 130
    r, _ = ex(kc, cmd="echo alive", session_name="s")
    assert r["output"] == "alive\n"


def test_feed_drives_an_interactive_interpreter(kernel):
    km, kc = kernel
    r, _ = ex(kc, cmd="/usr/bin/python3 -q -i", session_name="py", timeout=1)
    assert r["running"] is True
    r, _ = feed(kc, session_name="py", chars="print(6 * 7)\n", yield_ms=1000)
    assert "42" in r["output"]
    r, _ = feed(kc, session_name="py", chars="exit()\n", yield_ms=3000)
    assert r["running"] is False and r["exit_code"] == 0


def test_interrupt_during_a_session_command(kernel):
    km, kc = kernel
    r = interrupted(km, kc, {"cmd": "sleep 30", "session_name": "s"})
    assert r["interrupted"] is True and r["running"] is False and r["exit_code"] == 130
    r, _ = ex(kc, cmd="echo next", session_name="s")
    assert r["output"] == "next\n"


def test_long_commands_and_odd_bytes(kernel):
    km, kc = kernel
    word = "é'\"\\$`x" * 3000
    r, _ = ex(kc, cmd="printf '%s' " + "'" + word.replace("'", "'\\''") + "' | wc -c",
              session_name="s")
    assert r["output"].strip() == str(len(word.encode()))
    r, _ = ex(kc, cmd=["printf", "%s", "a b"], session_name="s")
    assert r["output"] == "a b"


def test_output_between_requests_is_kept_for_the_next(kernel):
    km, kc = kernel
    ex(kc, cmd="(sleep 0.3; echo late) &", session_name="s")
    time.sleep(1)
    r, _ = feed(kc, session_name="s", chars="", yield_ms=0)
    assert "late\n" in r["output"]


def test_session_exit_and_errors(kernel):
    km, kc = kernel
    r, _ = feed(kc, session_name="nope", chars="x")
    assert r["status"] == "error" and r["ename"] == "SessionNotFound"
    r, _ = ex(kc, cmd="exit 4", session_name="s")
    assert r["session_ended"] is True and r["exit_code"] == 4
    r, _ = feed(kc, session_name="s", chars="x")
    assert r["ename"] == "SessionNotFound"
    r, _ = ex(kc, cmd="echo again", session_name="s")  # the name starts a new one
    assert r["output"] == "again\n"
    for i in range(7):
        ex(kc, cmd="true", session_name=f"n{i}")
    r, _ = ex(kc, cmd="true", session_name="ninth")
    assert r["status"] == "error" and r["ename"] == "TooManySessions"


def test_sessions_without_the_box(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_SANDBOX": "0"})
    r, _ = ex(kc, cmd="cd / && Y=7", session_name="s")
    r, _ = ex(kc, cmd="echo $Y $(pwd)", session_name="s")
    assert r["output"] == "7 /\n"
    r, _ = ex(kc, cmd="echo once; exit 2")
    assert r["output"] == "once\n" and r["exit_code"] == 2


@pytest.mark.parametrize("sandbox", ["1", "0"])
def test_shutdown_ends_session_processes(kernel_factory, sandbox):
    from conftest import kernel_pid, wait_until
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_SANDBOX": sandbox})
    ex(kc, cmd="sleep 313 & sleep 314 & disown; sleep 315 | cat &", session_name="s")
    pid = kernel_pid(km)
    assert wait_until(lambda: sum("sleep 31" in d for d in descendants_cmdlines(pid)) == 3, 5)
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    left = lambda: [p for p in os.listdir("/proc") if p.isdigit() and "sleep 31" in cmdline(p)]
    try:
        assert wait_until(lambda: not left(), 10)
    finally:
        for p in left():  # so a failure here does not spill into later runs
            os.kill(int(p), signal.SIGKILL)


def cmdline(pid):
    return b" ".join(argv_of(pid)).decode()


def descendants_cmdlines(pid):
    from conftest import descendants
    return [cmdline(p) for p in descendants(pid)]


def test_cellgate_display_from_an_exec(python_kernel):
    km, kc = python_kernel
    ex(kc, cmd="printf '<b>shown</b>' > page.html")
    for session in (None, "s"):
        data = {"cmd": "echo before; cellgate-display page.html; echo after"}
        if session:
            data["session_name"] = session
        _, out = comm(kc, "cellgate.exec", data)
        kinds = [m["msg_type"] for m in out]
        assert kinds[-2:] == ["comm_msg", "comm_close"], kinds
        shown = [m for m in out if m["msg_type"] == "display_data"]
        assert len(shown) == 1 and shown[0]["content"]["data"]["text/html"] == "<b>shown</b>"
        assert result(out)["output"] == "before\nafter\n"


def test_box_gone_during_a_tool(kernel_factory):
    """The box's init killed from outside while a command runs: the tool
    answers with the reason, nothing falls back to the host, and the next
    cell (or command) gets a fresh box."""
    from conftest import kernel_pid
    km, kc = kernel_factory("cellgate-python")
    inits = box_inits(kernel_pid(km))
    assert len(inits) == 1
    msg = exec_running(kc, {"cmd": "sleep 30", "session_name": "s"})
    os.kill(int(inits[0]), 9)
    r = exec_result(kc, msg)
    assert r["status"] == "error" and r["ename"] == "RuntimeUnavailable"
    assert "box is gone" in r["evalue"] and "fresh" in r["evalue"]
    # Nothing falls back to the host once the box is gone: not a file the
    # kernel would open or create for the box (until a fresh box exists),
    # not a command (it builds the fresh box and runs there).
    marker = f"/tmp/cellgate-box-gone-{uuid.uuid4().hex}"
    for target, data in [("cellgate.open_image", {"path": "/etc/hostname"}),
                         ("cellgate.download", {"url": "http://127.0.0.1:9/x",
                                                "path": marker}),
                         ("cellgate.exec", {"cmd": f"touch {marker}"}),
                         ("cellgate.exec", {"cmd": f"touch {marker}", "session_name": "t"})]:
        _, out = comm(kc, target, data)
        r = result(out)
        if target != "cellgate.exec":
            assert r["status"] == "error", (target, r)
            assert r["ename"] == "RuntimeUnavailable", (target, r)
            assert "box is gone" in r["evalue"], (target, r)
    assert not os.path.exists(marker)
    reply, out = run(kc, "print(1)")
    assert reply["content"]["status"] == "ok" and "1" in stream_text(out, "stdout")
    assert "fresh box" in stream_text(out, "stderr")
    r, _ = ex(kc, cmd="echo fresh", session_name="s")
    assert r["output"] == "fresh\n"


def test_session_reply_keeps_the_latest_output(kernel):
    km, kc = kernel
    r, out = ex(kc, cmd="head -c 3000000 /dev/zero | tr '\\0' y; echo; echo END",
                session_name="s")
    assert r["exit_code"] == 0 and r["output"].endswith("y\nEND\n")
    assert r["output"].startswith("[cellgate: ") and "earlier bytes" in r["output"]
    assert len(r["output"]) <= (1 << 20) + 100


def test_tool_output_has_the_cells_output_limit(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_OUTPUT_LIMIT": "1000"})
    for session in (None, "s"):
        data = {"cmd": "head -c 5000 /dev/zero | tr '\\0' x; echo; echo done"}
        if session:
            data["session_name"] = session
        r, out = ex(kc, **data)
        shown = "".join(t for name, t in streams(out) if name == "stdout")
        notes = [t for name, t in streams(out) if name == "stderr"]
        assert shown == "x" * 1000
        assert len(notes) == 1 and "this tool's output passed the limit of 1000" in notes[0]
        assert r["output"] == "x" * 5000 + "\ndone\n"  # the reply keeps it all
    reply, out = run(kc, "print('y' * 10)")
    assert stream_text(out, "stdout") == "y" * 10 + "\n"  # a fresh count per request
