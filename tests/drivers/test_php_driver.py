"""Tests of cellgate's PHP driver (kernel/drivers/php.php), standalone.

The driver is started as the kernel starts it: `/usr/bin/php -r <source>`
in a new session with a minimal environment, fd 3 one end of an AF_UNIX
socketpair, fd 1/2 pipes, fd 0 /dev/null, a temporary directory as cwd.
The protocol harness is tests/drivers/harness.py; the launch (minimal
environment, temporary cwd) is the one of test_perl_driver.py.  Every wait
is bounded.

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_php_driver.py --noconftest
"""

import os
import socket
import subprocess
import time

import pytest

import harness
from harness import TIMEOUT, ok, wait_for_stdout
from test_perl_driver import Driver

PHP = "/usr/bin/php"
SOURCE = harness.driver_source("php.php")
ARGV = [PHP, "-r", SOURCE]

pytestmark = pytest.mark.skipif(not os.path.exists(PHP), reason="php-cli is not installed")


driver, fresh = harness.fixtures(lambda: Driver(ARGV))


def plain(cell):
    """The text/plain of the cell's result (None when there is none)."""
    result = ok(cell).result
    return None if result is None else result["data"]["text/plain"]


# ---------------------------------------------------------------------------
# start-up, state, results

def test_ready_and_version(driver):
    version = subprocess.run([PHP, "-r", "echo PHP_VERSION;"], capture_output=True,
                             text=True, timeout=TIMEOUT).stdout
    assert driver.ready == {"t": "ready", "language_version": version}
    assert driver.ready_after < 2.0
    print("\nphp driver ready after %.1f ms" % (driver.ready_after * 1000))


def test_state_persists_across_cells(driver):
    ok(driver.run("$base = 20;"))
    ok(driver.run("function plus_base($x) { global $base; return $x + $base; }\n"
                  "class Point { public function __construct(public int $x = 1) {} }\n"
                  "use function array_sum as total;"))
    assert plain(driver.run("plus_base(22)")) == "42"
    assert plain(driver.run("(new Point(7))->x;")) == "7"
    assert plain(driver.run("$base")) == "20"


def test_results(driver):
    assert plain(driver.run("$r = 40;\n$r + 2")) == "42"       # no final ';' needed
    assert plain(driver.run("$r + 2;  // a comment after")) == "42"
    assert plain(driver.run("$r = 1;")) is None                   # assignment: nothing
    assert plain(driver.run("null;")) is None
    assert plain(driver.run("'text'")) == "'text'"
    assert plain(driver.run("[1, 'a' => true]")) == "array (\n  0 => 1,\n  'a' => true,\n)"
    assert plain(driver.run("if ($r) { 5; }")) is None            # a block: nothing
    assert plain(driver.run("$f = fn($x) => $x * 2;\n$f(4)")) == "8"
    assert "Point Object" in plain(driver.run("new Point(3)"))
    assert plain(driver.run("2 + 2", silent=True)) is None


def test_echo_and_result_order(driver):
    cell = ok(driver.run('echo "before\\n";\n1 + 1'))
    assert [r["t"] for r in cell.records] == ["stream", "result", "done"]
    assert cell.stdout == "before\n"


# ---------------------------------------------------------------------------
# errors

def test_exception_class_and_user_only_traceback(driver):
    ok(driver.run("function inner($d) { return intdiv(1, $d); }\n"
                  "function outer() { return inner(0); }"))
    cell = driver.run("$before_error = 1;\nouter();\n$after_error = 1;")
    error = cell.error
    assert error["ename"] == "DivisionByZeroError"
    assert error["evalue"] == "Division by zero"
    text = "\n".join(error["traceback"])
    assert text.startswith("Traceback (most recent call last):")
    assert "line 2, in {main}\n    outer();" in text
    assert "in outer\n    function outer() { return inner(0); }" in text
    assert "in inner\n" in text
    assert "CellGate" not in text and "Command line code" not in text
    assert error["traceback"][-1] == "DivisionByZeroError: Division by zero"
    assert [r["t"] for r in cell.records] == ["error", "done"]
    assert cell.done == {"t": "done", "user_expressions": {}}
    assert plain(driver.run("[isset($before_error), isset($after_error)]")) == \
        "array (\n  0 => true,\n  1 => false,\n)"


@pytest.mark.parametrize("code, ename", [
    ("throw new RuntimeException('custom');", "RuntimeException"),
    ("undefined_function_xyz();", "Error"),
    ("strlen();", "ArgumentCountError"),
    ("function typed(int $x) {} typed('no');", "TypeError"),
])
def test_error_classes(driver, code, ename):
    assert driver.run(code).error["ename"] == ename


def test_syntax_error(driver):
    cell = driver.run("$ok_line = 1;\n$x = (1 + ;\n")
    assert cell.error["ename"] == "ParseError"
    assert "line 2" in "\n".join(cell.error["traceback"])
    assert plain(driver.run("isset($ok_line)")) == "false"


