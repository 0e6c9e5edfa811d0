"""cellgate's driver for compiled languages: C, C++, Go, Java, Kotlin, Rust, Swift.

The cellgate kernel (written in C) starts this source as

    /usr/bin/python3 -I -S -c "<bootstrap>"   (the driver follows on fd 3)

with CELLGATE_DRIVER=1, CELLGATE_CONTROL_FD=3 and CELLGATE_LANGUAGE=<name>
(a key of LANGUAGES below), in its own process group.  fd 3 is an AF_UNIX
stream socket carrying JSON lines both ways, fd 1/2 are raw pipes the kernel
turns into stream output, fd 0 is /dev/null.  The records are specified in
PROTOCOL.md next to this file.  Only the standard library is used.

Start-up is on the path of a fresh kernel's first cell, so the driver
imports nothing that costs time before that cell's compiler runs: JSON goes
through `_json` (the C half of `json`, without `re`), processes start with
os.posix_spawn (no `subprocess`), and `re`, `shlex` and `shutil` are
imported where a cell needs them.  Removing old builds and the version
probe wait until the driver is idle (idle_work), so they never stand
between a cell and its compile.

A cell is a whole program.  The driver writes it to a build directory named
after a hash of (language, compiler flags, code) under /tmp/cellgate-build/,
compiles it there unless a finished build already exists (re-running a cell
does not recompile), then runs the program with fd 1/2 inherited, so its
output goes straight to the kernel.

  * Compiler diagnostics become the cell's one `error` record (ename
    "CompileError", evalue the first error line, traceback every line the
    compiler printed).  Warnings of a successful build go to stderr.
  * The compiler runs in its own process group: a compile timeout
    (CELLGATE_COMPILE_TIMEOUT seconds, default 120) or an interrupt kills
    that whole group.
  * The program runs in the driver's process group, so the kernel's SIGINT
    kills it; the driver itself only notes the SIGINT and reports
    KeyboardInterrupt.  A non-zero exit is an `error` (ename "ExitStatus").
  * With allow_stdin the program's stdin is a pipe; when a process of the
    program's tree blocks in read(2) on that pipe the driver sends `input`
    and writes the reply plus "\\n" into the pipe.  Otherwise stdin is
    /dev/null.

Directives: leading lines of the cell that start with `//%` (every language
here has `//` comments, so the cell stays a valid program and line numbers
in diagnostics stay right):

    //% -O0 -g              compiler flags, replacing the language's defaults
    //% flags: -O0 -g       the same, spelled out
    //% add: -DX=5 -lgmp    compiler flags appended to the defaults
    //% args: a "b c"       arguments for the program (shell-like quoting)

Flags go where the table's compile command says {flags}: before the source
file, so a library to link (e.g. -lgmp) belongs in `add:` only for
languages whose libraries are fixed after the source (C, C++: see `libs`).
"""

import os
import sys
import time

import _signal  # the C half of `signal` (which imports `enum`)
import select

CONTROL_FD = int(os.environ.get("CELLGATE_CONTROL_FD", "3"))
LANGUAGE = os.environ.get("CELLGATE_LANGUAGE", "c")
BUILD_ROOT = "/tmp/cellgate-build"
MAX_BUILDS = 40  # finished builds kept; the oldest go first (/tmp is a small tmpfs)
POLL = 0.02  # seconds between checks of a running program (stdin, interrupt)
IDLE = 0.5  # seconds without a request before idle_work() runs
EVICT_EVERY = 8  # builds between evictions when the driver is never idle
INTERRUPT_GRACE = 0.5  # seconds a program may take to die of SIGINT before SIGKILL
MAX_COMPILER_OUTPUT = 4 << 20  # bytes of diagnostics kept

# The languages.  Commands are argv lists run in the build directory;
# placeholders: {flags} (the flag list, spliced in), {src} (source file name),
# {main} (Java: the class to run), {args} (program arguments, spliced in),
# {dir} (the build directory; programs run in the driver's own cwd).
# `source` may use {main}.  `env` is added to the compiler's environment.
# `noise` lists compiler output lines that are never worth showing.
# `kept`: the compiler can run in a kept JVM (KeptJvm below): its `tool`,
# the JVM's options, and the compiler's arguments there (absolute paths).
GO_ENV = {
    # Offline: no modules, no proxy; a `package main` using only the standard
    # library builds in GOPATH mode.  cgo off: no gcc run for net/os/user.
    "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
    "GOCACHE": BUILD_ROOT + "/go-cache", "GOPATH": BUILD_ROOT + "/go-path",
    "GOTELEMETRY": "off",
}
JVM_NOISE = ["OpenJDK 64-Bit Server VM warning: Options -Xverify:none and "
             "-noverify were deprecated"]
