"""Standalone tests of the bash driver, kernel/drivers/bash.sh.

Each test starts bash the way the kernel does (PROTOCOL.md): its own
session, a clean environment, fd 0 = code pipe, 1 = stdout pipe,
2 = /dev/null, 3 = control socket, 4 = the real stderr pipe.  It writes the
driver source to fd 0, waits for `ready`, then plays the kernel: requests
are bash lines with every non-alphanumeric byte escaped as \\xHH inside
$'...', records are JSON lines read from fd 3, and stdout/stderr are drained
when `done` is handled.  The fd layout and the record reading are the shared
harness's (tests/drivers/harness.py).  Every wait is bounded.

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_bash_driver.py
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import TIMEOUT

DRIVER = Path(__file__).resolve().parents[2] / "kernel" / "drivers" / "bash.sh"
BASH = shutil.which("bash", path="/usr/bin:/bin")
ENV = {  # besides CELLGATE_DRIVER and CELLGATE_CONTROL_FD, which the harness sets
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": os.environ.get("HOME", "/tmp"),
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
ALNUM = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def q(text):
    """Quote text as the kernel does: $'...' with \\xHH for every non-alphanumeric byte."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "$'" + "".join(chr(b) if b in ALNUM else "\\x%02x" % b for b in data) + "'"


class Result(harness.Cell):
    """What one execute produced; bash's output is all raw, so stdout and
    stderr are the text of the fd 1 and fd 4 bytes."""

    @property
    def stdout(self):
        return self.raw_out.decode("utf-8", "replace")

    @property
    def stderr(self):
        return self.raw_err.decode("utf-8", "replace")


class Driver(harness.Driver):
    """A bash driver process, spoken to like the kernel does: the harness
    with the code on fd 0, requests as bash lines, `sync` records kept."""

    cell_class = Result
    keep_sync = True

    def __init__(self, cwd=None, first=b""):
        # The kernel appends a newline to the source and may not wait for
        # `ready` before its first request: `first` is written along.
        super().__init__([BASH, "--norc", "--noprofile", "--noediting", "-i"], env=ENV,
                         cwd=cwd, code_on_stdin=True,
                         first_input=DRIVER.read_bytes() + b"\n" + first)
        self.startup = self.ready_after

    def wait_eof(self, timeout=TIMEOUT):
        assert self.recv_eof(timeout), ("control socket still open", bytes(self.inbox))

    def take_output(self):
        out, err = self.drain_raw()
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    # -- requests ----------------------------------------------------------

    def start(self, code, allow_stdin=False, user_expressions=None):
        args = "".join(" %s %s" % (q(k), q(v)) for k, v in (user_expressions or {}).items())
        self.take_output()
        self.write("__cg_pre %d; eval %s </dev/null\n__cg_done $?%s\n"
                   % (1 if allow_stdin else 0, q(code), args))

    def answer_input(self, value):
        self.write("#" + value + "\n")

    def finish(self, inputs=(), timeout=TIMEOUT):
        """Collect records up to `done`, answering `input` records from inputs."""
        return super().finish(timeout, inputs)

    def execute(self, code, allow_stdin=False, user_expressions=None, inputs=(), timeout=TIMEOUT):
        self.start(code, allow_stdin, user_expressions)
        return self.finish(inputs, timeout)

    def ok(self, code, **kw):
        """Execute code that must succeed; return its stdout."""
        res = self.execute(code, **kw)
        assert res.errors == [], (res.errors, res.stderr)
        return res.stdout

    def request(self, line):
        self.write(line + "\n")
        rec = self.recv()
        assert rec["t"] == "reply", rec
        return rec

    def complete(self, code, cursor=None):
        cursor = len(code) if cursor is None else cursor
        return self.request("__cg_complete %s %d" % (q(code), cursor))

    def inspect(self, code, cursor=None, detail=0):
        cursor = len(code) if cursor is None else cursor
        return self.request("__cg_inspect %s %d %d" % (q(code), cursor, detail))

    def is_complete(self, code):
        return self.request("__cg_is_complete %s" % q(code))["status"]


@pytest.fixture
def drv(tmp_path):
    d = Driver(cwd=tmp_path)
    yield d
    d.close()


def interrupted(res):
    assert [e["evalue"] for e in res.errors] == ["exit status 130 (interrupted)"], res.records
    assert res.done
    # Interactive bash writes a newline to stderr when SIGINT drops a line
    # (for a terminal's `^C`); the driver keeps it out of the cell.
    assert res.stderr == "", res.stderr