def test_redeclaring_a_function_is_an_error_not_a_crash(driver):
    ok(driver.run("function once() { return 1; }"))
    cell = driver.run("function once() { return 2; }")
    assert cell.error["ename"] == "Error" and "Cannot redeclare function once" in cell.error["evalue"]
    assert driver.proc.poll() is None
    assert plain(driver.run("once()")) == "1"


def test_warnings_go_to_stderr(driver):
    cell = ok(driver.run('echo $undefined_variable_here;\necho "after\\n";'))
    assert cell.stderr.startswith("Warning: Undefined variable $undefined_variable_here in <cell")
    assert cell.stdout == "after\n"
    assert ok(driver.run("@$silenced;")).stderr == ""


def test_exit_and_die_end_the_cell_not_the_driver(driver):
    cell = driver.run("exit(3);")
    assert cell.error["ename"] == "SystemExit" and cell.error["evalue"] == "3"
    cell = driver.run("false or die('dying words');")
    assert cell.error["ename"] == "SystemExit" and cell.stdout == "dying words"
    assert driver.proc.poll() is None


def test_fatal_error_is_reported_before_the_driver_dies(fresh):
    cell = fresh.run("ini_set('memory_limit', '16M');\n$a = str_repeat('x', 64 << 20);")
    assert cell.error["ename"] == "FatalError"
    assert "memory size" in cell.error["evalue"]


# ---------------------------------------------------------------------------
# streams

def test_stdout_stderr_order_is_exact(driver):
    cell = ok(driver.run('for ($i = 0; $i < 5; $i++) {\n  echo "out $i\\n";\n'
                         '  fwrite(STDERR, "err $i\\n");\n}\nfwrite(STDOUT, "direct\\n");\n'
                         'print("printed\\n");'))
    streams = [(r["name"], r["text"]) for r in cell.of("stream")]
    expected = []
    for i in range(5):
        expected += [("stdout", "out %d\n" % i), ("stderr", "err %d\n" % i)]
    expected += [("stdout", "direct\nprinted\n")]
    assert streams == expected
    assert cell.raw_out == b"" and cell.raw_err == b""


def test_child_process_output(driver):
    # system()/passthru() pass the child's stdout through PHP's output layer
    # (so it is a stream record, in order); the child's stderr and the
    # output of proc_open children inheriting fd 1 arrive on the raw pipes.
    cell = ok(driver.run('echo "php first\\n";\nsystem("echo hi; echo oops >&2");\n'
                         '$p = proc_open("echo inherited", [], $pipes);\nproc_close($p);\n'
                         'echo "php last\\n";'))
    assert cell.stdout == "php first\nhi\nphp last\n"
    assert cell.raw_err == b"oops\n"
    assert cell.raw_out == b"inherited\n"


def test_output_is_sent_while_the_cell_runs(fresh):
    fresh.start('echo "one\\n"; sleep(2);')
    wait_for_stdout(fresh, "one", timeout=1.0)
    ok(fresh.finish())


def test_large_output_arrives_complete(driver):
    started = time.perf_counter()
    cell = ok(driver.run('for ($i = 0; $i < 50000; $i++) { echo str_repeat("x", 99), "\\n"; }',
                         timeout=60))
    elapsed = time.perf_counter() - started
    assert cell.stdout == ("x" * 99 + "\n") * 50_000  # 5 MB
    assert max(len(r["text"]) for r in cell.of("stream")) <= 1 << 20
    print("\n5 MB through the php driver: %.3f s" % elapsed)


def test_invalid_utf8_is_replaced(driver):
    cell = ok(driver.run('echo "caf\\xc3\\xa9 \\xff end\\n";'))
    assert cell.stdout == "café \ufffd end\n"


# ---------------------------------------------------------------------------
# interrupts

def test_interrupt_busy_loop_keeps_state(fresh):
    ok(fresh.run("$kept = 'yes';"))
    fresh.start('echo "spinning\\n";\n$n = 0;\nwhile (true) { $n++; }')
    wait_for_stdout(fresh, "spinning")
    time.sleep(0.2)  # into the loop: the traceback names its line
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert "while (true)" in "\n".join(cell.error["traceback"])
    assert plain(fresh.run("$kept")) == "'yes'"
    assert plain(fresh.run("$n > 0")) == "true"


def test_interrupt_sleep_keeps_state(fresh):
    ok(fresh.run("$kept = 'still';"))
    fresh.start('echo "sleeping\\n"; sleep(30); $after = 1;')
    wait_for_stdout(fresh, "sleeping")
    time.sleep(0.1)
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert plain(fresh.run("[$kept, isset($after)]")) == "array (\n  0 => 'still',\n  1 => false,\n)"


def test_interrupt_during_a_flood_of_echo(fresh):
    for _ in range(5):
        fresh.start('echo "go\\n";\nwhile (true) { echo str_repeat("z", 100); }')
        wait_for_stdout(fresh, "go")
        fresh.interrupt()
        cell = fresh.finish(timeout=5.0)
        assert cell.error["ename"] == "KeyboardInterrupt"
        assert set(cell.stdout) <= set("go\nz")
        # the output buffer still works afterwards
        assert ok(fresh.run('echo "fine\\n";')).stdout == "fine\n"


