"""Tests of cellgate's Perl driver (kernel/drivers/perl.pl), standalone.

The driver is started as the kernel starts it: `/usr/bin/perl -e <source>`
in a new session with a minimal environment, fd 3 one end of an AF_UNIX
socketpair, fd 1/2 pipes, fd 0 /dev/null, a temporary directory as cwd.
The tests speak the protocol of kernel/drivers/PROTOCOL.md directly, through
the shared harness (tests/drivers/harness.py).  Every wait is bounded.

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_perl_driver.py --noconftest
"""

import socket
import subprocess
import tempfile
import time

import pytest

import harness
from harness import TIMEOUT, ok, wait_for_stdout

PERL = "/usr/bin/perl"
SOURCE = harness.driver_source("perl.pl")
ARGV = [PERL, "-e", SOURCE]


class Driver(harness.Driver):
    """The harness's protocol client, starting argv (perl by default) in a
    minimal environment with a new temporary directory as cwd and HOME."""

    def __init__(self, argv=ARGV):
        self.cwd = tempfile.mkdtemp(prefix="cellgate-driver-")
        super().__init__(argv, cwd=self.cwd, env={
            "HOME": self.cwd, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})


driver, fresh = harness.fixtures(Driver)


# ---------------------------------------------------------------------------
# start-up and state

def test_ready_and_version(driver):
    version = subprocess.run([PERL, "-e", 'printf "%vd", $^V'], capture_output=True,
                             text=True, timeout=TIMEOUT).stdout
    assert driver.ready == {"t": "ready", "language_version": version}
    assert driver.ready_after < 2.0
    print("\nperl driver ready after %.1f ms" % (driver.ready_after * 1000))


def test_state_persists_across_cells(driver):
    ok(driver.run("$glob = 20;\nour $declared = 1;\nmy $lex = 21;"))
    ok(driver.run("sub add_glob { return $_[0] + $glob }"))
    ok(driver.run("use List::Util qw(sum max);\nuse POSIX ();"))
    cell = ok(driver.run('print add_glob(22), " ", $declared, " ", $lex, " ",'
                         ' sum(1, 2, 3), " ", POSIX::floor(2.5), "\\n";'))
    assert cell.stdout == "42 1 21 6 2\n"
    assert cell.result is None  # Perl cells have no result


def test_top_level_my_becomes_global_but_nested_my_stays_lexical(driver):
    ok(driver.run("my @list;\npush @list, 1;\nmy ($p, $q) = (3, 4);\n"
                  "sub counter { my $n = 0; for my $i (1..3) { my $t = $i; $n += $t } $n }"))
    ok(driver.run("my @list;\npush @list, 2;"))  # re-running starts afresh, like `my`
    cell = ok(driver.run('print scalar(@list), " $list[0] $p $q ", counter(),'
                         ' " [", (defined $n ? "leak" : "ok"), "]\\n";'))
    assert cell.stdout == "1 2 3 4 6 [ok]\n"
    # strict works for those who ask for it
    ok(driver.run("use strict;\nmy $strict_ok = 5;\nprint $strict_ok;"))


# ---------------------------------------------------------------------------
# errors

def test_die_with_a_string(driver):
    ok(driver.run("sub inner { return 1 / $_[0] }\nsub outer { return inner(0) }"))
    cell = driver.run("$before_error = 1;\nouter();\n$after_error = 1;")
    error = cell.error
    assert error["ename"] == "Error"
    assert error["evalue"].startswith("Illegal division by zero at <cell")
    text = "\n".join(error["traceback"])
    assert text.startswith("Traceback (most recent call last):")
    assert "line 2, in main\n    outer();" in text
    assert "in main::outer\n    sub outer { return inner(0) }" in text
    assert "in main::inner" in text
    assert "-e" not in text and "CellGate" not in text  # no driver frames
    assert [r["t"] for r in cell.records] == ["error", "done"]
    assert cell.done == {"t": "done", "user_expressions": {}}
    cell = ok(driver.run('print defined $before_error ? 1 : 0, defined $after_error ? 1 : 0'))
    assert cell.stdout == "10"


def test_die_with_an_object(driver):
    code = ("package MyError; sub new { bless {msg => $_[1]}, $_[0] }\n"
            "sub message { $_[0]{msg} }\npackage main;\n"
            "die MyError->new('custom failure');")
    cell = driver.run(code)
    assert cell.error["ename"] == "MyError"
    assert cell.error["evalue"] == "custom failure"
    assert cell.error["traceback"][-1] == "MyError: custom failure"