# The compilers' own JVM (never the program's): a cell is a small compile
# that ends before C2's optimised code or G1's concurrent threads pay off;
# the C1 JIT alone and the serial collector make javac ~15% and kotlinc
# ~25% faster on a hello world (2 cores; the bytecode is the same).
COMPILER_JVM = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]
# The kept compiler JVM's (see KeptJvm): the C1 JIT alone warms up as fast
# and, beside C2's threads on 2 cores, compiled kotlinc's later cells faster
# (250-400 ms against 450-750); the heap is kotlinc's default.
KEPT_JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m"]
KOTLIN_COMPILER = "/usr/share/kotlin/kotlinc/lib/kotlin-compiler.jar"  # as kotlinc names it

LANGUAGES = {
    "c": {
        "source": "main.c", "flags": ["-std=c17", "-O2", "-Wall"],
        "compile": ["/usr/bin/gcc", "{flags}", "-o", "main", "{src}", "-lm"],
        "run": ["{dir}/main", "{args}"],
        "version": ["/usr/bin/gcc", "-dumpfullversion"],
    },
    "c++": {
        "source": "main.cpp", "flags": ["-std=c++20", "-O2", "-Wall"],
        "compile": ["/usr/bin/g++", "{flags}", "-o", "main", "{src}"],
        "run": ["{dir}/main", "{args}"],
        "version": ["/usr/bin/g++", "-dumpfullversion"],
    },
    "go": {
        "source": "main.go", "flags": [],
        "compile": ["/usr/bin/go", "build", "{flags}", "-o", "main", "{src}"],
        "run": ["{dir}/main", "{args}"], "env": GO_ENV,
        "version": ["/usr/bin/go", "env", "GOVERSION"],
    },
    "java": {
        "source": "{main}.java", "flags": [],
        "compile": ["/usr/bin/javac", *COMPILER_JVM, "{flags}", "-d", ".", "{src}"],
        "run": ["/usr/bin/java", "-cp", "{dir}", "{main}", "{args}"],
        "version": ["/usr/bin/javac", "-version"],
        "kept": {"tool": "javac", "jvm": KEPT_JVM_OPTIONS,
                 "args": ["{flags}", "-d", "{dir}", "{dir}/{src}"]},
    },
    "kotlin": {
        "source": "main.kt", "flags": [],
        "compile": ["/usr/bin/kotlinc", *COMPILER_JVM, "{flags}", "{src}",
                    "-include-runtime", "-d", "main.jar"],
        "run": ["/usr/bin/java", "-jar", "{dir}/main.jar", "{args}"],
        "version": ["/usr/bin/kotlinc", "-version"], "noise": JVM_NOISE,
        "kept": {"tool": "kotlinc",
                 "jvm": [*KEPT_JVM_OPTIONS, "-Dcellgate.kotlin=" + KOTLIN_COMPILER],
                 "args": ["{flags}", "{dir}/{src}", "-include-runtime", "-d", "{dir}/main.jar"]},
    },
    "rust": {
        "source": "main.rs", "flags": ["-O", "--edition", "2021"],
        "compile": ["/usr/bin/rustc", "{flags}", "-o", "main", "{src}"],
        "run": ["{dir}/main", "{args}"],
        "version": ["/usr/bin/rustc", "--version"],
    },
    "swift": {
        "source": "main.swift", "flags": ["-O"],
        "compile": ["/usr/bin/swiftc", "{flags}", "-o", "main", "{src}"],
        "run": ["{dir}/main", "{args}"],
        "version": ["/usr/bin/swiftc", "--version"],
    },
}
SPEC = LANGUAGES.get(LANGUAGE)


# ---------------------------------------------------------------------------
# the control channel

class _JsonContext:
    """What _json's scanner reads from a json.JSONDecoder: its defaults."""
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo = {}


try:
    import _json
    _scan = _json.make_scanner(_JsonContext)
    _quote = _json.encode_basestring
except (ImportError, AttributeError):  # not CPython: the slow way
    import json
    _scan = json.JSONDecoder().scan_once
    _quote = json.encoder.py_encode_basestring


def loads(text):
    """One JSON value from a str (json.loads for what the kernel sends)."""
    value, end = _scan(text, 0)
    if text[end:].strip():
        raise ValueError("extra data after JSON")
    return value


