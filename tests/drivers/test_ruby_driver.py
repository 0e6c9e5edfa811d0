"""Tests of cellgate's Ruby driver (kernel/drivers/ruby.rb), standalone.

The driver is started as the kernel starts it: `/usr/bin/ruby -e <source>`
in a new session, fd 3 one end of an AF_UNIX socketpair, fd 1/2 pipes, fd 0
/dev/null, a temporary directory as cwd and HOME.  The protocol harness
is tests/drivers/harness.py, the launch the one of test_javascript_driver.py.

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_ruby_driver.py --noconftest
"""

import os
import socket
import subprocess
import time

import pytest

import harness
from harness import TIMEOUT, ok, wait_for_stdout
from test_javascript_driver import launch

RUBY = "/usr/bin/ruby"
SOURCE = harness.driver_source("ruby.rb")

pytestmark = pytest.mark.skipif(not os.path.exists(RUBY), reason="no /usr/bin/ruby")


workdir, driver, fresh = harness.dir_fixtures(
    lambda cwd: launch([RUBY, "-e", SOURCE], cwd), "rbdriver")


# ---------------------------------------------------------------------------
# start-up, state, results

def test_ready(driver):
    version = subprocess.run([RUBY, "-e", "print RUBY_VERSION"], capture_output=True,
                             text=True, timeout=TIMEOUT).stdout
    assert driver.ready == {"t": "ready", "language_version": version}
    assert driver.ready_after < 2.0
    print("\nruby driver ready after %.0f ms" % (driver.ready_after * 1000))


def test_state_persists_across_cells(driver):
    ok(driver.run("sa = 20"))
    ok(driver.run("def sf(x) = x + sa_const\nSA_CONST = 1 rescue nil"))
    ok(driver.run("def sa_const = 2\nclass SK\n  def v = 20\nend"))
    assert ok(driver.run("sf(SK.new.v) + sa")).value == "42"


def test_require_relative_from_cwd(driver, workdir):
    (workdir / "cg_helper.rb").write_text("module CgHelper\n  def self.answer = 42\nend\n")
    ok(driver.run("require_relative 'cg_helper'"))
    assert ok(driver.run("CgHelper.answer")).value == "42"
    ok(driver.run("require 'set'"))
    assert ok(driver.run("Set[1, 1].size")).value == "1"


def test_results(driver):
    assert ok(driver.run("40 + 2")).result == {
        "t": "result", "data": {"text/plain": "42"}, "metadata": {}}
    assert ok(driver.run("{a: [1, 'x']}")).value == '{:a=>[1, "x"]}'
    assert ok(driver.run("nil")).result is None
    assert ok(driver.run("puts 'x'")).result is None
    assert ok(driver.run("false")).value == "false"
    assert ok(driver.run("1 + 1", silent=True)).result is None


