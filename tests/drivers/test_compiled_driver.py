"""Tests of cellgate's driver for compiled languages (kernel/drivers/compiled.py).

The driver is started as the kernel starts it (`/usr/bin/python3 -I -S -c
<source>`, new session, fd 3 a socketpair, fd 1/2 pipes, fd 0 /dev/null,
CELLGATE_LANGUAGE naming the language); the protocol client is the shared
harness (tests/drivers/harness.py).  Languages whose toolchain is missing
are skipped.

Every cell carries a fresh nonce so that its first run really compiles
(builds are cached by content under /tmp/cellgate-build, across runs).

Run: /usr/bin/python3 -m pytest -q tests/drivers/test_compiled_driver.py --noconftest
"""

import glob
import os
import re
import shutil
import tempfile
import time
import uuid

import pytest

import harness
from harness import TIMEOUT

PYTHON = "/usr/bin/python3"
SOURCE = harness.driver_source("compiled.py")

BUILD_ROOT = "/tmp/cellgate-build"
COMPILE_TIMEOUT = 180.0  # seconds: bound on a cell that compiles (kotlinc is slow)

# language -> (tools that must exist, hello world, compile error, exit 3)
PROGRAMS = {
    "c": (["/usr/bin/gcc"],
          '#include <stdio.h>\nint main(void) { puts("hello, world"); return 0; }\n',
          'int main(void) { return undefined_name; }\n',
          'int main(void) { return 3; }\n'),
    "c++": (["/usr/bin/g++"],
            '#include <iostream>\nint main() { std::cout << "hello, world\\n"; }\n',
            'int main() { return undefined_name; }\n',
            'int main() { return 3; }\n'),
    "go": (["/usr/bin/go"],
           'package main\nimport "fmt"\nfunc main() { fmt.Println("hello, world") }\n',
           'package main\nfunc main() { undefinedName() }\n',
           'package main\nimport "os"\nfunc main() { os.Exit(3) }\n'),
    "java": (["/usr/bin/javac", "/usr/bin/java"],
             'public class Hello {\n  public static void main(String[] a) {\n'
             '    System.out.println("hello, world");\n  }\n}\n',
             'public class Broken {\n  public static void main(String[] a) { undefinedName(); }\n}\n',
             'class Quits {\n  public static void main(String[] a) { System.exit(3); }\n}\n'),
    "kotlin": (["/usr/bin/kotlinc", "/usr/bin/java"],
               'fun main() {\n    println("hello, world")\n}\n',
               'fun main() {\n    undefinedName()\n}\n',
               'import kotlin.system.exitProcess\nfun main() {\n    exitProcess(3)\n}\n'),
    "rust": (["/usr/bin/rustc"],
             'fn main() {\n    println!("hello, world");\n}\n',
             'fn main() {\n    undefined_name();\n}\n',
             'fn main() {\n    std::process::exit(3);\n}\n'),
    "swift": (["/usr/bin/swiftc"],
              'print("hello, world")\n',
              'undefinedName()\n',
              'import Foundation\nexit(3)\n'),
}


def missing(language):
    tools = [t for t in PROGRAMS[language][0] if not os.access(t, os.X_OK)]
    return "toolchain not installed: " + ", ".join(tools) if tools else None


def fresh_code(code, language="c"):
    """code with a unique comment: its build is not in the cache yet."""
    return "// nonce %s\n%s" % (uuid.uuid4().hex, code)


class Driver(harness.Driver):
    """The harness's protocol client, starting compiled.py for one language."""

    def __init__(self, language, cwd, extra_env=None, python_options=()):
        # the production environment, nothing inherited from ours
        env = {"CELLGATE_LANGUAGE": language, "HOME": cwd,
               "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
        env.update(extra_env or {})
        super().__init__([PYTHON, "-I", "-S", *python_options, "-c", SOURCE], env=env, cwd=cwd)

    def run(self, code, timeout=COMPILE_TIMEOUT, **options):
        return super().run(code, timeout, **options)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="cellgate-test-") as d:
        yield d


_drivers = {}


@pytest.fixture(scope="module", autouse=True)
def _close_drivers():
    yield
    for d in _drivers.values():
        d.close()
    _drivers.clear()