def dumps(value):
    """json.dumps(value, ensure_ascii=False) for the records we send: str,
    bool, None, int, float, lists, tuples and dicts with str keys."""
    if isinstance(value, str):
        return _quote(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(_quote(str(k)) + ":" + dumps(v) for k, v in value.items()) + "}"
    return "[" + ",".join(dumps(v) for v in value) + "]"


def send(record):
    """Write one JSON line to fd 3 (whole, even if the write is split)."""
    data = (dumps(record) + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(CONTROL_FD, data):]


def send_ready():
    """Sent first thing; returns the version it named (None: unknown)."""
    # The version is whatever an earlier driver found out (see probe_version);
    # running the compiler here would cost up to a second (javac, kotlinc).
    # Unknown, it is null: the kernel then names the version `cellgate
    # install` found (CELLGATE_LANGUAGE_VERSION in the kernelspec), never
    # the language's name.
    version = cached_version()
    line = '{"t":"ready","language_version":%s}\n' % (
        '"%s"' % version if version else "null")
    os.write(CONTROL_FD, line.encode())
    return version


class Control:
    """Reads JSON lines from fd 3; keeps lines read ahead of time."""

    def __init__(self):
        self.buffer = b""
        self.queued = []  # requests that arrived while a program ran
        self.eof = False

    def read_some(self):
        """One read of fd 3 (call when readable); returns the complete lines."""
        chunk = os.read(CONTROL_FD, 1 << 16)
        if not chunk:
            self.eof = True
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        records = []
        for line in lines:
            try:
                records.append(loads(line.decode("utf-8")))
            except Exception:  # _json raises more than ValueError on bad input
                pass  # the kernel never sends this; nothing sensible to do
        return records

    def next(self):
        """The next request, or None at end of file.  When idle_work() has
        something to do, it runs after idle_wait() seconds without one."""
        while not self.queued:
            if self.eof:
                return None
            wait = idle_wait()
            if wait is not None and not select.select([CONTROL_FD], [], [], wait)[0]:
                idle_work()
                continue
            try:
                self.queued += self.read_some()
            except InterruptedError:
                continue
        return self.queued.pop(0)


# ---------------------------------------------------------------------------
# SIGINT: noted, never fatal to the driver

interrupted = False


def on_sigint(signum, frame):
    # A handler, not SIG_IGN: an ignored signal would stay ignored in the
    # programs we exec, and the kernel's SIGINT must kill them.
    global interrupted
    interrupted = True


# ---------------------------------------------------------------------------
# language version, cached across driver starts

def version_cache_path():
    tool = SPEC["version"][0]
    try:
        st = os.stat(tool)
    except OSError:
        return None
    return "%s/version-%s-%d-%d" % (BUILD_ROOT, LANGUAGE, st.st_ino, int(st.st_mtime))


def cached_version():
    """The version probe_version cached, or None.  Only a version number
    ("12.2.0", "1.19.8", "17.0.15") counts: anything else in the file (it
    is in the box's /tmp, which cells can write) is not sent on."""
    path = SPEC and version_cache_path()
    try:
        with open(path, encoding="utf-8") as f:
            version = f.read(64).strip()
    except (OSError, TypeError, ValueError):
        return None
    ok = version[:1].isdigit() and "." in version and \
        all(c.isascii() and (c.isalnum() or c in ".-_") for c in version)
    return version if ok else None


probe_pending = False  # set at start-up when no version is cached
unevicted = 0  # builds made since the last evict_old_builds()


def idle_wait():
    """Seconds without a request before idle_work() is due; None: never."""
    waits = [IDLE] if probe_pending or unevicted else []
    kept = kept_jvm.idle_in() if kept_jvm else None
    if kept is not None:
        waits.append(max(IDLE, kept))
    return min(waits) if waits else None


def idle_work():
    """What waits until the driver is idle, so that it never stands between
    a cell and its compile: removing old builds, the version probe,
    starting and stopping the kept compiler JVM."""
    global probe_pending, unevicted
    if kept_jvm:
        kept_jvm.idle_work()
    if unevicted:
        unevicted = 0
        evict_old_builds()
    if probe_pending:
        probe_pending = False
        import threading
        threading.Thread(target=probe_version, daemon=True).start()


def probe_version():
    """Run the version command (in a thread) so the next start knows it."""
    path = version_cache_path()
    if path is None or os.path.exists(path):
        return
    try:
        _, lines = collect(SPEC["version"], None, timeout=60)
    except (OSError, CellError):
        return
    import re
    # "javac 17.0.15", "go1.19.8", "info: kotlinc-jvm 1.3.31 (JRE ...)": the number
    text = "\n".join(lines)
    found = re.search(r"\d+(?:\.\d+)+(?:-\w+)?", text)
    if found:
        try:
            os.makedirs(BUILD_ROOT, exist_ok=True)
            with open(path + ".tmp%d" % os.getpid(), "w", encoding="utf-8") as f:
                f.write(found.group())
            os.replace(path + ".tmp%d" % os.getpid(), path)
        except OSError:
            pass  # no cache: the next driver does not know the version either


# ---------------------------------------------------------------------------
# the cell: directives, Java class name, build key

def parse_directives(code):
    """(compiler flags, program arguments) from the leading `//%` lines."""
    flags, args = list(SPEC["flags"]), []
    if not code.startswith("//%"):
        return flags, args
    import re
    import shlex
    for line in code.splitlines():
        if not line.startswith("//%"):
            break
        text = line[3:].strip()
        key, sep, rest = text.partition(":")
        if sep and re.fullmatch(r"[a-z]+", key):
            words = shlex.split(rest)
            if key == "args":
                args = words
            elif key == "add":
                flags += words
            elif key == "flags":
                flags = words
            else:
                raise DirectiveError("unknown directive %r (flags:, add:, args:)" % key)
        else:
            flags = shlex.split(text)
    return flags, args


class DirectiveError(Exception):
    pass


def java_main_class(code):
    """The class to run and the file name javac insists on.

    javac wants a public top-level class in a file of the same name; the
    class to run is the one whose body holds `static void main`.  A regex
    is enough: the class declared last before `main` holds it."""
    import re
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", code, re.M)
    main_at = re.search(r"\bstatic\s+(?:final\s+)?(?:public\s+)?void\s+main\s*\(", code)
    classes = list(re.finditer(r"\b(public\s+)?(?:(?:final|abstract|static)\s+)*"
                               r"(?:class|record|enum|interface)\s+(\w+)", code))
    before = [m for m in classes if not main_at or m.start() < main_at.start()]
    runner = before[-1].group(2) if before else "Main"
    public = [m.group(2) for m in classes if m.group(1)]
    file_name = public[0] if public else runner
    if package:
        runner = package.group(1) + "." + runner
    return runner, file_name


def build_key(flags, code):
    # Program arguments do not change the binary: leave `args:` lines out.
    kept = "\n".join(l for l in code.splitlines()
                     if not (l.startswith("//%") and l[3:].lstrip().startswith("args:")))
    text = dumps([LANGUAGE, SPEC["compile"], flags, kept])
    try:
        from _sha256 import sha256  # builtin here; hashlib loads OpenSSL (~10 ms)
    except ImportError:
        from hashlib import sha256
    return sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def expand(argv, **values):
    """Fill the placeholders of a table command."""
    out = []
    for word in argv:
        if word in ("{flags}", "{args}"):
            out += values[word[1:-1]]
        else:
            out.append(word.format(**values) if "{" in word else word)
    return out


# ---------------------------------------------------------------------------
# processes: started with os.posix_spawn as subprocess would start them

class CellError(Exception):
    """The cell's error record: args are ename, evalue, traceback."""


# Python ignores SIGPIPE and SIGXFSZ; like subprocess (restore_signals) we
# give children the default back: a program that writes past the box's file
# size limit dies of SIGXFSZ, as it would anywhere.
DEFAULT_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)


