"""Tests of the Python driver's IPython magics: %time, %timeit and their
cell forms, %%writefile, %%capture, the display cell magics (%%html,
%%markdown, %%svg, %%latex) and unknown magics.

The driver runs standalone, as in test_python_driver.py (the kernel sends a
cell whose first line names a language, such as %%bash, to that language's
runtime instead; tests/test_rich.py covers the magics through a client).

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_python_magics.py
"""

import re
import time

import pytest

from harness import ok, wait_for_stdout
import harness
from test_python_driver import Driver

driver, fresh = harness.fixtures(Driver)

TIME = r"\d+(?:\.\d+)? (?:s|ms|µs|ns)"  # a duration as IPython writes it
CPU_AND_WALL = r"CPU times: user %s, sys: %s, total: %s\nWall time: %s\n" % ((TIME,) * 4)
PER_LOOP = (r"%s ± %s per loop \(mean ± std\. dev\. of (\d+) runs?, "
            r"(\d{1,3}(?:,\d{3})*) loops? each\)\n" % (TIME, TIME))


def traceback(cell):
    """The cell's error traceback, each "<cell N>" written "<cell>"."""
    return [re.sub(r"<cell \d+>", "<cell>", line) for line in cell.error["traceback"]]


def usage_error(cell):
    assert cell.error["ename"] == "UsageError"
    assert cell.error["traceback"] == ["UsageError: " + cell.error["evalue"]]
    return cell.error["evalue"]


# ---------------------------------------------------------------------------
# %time and %%time

def test_time_prints_cpu_and_wall_time_and_returns_the_value(driver):
    cell = ok(driver.run("%time sum(range(10))"))
    assert re.fullmatch(CPU_AND_WALL, cell.stdout), cell.stdout
    assert cell.value == "45"
    cell = ok(driver.run("%%time\ntm_x = 20\ntm_x + 22"))
    assert re.fullmatch(CPU_AND_WALL, cell.stdout), cell.stdout
    assert cell.value == "42"
    cell = ok(driver.run("%time tm_y = 5\ntm_t = %time 6 * 7\ntm_y, tm_t"))
    assert re.fullmatch(CPU_AND_WALL * 2, cell.stdout), cell.stdout
    assert cell.value == "(5, 42)"
    assert ok(driver.run("%%time\ntm_x;")).value is None  # `;` hides it, as in a cell


def test_time_units(driver):
    cell = ok(driver.run("import time\n%time time.sleep(0.25)"))
    wall = re.search(r"Wall time: (.*)\n", cell.stdout).group(1)
    assert re.fullmatch(r"\d{3} ms", wall), wall  # 250 ms or a little more
    # a TimeitResult of one loop shows a time as %time does
    cell = ok(driver.run("import cellgate\n"
                         "[str(cellgate.TimeitResult(1, 1, t, t, [t], 0, 3)).split(' ± ')[0]\n"
                         " for t in (0, 5e-9, 0.0009999, 1.5e-3, 2.0, 59.4, 3725.5, 90061)]"))
    assert cell.value == str(["0 ns", "5 ns", "1 ms", "1.5 ms", "2 s", "59.4 s",
                              "1h 2min 5s", "1d 1h 1min 1s"])


def test_time_errors_propagate_with_the_users_lines(driver):
    cell = driver.run("\n\n%%time\ntm_a = 1\n1/0")
    assert cell.error["ename"] == "ZeroDivisionError"
    assert cell.stdout == ""  # like IPython: no times for a failed statement
    assert traceback(cell)[-2:] == [
        '  File "<cell>", line 5, in <module>\n    1/0\n    ~^~',
        "ZeroDivisionError: division by zero"]
    cell = driver.run("%time 1/0")
    # the carets point into the line as written
    assert traceback(cell)[-2] == (
        '  File "<cell>", line 1, in <module>\n    %time 1/0\n          ~^~')
    assert usage_error(driver.run("%%time 1\n2")) == "Can't use statement directly after '%%time'!"