def test_syntax_error(driver):
    cell = driver.run("$ok_line = 1;\nmy $x = (1 + ;\n")
    assert cell.error["ename"] == "SyntaxError"
    assert "syntax error at <cell" in cell.error["evalue"] and "line 2" in cell.error["evalue"]
    assert [r["t"] for r in cell.records] == ["error", "done"]
    assert ok(driver.run('print defined $ok_line ? "ran" : "not run"')).stdout == "not run"


def test_exit_ends_the_cell_not_the_driver(driver):
    cell = driver.run("exit 3;")
    assert cell.error["ename"] == "SystemExit" and cell.error["evalue"] == "3"
    assert driver.proc.poll() is None
    ok(driver.run("1;"))


# ---------------------------------------------------------------------------
# streams

def test_stdout_stderr_order_is_exact(driver):
    cell = ok(driver.run('for my $i (0..4) { print "out $i\\n"; print STDERR "err $i\\n" }\n'
                         'warn "warned\\n"; printf("%03d\\n", 7); say STDOUT "said" if 0;'))
    streams = [(r["name"], r["text"]) for r in cell.of("stream")]
    expected = []
    for i in range(5):
        expected += [("stdout", "out %d\n" % i), ("stderr", "err %d\n" % i)]
    expected += [("stderr", "warned\n"), ("stdout", "007\n")]
    assert streams == expected


def test_unicode_output_is_valid_utf8(driver):
    cell = ok(driver.run('print "caf\\x{e9} \\x{1F600}\\n"; print "bytes: \\xc3\\xa9\\n";'
                         ' print "latin1: \\xe9\\n";'))
    assert cell.stdout == "café 😀\nbytes: é\nlatin1: é\n"


def test_child_process_output_arrives_on_the_raw_pipe_before_done(driver):
    cell = ok(driver.run('print "perl first\\n";\nsystem("echo hi; echo oops >&2");\n'
                         'my $got = `echo captured`;\nprint "perl got $got";'))
    assert cell.raw_out == b"hi\n"
    assert cell.raw_err == b"oops\n"
    assert cell.stdout == "perl first\nperl got captured\n"


def test_buffered_text_goes_out_before_a_child_writes(fresh):
    # `print` then system(): the print must be on fd 3 (marked with a sync
    # if needed) before the child's bytes, even within the 50 ms window.
    fresh.pump_raw = False  # the child's bytes stay in the pipe, unread
    fresh.start('print "a\\n"; print "b\\n"; system("echo c"); print "d\\n";')
    records = []
    while not records or records[-1]["t"] != "done":
        records.append(fresh.recv(keep_sync=True))
    kinds = [r["t"] for r in records]
    first_sync = kinds.index("sync")
    before = "".join(r["text"] for r in records[:first_sync] if r["t"] == "stream")
    assert before == "a\nb\n"
    assert "".join(r["text"] for r in records[first_sync:] if r["t"] == "stream") == "d\n"
    fresh.pump_raw = True
    assert fresh.drain_raw() == (b"c\n", b"")


def test_autoflush_sends_output_while_the_cell_runs(fresh):
    fresh.start('$| = 1; print "one\\n"; print "two\\n"; sleep 2;')
    wait_for_stdout(fresh, "one", timeout=1.0)
    wait_for_stdout(fresh, "two", timeout=1.0)
    ok(fresh.finish())


def test_large_output_arrives_complete(driver):
    started = time.perf_counter()
    cell = ok(driver.run('print "x" x 99, "\\n" for 1 .. 50_000;', timeout=60))
    elapsed = time.perf_counter() - started
    assert cell.stdout == ("x" * 99 + "\n") * 50_000  # 5 MB
    assert max(len(r["text"]) for r in cell.of("stream")) <= 1 << 20
    print("\n5 MB through the perl driver: %.3f s" % elapsed)


def test_forked_child_writes_to_the_raw_pipe(driver):
    cell = ok(driver.run('my $pid = fork();\nif ($pid == 0) { print "from child\\n"; exit 0 }\n'
                         'waitpid($pid, 0);\nprint "from parent\\n";'))
    assert cell.raw_out == b"from child\n"
    assert cell.stdout == "from parent\n"


# ---------------------------------------------------------------------------
# interrupts

def test_interrupt_busy_loop_keeps_state(fresh):
    ok(fresh.run("$kept = 'yes';"))
    fresh.start('$| = 1; print "spinning\\n"; my $n = 0; while (1) { $n++ }')
    wait_for_stdout(fresh, "spinning")
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert "while (1)" in "\n".join(cell.error["traceback"])
    assert ok(fresh.run('print $kept')).stdout == "yes"


def test_interrupt_sleep_keeps_state(fresh):
    ok(fresh.run("$kept = 'still';"))
    fresh.start('print "sleeping\\n"; sleep 30; $after = 1;')
    wait_for_stdout(fresh, "sleeping")
    time.sleep(0.1)
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert ok(fresh.run('print $kept, defined $after ? " after" : ""')).stdout == "still"