def spawn(argv, env, fds, cwd=None, group=False):
    """Start argv (argv[0] an absolute path); its pid.

    fds maps the child's fd (0, 1 or 2) to ours; the others of 0-2 are
    inherited, nothing above them (fd 3 is close-on-exec, Python opens the
    rest so).  cwd: where it starts (the driver goes there for the spawn and
    comes back).  group: in a new process group of its own.  Raises
    OSError when argv[0] cannot run (FileNotFoundError: no such file)."""
    actions = [(os.POSIX_SPAWN_DUP2, ours, child) for child, ours in fds.items()]
    back = os.open(".", os.O_PATH | os.O_DIRECTORY) if cwd else None
    try:
        if cwd:
            os.chdir(cwd)
        options = {"setpgroup": 0} if group else {}  # None is refused
        return os.posix_spawn(argv[0], argv, env, file_actions=actions,
                              setsigdef=DEFAULT_SIGNALS, **options)
    finally:
        if back is not None:
            os.fchdir(back)
            os.close(back)


_envs = {}


def child_env(for_compiler):
    """Our environment less the kernel's protocol variables; the
    compiler's also gets the language's `env`."""
    if for_compiler not in _envs:
        env = dict(os.environ)
        env.pop("CELLGATE_DRIVER", None)
        env.pop("CELLGATE_CONTROL_FD", None)
        if for_compiler:
            env.update(SPEC.get("env", {}))
        _envs[for_compiler] = env
    return _envs[for_compiler]


def is_noise(line):
    return any(line.startswith(n) for n in SPEC.get("noise", ()))


def first_error_line(lines):
    for line in lines:
        if "error" in line.lower():
            return line.strip()
    for line in lines:  # go: "./main.go:4:2: undefined: x" under "# command-line-arguments"
        if line.strip() and not line.startswith("#"):
            return line.strip()
    return "compilation failed"


def read_compiler(fd, deadline, timeout, what, interruptible=True):
    """What one read of a compiler's output pipe fd gives (b"" at its end),
    or None when nothing came within a step of 0.05 s.  Raises
    KeyboardInterrupt on SIGINT (when interruptible) and, once deadline
    (time.monotonic()) has passed, CellError naming timeout and what."""
    if interruptible and interrupted:
        raise KeyboardInterrupt
    left = deadline - time.monotonic()
    if left <= 0:
        raise CellError("CompileError", "compile timeout after %g s" % timeout,
                        ["compile timeout after %g s: %s" % (timeout, what)])
    if select.select([fd], [], [], min(left, 0.05))[0]:
        return os.read(fd, 1 << 16)
    return None


def collect(argv, cwd, timeout, interruptible=False):
    """Run argv in its own process group, stdin /dev/null, its stdout and
    stderr captured together; (exit status, output lines less noise).

    Raises CellError on timeout and, when interruptible, KeyboardInterrupt
    on SIGINT, in both cases after killing the whole group."""
    read_end, write_end = os.pipe()
    pid = None
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            pid = spawn(argv, child_env(True), {0: null, 1: write_end, 2: write_end}, cwd,
                        group=True)
        finally:
            os.close(null)
            os.close(write_end)
        output = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            chunk = read_compiler(read_end, deadline, timeout, argv[0], interruptible)
            if chunk == b"":
                break  # every process of the group closed the pipe
            if chunk and len(output) < MAX_COMPILER_OUTPUT:
                output += chunk
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        pid = None
    finally:
        if pid is not None:
            kill_group(pid)
            os.waitpid(pid, 0)
        os.close(read_end)
    lines = [l for l in output.decode("utf-8", "replace").splitlines() if not is_noise(l)]
    return status, lines