def test_time_body_takes_shell_lines_and_nested_cell_magics(driver):
    cell = ok(driver.run("%%time\n%%capture tm_cap\nprint('hidden')\n!echo hidden too"))
    assert re.fullmatch(CPU_AND_WALL, cell.stdout), cell.stdout
    assert ok(driver.run("tm_cap.stdout")).value == repr("hidden\nhidden too\n")


def test_time_in_a_function_sees_its_variables(driver):
    cell = ok(driver.run("def tm_f(a):\n    b = %time a * 2\n    return b\ntm_f(21)"))
    assert cell.value == "42"


# ---------------------------------------------------------------------------
# %timeit and %%timeit

def test_timeit_line_format(driver):
    cell = ok(driver.run("%timeit -n 10 -r 2 sum(range(10))"))
    match = re.fullmatch(PER_LOOP, cell.stdout)
    assert match, cell.stdout
    assert match.groups() == ("2", "10")
    assert cell.result is None
    cell = ok(driver.run("%timeit -n1 -r1 pass"))
    assert re.fullmatch(r"%s ± %s per loop \(mean ± std\. dev\. of 1 run, 1 loop each\)\n"
                        % (TIME, TIME), cell.stdout), cell.stdout


def test_timeit_chooses_the_number_of_loops(driver):
    started = time.monotonic()
    cell = ok(driver.run("%timeit -r 1 ti_total = sum(range(100))"))
    took = time.monotonic() - started
    match = re.fullmatch(PER_LOOP, cell.stdout)
    assert match, cell.stdout
    loops = int(match.group(2).replace(",", ""))
    assert loops >= 1000 and re.fullmatch(r"[125]0*", str(loops)), loops
    assert 0.4 <= took < 5  # ranging and the run each take 0.2 s or more
    assert ok(driver.run("'ti_total' in globals()")).value == "False"  # a local of the timer


def test_timeit_result_object(driver):
    cell = ok(driver.run("ti_r = %timeit -o -q -n 5 -r 3 sum(range(10))\n"
                         "(ti_r.loops, ti_r.repeat, len(ti_r.all_runs), len(ti_r.timings),\n"
                         " ti_r.best <= ti_r.average <= ti_r.worst, ti_r.stdev >= 0,\n"
                         " ti_r.best == min(ti_r.all_runs) / 5, type(ti_r).__module__)"))
    assert cell.stdout == ""  # -q
    assert cell.value == "(5, 3, 3, 3, True, True, True, 'cellgate')"
    cell = ok(driver.run("%timeit -o -n 2 -r 2 pass"))
    assert re.fullmatch(PER_LOOP, cell.stdout)
    assert cell.value == "<TimeitResult : %s>" % cell.stdout[:-1]


def test_cell_timeit_setup_and_namespace(driver):
    ok(driver.run("ti_calls, ti_loops, ti_base = [], [], 3"))
    cell = ok(driver.run("%%timeit -n 4 -r 3 ti_calls.append(1); ti_local = ti_base\n"
                         "ti_loops.append(ti_local)"))
    assert re.fullmatch(PER_LOOP, cell.stdout).groups() == ("3", "4")
    cell = ok(driver.run("len(ti_calls), len(ti_loops), set(ti_loops), 'ti_local' in globals()"))
    assert cell.value == "(3, 12, {3}, False)"  # setup once per run
    cell = ok(driver.run("def ti_f(k):\n    %timeit -q -n 1 -r 1 ti_loops.append(k)\nti_f(7)\n"
                         "ti_loops[-1]"))
    assert cell.value == "7"