def driver_for(language, workdir):
    """One shared driver per language (skipped when the toolchain is missing)."""
    reason = missing(language)
    if reason:
        pytest.skip(reason)
    if language not in _drivers or _drivers[language].proc.poll() is not None:
        _drivers[language] = Driver(language, workdir)
    return _drivers[language]


@pytest.fixture
def c(workdir):
    return driver_for("c", workdir)


@pytest.fixture
def fresh_c(workdir):
    if missing("c"):
        pytest.skip(missing("c"))
    d = Driver("c", workdir)
    yield d
    if d.proc.poll() is None:
        d.close()


def ok(cell):
    assert cell.error is None, "\n".join(cell.error["traceback"])
    assert cell.of("stream") == []  # program output is raw, never a record
    return cell


def build_dir_of(nonce_code):
    """The finished build directory whose source is nonce_code."""
    nonce = nonce_code.split("\n", 1)[0]
    for path in glob.glob(BUILD_ROOT + "/*/*"):
        if os.path.basename(os.path.dirname(path)).find(".tmp") < 0 and \
                os.path.isfile(path) and not path.endswith((".ok", ".class", ".jar")):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    if f.read().startswith(nonce):
                        return os.path.dirname(path)
            except OSError:
                pass
    raise AssertionError("no build directory for " + nonce)


def tree_stat(directory):
    """(name, inode, mtime) of every file of a build: changes if it is rebuilt."""
    result = []
    for base, _, files in os.walk(directory):
        for name in files:
            st = os.stat(os.path.join(base, name))
            result.append((os.path.join(base, name), st.st_ino, st.st_mtime_ns))
    return sorted(result)


def wait_for_version_cache(language, timeout=60.0):
    """Until the driver's version cache for language is in place (its
    finished name: the file it writes first and renames does not count)."""
    cache = version_cache_file(language, PROGRAMS[language][0][0])
    deadline = time.monotonic() + timeout
    while not os.path.exists(cache):
        assert time.monotonic() < deadline, "the driver never cached its version"
        time.sleep(0.05)


MAX_BUILDS = 40  # finished builds the driver keeps (compiled.py's MAX_BUILDS)


def leave_room_for_builds(room=4):
    """Remove the oldest finished builds until `room` more fit under
    MAX_BUILDS, so that a driver idle for half a second has none to evict
    (an eviction changes BUILD_ROOT's mtime, which is how a test sees that
    nothing was rebuilt)."""
    try:
        builds = [e for e in os.scandir(BUILD_ROOT) if e.is_dir() and
                  len(e.name) == 32 and all(c in "0123456789abcdef" for c in e.name)]
    except FileNotFoundError:
        return
    builds.sort(key=lambda e: e.stat().st_mtime)
    for entry in builds[:max(0, len(builds) - (MAX_BUILDS - room))]:
        shutil.rmtree(entry.path, ignore_errors=True)


# ---------------------------------------------------------------------------
# every language

ALL = sorted(PROGRAMS)


def test_ready_comes_fast(workdir):
    if missing("c"):
        pytest.skip(missing("c"))
    d = Driver("c", workdir)
    try:
        assert d.ready["t"] == "ready" and "language_version" in d.ready
        assert d.ready_after < 1.0  # target ~50 ms; loose for loaded machines
    finally:
        assert d.close() == 0  # EOF on fd 3: exit 0


VERSION = re.compile(r"\d+\.\d+")  # what a toolchain's version starts with


def version_cache_file(language, tool):
    """Where the driver caches the version of tool (see version_cache_path)."""
    st = os.stat(tool)
    return "%s/version-%s-%d-%d" % (BUILD_ROOT, language, st.st_ino, int(st.st_mtime))