def run_compiler(argv, flags, source, code, work):
    """Compile the cell's source (written in work): in the kept JVM when
    there is one, else argv in work; (status, output lines).  Raises
    KeyboardInterrupt on SIGINT and CellError on the compile timeout."""
    timeout = float(os.environ.get("CELLGATE_COMPILE_TIMEOUT", "120"))
    done = kept_jvm.compile(flags, source, work, timeout) if kept_jvm else None
    if done:
        return done
    status, lines = collect(argv, work, timeout, interruptible=True)
    if status == 0 and kept_jvm:
        kept_jvm.wanted(flags, source, code)
    return status, lines


def kill_group(pgid):
    try:
        os.killpg(pgid, _signal.SIGKILL)
    except OSError:
        pass


def remove_tree(path):
    import shutil  # only here: ~7 ms of imports nothing else needs
    shutil.rmtree(path, ignore_errors=True)


def build(code, flags):
    """The finished build directory for this cell, compiling if needed."""
    global unevicted
    main, file_name = java_main_class(code) if LANGUAGE == "java" else ("", "")
    key = build_key(flags, code)
    final = os.path.join(BUILD_ROOT, key)
    if os.path.exists(os.path.join(final, ".ok")):
        os.utime(final)  # recently used: evicted last
        return final, main
    os.makedirs(BUILD_ROOT, exist_ok=True)
    work = os.path.join(BUILD_ROOT, "%s.tmp%s" % (key, os.urandom(6).hex()))
    os.mkdir(work, 0o700)
    try:
        source = SPEC["source"].format(main=file_name)
        with open(os.path.join(work, source), "w", encoding="utf-8",
                  errors="surrogateescape") as f:
            f.write(code)
        argv = expand(SPEC["compile"], flags=flags, src=source, main=main, args=[], dir=work)
        try:
            status, lines = run_compiler(argv, flags, source, code, work)
        except FileNotFoundError:
            raise CellError("CompileError", "%s is not installed" % argv[0],
                                ["%s is not installed" % argv[0]])
        if status != 0:
            raise CellError("CompileError", first_error_line(lines), lines)
        if lines:  # warnings: the build worked, show them like program stderr
            os.write(2, ("\n".join(lines) + "\n").encode("utf-8", "replace"))
        open(os.path.join(work, ".ok"), "w").close()
        try:
            os.rename(work, final)
        except OSError:  # another driver finished the same build first
            pass
    finally:
        if os.path.exists(work):
            remove_tree(work)
    unevicted += 1
    if unevicted >= EVICT_EVERY:  # never idle: /tmp must not fill up anyway
        unevicted = 0
        evict_old_builds()
    return final, main


def is_build_name(name):
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def evict_old_builds():
    """Keep /tmp (a small tmpfs) from filling up with old binaries."""
    try:
        entries = [e for e in os.scandir(BUILD_ROOT) if e.is_dir() and is_build_name(e.name)]
    except OSError:
        return
    entries.sort(key=lambda e: e.stat().st_mtime)
    for entry in entries[:-MAX_BUILDS]:
        remove_tree(entry.path)


# ---------------------------------------------------------------------------
# running: process tree, stdin detection

READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine, "0")


def process_tree(root):
    """root and its descendants (by scanning /proc: no `children` files here)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # the command name may hold spaces and parentheses: split after it
            parents.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def blocked_reading(pids, pipe_link):
    """True when a thread of pids sits in read(2) on an fd that is our pipe."""
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                    words = f.read().split()
                if len(words) > 1 and words[0] == READ_SYSCALL and \
                        os.readlink("/proc/%d/fd/%d" % (pid, int(words[1], 16))) == pipe_link:
                    return True
            except (OSError, ValueError):
                continue
    return False


def pipe_unread(fd):
    """Bytes waiting in a pipe (FIONREAD on its read end)."""
    import fcntl
    return int.from_bytes(fcntl.ioctl(fd, 0x541B, b"\0\0\0\0"), sys.byteorder)


def signal_name(number):
    import signal  # only here: it imports `enum`
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def exit_error(status):
    if status < 0:
        evalue = "killed by signal %d (%s)" % (-status, signal_name(-status))
    else:
        evalue = "exit status %d" % status
    return CellError("ExitStatus", evalue, [evalue])


class Program:
    """The running program and, with allow_stdin, our end of its stdin pipe."""

    def __init__(self, argv, allow_stdin):
        self.stdin_r = self.stdin_w = None
        self.returncode = None  # its exit status (-signal) once reaped
        if allow_stdin:
            self.stdin_r, self.stdin_w = os.pipe()
            self.pipe_link = "pipe:[%d]" % os.fstat(self.stdin_r).st_ino
            stdin = self.stdin_r
        else:
            stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            # fd 1/2 are inherited: output goes straight to the kernel.
            self.pid = spawn(argv, child_env(False), {0: stdin})
        except OSError:
            self.close()
            raise
        finally:
            if not allow_stdin:
                os.close(stdin)
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.pidfd = None  # fall back to polling every POLL seconds
        self.asking = False  # an `input` is out and not yet answered

    def poll(self):
        """Its exit status if it has ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self):
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def close(self):
        for fd in (self.stdin_r, self.stdin_w, getattr(self, "pidfd", None)):
            if fd is not None:
                os.close(fd)
        self.stdin_r = self.stdin_w = self.pidfd = None

    def kill(self):
        """SIGKILL the program's whole tree (it shares our process group)."""
        for pid in process_tree(self.pid):
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
        self.wait()

    def wants_input(self):
        return (self.stdin_w is not None and not self.asking
                and pipe_unread(self.stdin_r) == 0
                and blocked_reading(process_tree(self.pid), self.pipe_link))

    def answer(self, value):
        self.asking = False
        data = (value + "\n").encode("utf-8", "surrogateescape")
        try:
            while data:
                data = data[os.write(self.stdin_w, data):]
        except BrokenPipeError:
            pass  # the program closed stdin; it will not read the answer