def test_timeit_errors(driver):
    assert usage_error(driver.run("%timeit -x 1")).startswith("%timeit: option -x not recognized")
    assert "-n takes a whole number" in usage_error(driver.run("%timeit -n many 1"))
    assert "-r takes a whole number of at least 1" in usage_error(driver.run("%timeit -r 0 1"))
    assert "needs a value" in usage_error(driver.run("%timeit -n"))
    cell = ok(driver.run("%timeit"))
    assert cell.records == [cell.done]
    cell = driver.run("%timeit -n 1 -r 1 ti_no_such_name")
    assert cell.error["ename"] == "NameError"
    assert traceback(cell)[-2] == (
        '  File "<cell>", line 1, in inner\n'
        "    %timeit -n 1 -r 1 ti_no_such_name\n"
        "                      ^^^^^^^^^^^^^^^")
    cell = ok(driver.run("%timeit -n 1 -r 1 -1"))  # not an option: code
    assert re.fullmatch(PER_LOOP, cell.stdout)


def test_interrupt_stops_timeit(fresh):
    fresh.start("import time, gc\nprint('go', flush=True)\n%timeit time.sleep(0.05)")
    wait_for_stdout(fresh, "go")
    time.sleep(0.3)
    cell = harness.interrupt_cell(fresh, timeout=2.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert ok(fresh.run("gc.isenabled()")).value == "True"  # timing turned it off


# ---------------------------------------------------------------------------
# %%writefile

def test_writefile(driver, tmp_path):
    path = tmp_path / "out file.txt"
    ok(driver.run("wf_dir = %r" % str(tmp_path)))
    cell = ok(driver.run('%%writefile "{wf_dir}/out file.txt"\nhello\nworld'))
    assert cell.stdout == "Writing %s\n" % path
    assert path.read_text() == "hello\nworld\n"  # as in IPython: ends with a newline
    cell = ok(driver.run('%%writefile $wf_dir/"out file.txt"\nagain\n'))
    assert cell.stdout == "Overwriting %s\n" % path
    cell = ok(driver.run('%%writefile -a "{wf_dir}/out file.txt"\nmore  \n\n'))
    assert cell.stdout == "Appending to %s\n" % path
    assert path.read_text() == "again\nmore  \n\n"
    assert usage_error(driver.run("%%writefile\nx")) == "usage: %%writefile [-a] FILE"
    assert "unrecognized argument: -x" in usage_error(driver.run("%%writefile -x f\nx"))
    cell = driver.run("%%writefile /no/such/dir/f\nx")
    assert cell.error["ename"] == "FileNotFoundError"


def test_script_output_keeps_its_place_among_records(driver):
    cell = ok(driver.run("%%time\nprint('a')\n!echo b\nprint('c')"))
    assert cell.raw_out == b"b\n"
    assert cell.stdout.startswith("a\nc\nCPU times")
    streams = [r for r in cell.records if r["t"] == "stream"]
    assert streams[0]["text"] == "a\n"  # sent before the command ran


# ---------------------------------------------------------------------------
# %%capture

def test_capture(driver):
    cell = ok(driver.run("%%capture cp\nimport sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                         "!echo shell; echo shell err >&2\ndisplay({'text/html': '<b>x</b>'},"
                         " raw=True)\n6 * 7"))
    assert cell.records == [cell.done] and cell.raw_out == cell.raw_err == b""
    cell = ok(driver.run("(cp.stdout, cp.stderr, [o.data for o in cp.outputs],\n"
                         " str(cp) == cp.stdout)"))
    assert cell.value == repr(("out\nshell\n", "err\nshell err\n",
                               [{"text/html": "<b>x</b>"}, {"text/plain": "42"}], True))
    cell = ok(driver.run("cp.show()"))
    assert cell.stdout == "out\nshell\n" and cell.stderr == "err\nshell err\n"
    assert [r["data"] for r in cell.of("display")] == [{"text/html": "<b>x</b>"},
                                                       {"text/plain": "42"}]
    cell = ok(driver.run("cp.outputs[0]"))  # a captured output shows as itself
    assert cell.result["data"]["text/html"] == "<b>x</b>"


def test_capture_options_and_errors(driver):
    cell = ok(driver.run("%%capture --no-stderr --no-display cq\nimport sys\nprint('o')\n"
                         "print('e', file=sys.stderr)\ndisplay(1)\n2"))
    assert cell.stderr == "e\n" and cell.of("display")[0]["data"] == {"text/plain": "1"}
    assert cell.value == "2"  # not captured: the cell's value
    assert ok(driver.run("cq.stdout, cq.stderr, cq.outputs")).value == "('o\\n', '', [])"
    cell = driver.run("%%capture cr\nprint('partial')\nimport cellgate\n"
                      "cellgate.clear_output()\ndisplay(3)\n1/0")
    assert cell.error["ename"] == "ZeroDivisionError" and cell.stdout == ""
    assert ok(driver.run("cr.stdout, len(cr.outputs)")).value == "('partial\\n', 1)"
    assert "unrecognized arguments: b" in usage_error(driver.run("%%capture a b\n1"))
    cell = ok(driver.run("%%capture\nprint('gone')"))
    assert cell.records == [cell.done]


# ---------------------------------------------------------------------------
# display cell magics

@pytest.mark.parametrize("magic, mime, kind", [
    ("html", "text/html", "HTML"),
    ("markdown", "text/markdown", "Markdown"),
    ("svg", "image/svg+xml", "SVG"),
    ("latex", "text/latex", "Latex"),
])
def test_display_cell_magics(driver, magic, mime, kind):
    cell = ok(driver.run("%%" + magic + "\nsome {body}\n$x"))
    assert cell.records == [
        {"t": "display", "metadata": {},
         "data": {mime: "some {body}\n$x\n",
                  "text/plain": "<IPython.core.display.%s object>" % kind}},
        cell.done]


def test_html_isolated(driver):
    cell = ok(driver.run("%%html --isolated\n<p>frame</p>"))
    assert cell.of("display")[0]["metadata"] == {"text/html": {"isolated": True}}
    cell = driver.run("%%svg --isolated\n<svg/>")
    assert "unrecognized argument: --isolated" in usage_error(cell)


# ---------------------------------------------------------------------------
# what is and is not a cell magic

def test_unknown_magics(driver):
    assert usage_error(driver.run("%%nosuch\nx")) == "Cell magic `%%nosuch` not found."
    assert usage_error(driver.run("%%cd\nx")) == (
        "Cell magic `%%cd` not found (But line magic `%cd` exists, did you mean that instead?).")
    assert usage_error(driver.run("%writefile f")) == (
        "Line magic function `%writefile` not found (But cell magic `%%writefile` exists, "
        "did you mean that instead?).")
    assert usage_error(driver.run("x = 1\n%%time\nx")) == (
        "Line magic function `%%time` not found (a cell magic must start the cell).")


def test_cell_magic_after_blank_lines_and_indented(driver):
    cell = ok(driver.run("\n  \n%%html\n<i>i</i>"))
    assert cell.of("display")[0]["data"]["text/html"] == "<i>i</i>\n"
    cell = ok(driver.run("    %%time\n    cm_v = 3\n    cm_v"))  # pasted: indent removed
    assert cell.value == "3"


def test_cell_magic_by_hand(driver):
    cell = driver.run("import cellgate\ncellgate.cell_magic('time', '', 'cm_w = 1\\n1/0\\n')")
    assert traceback(cell)[-2] == '  File "<%%time>", line 2, in <module>\n    1/0\n    ~^~'
    cell = ok(driver.run("cellgate.magic('time', 'cm_w + 1')"))
    assert cell.value == "2"


@pytest.mark.parametrize("code, status, indent", [
    ("%%time", "incomplete", ""),
    ("%%time\nx = 1", "incomplete", ""),
    ("%%time\nx = 1\n", "incomplete", ""),
    ("%%time\nfor i in x:\n    y", "incomplete", "    "),
    ("%%time\nx = 1\n\n", "complete", None),
    ("%time x = 1", "complete", None),
    ("%timeit -n 1 x", "complete", None),
])
def test_is_complete(driver, code, status, indent):
    harness.check_is_complete(driver, code, status, indent)