@pytest.mark.parametrize("language", ALL)
def test_ready_never_names_the_language_as_its_version(language, workdir):
    # Unknown (no cache yet, or a cache that holds no version number), the
    # version is null and the kernel falls back to the kernelspec's; known,
    # it is the toolchain's.  Never "c", "go", "java"...
    reason = missing(language)
    if reason:
        pytest.skip(reason)
    cache = version_cache_file(language, PROGRAMS[language][0][0])
    for junk in (None, language, "", "1 or 2"):
        if junk is None:
            if os.path.exists(cache):
                os.unlink(cache)
        else:
            os.makedirs(BUILD_ROOT, exist_ok=True)
            with open(cache, "w") as f:
                f.write(junk)
        d = Driver(language, workdir)
        try:
            assert d.ready["language_version"] is None, (junk, d.ready)
        finally:
            d.close()
        if os.path.exists(cache):
            os.unlink(cache)
    # The first driver's probe caches the version: the next one sends it.
    d = Driver(language, workdir)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(cache):
            assert time.monotonic() < deadline, "the driver never cached its version"
            time.sleep(0.05)
    finally:
        d.close()
    d = Driver(language, workdir)
    try:
        version = d.ready["language_version"]
        assert version and VERSION.match(version), d.ready
    finally:
        d.close()


@pytest.mark.parametrize("language", ALL)
def test_hello_world_then_cached(language, workdir):
    leave_room_for_builds()  # else a slow test lets the idle driver evict one
    d = driver_for(language, workdir)
    code = fresh_code(PROGRAMS[language][1])
    started = time.perf_counter()
    first = ok(d.run(code))
    first_time = time.perf_counter() - started
    assert first.raw_out == b"hello, world\n"
    wait_for_version_cache(language)  # its file would change BUILD_ROOT's mtime
    before = tree_stat(build_dir_of(code)), os.stat(BUILD_ROOT).st_mtime_ns
    started = time.perf_counter()
    second = ok(d.run(code))
    cached_time = time.perf_counter() - started
    assert second.raw_out == b"hello, world\n"
    assert second.raw_err == b""  # no warnings: nothing was compiled
    # A rebuild would make a temporary directory in BUILD_ROOT (its mtime
    # changes) even though the finished build it renames onto stays put.
    # (Flaky only if another driver builds in BUILD_ROOT at the same time.)
    # Nothing else changes it meanwhile: the version cache is in place and
    # the driver's idle eviction finds no build to remove.
    assert (tree_stat(build_dir_of(code)), os.stat(BUILD_ROOT).st_mtime_ns) == before
    print("\n%s: first run %.2f s, cached %.2f s" % (language, first_time, cached_time))


@pytest.mark.parametrize("language", ALL)
def test_compile_error_is_one_error_record(language, workdir):
    d = driver_for(language, workdir)
    cell = d.run(fresh_code(PROGRAMS[language][2]))
    assert cell.of("stream") == []
    assert cell.raw_out == b"" and cell.raw_err == b""  # diagnostics only in the record
    assert cell.error["ename"] == "CompileError"
    text = "\n".join(cell.error["traceback"])
    assert "undefined" in text.lower() or "cannot find" in text.lower(), text
    assert cell.error["evalue"] in [l.strip() for l in cell.error["traceback"]]
    assert [r["t"] for r in cell.records] == ["error", "done"]


@pytest.mark.parametrize("language", ALL)
def test_nonzero_exit_is_an_error(language, workdir):
    d = driver_for(language, workdir)
    cell = d.run(fresh_code(PROGRAMS[language][3]))
    assert cell.error["ename"] == "ExitStatus"
    assert cell.error["evalue"] == "exit status 3"


def test_java_file_is_named_after_the_public_class(workdir):
    d = driver_for("java", workdir)
    code = fresh_code('import java.util.*;\nclass Helper { static int two() { return 2; } }\n'
                      'public class Calc {\n  public static void main(String[] args) {\n'
                      '    System.out.println(Helper.two() + args.length);\n  }\n}\n')
    cell = ok(d.run("//% args: x y\n" + code))
    assert cell.raw_out == b"4\n"


# ---------------------------------------------------------------------------
# C: signals, directives, warnings, stdin, interrupt, large output

def test_segfault_names_the_signal(c):
    cell = c.run(fresh_code('int main(void) { volatile int *p = 0; return *p; }\n'))
    assert cell.error["ename"] == "ExitStatus"
    assert cell.error["evalue"] == "killed by signal 11 (SIGSEGV)"


def test_output_before_a_failure_comes_before_the_error(c):
    cell = c.run(fresh_code('#include <stdio.h>\n#include <stdlib.h>\n'
                            'int main(void) { puts("partial"); fflush(stdout); abort(); }\n'))
    assert cell.raw_out == b"partial\n"
    assert cell.error["evalue"] == "killed by signal 6 (SIGABRT)"