def test_sigint_between_cells_is_ignored(fresh):
    harness.sigint_between_cells(fresh)
    assert ok(fresh.run('print "alive"')).stdout == "alive"


# ---------------------------------------------------------------------------
# input

def test_input_with_allow_stdin(driver):
    driver.start('print "Name? ";\nmy $name = <STDIN>;\nchomp $name;\nprint "hello $name\\n";',
                 allow_stdin=True)
    records = []
    while not records or records[-1]["t"] != "input":
        records.append(driver.recv())
    assert records == [{"t": "stream", "name": "stdout", "text": "Name? "},
                       {"t": "input", "prompt": "", "password": False}]
    driver.send(t="input_reply", value="Ada")
    assert ok(driver.finish()).stdout == "hello Ada\n"


def test_input_without_allow_stdin(driver):
    cell = driver.run("my $line = <STDIN>;", allow_stdin=False)
    assert cell.error["ename"] == "StdinNotImplementedError"
    assert "allow_stdin is false" in cell.error["evalue"]
    assert not cell.of("input")


def test_interrupt_during_input(fresh):
    harness.interrupt_during_input(fresh, "$answer = <STDIN>;", "KeyboardInterrupt")
    assert ok(fresh.run('print defined $answer ? "set" : "unset"')).stdout == "unset"


# ---------------------------------------------------------------------------
# user_expressions, complete, inspect, is_complete

def test_user_expressions(driver):
    cell = ok(driver.run("$ue = 21; @ue_list = (1, 2);",
                         user_expressions={"double": "$ue * 2", "list": "[@ue_list]",
                                           "bad": "die 'nope'"}))
    exprs = cell.done["user_expressions"]
    assert exprs["double"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert exprs["list"]["data"]["text/plain"].replace(" ", "").replace("\n", "") == "[1,2]"
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["ename"] == "Error"


def test_complete(driver):
    ok(driver.run("$completion_target_1 = 1; @completion_target_2 = (1);\n"
                  "sub completion_sub { 1 }"))
    reply = driver.request("complete", code="print $completion_t", cursor_pos=19)
    assert reply["matches"] == ["$completion_target_1"]
    assert reply["cursor_start"] == 6 and reply["cursor_end"] == 19
    reply = driver.request("complete", code="completion_s", cursor_pos=12)
    assert reply["matches"] == ["completion_sub"] and reply["cursor_start"] == 0
    reply = driver.request("complete", code="x; @completion_t", cursor_pos=16)
    assert reply["matches"] == ["@completion_target_2"]
    reply = driver.request("complete", code="List::Util::su", cursor_pos=14)
    assert "List::Util::sum" in reply["matches"]
    assert "printf" in driver.request("complete", code="prin", cursor_pos=4)["matches"]


def test_inspect(driver):
    ok(driver.run("$inspected = 'value';"))
    reply = driver.request("inspect", code="$inspected", cursor_pos=3, detail_level=0)
    assert reply["found"] is True and "value" in reply["data"]["text/plain"]
    assert driver.request("inspect", code="$nothing_here", cursor_pos=3,
                          detail_level=0)["found"] is False


@pytest.mark.parametrize("code, status, indent", [
    ("print 1;", "complete", None),
    ("", "complete", None),
    ("sub f {", "incomplete", "    "),
    ("if ($x) {\n    for (1..3) {", "incomplete", "        "),
    ("my %h = (a => [1,", "incomplete", "        "),
    ("print 'abc", "incomplete", ""),
    ('print "a\\"b', "incomplete", ""),
    ("my $t = <<EOT;\nline", "incomplete", ""),
    ("my $t = <<'EOT';\nline\nEOT\n", "complete", None),
    ("my @w = qw(a b", "incomplete", ""),
    ("my $s = q{a {nested} b};", "complete", None),
    ("print '}';  # } in a comment", "complete", None),
    ("$x =~ s{a}{b}g;", "complete", None),
    ("sub f { 1 } }", "invalid", None),
    ("print $#list;", "complete", None),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)


# ---------------------------------------------------------------------------
# the request loop

def test_end_of_file_exits_0(fresh):
    ok(fresh.run('END { print "bye\\n" }'))
    fresh.sock.shutdown(socket.SHUT_WR)
    assert fresh.proc.wait(TIMEOUT) == 0
    out, _ = fresh.drain_raw()
    assert out == b"bye\n"  # END output goes to the raw pipe


def test_unknown_requests_are_ignored(driver):
    driver.send(t="frobnicate")
    driver.send(t="input_reply", value="nobody asked")
    assert ok(driver.run('print "next"')).stdout == "next"