def wait_program(program, control):
    """Serve the program until it exits; its status.  Raises KeyboardInterrupt."""
    waits = [CONTROL_FD] + ([program.pidfd] if program.pidfd is not None else [])
    interrupted_at = None
    while program.poll() is None:
        if interrupted and interrupted_at is None:
            interrupted_at = time.monotonic()  # SIGINT reached the program too
        if interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE:
            program.kill()  # it caught or ignored SIGINT
            break
        if interrupted_at is None and program.wants_input():
            program.asking = True
            send({"t": "sync"})  # a prompt the program wrote comes first
            send({"t": "input", "prompt": "", "password": False})
        readable, _, _ = select.select(waits if not control.eof else waits[1:], [], [], POLL)
        if CONTROL_FD in readable:
            for record in control.read_some():
                if record.get("t") == "input_reply":
                    if program.asking:
                        program.answer(str(record.get("value", "")))
                else:
                    control.queued.append(record)
            if control.eof:  # the kernel is gone: so is the cell
                program.kill()
                sys.exit(0)
    if interrupted_at is not None or interrupted:
        raise KeyboardInterrupt
    return program.returncode



# ---------------------------------------------------------------------------
# the kept compiler JVM (Java, Kotlin)
#
# javac and kotlinc are JVM programs: run per cell, starting their JVM,
# loading the compiler's classes and warming up its JIT is most of a small
# compile (~0.4 s of javac's, ~2 s of kotlinc's on a hello world).  After a
# kernel's first compile, once the driver is idle, one JVM is started in the
# box that runs the compiler's own entry point (javax.tools' javac,
# K2JVMCompiler.exec for kotlinc) for each later cell: the same arguments
# and the same diagnostics as the command, in tens to a few hundred ms.  It
# is the kernel's own, in its box like its programs, shares nothing with
# other kernels, is stopped after KEPT_JVM_IDLE seconds without a compile
# (started again at the next idle after a compile) and killed by an
# interrupt or a compile timeout.  Whenever it is not there, or its answer
# is not the compiler's (it failed to start, died, or the compiler threw),
# the command runs as before.

KEPT_JVM_IDLE = 600.0  # seconds without a compile before the kept JVM stops
KEPT_JVM_THREW = 70  # its exit status when the compiler threw (javac's and kotlinc's are < 5)