def test_directive_replaces_flags(c):
    body = ('#include <stdio.h>\nint main(void) {\n#ifdef __OPTIMIZE__\n puts("optimized");\n'
            '#endif\n printf("%d\\n", X);\n}\n')
    cell = ok(c.run("//% -O0 -DX=5\n" + fresh_code(body)))
    assert cell.raw_out == b"5\n"  # -O0 replaced the default -O2
    cell = ok(c.run("//% add: -DX=6\n" + fresh_code(body)))
    assert cell.raw_out == b"optimized\n6\n"  # add: keeps -O2


def test_directive_args(c):
    code = fresh_code('#include <stdio.h>\nint main(int argc, char **argv) {\n'
                      ' for (int i = 1; i < argc; i++) printf("[%s]", argv[i]);\n}\n')
    cell = ok(c.run("//% args: a 'b c'\n" + code))
    assert cell.raw_out == b"[a][b c]"
    directory = build_dir_of("//% args: a 'b c'\n" + code)
    cell = ok(c.run("//% args: z\n" + code))  # other arguments, same binary
    assert cell.raw_out == b"[z]"
    assert build_dir_of("//% args: a 'b c'\n" + code) == directory


def test_unknown_directive(c):
    cell = c.run("//% bogus: 1\nint main(void) { return 0; }\n")
    assert cell.error["ename"] == "DirectiveError"


def test_warnings_go_to_stderr_on_success(c):
    cell = ok(c.run(fresh_code('int main(void) { int unused; return 0; }\n')))
    assert b"warning" in cell.raw_err and b"unused" in cell.raw_err


def test_stdin_input_records(c):
    code = fresh_code('#include <stdio.h>\n#include <string.h>\nint main(void) {\n'
                      ' int n; char line[100];\n if (scanf("%d ", &n) != 1) return 1;\n'
                      ' if (!fgets(line, sizeof line, stdin)) return 2;\n'
                      ' line[strcspn(line, "\\n")] = 0;\n printf("%d:%s\\n", n * 2, line);\n}\n')
    c.run(code)  # compile first: the input waits below stay short
    c.start(code, allow_stdin=True)
    request = c.recv(TIMEOUT)
    assert request == {"t": "input", "prompt": "", "password": False}
    c.send(t="input_reply", value="21")
    request = c.recv(TIMEOUT)
    assert request["t"] == "input"
    c.send(t="input_reply", value="some text")
    cell = ok(c.finish(TIMEOUT))
    assert cell.raw_out == b"42:some text\n"
    assert [r["t"] for r in cell.records] == ["done"]


def test_stdin_of_a_child_process(c):
    # the reader is a grandchild (sh -> head): the whole tree is watched
    code = fresh_code('#include <stdlib.h>\nint main(void) { return system("head -n 1"); }\n')
    c.run(code)
    c.start(code, allow_stdin=True)
    assert c.recv(TIMEOUT)["t"] == "input"
    c.send(t="input_reply", value="from the grandchild")
    cell = ok(c.finish(TIMEOUT))
    assert cell.raw_out == b"from the grandchild\n"


def test_stdin_without_allow_stdin_is_eof(c):
    cell = ok(c.run(fresh_code('#include <stdio.h>\nint main(void) {\n'
                               ' printf("%d\\n", getchar() == EOF);\n}\n')))
    assert cell.raw_out == b"1\n"


