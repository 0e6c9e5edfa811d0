"""Recovery under faults: a cell that fills the box's process limit ends
with one interrupt (bash, python, javascript, C), and a box whose init was
killed is rebuilt for the next cell. Real kernels through jupyter_client;
every wait is bounded."""
import os
import queue
import signal
import time

import pytest

from conftest import TIMEOUT, descendants, errors, kernel_pid, run, stream_text, wait_until
from proctree import box_inits, parent_of, pids_where

PIDS = "48"  # a small limit keeps filling it fast

# Per language: a background process started on purpose, a cell that fills
# the process limit and keeps trying, and a check that the kernel serves.
FILL = {
    "cellgate-bash": (
        # A server of sorts that forks all the time, during the next cell too.
        "sleep 1000 & (while :; do sleep 0.3; done) & echo bg",
        # In a session of its own, orphaned to the box's init, and the loop.
        "setsid sleep 900 & (sleep 900 &); for i in $(seq 3000); do sleep 900 & done; echo done",
        "echo ok",
    ),
    "cellgate-python": (
        # A background process in its own session: an interrupt's SIGINT goes
        # to the driver's process group, as Ctrl-C in a terminal does.
        "import subprocess; bg = subprocess.Popen(['sleep', '1000'], start_new_session=True);"
        " print('bg')",
        "import subprocess, time\n"
        "ps = []\n"
        "for i in range(3000):\n"
        "    try:\n"
        "        ps.append(subprocess.Popen(['sleep', '900']))\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n",
        "print('ok')",
    ),
    # Compiled: each cell is a program; the filler's children take
    # sessions of their own and it ignores SIGINT, so only the kernel's
    # sweep ends them (and it).
    "cellgate-c": (
        "#define _DEFAULT_SOURCE\n#include <unistd.h>\n#include <stdio.h>\n"
        "int main(void) { if (fork() == 0) { setsid(); execlp(\"sleep\", \"sleep\", \"1000\","
        " (char *)0); _exit(1); } puts(\"bg\"); return 0; }",
        "#define _DEFAULT_SOURCE\n#include <signal.h>\n#include <unistd.h>\n"
        "int main(void) { signal(SIGINT, SIG_IGN); for (int i = 0; i < 3000; i++) {"
        " pid_t p = fork(); if (p == 0) { setsid(); execlp(\"sleep\", \"sleep\", \"900\","
        " (char *)0); _exit(1); } if (p < 0) usleep(50000); } for (;;) pause(); }",
        "#include <stdio.h>\nint main(void) { puts(\"ok\"); return 0; }",
    ),
    "cellgate-javascript": (
        "const cp = require('child_process');"
        " cp.spawn('sleep', ['1000'], {detached: true}).unref(); console.log('bg')",
        "for (let i = 0; i < 3000; i++) { try { cp.spawn('sleep', ['900']).on('error', () => {}); }"
        " catch (e) {} }\n"
        "const t0 = Date.now(); while (Date.now() - t0 < 60000) {}",
        "console.log('ok')",
    ),
}


def box_sleeps(km, seconds):
    """Pids (host) of the `sleep SECONDS` processes under the kernel."""
    return pids_where(descendants(kernel_pid(km)),
                      lambda argv: argv[:2] == [b"sleep", str(seconds).encode()])


def shells(km):
    """Pids (host) of the bash processes under the kernel: the driver and
    the subshells of background loops. A loop's subshell forks for each
    `sleep` and the fork is a bash too until it execs (a millisecond in
    every 0.3 s): a bash whose parent and grandparent are bashes is such a
    fork, not a shell of its own."""
    found = set(pids_where(descendants(kernel_pid(km)), lambda argv: argv[0].endswith(b"bash")))
    return {p for p in found if not (parent_of(p) in found and parent_of(parent_of(p)) in found)}