KEPT_JVM_SOURCE = r"""
import java.io.*;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/* cellgate's kept compiler (kernel/drivers/compiled.py): a request per line
 * on stdin, the tool ("javac" or "kotlinc") and its arguments separated by
 * tabs; an answer per request on stdout, "<exit status> <length>\n" and
 * that many bytes of what the compiler printed.  Ends with stdin.  kotlinc's
 * classes come from the jar named by -Dcellgate.kotlin, in a loader of their
 * own that sees the jar where it was named (kotlinc finds its home, and the
 * runtime it puts in jars, beside it; the application class path would
 * give the jar's real path, behind Debian's symbolic link). */
public class CellgateCompiler {
    static ClassLoader kotlin;

    public static void main(String[] argv) throws IOException {
        PrintStream answers = new PrintStream(new FileOutputStream(FileDescriptor.out), false,
                                              StandardCharsets.UTF_8);
        BufferedReader requests = new BufferedReader(new InputStreamReader(System.in,
                                                     StandardCharsets.UTF_8));
        for (String line; (line = requests.readLine()) != null; ) {
            String[] words = line.split("\t", -1);
            ByteArrayOutputStream output = new ByteArrayOutputStream();
            int status = compile(words[0], Arrays.copyOfRange(words, 1, words.length), output);
            byte[] bytes = output.toByteArray();
            answers.print(status + " " + bytes.length + "\n");
            answers.write(bytes);
            answers.flush();
        }
    }

    /* Runs the compiler; what it (or anything else meanwhile) prints goes to output. */
    static int compile(String tool, String[] args, ByteArrayOutputStream output) {
        PrintStream to = new PrintStream(output, true, StandardCharsets.UTF_8);
        PrintStream out = System.out, err = System.err;
        System.setOut(to);
        System.setErr(to);
        try {
            if (tool.equals("javac"))
                return javax.tools.ToolProvider.getSystemJavaCompiler().run(null, to, to, args);
            if (kotlin == null)
                kotlin = new URLClassLoader(new URL[] {
                    new File(System.getProperty("cellgate.kotlin")).toURI().toURL() },
                    ClassLoader.getPlatformClassLoader());
            Class<?> k = Class.forName("org.jetbrains.kotlin.cli.jvm.K2JVMCompiler", true, kotlin);
            Object code = k.getMethod("exec", PrintStream.class, String[].class)
                .invoke(k.getConstructor().newInstance(), to, (Object) args);
            return (Integer) code.getClass().getMethod("getCode").invoke(code);
        } catch (Throwable e) {
            e.printStackTrace(to);
            return %d;
        } finally {
            to.flush();
            System.setOut(out);
            System.setErr(err);
        }
    }
}
""" % KEPT_JVM_THREW


class KeptJvm:
    """The compiler JVM kept for a kernel's later cells (see above)."""

    def __init__(self, spec):
        self.spec = spec  # the language's `kept` entry
        self.pid = None
        self.requests = self.answers = None
        self.buffer = b""
        self.warming = False  # the warm-up's answer is not read yet
        self.failed = False  # it failed once: the command runs from now on
        self.warm_up = None  # (flags, source name, code): start at the next idle
        self.used = 0.0  # time.monotonic() of its last compile

    def wanted(self, flags, source, code):
        """A compile by the command just worked: start at the next idle."""
        if self.pid is None and not self.failed and self.usable(flags):
            self.warm_up = (flags, source, code)

    def usable(self, flags):
        """False for flags only the command takes: -J (options of its JVM),
        and tabs or newlines, which would end a request."""
        return not any(f.startswith("-J") or "\t" in f or "\n" in f for f in flags)

    def idle_in(self):
        """Seconds until idle work for it is due (start or stop), or None."""
        if self.warm_up:
            return 0.0
        if self.pid is not None:
            return max(0.0, self.used + KEPT_JVM_IDLE - time.monotonic())
        return None

    def idle_work(self):
        if self.warm_up:
            self.start()
        elif self.pid is not None and time.monotonic() - self.used >= KEPT_JVM_IDLE:
            self.stop()

    def start(self):
        """Start the JVM and send it the warm-up: the compile that made it
        wanted again, into a scratch directory, so that the compiler's
        classes are loaded and compiled before the next cell."""
        flags, source, code = self.warm_up
        self.warm_up = None
        home = self.home()
        program = os.path.join(home, "CellgateCompiler.java")
        fds = []
        try:
            os.makedirs(os.path.join(home, "warm-up"), exist_ok=True)
            with open(program, "w", encoding="utf-8") as f:
                f.write(KEPT_JVM_SOURCE)
            with open(os.path.join(home, "warm-up", source), "w", encoding="utf-8",
                      errors="surrogateescape") as f:
                f.write(code)
            fds += os.pipe()  # its stdin: requests
            fds += os.pipe()  # its stdout: answers
            fds.append(os.open(os.devnull, os.O_WRONLY))
            argv = ["/usr/bin/java", *self.spec["jvm"], program]
            self.pid = spawn(argv, child_env(True), {0: fds[0], 1: fds[3], 2: fds[4]},
                             cwd=BUILD_ROOT, group=True)
        except OSError:
            self.failed = True
            for fd in fds:
                os.close(fd)
            remove_tree(home)
            return
        for i in (0, 3, 4):
            os.close(fds[i])
        self.requests, self.answers = fds[1], fds[2]
        self.used = time.monotonic()
        self.warming = self.send(flags, source, os.path.join(home, "warm-up"))

    def home(self):
        """Its files (its source, the warm-up's): this driver's own, as
        drivers without the box share /tmp; beside BUILD_ROOT, whose
        entries are builds and the version cache."""
        return "/tmp/cellgate-kept-jvm-%d" % os.getpid()

    def send(self, flags, source, directory):
        words = [self.spec["tool"]] + expand(self.spec["args"], flags=flags, src=source,
                                             dir=directory, main="", args=[])
        try:
            os.write(self.requests, ("\t".join(words) + "\n").encode("utf-8", "surrogateescape"))
            return True  # a request is far smaller than a pipe's buffer: written whole
        except OSError:
            self.stop(failed=True)
            return False

    def compile(self, flags, source, directory, timeout):
        """Compile in the kept JVM: (exit status, output lines) as the command
        gives them; None when it cannot (the caller runs the command).
        Raises KeyboardInterrupt on SIGINT and CellError on the timeout,
        after killing it."""
        if self.pid is None or not self.usable(flags) or not self.send(flags, source, directory):
            return None
        self.used = time.monotonic()
        deadline = self.used + timeout
        try:
            # A cell that comes while it warms up waits for it: on a small
            # machine the command and the warm-up side by side take longer.
            if self.warming:
                warm = self.answer(deadline, timeout)
                self.warming = False
                if warm is None or warm[0] != 0:  # the command compiled the same
                    self.stop(failed=True)
                    return None
            answer = self.answer(deadline, timeout)
        except BaseException:
            self.stop()
            raise
        if answer is None or answer[0] == KEPT_JVM_THREW:
            self.stop(failed=True)
            return None
        status, output = answer
        # The command runs in the build directory and names the source
        # relative to it: javac here names it absolutely, kotlinc relative to
        # our cwd, BUILD_ROOT.
        text = output.decode("utf-8", "replace").replace(directory + "/", "")
        text = text.replace(os.path.basename(directory) + "/", "")
        return status, [l for l in text.splitlines() if not is_noise(l)]

    def answer(self, deadline, timeout):
        """The next answer, (status, output); None if it ended first."""
        while True:
            head, nl, rest = self.buffer.partition(b"\n")
            if nl:
                try:
                    status, length = (int(w) for w in head.split())
                except ValueError:  # not an answer of ours
                    return None
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return status, rest[:MAX_COMPILER_OUTPUT]
            chunk = read_compiler(self.answers, deadline, timeout, self.spec["tool"])
            if chunk == b"":
                return None
            if chunk:
                self.buffer += chunk

    def stop(self, failed=False):
        """Kill it; failed: never start it again."""
        if self.pid is not None:
            kill_group(self.pid)
            os.waitpid(self.pid, 0)
            os.close(self.requests)
            os.close(self.answers)
            remove_tree(self.home())
        self.pid = self.requests = self.answers = None
        self.buffer = b""
        self.warming = False
        self.failed = self.failed or failed