def test_sigint_between_cells_is_ignored(fresh):
    harness.sigint_between_cells(fresh)
    assert plain(fresh.run("'alive'")) == "'alive'"


# ---------------------------------------------------------------------------
# input

def test_input_readline_and_fgets_with_allow_stdin(driver):
    driver.start('echo "asking\\n";\n$a = input("Name? ");\n$b = readline("Again? ");\n'
                 '$c = trim(fgets(STDIN));\necho "$a $b $c\\n";', allow_stdin=True)
    records = []
    for value in ("Ada", "Bob", "Cy"):
        while not records or records[-1]["t"] != "input":
            records.append(driver.recv())
        driver.send(t="input_reply", value=value)
        records.append(driver.recv())
    assert records[0] == {"t": "stream", "name": "stdout", "text": "asking\n"}
    prompts = [r["prompt"] for r in records if r["t"] == "input"]
    assert prompts == ["Name? ", "Again? ", ""]
    cell = ok(driver.finish())
    assert (records[-1].get("text", "") + cell.stdout) == "Ada Bob Cy\n"


def test_input_without_allow_stdin(driver):
    cell = driver.run("$line = input('x');", allow_stdin=False)
    assert cell.error["ename"] == "StdinNotImplementedError"
    assert "allow_stdin is false" in cell.error["evalue"]
    assert not cell.of("input")
    assert driver.run("readline();").error["ename"] == "StdinNotImplementedError"


def test_interrupt_during_input(fresh):
    harness.interrupt_during_input(fresh, "$answer = input('wait: ');", "KeyboardInterrupt")
    assert plain(fresh.run("isset($answer)")) == "false"


# ---------------------------------------------------------------------------
# user_expressions, complete, inspect, is_complete

def test_user_expressions(driver):
    cell = ok(driver.run("$ue = 21;", user_expressions={
        "double": "$ue * 2", "bad": "intdiv(1, 0)"}))
    exprs = cell.done["user_expressions"]
    assert exprs["double"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["ename"] == "DivisionByZeroError"
    cell = driver.run("intdiv(1, 0);", user_expressions={"double": "$ue * 2"})
    assert cell.done == {"t": "done", "user_expressions": {}}


def test_complete(driver):
    ok(driver.run("$completion_target_1 = 1; $completion_target_2 = 2;\n"
                  "function completion_func() {}\nclass CompletionClass { public $prop = 1;"
                  " function meth() {} }\n$cobj = new CompletionClass();"))
    reply = driver.request("complete", code="echo $completion_t", cursor_pos=18)
    assert reply["matches"] == ["$completion_target_1", "$completion_target_2"]
    assert reply["cursor_start"] == 5 and reply["cursor_end"] == 18
    reply = driver.request("complete", code="completion_f", cursor_pos=12)
    assert reply["matches"] == ["completion_func"] and reply["cursor_start"] == 0
    assert "CompletionClass" in driver.request("complete", code="new Completion",
                                               cursor_pos=14)["matches"]
    assert "str_repeat" in driver.request("complete", code="str_rep", cursor_pos=7)["matches"]
    reply = driver.request("complete", code="$cobj->", cursor_pos=7)
    assert reply["matches"] == ["meth", "prop"] and reply["cursor_start"] == 7
    code = "$s = 'é😀'; $completion_target_"
    reply = driver.request("complete", code=code, cursor_pos=len(code))
    assert reply["cursor_start"] == code.index("$completion")  # code points
    assert not any("__cg_" in m for m in driver.request("complete", code="$",
                                                         cursor_pos=1)["matches"])


def test_inspect(driver):
    ok(driver.run("$inspected = [1];"))
    reply = driver.request("inspect", code="$inspected", cursor_pos=3, detail_level=0)
    assert reply["found"] is True and "array (" in reply["data"]["text/plain"]
    reply = driver.request("inspect", code="str_repeat(", cursor_pos=5, detail_level=0)
    assert reply["found"] is True and "string $string" in reply["data"]["text/plain"]
    assert driver.request("inspect", code="nothing_here", cursor_pos=3,
                          detail_level=0)["found"] is False


@pytest.mark.parametrize("code, status, indent", [
    ("echo 1;", "complete", None),
    ("$x = 1", "complete", None),
    ("", "complete", None),
    ("if (true) {", "incomplete", "    "),
    ("function f() {\n  foreach ($a as $b) {", "incomplete", "        "),
    ("$a = [1,", "incomplete", "    "),
    ("echo 'abc", "incomplete", ""),
    ("$t = <<<EOT\nabc", "incomplete", ""),
    ("/* comment", "incomplete", ""),
    ("1 + * 2", "invalid", None),
    (")", "invalid", None),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)


# ---------------------------------------------------------------------------
# the request loop

def test_end_of_file_exits_0(fresh):
    ok(fresh.run("1;"))
    fresh.sock.shutdown(socket.SHUT_WR)
    assert fresh.proc.wait(TIMEOUT) == 0


def test_unknown_requests_are_ignored(driver):
    driver.send(t="frobnicate")
    driver.send(t="input_reply", value="nobody asked")
    assert plain(driver.run("'next'")) == "'next'"