def wait_for_text(kc, msg_id, text, timeout):
    """IOPub messages of msg_id until a stream containing text (or timeout)."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        got.append(msg)
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return got
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    raise AssertionError(f"no {text!r} before idle or {timeout} s; got {got}")


def wait_idle(kc, msg_id, timeout):
    """Collects IOPub of msg_id until idle; returns (outputs, its reply)."""
    got, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no idle in {timeout} s; got {got}")
        try:
            msg = kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        got.append(msg)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return got, reply


def fill_and_interrupt(km, kc, name, limit):
    """Fills the limit, interrupts once; returns (notice outputs, seconds
    from the interrupt to the next cell's reply)."""
    bg_code, fill_code, ok_code = FILL[name]
    reply, outputs = run(kc, bg_code)
    assert reply["content"]["status"] == "ok" and "bg" in stream_text(outputs)
    assert wait_until(lambda: len(box_sleeps(km, 1000)) == 1, timeout=5)
    background = box_sleeps(km, 1000)
    loops = shells(km)
    msg_id = kc.execute(fill_code)
    noticed = wait_for_text(kc, msg_id, "process limit", timeout=60)
    notice = [m["content"]["text"] for m in noticed if "process limit" in m["content"].get("text", "")]
    assert f"process limit ({limit}" in notice[0], notice
    t0 = time.monotonic()
    km.interrupt_kernel()
    ended, _ = wait_idle(kc, msg_id, timeout=TIMEOUT)
    t1 = time.monotonic()
    reply, outputs = run(kc, ok_code, timeout=TIMEOUT)
    recovery = time.monotonic() - t0
    assert reply["content"]["status"] == "ok", outputs
    assert "ok" in stream_text(outputs)
    # The cell's processes are gone, the earlier cell's is not.
    assert wait_until(lambda: not box_sleeps(km, 900), timeout=5), len(box_sleeps(km, 900))
    assert box_sleeps(km, 1000) == background
    if name == "cellgate-bash":  # the loop lives on, and forks again
        assert shells(km) == loops and len(loops) == 2, (shells(km), loops)
        seen = set(box_sleeps(km, 0.3))
        assert wait_until(lambda: set(box_sleeps(km, 0.3)) - seen, timeout=5)
    print(f"{name}: recovery (interrupt to the next cell's reply) {recovery:.2f} s"
          f" (the interrupted cell ended after {t1 - t0:.2f} s)")
    if name == "cellgate-python":  # its Popen objects hold the killed processes
        assert "until the python runtime collects them" in stream_text(ended, "stderr")
    return recovery


@pytest.mark.parametrize("name", ["cellgate-bash", "cellgate-python", "cellgate-javascript",
                                  "cellgate-c"])
def test_process_limit_one_interrupt(kernel_factory, name):
    km, kc = kernel_factory(name, env={"CELLGATE_PIDS": PIDS})
    recovery = fill_and_interrupt(km, kc, name, PIDS)
    assert recovery < 10
    # And again: the kernel is as good as new.
    reply, outputs = run(kc, FILL[name][2])
    assert reply["content"]["status"] == "ok"


def test_process_limit_default_bash(kernel_factory):
    """The default limit (512) with the bash cell of the report."""
    km, kc = kernel_factory("cellgate-bash")
    assert fill_and_interrupt(km, kc, "cellgate-bash", "512") < 15


def box_init(km):
    """Host pid of the box's init, or None."""
    inits = box_inits(kernel_pid(km))
    return inits[0] if inits else None


@pytest.mark.parametrize("name,setup,check,ok", [
    ("cellgate-bash", "X=41; echo $X > /mnt/data/kept", "echo ${X:-unset}; cat /mnt/data/kept", "unset\n41"),
    ("cellgate-python", "x = 41; open('/mnt/data/kept', 'w').write('41')",
     "print(open('/mnt/data/kept').read()); x", "41"),
])
def test_box_init_killed_between_cells(kernel_factory, name, setup, check, ok):
    km, kc = kernel_factory(name)
    reply, _ = run(kc, setup)
    assert reply["content"]["status"] == "ok"
    init = box_init(km)
    assert init
    os.kill(init, signal.SIGKILL)
    assert wait_until(lambda: box_init(km) != init, timeout=5)
    # The next cell runs in a fresh box and says that the state was lost.
    reply, outputs = run(kc, check, timeout=30)
    err = stream_text(outputs, "stderr")
    assert "box" in err and "lost" in err or "gone" in err, outputs
    assert ok in stream_text(outputs, "stdout"), outputs
    if name == "cellgate-python":  # x died with the box
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NameError"
    new_init = box_init(km)
    assert new_init and new_init != init
    # And the one after that works as usual.
    reply, outputs = run(kc, "echo fine" if name == "cellgate-bash" else "print('fine')")
    assert reply["content"]["status"] == "ok" and stream_text(outputs) == "fine\n"
    assert not stream_text(outputs, "stderr")


def test_box_init_killed_during_cell(kernel_factory):
    km, kc = kernel_factory("cellgate-bash")
    reply, _ = run(kc, "true")
    init = box_init(km)
    msg_id = kc.execute("echo start; sleep 60")
    wait_for_text(kc, msg_id, "start", timeout=TIMEOUT)
    os.kill(init, signal.SIGKILL)
    outputs, reply = wait_idle(kc, msg_id, timeout=TIMEOUT)
    assert reply["content"]["status"] == "error"
    assert "box" in reply["content"]["evalue"] and "lost" in reply["content"]["evalue"]
    assert errors(outputs)
    reply, outputs = run(kc, "echo fine", timeout=30)
    assert reply["content"]["status"] == "ok" and "fine" in stream_text(outputs)


def test_process_limit_time_limit(kernel_factory):
    """The time limit's interrupt ends the cell's processes too."""
    km, kc = kernel_factory("cellgate-bash", env={"CELLGATE_PIDS": PIDS, "CELLGATE_TIMEOUT": "3"})
    reply, outputs = run(kc, FILL["cellgate-bash"][1], timeout=TIMEOUT)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "CellTimeout"
    assert "process limit (48" in stream_text(outputs, "stderr")
    reply, outputs = run(kc, "echo ok")
    assert reply["content"]["status"] == "ok" and stream_text(outputs, "stdout") == "ok\n"
    # Usually the runtime ends its processes within the kernel's grace after
    # the interrupt; on a loaded machine it may not, and then the kernel kills
    # it with them and says so in the next cell: both end every process.
    assert stream_text(outputs, "stderr") in (
        "", "[cellgate: the bash runtime had ended; this cell runs in a fresh one, "
            "so earlier variables and imports are gone]\n"), outputs
    assert wait_until(lambda: not box_sleeps(km, 900), timeout=5)


def test_box_init_killed_display_works(kernel_factory):
    """cellgate-display reaches the kernel from the fresh box."""
    km, kc = kernel_factory("cellgate-bash")
    code = "printf '<b>x</b>' > p.html; cellgate-display p.html"
    reply, outputs = run(kc, code)
    assert [m["msg_type"] for m in outputs] == ["display_data"]
    init = box_init(km)
    os.kill(init, signal.SIGKILL)
    assert wait_until(lambda: box_init(km) != init, timeout=5)
    for _ in range(2):
        reply, outputs = run(kc, code, timeout=30)
        assert reply["content"]["status"] == "ok", outputs
        shown = [m for m in outputs if m["msg_type"] == "display_data"]
        assert len(shown) == 1 and shown[0]["content"]["data"]["text/html"] == "<b>x</b>"