kept_jvm = KeptJvm(SPEC["kept"]) if SPEC and "kept" in SPEC else None


# ---------------------------------------------------------------------------
# requests

def run_cell(code, allow_stdin, control):
    """Compile and run; raises CellError / KeyboardInterrupt on failure."""
    try:
        flags, args = parse_directives(code)
    except (ValueError, DirectiveError) as e:
        raise CellError("DirectiveError", str(e), [str(e)])
    directory, main = build(code, flags)
    argv = expand(SPEC["run"], flags=flags, args=args, main=main, src="", dir=directory)
    program = Program(argv, allow_stdin)
    try:
        status = wait_program(program, control)
    finally:
        program.close()
    if status != 0:
        raise exit_error(status)


def handle_execute(request, control):
    global interrupted
    # Before anything of the cell: a driver that dies before this never ran
    # it, and the kernel may give it to a fresh runtime (PROTOCOL.md).
    send({"t": "started"})
    interrupted = False  # a SIGINT between cells means nothing
    error = None
    try:
        if SPEC is None:
            raise CellError("UnknownLanguage", "no such language: %s" % LANGUAGE,
                                ["known: " + ", ".join(LANGUAGES)])
        run_cell(request.get("code", ""), bool(request.get("allow_stdin")), control)
    except CellError as e:
        error = e.args
    except KeyboardInterrupt:
        error = ("KeyboardInterrupt", "interrupted", ["KeyboardInterrupt: interrupted"])
    except OSError as e:  # e.g. /tmp full or not ours: fail the cell, not the driver
        error = ("OSError", str(e), ["cellgate compiled driver: %s" % e])
    send({"t": "sync"})  # program output written so far is shown before what follows
    if error:
        send({"t": "error", "ename": error[0], "evalue": error[1], "traceback": list(error[2])})
    send({"t": "done", "user_expressions": {}})


def handle(request, control):
    kind = request.get("t")
    if kind == "execute":
        handle_execute(request, control)
    elif kind == "complete":
        pos = request.get("cursor_pos", 0)
        send({"t": "reply", "matches": [], "cursor_start": pos, "cursor_end": pos,
              "metadata": {}})
    elif kind == "inspect":
        send({"t": "reply", "found": False, "data": {}, "metadata": {}})
    elif kind == "is_complete":
        send({"t": "reply", "status": "complete"})  # a cell is a whole program
    # input_reply outside an input (it raced an interrupt) and unknown kinds: ignored


def main():
    control = Control()
    while True:
        request = control.next()
        if request is None:
            if kept_jvm:
                kept_jvm.stop()
            return 0
        handle(request, control)


if __name__ == "__main__":
    _signal.signal(_signal.SIGINT, on_sigint)
    # Compilers and programs get fd 0-2 only (as subprocess's close_fds
    # gave them): never the kernel's socket, nor what we were started with.
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.set_inheritable(int(name), False)
            except OSError:
                pass  # the listing's own fd, closed by now
    probe_pending = send_ready() is None and SPEC is not None
    sys.exit(main())