def test_user_expressions(driver):
    ok(driver.run("ue = 21"))
    cell = ok(driver.run("ue *= 2", user_expressions={"v": "ue", "bad": "1/0"}))
    exprs = cell.done["user_expressions"]
    assert exprs["v"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["ename"] == "ZeroDivisionError"


# ---------------------------------------------------------------------------
# errors

def test_error_has_class_name_and_user_frames_only(driver):
    ok(driver.run("def inner = 1 / 0\ndef outer = inner"))
    cell = driver.run("ea = 1\nouter")
    error = cell.error
    assert error["ename"] == "ZeroDivisionError" and error["evalue"] == "divided by 0"
    text = "\n".join(error["traceback"])
    assert "in `inner'" in text and "in `outer'" in text and "<cell" in text
    assert "-e:" not in text
    assert [r["t"] for r in cell.records] == ["error", "done"]
    assert cell.done == {"t": "done", "user_expressions": {}}


def test_name_and_type_errors(driver):
    assert driver.run("no_such_name").error["ename"] == "NameError"
    assert driver.run("1 + 'a'").error["ename"] == "TypeError"
    cell = driver.run("exit 3")
    assert cell.error["ename"] == "SystemExit"
    assert driver.proc.poll() is None


def test_syntax_error(driver):
    cell = driver.run("a = 1\nb = 1 + * 2")
    assert cell.error["ename"] == "SyntaxError"
    text = "\n".join(cell.error["traceback"])
    assert "b = 1 + * 2" in text and ":2:" in text and "-e:" not in text


# ---------------------------------------------------------------------------
# streams

def test_stdout_stderr_order_is_exact(driver):
    cell = ok(driver.run("5.times do |i|\n  puts \"out #{i}\"\n  $stderr.puts \"err #{i}\"\nend\n"
                         "warn 'w'\nprint 'p'\nnil"))
    streams = [(r["name"], r["text"]) for r in cell.of("stream")]
    expected = []
    for i in range(5):
        expected += [("stdout", "out %d\n" % i), ("stderr", "err %d\n" % i)]
    expected[-1] = ("stderr", "err 4\nw\n")  # same stream in a row: one record
    assert streams == expected + [("stdout", "p")]


def test_child_process_output_on_raw_pipe_before_done(driver):
    cell = ok(driver.run("puts 'rb'\nsystem('echo hi; echo oops >&2')\nnil"))
    assert cell.raw_out == b"hi\n" and cell.raw_err == b"oops\n"
    assert cell.text("stdout") == "rb\n"


def test_output_shows_while_the_cell_runs(driver):
    driver.start("puts 1\nsleep 1.5")
    sent = time.monotonic()
    assert driver.recv(timeout=1.0) == {"t": "stream", "name": "stdout", "text": "1\n"}
    assert time.monotonic() - sent < 0.5
    ok(driver.finish())


def test_large_output_arrives_complete(driver):
    started = time.perf_counter()
    cell = ok(driver.run("line = 'x' * 99\n50_000.times { puts line }\nnil", timeout=60))
    elapsed = time.perf_counter() - started
    assert cell.text("stdout") == ("x" * 99 + "\n") * 50000
    print("\n5 MB through the ruby driver: %.3f s" % elapsed)


# ---------------------------------------------------------------------------
# interrupts

@pytest.mark.parametrize("code", [
    "puts 'started'\nloop {}",
    "puts 'started'\nsleep 30\nki_after = 1",
])
def test_interrupt_keeps_state(fresh, code):
    ok(fresh.run("ki_before = 'kept'"))
    fresh.start(code)
    wait_for_stdout(fresh, "started")
    time.sleep(0.2)
    cell = harness.interrupt_cell(fresh, timeout=1.0)
    assert cell.error["ename"] == "Interrupt"
    assert "-e:" not in "\n".join(cell.error["traceback"])
    # ki_after may exist (Ruby defines a parsed local as nil) but was never set
    assert ok(fresh.run("[ki_before, (defined?(ki_after) ? ki_after : nil)]")).value == '["kept", nil]'


def test_sigint_between_cells_is_ignored(fresh):
    ok(fresh.run("ig = 5"))
    harness.sigint_between_cells(fresh)
    assert ok(fresh.run("ig")).value == "5"


# ---------------------------------------------------------------------------
# input

def test_input_with_allow_stdin(driver):
    driver.start("puts 'asking'\nwho = gets.chomp\nname2 = $stdin.gets.chomp\nputs \"hello #{who} #{name2}\"",
                 allow_stdin=True)
    assert driver.recv() == {"t": "stream", "name": "stdout", "text": "asking\n"}
    assert driver.recv() == {"t": "input", "prompt": "", "password": False}
    driver.send(t="input_reply", value="Ada")
    assert driver.recv() == {"t": "input", "prompt": "", "password": False}
    driver.send(t="input_reply", value="L")
    assert ok(driver.finish()).text("stdout") == "hello Ada L\n"


def test_input_without_allow_stdin(driver):
    cell = driver.run("gets")
    assert "allow_stdin is false" in cell.error["evalue"]
    assert not cell.of("input")
    assert "allow_stdin is false" in driver.run("$stdin.gets").error["evalue"]


def test_interrupt_during_input(fresh):
    harness.interrupt_during_input(fresh, "answer = gets", "Interrupt")
    assert ok(fresh.run("answer")).result is None  # parsed, so defined, but nil


# ---------------------------------------------------------------------------
# is_complete, complete, inspect

@pytest.mark.parametrize("code, status, indent", [
    ("x = 1", "complete", None),
    ("", "complete", None),
    ("def f(x)", "incomplete", "  "),
    ("[1, 2].each do |i|", "incomplete", "  "),
    ("  if x", "incomplete", "    "),
    ("puts(1,", "incomplete", ""),
    ('s = "abc', "incomplete", ""),
    ("1 + * 2", "invalid", None),
    (")", "invalid", None),
    ("def f(x)\n  x\nend", "complete", None),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)


def test_complete(driver):
    ok(driver.run("completion_target_1 = 'str'\ncompletion_target_2 = 0"))
    reply = driver.request("complete", code="completion_tar", cursor_pos=14)
    assert reply["matches"] == ["completion_target_1", "completion_target_2"]
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == 14
    code = "x = 'é😀'; completion_target_1.upc"
    reply = driver.request("complete", code=code, cursor_pos=len(code))
    assert reply["matches"] == ["completion_target_1.upcase", "completion_target_1.upcase!"]
    assert reply["cursor_start"] == code.index("c")
    assert "puts" in driver.request("complete", code="pu", cursor_pos=2)["matches"]
    assert "Comparable" in driver.request("complete", code="Compa", cursor_pos=5)["matches"]
    assert "File.basename" in driver.request("complete", code="File.basen", cursor_pos=10)["matches"]


def test_inspect(driver):
    ok(driver.run("inspected = [1, 2]"))
    reply = driver.request("inspect", code="inspected", cursor_pos=3, detail_level=0)
    assert reply["found"] and "[1, 2]" in reply["data"]["text/plain"]
    assert driver.request("inspect", code="no_such_thing", cursor_pos=3,
                          detail_level=0)["found"] is False


def test_end_of_file_exits_0(fresh):
    ok(fresh.run("at_exit { puts 'bye' }"))
    fresh.sock.shutdown(socket.SHUT_WR)
    assert fresh.proc.wait(TIMEOUT) == 0
    assert fresh.drain_raw()[0] == b"bye\n"  # at_exit output goes to the raw pipe