# -- start-up --------------------------------------------------------------------


def test_ready_first_quiet_and_fast(drv, tmp_path):
    script = "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"
    version = subprocess.run([BASH, "-c", script], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert drv.ready == {"t": "ready", "language_version": version}
    print("startup to ready: %.1f ms" % (drv.startup * 1000))
    assert drv.startup < 2.0
    res = drv.execute("pwd")
    assert res.records == [{"t": "done", "user_expressions": {}}]
    assert res.stdout == "%s\n" % tmp_path  # the driver did not cd
    assert res.stderr == ""


def test_first_request_sent_with_the_source(tmp_path):
    # The request lands in bash's input buffer together with the source's
    # end, and its read happens before the kernel has seen `ready`.
    code, _ = padded_cell("read v; echo \"got $v\"", {"k": "echo 1"}, 10)
    line = "__cg_pre 1; eval %s </dev/null\n__cg_done $? %s %s\n" % (q(code), q("k"), q("echo 1"))
    d = Driver(cwd=tmp_path, first=line.encode())
    try:
        assert d.ready["t"] == "ready"
        res = d.finish(inputs=["it"])
        assert res.stdout == "got it\n" and res.errors == []
        assert res.done["user_expressions"]["k"]["data"]["text/plain"] == "1"
        assert d.ok("echo next") == "next\n"
    finally:
        d.close()


def test_driver_defines_only_its_own_names(drv):
    out = drv.ok("declare -F | sed 's/^declare -f //'")
    assert set(out.split()) - {"read"} == {n for n in out.split() if n.startswith("__cg_")}
    assert drv.ok("echo \"[$PS1][$PS2][${PROMPT_COMMAND-unset}][${HISTFILE-unset}]\"") == "[][][unset][unset]\n"


# -- execute ---------------------------------------------------------------------


def test_state_persists_across_cells(drv, tmp_path):
    (tmp_path / "sub").mkdir()
    drv.ok("x=5; greet() { echo \"hello $1\"; }; cd sub; export E=7\n"
           "declare -a arr=(a 'b c'); declare -A m=([k]=v); alias hi='echo alias-hi'")
    out = drv.ok("echo $x; greet you; pwd; bash -c 'echo $E'; echo \"${arr[1]}|${#arr[@]}|${m[k]}\"\nhi")
    assert out == "5\nhello you\n%s\n7\nb c|2|v\nalias-hi\n" % (tmp_path / "sub")


def test_failing_last_command_is_one_error(drv):
    res = drv.execute("echo before; false")
    assert res.stdout == "before\n"
    assert res.errors == [{"t": "error", "ename": "ExitStatus", "evalue": "exit status 1",
                           "traceback": ["exit status 1"]}]
    assert [r["t"] for r in res.records] == ["sync", "error", "done"]
    assert drv.execute("(exit 7)").errors[0]["evalue"] == "exit status 7"
    assert drv.execute("false; true").errors == []


def test_requests_leave_dollar_question_and_bash_rematch_alone(drv):
    drv.execute("[[ abc =~ b(c) ]]; (exit 4)")
    drv.complete("ech $HO")
    drv.inspect("$HOME")
    drv.is_complete("echo \\")
    res = drv.execute("echo $?; echo ${BASH_REMATCH[*]}", user_expressions={"u": "echo é"})
    assert res.stdout == "4\nbc c\n"
    assert drv.ok("read -p é x; echo ${BASH_REMATCH[*]}", allow_stdin=True, inputs=["y"]) == "bc c\n"


def test_stdout_and_stderr(drv):
    res = drv.execute("echo out; echo err >&2; printf 'no newline'")
    assert res.stdout == "out\nno newline"
    assert res.stderr == "err\n"
    assert res.errors == []


def test_multiline_code_and_heredoc(drv):
    out = drv.ok("for i in 1 2; do\n  echo \"i=$i\"\ndone\ncat <<EOF\nhere $((1+1))\nEOF")
    assert out == "i=1\ni=2\nhere 2\n"


def test_cell_stdin_is_dev_null(drv):
    assert drv.ok("cat; echo after") == "after\n"


def test_syntax_error_reports_status(drv):
    res = drv.execute("fi")
    assert res.errors[0]["evalue"] == "exit status 2"
    assert "syntax error" in res.stderr
    assert drv.ok("echo fine") == "fine\n"


def test_user_options_do_not_break_the_driver(drv):
    drv.ok("set -u; set -o pipefail; IFS=,; shopt -s nullglob failglob nocasematch extglob")
    assert drv.ok("echo a b") == "a b\n"
    res = drv.execute("echo hi", user_expressions={"v": "echo $HOME"})
    assert res.done["user_expressions"]["v"]["status"] == "ok"
    assert "echo" in drv.complete("ech")["matches"]
    assert drv.is_complete("echo hi") == "complete"
    res = drv.execute("set -x; echo traced")
    assert res.stdout == "traced\n"
    assert "__cg_send" not in res.stderr and "local" not in res.stderr, res.stderr
    res = drv.execute("echo again", user_expressions={"v": "echo 1"})
    # the request lines are traced, the driver's insides are not
    assert res.stderr == ("+ __cg_pre 0\n+ eval 'echo again'\n++ echo again\n"
                          "+ __cg_done 0 v 'echo 1'\n"), res.stderr


# -- interrupt and exit ------------------------------------------------------------


@pytest.mark.parametrize("code", ["sleep 10", "while :; do :; done", "x=1; while :; do x=$((x+1)); done"])
def test_interrupt_keeps_state(drv, code):
    drv.ok("kept=yes; declare -a karr=(1 2 3)")
    drv.start(code)
    time.sleep(0.3)
    res = harness.interrupt_cell(drv, timeout=5)
    interrupted(res)
    assert drv.ok("echo $kept ${#karr[@]}") == "yes 3\n"


def test_interrupt_skips_rest_of_cell(drv):
    drv.start("sleep 10; echo not-reached")
    time.sleep(0.3)
    drv.interrupt()
    res = drv.finish(timeout=5)
    interrupted(res)
    assert "not-reached" not in res.stdout


def test_interrupt_adds_no_output(drv):
    # What the cell wrote stays; nothing is added: not bash's newline on
    # stderr, nor on stdout when the session merged stderr into it.
    drv.start("echo out; printf err >&2; sleep 10")
    time.sleep(0.3)
    res = harness.interrupt_cell(drv, timeout=5)
    assert [e["evalue"] for e in res.errors] == ["exit status 130 (interrupted)"]
    assert (res.stdout, res.stderr) == ("out\n", "err")
    assert drv.execute("echo e >&2").stderr == "e\n"  # the cell's stderr is back
    drv.ok("exec 2>&1")
    drv.start("while :; do :; done")
    time.sleep(0.3)
    res = harness.interrupt_cell(drv, timeout=5)
    interrupted(res)
    assert res.stdout == ""
    assert drv.ok("echo e >&2") == "e\n"  # still merged


def test_sigint_between_cells_is_ignored(drv):
    harness.sigint_between_cells(drv)
    res = drv.execute("echo a; sleep 0.2; echo b")
    assert (res.stdout, res.stderr, res.errors) == ("a\nb\n", "", [])
    drv.start("sleep 10")  # the next interrupt still works
    time.sleep(0.3)
    interrupted(harness.interrupt_cell(drv, timeout=5))


def test_user_sigint_trap_wins(drv):
    drv.ok("trap 'echo caught' INT")
    drv.start("sleep 10; echo went-on")
    time.sleep(0.3)
    res = harness.interrupt_cell(drv, timeout=5)
    assert res.stdout == "caught\nwent-on\n" and res.errors == []
    drv.ok("trap - INT")
    drv.start("sleep 10; echo not-reached")
    time.sleep(0.3)
    res = harness.interrupt_cell(drv, timeout=5)
    assert [e["evalue"] for e in res.errors] == ["exit status 130 (interrupted)"]
    assert "not-reached" not in res.stdout


def test_exit_ends_the_driver(drv):
    drv.start("echo bye; exit 3")
    drv.wait_eof()
    assert drv.proc.wait(timeout=5) == 3
    assert drv.take_output() == ("bye\n", "exit\n")  # interactive bash says "exit"


def test_errexit_does_not_kill_the_driver_between_cells(drv):
    # Under `set -e` a failing status returned by the driver's own
    # functions would make bash exit; only the user's commands may.
    drv.ok("set -e")
    drv.start("sleep 10")
    time.sleep(0.3)
    drv.interrupt()
    interrupted(drv.finish(timeout=5))  # `__cg_done 130` did not end the shell
    drv.complete("ech")
    assert drv.ok("echo alive") == "alive\n"
    # bash's rule (through `eval`, even `false && true`): this ends the shell
    drv.start("false")
    drv.wait_eof()


# -- input ------------------------------------------------------------------------------


def test_read_asks_the_kernel(drv):
    res = drv.execute("read -p 'name? ' n; echo \"hi $n\"", allow_stdin=True, inputs=["bob"])
    assert res.inputs == [{"t": "input", "prompt": "name? ", "password": False}]
    assert res.stdout == "hi bob\n"
    assert res.errors == []


def test_read_password(drv):
    res = drv.execute("read -s -p 'pw: ' p; echo ${#p}", allow_stdin=True, inputs=["secret"])
    assert res.inputs == [{"t": "input", "prompt": "pw: ", "password": True}]
    assert res.stdout == "6\n"


def test_read_splits_like_the_builtin(drv):
    code = ("read a b; echo \"[$a][$b]\"; read -r raw; echo \"[$raw]\"; read -a arr; echo ${#arr[@]} ${arr[2]}\n"
            "IFS=, read x y; echo \"[$x][$y]\"; read; echo \"[$REPLY]\"; read -n 2 two; echo \"[$two]\"\n"
            "read -d , upto; echo \"[$upto]\"")
    inputs = ["one two three", r"a\b c", "p q r s", "1,2,3", "  spaced  ", "abcdef", "x y,z"]
    res = drv.execute(code, allow_stdin=True, inputs=inputs)
    assert res.stdout == ("[one][two three]\n[a\\b c]\n4 r\n[1][2,3]\n[  spaced  ]\n[ab]\n[x y]\n")
    assert len(res.inputs) == 7 and all(i["prompt"] == "" for i in res.inputs)


def test_read_without_allow_stdin(drv):
    res = drv.execute("read x; echo \"status $?\"")
    assert res.inputs == []
    assert res.stdout == "status 1\n"
    assert res.stderr == ("bash: read: stdin is not available: this client does not allow input "
                          "(allow_stdin is false)\n")
    assert drv.execute("read x").errors[0]["evalue"] == "exit status 1"


@pytest.mark.parametrize("allow", [False, True])
def test_read_from_files_and_pipes_is_the_builtin(drv, allow):
    code = ("printf 'l1\\nl2\\n' > f; read x < f; echo \"x=$x\"\n"
            "while read l; do echo \"[$l]\"; done < f\n"
            "echo hi | { read y; echo \"y=$y\"; }\n"
            "exec 7<f; read -u 7 z; exec 7<&-; echo \"z=$z\"")
    res = drv.execute(code, allow_stdin=allow)
    assert res.stdout == "x=l1\n[l1]\n[l2]\ny=hi\nz=l1\n"
    assert res.inputs == [] and res.errors == [] and res.stderr == ""


def padded_cell(body, expressions, split):
    """A cell whose execute request puts a boundary of bash's 1024-byte reads
    `split` bytes into the `__cg_done` line (negative: before it, past its
    end: after it).  Bash has then parsed the code line but not all of the
    `__cg_done` line when `read` in the cell reads the code pipe."""
    args = "".join(" %s %s" % (q(k), q(v)) for k, v in expressions.items())
    line1 = len("__cg_pre 1; eval %s </dev/null\n" % q("#\n" + body))
    pad = (-(line1 + split)) % 1024 + 1024
    return "#" + "p" * pad + "\n" + body, len("__cg_done $?%s\n" % args)


# where the read boundary falls: in L1's last bytes, at L2's start, in L2,
# on L2's newline, just after L2; and not near it at all
SPLITS = [-3, 0, 1, 20, "newline", "after", 500]


def split_at(where, l2_len):
    return {"newline": l2_len - 1, "after": l2_len}.get(where, where)


@pytest.mark.parametrize("where", SPLITS)
def test_read_in_a_long_cell(drv, where):
    expr = {"e" * 40: "echo " + "q" * 300}
    _, l2_len = padded_cell("", expr, 0)
    code, _ = padded_cell("read v; echo \"got $v\"", expr, split_at(where, l2_len))
    res = drv.execute(code, allow_stdin=True, user_expressions=expr, inputs=["it"])
    assert res.stdout == "got it\n"
    assert res.done["user_expressions"]["e" * 40]["data"]["text/plain"] == "q" * 300
    assert drv.ok("echo next") == "next\n"


@pytest.mark.parametrize("where", SPLITS)
def test_interrupt_while_waiting_for_input(drv, where):
    drv.ok("kept=1")
    expr = {"k": "echo $kept"}
    _, l2_len = padded_cell("", expr, 0)
    code, _ = padded_cell("read v; echo not-reached", expr, split_at(where, l2_len))
    drv.start(code, allow_stdin=True, user_expressions=expr)
    assert [drv.recv()["t"], drv.recv()["t"]] == ["sync", "input"]
    time.sleep(0.3)  # let `read` block on the code pipe (after taking what it takes)
    drv.interrupt()
    res = drv.finish(timeout=5)
    interrupted(res)
    assert res.done["user_expressions"]["k"]["data"]["text/plain"] == "1"
    assert "not-reached" not in res.stdout
    assert drv.ok("echo $kept") == "1\n"


def test_output_before_a_prompt_is_synced(drv):
    drv.start("echo 'question:'; read v", allow_stdin=True)
    assert drv.recv()["t"] == "sync"
    assert drv.take_output() == ("question:\n", "")  # already in the pipe at `sync`
    assert drv.recv()["t"] == "input"
    drv.write("#a\n")
    assert drv.finish().errors == []


def test_stray_input_reply_is_harmless(drv):
    drv.write("#late reply\n")
    assert drv.ok("echo ok") == "ok\n"


# -- user expressions ---------------------------------------------------------------


def test_user_expressions(drv):
    drv.ok("x=41")
    res = drv.execute("(exit 2)", user_expressions={
        "x": "echo $((x+1))", "fails": "false", "status": "echo $?", "nl": "printf 'a\\nb\\n\\n'",
        "change": "x=99; echo changed", "both": "echo out; echo err >&2"})
    ue = res.done["user_expressions"]
    ok = lambda text: {"status": "ok", "data": {"text/plain": text}, "metadata": {}}
    assert ue["x"] == ok("42")
    assert ue["fails"] == {"status": "error", "ename": "ExitStatus", "evalue": "exit status 1",
                           "traceback": []}
    assert ue["status"] == ok("2")
    assert ue["nl"] == ok("a\nb")
    assert ue["change"] == ok("changed")
    assert ue["both"] == ok("out")
    assert res.stderr == ""
    assert drv.ok("echo $x") == "41\n"


def test_json_escaping_and_invalid_utf8(drv):
    res = drv.execute("true", user_expressions={
        "esc": r"printf 'q\" b\\ t\t r\r c\001\037 del\177 é 😀'",
        "bad": r"printf 'a\377b\303c\355\240\200d\364\220\200\200e\370\210\200\200\200f\303\251'",
        "bin": "head -c 3000 /dev/urandom | tr -d '\\000'", "kü": "echo ключ"})
    ue = res.done["user_expressions"]
    assert ue["esc"]["data"]["text/plain"] == "q\" b\\ t\t r\r c\x01\x1f del\x7f é 😀"
    assert ue["bad"]["data"]["text/plain"] == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\u00e9"
    assert ue["bin"]["status"] == "ok"
    assert ue["kü"]["data"]["text/plain"] == "ключ"
    assert res.stderr == ""


def test_input_prompt_is_escaped(drv):
    res = drv.execute("read -r -p $'a\"b\\\\c\\td\\001 ü\\377' v; echo \"$v\"", allow_stdin=True,
                      inputs=['x "y" \\z'])
    assert res.inputs[0]["prompt"] == "a\"b\\c\td\x01 ü\ufffd"
    assert res.stdout == 'x "y" \\z\n'


# -- complete -------------------------------------------------------------------------


def test_complete_command(drv):
    rep = drv.complete("ech")
    assert "echo" in rep["matches"]
    assert rep["matches"] == sorted(set(rep["matches"]), key=lambda s: s.encode())
    assert (rep["cursor_start"], rep["cursor_end"], rep["metadata"]) == (0, 3, {})
    assert not any(m.startswith("__cg_") for m in drv.complete("__")["matches"])
    rep = drv.complete("ls | ec")
    assert "echo" in rep["matches"] and rep["cursor_start"] == 5
    drv.ok("myfunc_abc() { :; }")
    assert drv.complete("if true; then myfunc_a")["matches"] == ["myfunc_abc"]


def test_complete_all_commands_is_quick(drv):
    t0 = time.monotonic()
    rep = drv.complete("")
    assert time.monotonic() - t0 < 3.0
    assert len(rep["matches"]) > 100 and "cd" in rep["matches"] and "ls" in rep["matches"]


def test_complete_files(drv, tmp_path):
    (tmp_path / "alpha.txt").write_text("")
    (tmp_path / "alphabet").mkdir()
    (tmp_path / "alphabet" / "inner").write_text("")
    (tmp_path / "my file&x").write_text("")
    rep = drv.complete("cat al")
    assert rep["matches"] == ["alpha.txt", "alphabet/"]
    assert (rep["cursor_start"], rep["cursor_end"]) == (4, 6)
    assert drv.complete("cat alphabet/i")["matches"] == ["alphabet/inner"]
    assert drv.complete("cat my")["matches"] == ["my\\ file\\&x"]
    assert drv.complete("./alph")["matches"] == ["./alpha.txt", "./alphabet/"]
    assert drv.complete("cat --file=alpha.")["matches"] == ["alpha.txt"]
    assert drv.complete("cat zzz_nothing")["matches"] == []


def test_complete_variables(drv):
    rep = drv.complete("echo $HO")
    assert "$HOME" in rep["matches"] and "$HOSTNAME" in rep["matches"]
    assert (rep["cursor_start"], rep["cursor_end"]) == (5, 8)
    rep = drv.complete("echo ${HO")
    assert "${HOME}" in rep["matches"] and rep["cursor_start"] == 5
    drv.ok("my_var_1=1; my_var_2=2")
    assert drv.complete("x=a$my_var")["matches"] == ["$my_var_1", "$my_var_2"]
    assert not any(m.startswith("$__cg") for m in drv.complete("echo $")["matches"])


def test_complete_offsets_are_code_points(drv):
    code = "echo 'é😀'; ech"
    rep = drv.complete(code)
    assert "echo" in rep["matches"]
    assert (rep["cursor_start"], rep["cursor_end"]) == (len(code) - 3, len(code))
    # cursor in the middle of the code
    rep = drv.complete("é ech; ls", cursor=5)
    assert "echo" not in rep["matches"]  # `ech` is an argument of `é` here
    assert rep["cursor_start"] == 2 and rep["cursor_end"] == 5


# -- inspect ----------------------------------------------------------------------------


def test_inspect_builtin(drv):
    rep = drv.inspect("cd /tmp", cursor=1)
    assert rep["found"] is True
    assert rep["data"]["text/plain"].startswith("cd: cd [-L")
    assert drv.inspect("read x", cursor=2)["data"]["text/plain"].startswith("read: read ")
    assert "if COMMANDS" in drv.inspect("if")["data"]["text/plain"]


def test_inspect_function_variable_program(drv):
    drv.ok("greet() { echo \"hi $1\"; }; answer=42")
    text = drv.inspect("greet x", cursor=3)["data"]["text/plain"]
    assert text.startswith("greet ()") and 'echo "hi $1"' in text
    assert drv.inspect("echo $answer")["data"]["text/plain"] == 'declare -- answer="42"'
    assert "/bin/ls" in drv.inspect("ls")["data"]["text/plain"]
    rep = drv.inspect("nosuch_thing_xyz")
    assert rep == {"t": "reply", "found": False, "data": {}, "metadata": {}}
    assert drv.inspect("")["found"] is False


# -- is_complete ------------------------------------------------------------------------


@pytest.mark.parametrize("code,status", [
    ("echo hi", "complete"),
    ("if true; then echo 1; fi", "complete"),
    ("", "complete"),
    ("echo \\\\", "complete"),
    ("cat <<EOF\nx\nEOF", "complete"),
    ("if true; then", "incomplete"),
    ("echo \"abc", "incomplete"),
    ("echo 'abc", "incomplete"),
    ("for i in 1 2; do", "incomplete"),
    ("while true; do echo", "incomplete"),
    ("f() {", "incomplete"),
    ("{ echo", "incomplete"),
    ("(echo", "incomplete"),
    ("echo $(ls", "incomplete"),
    ("cat <<EOF\nx", "incomplete"),
    ("echo \\", "incomplete"),
    ("ls |", "incomplete"),
    ("true &&", "incomplete"),
    ("false ||", "incomplete"),
    ("fi", "invalid"),
    ("done done", "invalid"),
    ("echo )", "invalid"),
])
def test_is_complete(drv, code, status):
    assert drv.request("__cg_is_complete %s" % q(code)) == {"t": "reply", "status": status, "indent": ""}


def test_is_complete_never_runs_the_code(drv, tmp_path):
    drv.is_complete("touch ran_it; x=changed")
    assert not (tmp_path / "ran_it").exists()
    assert drv.ok("echo ${x-unset}") == "unset\n"