def test_interrupt_infinite_loop(fresh_c):
    code = fresh_code('int main(void) { for (;;) ; }\n')
    ok(fresh_c.run("int main(void) { return 0; }\n"))
    fresh_c.start(code)
    time.sleep(1.0)  # compiled and running by now (gcc takes ~0.1 s)
    cell = harness.interrupt_cell(fresh_c, timeout=2.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert cell.error["evalue"] == "interrupted"
    assert fresh_c.proc.poll() is None  # the driver survived
    cell = ok(fresh_c.run('#include <stdio.h>\nint main(void) { puts("still here"); }\n'))
    assert cell.raw_out == b"still here\n"


def test_interrupt_a_program_that_ignores_sigint(fresh_c):
    fresh_c.start(fresh_code('#include <signal.h>\n#include <unistd.h>\n'
                             'int main(void) { signal(SIGINT, SIG_IGN); for (;;) pause(); }\n'))
    time.sleep(1.0)
    fresh_c.interrupt()
    cell = fresh_c.finish(2.0)
    assert cell.error["ename"] == "KeyboardInterrupt"


def test_interrupt_while_waiting_for_input(fresh_c):
    code = fresh_code('#include <stdio.h>\nint main(void) { char b[9]; return !fgets(b, 9, stdin); }\n')
    harness.interrupt_during_input(fresh_c, code, "KeyboardInterrupt", timeout=2.0,
                                   input_timeout=COMPILE_TIMEOUT)
    ok(fresh_c.run("int main(void) { return 0; }\n"))


def test_interrupt_during_compile(fresh_c):
    # the preprocessor expands 4^12 = 16M tokens: gcc is busy for a long while
    macros = "#define A0 x\n" + "".join(
        "#define A%d A%d A%d A%d A%d\n" % (i, i - 1, i - 1, i - 1, i - 1) for i in range(1, 13))
    fresh_c.start(fresh_code(macros + "int main(void) { int x = 0; return A12 - A12; }\n"))
    time.sleep(0.5)
    cell = harness.interrupt_cell(fresh_c, timeout=2.0)
    assert cell.error["ename"] == "KeyboardInterrupt"
    ok(fresh_c.run("int main(void) { return 0; }\n"))


def test_compile_timeout(workdir):
    if missing("c"):
        pytest.skip(missing("c"))
    d = Driver("c", workdir, {"CELLGATE_COMPILE_TIMEOUT": "0.5"})
    try:
        macros = "#define A0 x\n" + "".join(
            "#define A%d A%d A%d A%d A%d\n" % (i, i - 1, i - 1, i - 1, i - 1) for i in range(1, 13))
        started = time.monotonic()
        cell = d.run(fresh_code(macros + "int main(void) { int x = 0; return A12 - A12; }\n"),
                     timeout=5.0)
        assert time.monotonic() - started < 2.0
        assert cell.error["ename"] == "CompileError"
        assert "timeout" in cell.error["evalue"]
    finally:
        d.close()


def test_large_output_arrives_complete(c):
    cell = ok(c.run(fresh_code(
        '#include <stdio.h>\nint main(void) {\n'
        ' for (int i = 0; i < 100000; i++)\n'
        '  printf("%07d %040d\\n", i, 0);\n}\n'), timeout=60))
    assert len(cell.raw_out) == 100000 * 49  # 4.9 MB
    lines = cell.raw_out.split(b"\n")
    assert lines[99999] == b"%07d %040d" % (99999, 0)


def test_sync_comes_before_error_and_done(c):
    c.start(fresh_code("int main(void) { return 1; }\n"))
    kinds = []
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while not kinds or kinds[-1] != "done":
        kinds.append(c.recv(deadline - time.monotonic(), keep_sync=True)["t"])
    assert kinds == ["sync", "error", "done"]


def test_other_requests(c):
    assert c.request("is_complete", code="int main(")["status"] == "complete"
    reply = c.request("complete", code="pri", cursor_pos=3)
    assert reply["matches"] == [] and reply["cursor_start"] == reply["cursor_end"] == 3
    assert c.request("inspect", code="printf", cursor_pos=3, detail_level=0)["found"] is False
    cell = ok(c.run("int main(void) { return 0; }\n", user_expressions={"a": "1"}))
    assert cell.done["user_expressions"] == {}


def test_program_runs_in_the_drivers_cwd(c, workdir):
    cell = ok(c.run(fresh_code('#include <stdio.h>\n#include <unistd.h>\n'
                               'int main(void) { char b[4096]; puts(getcwd(b, sizeof b)); }\n')))
    assert cell.raw_out.decode().strip() == os.path.realpath(workdir)


def test_programs_get_default_signals_and_no_control_socket(c):
    # The driver (Python) ignores SIGPIPE and SIGXFSZ; the programs it
    # starts must not inherit that (as with subprocess's restore_signals),
    # nor any fd of the driver's beyond 0-2 (fd 3 is the kernel's socket).
    # Compilers are started the same way (spawn()).
    cell = ok(c.run(fresh_code(
        '#define _POSIX_C_SOURCE 200809L\n#include <signal.h>\n#include <stdio.h>\n#include <fcntl.h>\n'
        'int main(void) {\n struct sigaction a, b;\n'
        ' sigaction(SIGPIPE, 0, &a);\n sigaction(SIGXFSZ, 0, &b);\n'
        ' int open_fds = 0;\n for (int fd = 3; fd < 256; fd++) open_fds += fcntl(fd, F_GETFD) != -1;\n'
        ' printf("%d %d %d\\n", a.sa_handler == SIG_DFL, b.sa_handler == SIG_DFL, open_fds);\n}\n')))
    assert cell.raw_out == b"1 1 0\n"


def test_first_cell_of_a_fresh_driver_is_complete(workdir):
    # The request arrives before the driver has started (as a fresh kernel's
    # first cell does): the whole output, the error and done come, in order.
    if missing("c"):
        pytest.skip(missing("c"))
    d = Driver("c", workdir)
    try:
        cell = d.run(fresh_code('#include <stdio.h>\nint main(void) {\n'
                                ' for (int i = 0; i < 3000; i++) printf("line %d\\n", i);\n'
                                ' fprintf(stderr, "bye\\n");\n return 4;\n}\n'))
        assert cell.raw_out == b"".join(b"line %d\n" % i for i in range(3000))
        assert cell.raw_err == b"bye\n"
        assert cell.error["evalue"] == "exit status 4"
        assert [r["t"] for r in cell.records] == ["error", "done"]
    finally:
        d.close()


def test_version_probe_waits_for_an_idle_driver(workdir):
    # While cells keep coming the probe does not run (it would compete with
    # the compile); half a second after the last one it does.
    if missing("c"):
        pytest.skip(missing("c"))
    cache = version_cache_file("c", "/usr/bin/gcc")
    if os.path.exists(cache):
        os.unlink(cache)
    d = Driver("c", workdir)
    try:
        assert d.ready["language_version"] is None
        ok(d.run(fresh_code("int main(void) { return 0; }\n")))
        assert not os.path.exists(cache)
        wait_for_version_cache("c", timeout=30)
        assert VERSION.match(open(cache).read())
    finally:
        d.close()


def test_first_cell_imports_nothing_slow(workdir):
    # A fresh kernel's first cell waits for the driver's start-up: until that
    # cell is done, none of the modules that cost milliseconds each is
    # imported (subprocess, json's `re`, hashlib's OpenSSL, shutil, tempfile,
    # threading, signal's `enum`).  -X importtime lists every import on fd 2.
    if missing("c"):
        pytest.skip(missing("c"))
    d = Driver("c", workdir, python_options=("-X", "importtime"))
    try:
        cell = ok(d.run(fresh_code(PROGRAMS["c"][1])))
        assert cell.raw_out == b"hello, world\n"
        imported = {line.rsplit("|", 1)[1].strip() for line in
                    cell.raw_err.decode().splitlines() if line.startswith("import time:")}
        assert "_json" in imported  # the listing works
        slow = {"subprocess", "re", "json", "hashlib", "shutil", "tempfile", "threading",
                "enum", "signal", "shlex"}
        assert not imported & slow, imported & slow
    finally:
        d.close()


def test_old_builds_go_once_the_driver_is_idle(workdir):
    # /tmp is a small tmpfs: beyond 40 finished builds the oldest go, but
    # never while a cell waits for its compile: once the driver is idle.
    if missing("c"):
        pytest.skip(missing("c"))
    os.makedirs(BUILD_ROOT, exist_ok=True)
    fakes = []
    for _ in range(45):  # older than any real build: the first to go
        path = os.path.join(BUILD_ROOT, uuid.uuid4().hex)
        os.mkdir(path)
        open(os.path.join(path, ".ok"), "w").close()
        os.utime(path, (1, 1))
        fakes.append(path)
    d = Driver("c", workdir)
    try:
        ok(d.run(fresh_code("int main(void) { return 0; }\n")))
        assert all(os.path.exists(f) for f in fakes)  # the cell did not wait for it
        deadline = time.monotonic() + 10
        while sum(not os.path.exists(f) for f in fakes) < 6:  # 45 + 1 new > 40
            assert time.monotonic() < deadline, "old builds were never removed"
            time.sleep(0.05)
    finally:
        d.close()
        for f in fakes:
            shutil.rmtree(f, ignore_errors=True)


# ---------------------------------------------------------------------------
# Java, Kotlin: the kept compiler JVM

KEPT = {
    "java": 'public class Kept{n} {{\n  public static void main(String[] a) {{\n'
            '    System.out.println("kept {n}");\n  }}\n}}\n',
    "kotlin": 'fun main() {{\n    println("kept {n}")\n}}\n',
}


def kept_jvms(driver):
    """[(pid, CPU time in clock ticks, its ended threads' too)] of the kept
    compiler JVMs under the driver."""
    found, todo = [], [driver.proc.pid]
    while todo:
        pid = todo.pop()
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    todo += [int(c) for c in f.read().split()]
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            if argv[0] == b"/usr/bin/java" and argv[-2].endswith(b"/CellgateCompiler.java"):
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                found.append((pid, int(fields[11]) + int(fields[12])))
        except OSError:
            pass
    return found


def wait_for_kept_jvm(driver, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not kept_jvms(driver):
        assert time.monotonic() < deadline, "no kept JVM was started"
        time.sleep(0.05)
    return kept_jvms(driver)[0][0]


def kept_driver(language, workdir):
    """A fresh driver whose first cell compiled with the command and whose
    kept JVM has started (it is warming up)."""
    reason = missing(language)
    if reason:
        pytest.skip(reason)
    d = Driver(language, workdir)
    assert ok(d.run(fresh_code(KEPT[language].format(n=0)))).raw_out == b"kept 0\n"
    wait_for_kept_jvm(d)
    return d


@pytest.mark.parametrize("language", ["java", "kotlin"])
def test_later_cells_compile_in_the_kept_jvm(language, workdir):
    d = kept_driver(language, workdir)
    try:
        (pid, _), = kept_jvms(d)
        ok(d.run(fresh_code(KEPT[language].format(n=1))))  # after its warm-up
        (_, before), = kept_jvms(d)
        for n in (2, 3, 4):
            cell = ok(d.run(fresh_code(KEPT[language].format(n=n))))
            assert cell.raw_out == b"kept %d\n" % n
        (same, after), = kept_jvms(d)
        assert same == pid and after > before  # it compiled them (tens of ms of CPU)
        # Its diagnostics are the command's, file names and all.
        broken = fresh_code(PROGRAMS[language][2])
        kept = d.run(broken).error
        fresh = Driver(language, workdir)
        try:
            assert kept == fresh.run(broken).error
        finally:
            fresh.close()
        assert kept_jvms(d)[0][0] == pid  # a compile error is no failure of it
    finally:
        d.close()
    deadline = time.monotonic() + 10
    while os.path.exists("/proc/%d" % pid):  # it ends with its driver
        assert time.monotonic() < deadline, "the kept JVM outlived its driver"
        time.sleep(0.05)


def test_a_killed_kept_jvm_costs_only_speed(workdir):
    d = kept_driver("java", workdir)
    try:
        ok(d.run(fresh_code(KEPT["java"].format(n=1))))
        os.kill(kept_jvms(d)[0][0], 9)
        cell = ok(d.run(fresh_code(KEPT["java"].format(n=2))))  # the command compiles it
        assert cell.raw_out == b"kept 2\n"
        assert kept_jvms(d) == []  # not started again after it failed
    finally:
        d.close()


def test_interrupt_during_a_kept_compile(workdir):
    d = kept_driver("java", workdir)
    try:
        ok(d.run(fresh_code(KEPT["java"].format(n=1))))
        methods = "".join("  static int f%d(int x) { return x * %d + f%d(x - 1); }\n"
                          % (i, i, i - 1) for i in range(1, 6000))
        d.start(fresh_code("public class Slow {\n  static int f0(int x) { return x; }\n"
                           + methods + "  public static void main(String[] a) {}\n}\n"))
        time.sleep(0.3)
        cell = harness.interrupt_cell(d, timeout=5.0)
        assert cell.error["ename"] == "KeyboardInterrupt"
        assert kept_jvms(d) == []  # killed with its compile
        cell = ok(d.run(fresh_code(KEPT["java"].format(n=2))))
        assert cell.raw_out == b"kept 2\n"
    finally:
        d.close()
