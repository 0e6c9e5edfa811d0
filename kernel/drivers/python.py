"""cellgate's Python driver: the process that runs a notebook's Python code.

The cellgate kernel (written in C) speaks Jupyter; for Python it starts this
source as

    /usr/bin/python3 -I -c "<this whole file>"

in its own process group, with CELLGATE_DRIVER=1 and CELLGATE_CONTROL_FD=3.
fd 3 is an AF_UNIX stream socket carrying JSON lines both ways, fd 1/2 are
raw pipes the kernel turns into stream output, fd 0 is /dev/null.  The
records are specified in PROTOCOL.md next to this file.

The goal is to give ipykernel's outputs.  Where IPython is installed in the
box, IPython's own InteractiveShell runs every cell (see "IPython's own
shell" below): its pretty printer, formatters, magics, extensions,
tracebacks and matplotlib_inline, with only the edges (records, `!cmd`,
the pager, comms) the driver's.  Where it is not, the driver's own code
below is the fallback, which tries to feel like ipykernel to a notebook
user or to an agent driving
jupyter_client: state persists in a real `__main__` module, the value of a
cell's last expression is shown with the IPython display protocol
(`_repr_html_` and friends), tracebacks show only the user's frames,
`input()`, `display()` (IPython's too), `!cmd`, `obj?`, completion,
inspection and is_complete work, and so do the IPython magics notebooks use
most: the line magics %pip, %cd, %env, %pwd, %matplotlib, %time and %timeit,
and the cell magics %%time, %%timeit, %%writefile, %%capture, %%html,
%%markdown, %%svg and %%latex.  (A cell whose first line names a language,
such as %%bash or %%js, never reaches this driver: the kernel runs it in
that language's runtime; see langs.c.)

Layout of this file:
  * start-up constants; only modules the interpreter has already loaded are
    imported before `ready` is sent, the rest right after it or on first use;
  * the control channel: one lock, whole lines, SIGINT deferred mid-write;
  * sys.stdout/sys.stderr replacements that buffer and send `stream` records;
  * mime bundles and display();
  * execute: compiling, running, results, errors, input(), `obj?` paging;
  * IPython's `!cmd` and line magics (%pip, %cd, %env, ...), rewritten to
    calls before a cell is compiled;
  * cell magics (a whole cell becomes one call) and the timing magics;
  * import hooks: IPython.display made to send records, matplotlib inline;
  * IPython's own shell, when the box has IPython, and comms (ipywidgets);
  * complete / inspect / is_complete;
  * installation into the interpreter and the request loop.

No file of the driver exists where it runs (`__file__` is unset and its
frames have the filename "<string>"); the fallback uses only the standard
library.
"""

import builtins
import io
import os
import sys
import time
import _signal  # the C half of `signal`: `signal` itself imports enum (~2 ms)
import _thread  # `threading` would cost ~1 ms; we need one lock and one thread
import fcntl as _fcntl  # FIONREAD on the raw pipes (see _sync_raw)

CONTROL_FD = int(os.environ.get("CELLGATE_CONTROL_FD", "3"))
DRIVER_GLOBALS = globals()  # frames running with these globals are the driver's
_DRIVER_MODULE = sys.modules["__main__"]  # keeps them alive once __main__ is the user's

FLUSH_AT = 64 * 1024  # buffered stream chars that trigger a `stream` record
FLUSH_DELAY = 0.05  # seconds from a write to the background flush
STREAM_CHUNK = 1 << 20  # chars per `stream` record: lines stay far below 64 MiB
MAX_LINE = 60 << 20  # bytes; the kernel kills a runtime whose line exceeds 64 MiB

# compile() flags, from CPython's compile.h (not all are exported by ast)
PyCF_DONT_IMPLY_DEDENT = 0x200
PyCF_ONLY_AST = 0x400
PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000
PyCF_ALLOW_INCOMPLETE_INPUT = 0x4000
CO_COROUTINE = 0x80

# Modules imported after `ready` (see _import_late); bound as globals there.
json = ast = linecache = None


def _python_version():
    """What platform.python_version() says, without importing platform."""
    v = sys.version_info
    text = "%d.%d.%d" % (v.major, v.minor, v.micro)
    if v.releaselevel != "final":
        text += {"alpha": "a", "beta": "b", "candidate": "rc"}[v.releaselevel]
        text += str(v.serial)
    return text


def _log(message):
    """A debugging line for whoever reads the kernel's copy of fd 2."""
    try:
        os.write(2, ("cellgate python driver: %s\n" % message).encode("utf-8", "replace"))
    except OSError:
        pass


# ---------------------------------------------------------------------------
# The control channel (fd 3)
#
# Every write to fd 3 happens with _LOCK held, so records from the main
# thread, the background flusher and user threads never interleave.  SIGINT
# must not cut a line in half: when it arrives while the main thread holds
# the lock, the handler only notes it and the KeyboardInterrupt is raised once
# the lock is released (_raise_pending_interrupt).

_LOCK = _thread.RLock()
_interruptible = False  # True while user code runs: only then SIGINT raises
_pending_interrupt = False
_in_execute = False  # an execute is being served: a SIGINT before its code runs is kept
_in_forked_child = False  # set after os.fork() in the child: fd 3 is not ours
_ENCODER = None  # a json.JSONEncoder, made in _import_late


def _on_sigint(signum, frame):
    __tracebackhide__ = True  # IPython leaves the driver's frames out of tracebacks
    global _pending_interrupt
    if not _interruptible:
        # Between requests: ignore, like ipykernel.  Within an execute whose
        # code has not started yet: raised as soon as it does.
        _pending_interrupt = _pending_interrupt or _in_execute
        return
    if _LOCK._is_owned():  # runs in the main thread: is it mid-write?
        _pending_interrupt = True
        return
    raise KeyboardInterrupt


def _raise_pending_interrupt():
    """Raise the KeyboardInterrupt a SIGINT deferred (while we were writing, or
    before the cell's code started) once user code may be interrupted."""
    __tracebackhide__ = True
    global _pending_interrupt
    if _pending_interrupt and _interruptible and not _LOCK._is_owned():
        _pending_interrupt = False
        raise KeyboardInterrupt


def _unencodable(obj):
    # json's `default`: never call user code from inside the lock
    return "<unserializable %s>" % type(obj).__name__


def _encode(record):
    """One protocol line: JSON, UTF-8, lone surrogates replaced."""
    try:
        text = _ENCODER.encode(record)
    except (TypeError, ValueError, RecursionError) as exc:
        note = "cellgate: could not send a %s record: %s\n" % (record.get("t"), exc)
        text = _ENCODER.encode({"t": "stream", "name": "stderr", "text": note})
    line = (text + "\n").encode("utf-8", "replace")
    if len(line) > MAX_LINE:
        note = "cellgate: dropped a %s record of %d bytes (limit 64 MiB)\n" % (
            record.get("t"), len(line))
        line = (_ENCODER.encode({"t": "stream", "name": "stderr", "text": note})
                + "\n").encode("utf-8")
    return line


def _stream_line(name, text):
    """A `stream` record in the raw form: a header line, then the UTF-8
    bytes themselves.  Nothing is escaped on either side, which is what
    makes 10 MB of prints cheap."""
    data = text.encode("utf-8", "replace")
    return b'{"t":"stream","name":"%s","bytes":%d}\n%s' % (name.encode(), len(data), data)


_FIONREAD = 0x541B  # <asm-generic/ioctls.h>; avoids importing termios
_ZERO = bytes(4)


def _sync_raw():
    """If a subprocess's output is waiting unread in our raw stdout/stderr
    pipes, it was written before the record we are about to send: tell the
    kernel to drain the pipes first (PROTOCOL.md, "Ordering").  The caller
    holds _LOCK."""
    for fd in (1, 2):
        try:
            waiting = int.from_bytes(_fcntl.ioctl(fd, _FIONREAD, _ZERO), sys.byteorder)
        except OSError:
            continue
        if waiting:
            _write_line(b'{"t":"sync"}\n')
            return


def _write_line(line):
    """Write one whole line to fd 3.  The caller holds _LOCK."""
    view = memoryview(line)
    try:
        while view:
            view = view[os.write(CONTROL_FD, view):]
    except OSError:  # the kernel is gone (EPIPE): nobody is left to talk to
        os._exit(0)


def send(record, output=True):
    """Send one record, after any buffered stream text so order is kept.
    output=False: the record shows nothing (`started`, `done`), so raw
    output waiting in the pipes needs no `sync` before it, unless stream
    text goes first (`done` makes the kernel drain the pipes anyway)."""
    __tracebackhide__ = True
    if _in_forked_child:
        return
    line = _encode(record)  # outside the lock: big bundles take a while
    with _LOCK:
        _flush_locked(output)
        _write_line(line)
    _raise_pending_interrupt()


class _Requests:
    """Reads JSON lines from fd 3.  Messages that arrive while input() waits
    for its reply are kept for the request loop."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = bytearray()
        self.scanned = 0  # bytes of buffer known to hold no newline
        self.held = []

    def next(self):
        """The next message (a dict), or None at end of file."""
        if self.held:
            return self.held.pop(0)
        while True:
            newline = self.buffer.find(b"\n", self.scanned)
            if newline < 0:
                self.scanned = len(self.buffer)
                # A SIGINT that interrupts a completed read may lose the
                # chunk; that only happens inside input(), where the kernel
                # sends nothing but the (now unwanted) input_reply.
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
                continue
            line = bytes(self.buffer[:newline])
            del self.buffer[:newline + 1]
            self.scanned = 0
            try:
                message = json.loads(line)
            except ValueError as exc:
                _log("bad request line (%s): %r" % (exc, line[:200]))
                continue
            if isinstance(message, dict):
                return message
            _log("request is not an object: %r" % line[:200])


_REQUESTS = _Requests(CONTROL_FD)


# ---------------------------------------------------------------------------
# sys.stdout / sys.stderr
#
# The hot path takes no lock: each stream appends to its own list (list
# append is atomic under the GIL).  Order across the two streams stays exact
# because a write to one stream first flushes the other one's text, and a
# flush removes and sends each list in turn while holding _LOCK; it removes
# with parts[:n] + del parts[:n], so an append racing it is kept, not lost.
# Text is sent when FLUSH_AT chars are buffered, before any other record, on
# flush(), and by a background thread FLUSH_DELAY after a write.

_STDOUT_PARTS = []
_STDERR_PARTS = []
_buffered = 0  # chars in both lists; updated without a lock, only a hint


def _flush_locked(sync=True):
    """Send the buffered stream text.  The caller holds _LOCK.  sync=False:
    no `sync` check (two ioctls) unless there is text to send."""
    global _buffered
    _buffered = 0
    if not _in_forked_child and (sync or _STDOUT_PARTS or _STDERR_PARTS):
        _sync_raw()
    for name, parts in (("stdout", _STDOUT_PARTS), ("stderr", _STDERR_PARTS)):
        if not parts:
            continue
        count = len(parts)
        text = "".join(parts[:count])
        del parts[:count]
        if _in_forked_child:  # fd 3 belongs to the parent: use the raw pipes
            try:
                os.write(1 if name == "stdout" else 2, text.encode("utf-8", "replace"))
            except OSError:
                pass
            continue
        for start in range(0, len(text), STREAM_CHUNK):
            chunk = text[start:start + STREAM_CHUNK]
            _write_line(_stream_line(name, chunk))


def flush_streams():
    """Send whatever sys.stdout/sys.stderr have buffered, now."""
    __tracebackhide__ = True
    with _LOCK:
        _flush_locked()
    _raise_pending_interrupt()


class _Flusher:
    """One daemon thread that flushes FLUSH_DELAY after a write, so that
    `print(1); time.sleep(5)` shows the 1 promptly."""

    def __init__(self):
        self.scheduled = False
        self.started = False
        self.wake = _thread.allocate_lock()
        self.wake.acquire()  # held = nothing to do

    def schedule(self):
        self.scheduled = True
        if not self.started:
            self.started = True
            _thread.start_new_thread(self._run, ())
        try:
            self.wake.release()
        except RuntimeError:  # already released by a racing writer
            pass

    def _run(self):
        while True:
            self.wake.acquire()
            time.sleep(FLUSH_DELAY)
            self.scheduled = False  # before flushing: later writes reschedule
            try:
                with _LOCK:
                    _flush_locked()
            except Exception as exc:  # keep flushing whatever happens
                _log("background flush failed: %r" % exc)


_FLUSHER = _Flusher()


class DriverStream(io.TextIOBase):
    """sys.stdout / sys.stderr: a text stream that becomes `stream` records."""

    encoding = "utf-8"
    errors = "replace"
    mode = "w"
    line_buffering = False

    def __init__(self, name, parts, other_parts):
        super().__init__()
        self.name = "<%s>" % name
        self._parts = parts
        self._other_parts = other_parts

    def write(self, text):
        global _buffered
        __tracebackhide__ = True
        if text.__class__ is not str and not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if self._other_parts:  # the other stream's text goes out first
            flush_streams()
        self._parts.append(text)
        _buffered += len(text)
        if _buffered >= FLUSH_AT or _in_forked_child:
            flush_streams()
        elif not _FLUSHER.scheduled:
            _FLUSHER.schedule()
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        __tracebackhide__ = True
        flush_streams()

    def close(self):
        # A closed sys.stdout would silence the notebook for good; ipykernel
        # users get away with it, so closing only flushes.
        self.flush()

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("fileno")

    def reconfigure(self, **options):
        pass  # the encoding is always UTF-8; accept what scripts ask for


def _flush_process_streams():
    """Flush output that bypasses our streams but sits in this process:
    sys.__stdout__/__stderr__ buffers, and C stdio if ctypes is loaded."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    if "ctypes" in sys.modules:  # C code printing via printf: fflush(NULL)
        try:
            sys.modules["ctypes"].CDLL(None).fflush(None)
        except Exception:
            pass


# ---------------------------------------------------------------------------
# Mime bundles and display()

_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BASE64_MIMES = frozenset(("image/png", "image/jpeg", "image/gif", "application/pdf"))


def _warn(message):
    """A note for the user on the cell's stderr."""
    _STDERR.write("cellgate: %s\n" % message)


def _safe_str(obj):
    try:
        return str(obj)
    except Exception:
        return "<unprintable %s object>" % type(obj).__name__


def _json_safe(value):
    try:
        json.dumps(value, allow_nan=False)
        return True
    except Exception:
        return False


def _normalize(mime, value):
    """value as a JSON-ready bundle entry for mime, or None to leave it out."""
    if mime in _BASE64_MIMES:
        if isinstance(value, (bytes, bytearray, memoryview)):
            import binascii
            return binascii.b2a_base64(bytes(value), newline=False).decode("ascii")
        return value if isinstance(value, str) else None  # str: already base64
    if mime == "application/json" or mime.endswith("+json"):
        if isinstance(value, str):  # like IPython: a JSON text is parsed
            try:
                value = json.loads(value)
            except ValueError:
                return None
        return value if _json_safe(value) else None
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return None


def _repr_method(obj, name):
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _call_repr(obj, name, *args, **kwargs):
    """Call one repr method; its failure costs only its own mime type."""
    method = _repr_method(obj, name)
    if method is None:
        return None
    try:
        return method(*args, **kwargs)
    except Exception as exc:
        _warn("%s() of a %s object raised %s: %s" % (
            name, type(obj).__name__, type(exc).__name__, _safe_str(exc)))
        return None


def _split_metadata(value):
    """Repr methods may return (data, metadata)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return value[0], value[1]
    return value, None


def _plain_repr(obj):
    try:
        return repr(obj)
    except Exception as exc:
        _warn("repr() of a %s object raised %s: %s" % (
            type(obj).__name__, type(exc).__name__, _safe_str(exc)))
        return object.__repr__(obj)


def _fakes_attributes(obj):
    """Objects answering every getattr (proxies, mocks) get text/plain only;
    IPython uses the same canary name."""
    try:
        return hasattr(obj, "_ipython_canary_method_should_not_exist_")
    except Exception:
        return True


def mime_bundle(obj, include=None, exclude=None):
    """(data, metadata) for obj: `_repr_mimebundle_` first, then the
    `_repr_*_` methods for missing types, then repr() as text/plain."""
    data, metadata = {}, {}
    # On a class, _repr_html_ and friends are unbound functions: skip them.
    if not isinstance(obj, type) and not _fakes_attributes(obj):
        bundle, bundle_md = _split_metadata(
            _call_repr(obj, "_repr_mimebundle_", include=include, exclude=exclude))
        if isinstance(bundle, dict):
            for mime, value in bundle.items():
                value = _normalize(str(mime), value)
                if value is not None:
                    data[str(mime)] = value
        if bundle_md and _json_safe(bundle_md):
            metadata.update(bundle_md)
        for mime, name in _REPR_METHODS:
            if mime in data:
                continue
            value, md = _split_metadata(_call_repr(obj, name))
            value = _normalize(mime, value)
            if value is not None:
                data[mime] = value
                if md and _json_safe(md):
                    metadata[mime] = md
    if "text/plain" not in data:
        data["text/plain"] = _plain_repr(obj)
    if include:
        data = {k: v for k, v in data.items() if k in include}
    if exclude:
        data = {k: v for k, v in data.items() if k not in exclude}
    return data, metadata


_DISPLAY_CAPTURES = []  # one list of RichOutput per running %%capture, innermost last


def _new_display_id():
    return os.urandom(16).hex()


def _displays_itself(obj):
    """IPython's _ipython_display_ protocol: an object with that method shows
    itself (usually through display()) instead of being formatted.  True if
    it did; a failing method costs only a warning, as in IPython."""
    if isinstance(obj, type) or _fakes_attributes(obj):
        return False
    method = _repr_method(obj, "_ipython_display_")
    if method is None:
        return False
    try:
        method()
    except Exception as exc:
        _warn("_ipython_display_() of a %s object raised %s: %s" % (
            type(obj).__name__, type(exc).__name__, _safe_str(exc)))
        return False
    return True


def _raw_bundle(data):
    """A mime bundle given as it is (display(raw=True), publish_display_data):
    bytes of image types become base64, anything else unusable is left out."""
    bundle = {}
    if isinstance(data, dict):
        for mime, value in data.items():
            normal = _normalize(str(mime), value)
            if normal is not None:
                bundle[str(mime)] = normal
            elif _json_safe(value):
                bundle[str(mime)] = value
    return bundle


def publish_display_data(data, metadata=None, source=None, *, transient=None,
                         update=False, **kwargs):
    """Send one mime bundle as display_data (update_display_data when
    update), like IPython.display.publish_display_data.  Inside %%capture
    the output is kept by the capture instead."""
    record = {"t": "display", "data": _raw_bundle(data),
              "metadata": dict(metadata) if isinstance(metadata, dict) else {}}
    if transient:
        record["transient"] = dict(transient)
    if update:
        record["update"] = True
    if _DISPLAY_CAPTURES:
        _DISPLAY_CAPTURES[-1].append(RichOutput(record["data"], record["metadata"],
                                                transient, update))
        return
    send(record)


def display(*objs, include=None, exclude=None, metadata=None, transient=None,
            display_id=None, raw=False, clear=False, update=False, **kwargs):
    """Show objects in the notebook, like IPython.display.display.

    raw=True: each obj is already a mime bundle.  display_id=True makes a new
    id; with any display_id a DisplayHandle is returned for later updates,
    and with no objects an empty output is made, to be updated later."""
    if clear:
        clear_output(wait=True)
    transient = dict(transient or {})
    if display_id is True:
        display_id = _new_display_id()
    if display_id:
        transient["display_id"] = display_id
    if update and "display_id" not in transient:
        raise TypeError("display_id required for update_display")
    if not objs and display_id:
        objs, raw = ({},), True
    for obj in objs:
        if raw:
            data, md = obj, {}
        elif _displays_itself(obj):
            continue
        else:
            data, md = mime_bundle(obj, include, exclude)
        if metadata:
            md = dict(md, **metadata)
        publish_display_data(data, md, transient=transient, update=update)
    if display_id:
        return DisplayHandle(display_id)
    return None


def update_display(obj, *, display_id, **kwargs):
    """Replace the output shown earlier with this display_id."""
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)


def clear_output(wait=False):
    """Clear the cell's output (wait=True: when the next output arrives);
    inside %%capture, forget the displays captured so far."""
    if _DISPLAY_CAPTURES:
        del _DISPLAY_CAPTURES[-1][:]
        return
    flush_streams()
    send({"t": "clear", "wait": bool(wait)})


class DisplayHandle:
    """What display(..., display_id=...) returns: update that output later."""

    def __init__(self, display_id=None):
        self.display_id = display_id or _new_display_id()

    def __repr__(self):
        return "<%s display_id=%s>" % (type(self).__name__, self.display_id)

    def display(self, obj, **kwargs):
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        update_display(obj, display_id=self.display_id, **kwargs)


class StdinNotImplementedError(NotImplementedError):
    """input() was called but the client cannot answer input requests."""


_CELLGATE_API = [display, update_display, clear_output, publish_display_data,
                 DisplayHandle, StdinNotImplementedError]  # the `cellgate` module


# ---------------------------------------------------------------------------
# input() and getpass()

_allow_stdin = False  # the running execute's allow_stdin
_INPUT_LOCK = _thread.allocate_lock()  # one reader of fd 3 at a time


def _request_input(prompt, password, what):
    __tracebackhide__ = True
    if _in_forked_child or not _allow_stdin:
        raise StdinNotImplementedError(
            "%s was called, but this client does not support input requests "
            "(allow_stdin is false)" % what)
    with _INPUT_LOCK:
        send({"t": "input", "prompt": prompt, "password": bool(password)})
        while True:
            message = _REQUESTS.next()
            if message is None:
                raise EOFError("the kernel closed the control channel")
            if message.get("t") == "input_reply":
                value = message.get("value")
                return value if isinstance(value, str) else ""
            _REQUESTS.held.append(message)  # not ours: the request loop's


def cell_input(prompt=""):
    """input() for cells: asks the notebook user through an input request."""
    __tracebackhide__ = True
    return _request_input(_safe_str(prompt), False, "input()")


def cell_getpass(prompt="Password: ", stream=None):
    """getpass.getpass() for cells: an input request with password=true."""
    __tracebackhide__ = True
    return _request_input(_safe_str(prompt), True, "getpass()")


cell_input.__name__ = cell_input.__qualname__ = "input"
cell_getpass.__name__ = cell_getpass.__qualname__ = "getpass"


# ---------------------------------------------------------------------------
# Tracebacks: only the user's frames

_COLOR_RED, _COLOR_GREEN, _COLOR_CYAN, _COLOR_RESET = (
    "\x1b[0;31m", "\x1b[0;32m", "\x1b[0;36m", "\x1b[0m")


def _without_driver_frames(tb):
    """The traceback chain with every frame of this file left out."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_globals is not DRIVER_GLOBALS:
            kept.append(tb)
        tb = tb.tb_next
    for first, second in zip(kept, kept[1:]):
        first.tb_next = second
    if kept:
        kept[-1].tb_next = None
        return kept[0]
    return None


def _strip_driver_frames(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = _without_driver_frames(exc.__traceback__)
        # the chain printed is __cause__, else __context__; strip both
        if exc.__cause__ is not None and id(exc.__cause__) not in seen:
            _strip_driver_frames(exc.__cause__)
        exc = exc.__context__


def _colorize(line):
    import re
    if line.startswith("Traceback (most recent call last)"):
        return _COLOR_RED + line + _COLOR_RESET
    match = re.match(r'(  File )"(.*)", line (\d+)(, in )?(.*)', line)
    if match:
        head = '%s"%s%s%s", line %s%s%s' % (
            match.group(1), _COLOR_GREEN, match.group(2), _COLOR_RESET,
            _COLOR_GREEN, match.group(3), _COLOR_RESET)
        if match.group(4):
            head += match.group(4) + _COLOR_CYAN + match.group(5) + _COLOR_RESET
        return head + line[match.end():]
    match = re.match(r"([A-Za-z_][\w.]*)(:|$)", line)
    if match:  # the exception line: "ValueError: bad"
        return _COLOR_RED + match.group(1) + _COLOR_RESET + line[match.end(1):]
    return line


def format_traceback(exc, color=False):
    """Traceback lines for exc without driver frames, ready for Jupyter
    (entries without trailing newlines; frontends join them with "\\n")."""
    import traceback
    _strip_driver_frames(exc)
    try:
        chunks = list(traceback.TracebackException(
            type(exc), exc, exc.__traceback__, compact=True).format())
    except Exception:
        chunks = ["%s: %s" % (type(exc).__name__, _safe_str(exc))]
    lines = [chunk[:-1] if chunk.endswith("\n") else chunk for chunk in chunks]
    return [_colorize(line) for line in lines] if color else lines


def _error_fields(exc, color):
    return {
        "ename": type(exc).__name__,
        "evalue": _safe_str(exc),
        "traceback": format_traceback(exc, color),
    }


def _report_error(exc, color):
    """The cell's one `error` record; also sys.last_* for pdb.pm()."""
    record = {"t": "error"}
    record.update(_error_fields(exc, color))  # strips the driver's frames
    if isinstance(exc, UsageError):  # like IPython: the message, no traceback
        record["traceback"] = [_colorize(line) if color else line for line in
                               ("UsageError: %s" % record["evalue"],)]
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
    send(record)


# ---------------------------------------------------------------------------
# execute

_USER_MODULE = None  # the user's __main__, made in _install
_USER_NS = None
_OUT_HISTORY = {}  # Out[N], like IPython
_LAST_UNDERS = {}  # what we last stored in _, __, ___
_future_flags = 0  # `from __future__` imports stay on for later cells
_FUTURE_MASK = 0
_event_loop = None


def _interruptibly(function, *args):
    """Call function with SIGINT raising KeyboardInterrupt: it runs user code."""
    global _interruptible
    previous = _interruptible
    _interruptible = True
    try:
        _raise_pending_interrupt()
        return function(*args)
    finally:
        _interruptible = previous


def _cell_filename(count, code):
    """"<cell N>", registered in linecache so tracebacks show the source.
    A count seen before with other code (silent executes) gets a suffix."""
    return _source_filename("<cell %s>" % count if count is not None else "<cell>", code)


def _source_filename(base, code):
    """base ("<...>"), or base with a suffix if base is taken by other code,
    registered in linecache with code's lines."""
    lines = code.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    name, copy = base, 1
    while name in linecache.cache and linecache.cache[name][2] != lines:
        copy += 1
        name = "%s (%d)>" % (base[:-1], copy)
    linecache.cache[name] = (len(code), None, lines, name)
    return name


def strip_leading_indent(code):
    """IPython runs a cell whose first line is indented (pasted code) after
    removing that indentation from every line; so do we."""
    lines = code.splitlines(True)
    first = next((line for line in lines if line.strip()), "")
    indent = first[:len(first) - len(first.lstrip(" \t"))]
    if not indent or first.lstrip().startswith("#"):
        return code
    return "".join(line[len(indent):] if line.startswith(indent) else line
                   for line in lines)


def _ends_with_semicolon(code, node):
    """IPython hides the value of a last expression followed by ';'."""
    lines = code.split("\n")
    index = node.end_lineno - 1
    rest = lines[index].encode("utf-8")[node.end_col_offset:].decode("utf-8", "replace")
    rest += "\n".join(lines[index + 1:])
    return rest.lstrip().startswith(";")


def _compile_cell(code, filename, column=0):
    """(body, last, quiet): the cell without its last expression, that
    expression compiled in 'eval' mode (or None), and whether ';' hides it.
    column: UTF-8 bytes before the code on its line as the user wrote it
    (the statement of a line magic), so tracebacks point at the right place."""
    global _future_flags
    flags = _future_flags | PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(code, filename, "exec", flags | PyCF_ONLY_AST, dont_inherit=True)
    last, quiet = None, False
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        node = tree.body.pop()
        quiet = _ends_with_semicolon(code, node)
        _shift_columns(node, column)
        last = compile(ast.Expression(node.value), filename, "eval", flags, dont_inherit=True)
    _shift_columns(tree, column)
    body = compile(tree, filename, "exec", flags, dont_inherit=True)
    _future_flags |= body.co_flags & _FUTURE_MASK
    return body, last, quiet


def _run_code(code, globals_=None, locals_=None):
    """Run compiled code (in the user namespace unless told otherwise)."""
    result = eval(code, _USER_NS if globals_ is None else globals_, locals_)
    if code.co_flags & CO_COROUTINE:  # top-level await
        global _event_loop
        if _event_loop is None:
            import asyncio
            _event_loop = asyncio.new_event_loop()
        result = _event_loop.run_until_complete(result)
    return result


def _run_body_and_last(body, last, globals_=None, locals_=None):
    _run_code(body, globals_, locals_)
    return None if last is None else _run_code(last, globals_, locals_)


def _remember_result(value, count, store):
    """_, __, ___ (unless the user took them over), _N and Out[N]."""
    ns = _USER_NS
    unders = ("_", "__", "___")
    # like IPython: a `for _ in ...` in a cell makes `_` the user's
    if all(u not in ns or ns[u] is _LAST_UNDERS.get(u) for u in unders):
        ns["___"], ns["__"], ns["_"] = ns.get("__", ""), ns.get("_", ""), value
        _LAST_UNDERS.update((u, ns[u]) for u in unders)
    if store and isinstance(count, int):
        ns["_%d" % count] = value
        _OUT_HISTORY[count] = value


def _run_cell(code, count, silent, store, color):
    """Run one cell and send its result or its one error.
    Returns the exception that ended it, or None."""
    help_request = _help_request(code)
    try:
        if help_request:
            _interruptibly(_page_help, *help_request)
            return None
        code = strip_leading_indent(code)
        filename = _cell_filename(count, code)  # tracebacks show what was written
        body, last, quiet = _compile_cell(transform_cell(code), filename)
        value = _interruptibly(_run_body_and_last, body, last)
        if value is not None and not silent and not quiet:
            _remember_result(value, count, store)
            if not _interruptibly(_displays_itself, value):
                data, metadata = _interruptibly(mime_bundle, value)
                send({"t": "result", "data": data, "metadata": metadata})
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too
        if _in_forked_child:
            return exc
        _report_error(exc, color)
        return exc
    return None


# ---------------------------------------------------------------------------
# Shell escapes and line magics, as in IPython
#
# Before a cell is compiled, each logical line written as `!cmd`, `!!cmd`,
# `%name args`, `target = !cmd` or `target = %name args` becomes one call into
# the cellgate module on that same line (a command continued with a
# backslash leaves blank lines behind), so line numbers stay right; the
# source shown in tracebacks is still what the user wrote (linecache holds
# the original).  Lines inside strings, brackets or backslash continuations
# are never rewritten, so `!` and `%` keep their Python meaning there.
#
# `{expr}` and `$name` in a command are expanded in the calling frame when
# it runs, like IPython's var_expand (`$$` stays a literal `$`); if any of
# them fails the command runs exactly as written, so `awk '{print $1}'` and
# `echo $HOME` reach the shell untouched.

_SHELL_PATTERNS = None  # (escape line, assignment), compiled on first use
_SHELL_CALL = "__import__('cellgate')."  # works in any scope, names nothing


def _shell_patterns():
    global _SHELL_PATTERNS
    if _SHELL_PATTERNS is None:
        import re
        _SHELL_PATTERNS = (
            # `%%name` too: a cell magic below the first line, named in the error
            re.compile(r"([ \t]*)(!!?|%(?=%?[A-Za-z_]))(.*)", re.S),
            re.compile(r"""([ \t]*)((?:[^=!'"#\\]|'[^'\\]*'|"[^"\\]*")+?)"""
                       r"""[ \t]*=[ \t]*(!!?|%(?=%?[A-Za-z_]))(.*)""", re.S),
        )
    return _SHELL_PATTERNS


def _scan_line(line, quote, depth):
    """Python's lexical state after line: (open quote or None, bracket
    depth, whether a backslash continues the line)."""
    i, n, comment = 0, len(line), False
    while i < n:
        char = line[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif char == "#":
            comment = True
            break
        elif char in "'\"":
            quote = line[i:i + 3] if line[i:i + 3] in ("'''", '"""') else char
            i += len(quote)
            continue
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        i += 1
    backslash = line.rstrip("\r").endswith("\\") and not comment
    if quote in ("'", '"') and not backslash:
        quote = None  # an unterminated one-line string: a syntax error anyway
    return quote, depth, backslash and quote is None


def _is_target(text):
    """Is text something Python can assign to (`x`, `a, b`, `d['k']`)?"""
    try:
        tree = compile(text + " = None", "<target>", "exec", PyCF_ONLY_AST, dont_inherit=True)
    except Exception:
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign)


def _shell_call(lines, index):
    """(call, lines used) if lines[index] starts a shell or magic line, else None."""
    escape, assign = _shell_patterns()
    line = lines[index]
    target = None
    match = escape.fullmatch(line)
    if match:
        indent, kind, text = match.groups()
    else:
        match = assign.fullmatch(line)
        if not match or not _is_target(match.group(2).strip()):
            return None
        indent, target, kind, text = match.groups()
    used = 1
    parts = [text]
    while parts[-1].rstrip().endswith("\\") and index + used < len(lines):
        parts.append(lines[index + used])  # IPython joins these with spaces
        used += 1
    text = " ".join([part.rstrip()[:-1] for part in parts[:-1]] + [parts[-1].rstrip()])
    if kind == "%":
        name, args = (text.split(None, 1) + [""])[:2]
        call = "%smagic(%r, %r)" % (_SHELL_CALL, name, args.strip())
    elif kind == "!!" or target is not None:
        call = "%sgetoutput(%r)" % (_SHELL_CALL, text.strip())
    else:
        call = "%ssystem(%r)" % (_SHELL_CALL, text.strip())
    if target is not None:
        call = "%s = %s" % (target.strip(), call)
    return indent + call, used


def transform_shell_lines(code):
    """code with its `!cmd` and `%magic` lines turned into calls; the same
    number of lines, everything else unchanged."""
    if "!" not in code and "%" not in code:
        return code
    lines = code.split("\n")
    out = []
    quote, depth, continued = None, 0, False
    index = 0
    while index < len(lines):
        if quote is None and depth == 0 and not continued:
            found = _shell_call(lines, index)
            if found is not None:
                call, used = found
                out.append(call)
                out.extend([""] * (used - 1))
                index += used
                continue
        quote, depth, continued = _scan_line(lines[index], quote, depth)
        out.append(lines[index])
        index += 1
    return "\n".join(out)


_FORMATTER = None


def _dollar_formatter():
    """IPython's DollarFormatter: str.format fields hold any expression
    (`{a[1:3]}`, `{len(x)}`), and `$name` / `$a.b` outside single quotes is a
    field too; `$$name` is a literal `$name`."""
    global _FORMATTER
    if _FORMATTER is None:
        import re
        import string
        dollar = re.compile(r"(.*?)\$(\$?[\w\.]+)(?=([^']*'[^']*')*[^']*$)", re.S)

        class DollarFormatter(string.Formatter):
            def parse(self, format_string):
                for literal, field, spec, conversion in super().parse(format_string):
                    text, done = "", 0
                    for match in dollar.finditer(literal):
                        before, name = match.group(1, 2)
                        if name.startswith("$"):
                            text += before + name
                        else:
                            yield text + before, name, "", None
                            text = ""
                        done = match.end()
                    yield text + literal[done:], field, spec, conversion

            def vformat(self, format_string, args, namespace):
                result = []
                for literal, field, spec, conversion in self.parse(format_string):
                    result.append(literal)
                    if field is not None:
                        if spec:
                            field += ":" + spec  # `{a[1:3]}` is a slice, not a spec
                        value = self.convert_field(eval(field, namespace), conversion)
                        result.append(self.format_field(value, ""))
                return "".join(result)

        _FORMATTER = DollarFormatter()
    return _FORMATTER


def expand(command, frame=None):
    """command with `{expr}` and `$name` filled in from frame's names (the
    caller's by default), or unchanged if any of them fails."""
    frame = frame or sys._getframe(1)
    namespace = dict(frame.f_globals)
    namespace.update(frame.f_locals)
    try:
        return _dollar_formatter().vformat(command, (), namespace)
    except Exception:
        return command


class SList(list):
    """The lines a command printed (`lines = !cmd`), like IPython's SList:
    a list, plus .n (joined by newlines), .s (by spaces), .l and .p."""

    @property
    def l(self):  # noqa: E743 (IPython's name)
        return self

    @property
    def n(self):
        return "\n".join(self)

    @property
    def s(self):
        return " ".join(self)

    @property
    def p(self):
        import pathlib
        return [pathlib.Path(line) for line in self]

    def grep(self, pattern, prune=False):
        """The lines matching the regular expression (prune: not matching)."""
        import re
        return SList(line for line in self if bool(re.search(pattern, line)) != prune)


class UsageError(Exception):
    """A magic that does not exist or was used wrongly."""


def _run_shell(command, capture=False, merged=False):
    """/bin/sh -c command, with the cell's stdout/stderr (or captured output,
    stderr merged into it, when capture).  When sys.stdout or sys.stderr is
    not ours (%%capture, contextlib.redirect_stdout) the output is read and
    written there once the command ends, as ipykernel does.  Sets
    _exit_code.  An interrupt reaches the shell too (same process group);
    the KeyboardInterrupt that ends the cell shows only the user's line."""
    import subprocess
    flush_streams()
    _flush_process_streams()
    redirected = not capture and (sys.stdout is not _STDOUT or sys.stderr is not _STDERR)
    pipe = subprocess.PIPE if capture or redirected else None
    try:
        done = subprocess.run(["/bin/sh", "-c", command], stdout=pipe,
                              stderr=subprocess.STDOUT if capture or merged else pipe)
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None
    if redirected:
        sys.stdout.write(done.stdout.decode("utf-8", "replace"))
        if done.stderr is not None:
            sys.stderr.write(done.stderr.decode("utf-8", "replace"))
    _USER_NS["_exit_code"] = done.returncode
    return done


def system(command):
    """`!command`: run it through /bin/sh; its output is the cell's output.
    A failing command does not raise: its status is `_exit_code`."""
    _run_shell(expand(command, sys._getframe(1)))


def getoutput(command, split=True):
    """`lines = !command`: run it through /bin/sh and return its output
    (stdout and stderr) as an SList of lines (as one string if not split)."""
    done = _run_shell(expand(command, sys._getframe(1)), capture=True)
    text = done.stdout.decode("utf-8", "replace")
    return SList(text.splitlines()) if split else text


def _magic_pip(args, frame):
    import shlex
    command = "%s -m pip %s" % (shlex.quote(sys.executable), args)
    status = _run_shell(command).returncode
    if status == 0:
        if args.split()[:1] in (["install"], ["uninstall"]):
            import importlib
            importlib.invalidate_caches()
            _STDOUT.write("Note: you may need to restart the kernel to use updated packages.\n")
        return
    if not _has_pip():
        _warn("%%pip ran `%s`, but pip is not installed for %s (No module named pip), "
              "so %%pip cannot install packages here" % (command, sys.executable))


def _has_pip():
    """Can sys.executable import pip?  Asked of the interpreter itself: its
    sys.path (user site, PYTHONPATH, a venv) need not be the driver's."""
    import subprocess
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pip') is None)"
    try:
        return subprocess.run([sys.executable, "-c", probe], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


_previous_dir = None  # for `%cd -`


def _magic_cd(args, frame):
    global _previous_dir
    target = args.strip()
    quiet = target == "-q" or target.startswith("-q ")
    if quiet:
        target = target[2:].strip()
    if len(target) >= 2 and target[0] == target[-1] and target[0] in "'\"":
        target = target[1:-1]
    if not target:
        target = os.path.expanduser("~")
    elif target == "-":
        if _previous_dir is None:
            raise UsageError("%cd -: no previous directory")
        target = _previous_dir
    else:
        target = os.path.expanduser(os.path.expandvars(target))
    here = os.getcwd()
    try:
        os.chdir(target)
    except OSError as exc:
        _STDERR.write("%s\n" % exc)
        return
    _previous_dir = here
    if not quiet:
        _STDOUT.write(os.getcwd() + "\n")


def _magic_env(args, frame):
    args = args.strip()
    if not args:  # the whole environment, likely secrets hidden (as IPython)
        env = dict(os.environ)
        for key in env:
            if any(word in key.lower() for word in ("key", "token", "secret")):
                env[key] = "<hidden>"
        return env
    split = "=" if "=" in args else " "
    name, sep, value = args.partition(split)
    name, value = name.strip(), value.strip()
    if not sep:
        if name in os.environ:
            return os.environ[name]
        raise UsageError("Environment does not have key: %s" % name)
    if not name or any(char.isspace() for char in name):
        raise UsageError("usage: %env NAME=VALUE (or %env NAME VALUE)")
    os.environ[name] = value
    _STDOUT.write("env: %s=%s\n" % (name, value))


def _magic_pwd(args, frame):
    return os.getcwd()


def _magic_matplotlib(args, frame):
    if args.strip() not in ("", "inline"):
        _warn("figures are always shown inline here; %%matplotlib %s is ignored"
              % args.strip())


# ---------------------------------------------------------------------------
# Cell magics and the timing magics, as in IPython
#
# A cell whose first line (after blank lines) is `%%name line` becomes one
# call, cell_magic(name, line, body), on that line; as in IPython the body
# ends with a newline and only `line` is expanded.  Magics that run Python
# code (%time, %timeit and their cell forms, %%capture) compile it with the
# caller's file name, after as many newlines as put it on the lines it was
# written on, so tracebacks show the user's source; a cell magic's body
# starts on the line after the call when that line holds the `%%` (it does,
# unless cellgate.cell_magic is called by hand).

def _split_cell_magic(code):
    """(blank lines before it, name, line, body) when code's first line
    that is not blank starts with `%%`, else None."""
    lines = code.split("\n")
    skip = 0
    while skip < len(lines) and not lines[skip].strip():
        skip += 1
    if skip == len(lines) or not lines[skip].startswith("%%"):
        return None
    name, line = (lines[skip][2:].split(None, 1) + ["", ""])[:2]
    body = "\n".join(lines[skip + 1:])
    if body and not body.endswith("\n"):
        body += "\n"
    return skip, name, line.strip(), body


def transform_cell(code):
    """code as Python: a cell magic becomes one call, and otherwise the
    `!cmd` and `%magic` lines become calls (transform_shell_lines)."""
    found = _split_cell_magic(code)
    if found is None:
        return transform_shell_lines(code)
    skip, name, line, body = found
    return "\n" * skip + "%scell_magic(%r, %r, %r)" % (_SHELL_CALL, name, line, body)


def _magic_function(name, cell):
    """The function of the cell magic (or line magic) name; a UsageError
    worded as IPython's when there is none."""
    table, other = (_CELL_MAGICS, _LINE_MAGICS) if cell else (_LINE_MAGICS, _CELL_MAGICS)
    if name in table:
        return table[name]
    if cell:
        message, hint = "Cell magic `%%%%%s` not found" % name, "line magic `%%%s`" % name
    else:
        message, hint = "Line magic function `%%%s` not found" % name, "cell magic `%%%%%s`" % name
    if name in other:
        message += " (But %s exists, did you mean that instead?)" % hint
    elif not cell and name[:1] == "%":
        message += " (a cell magic must start the cell)"
    raise UsageError(message + ".")


def _magic_line(name, line, frame):
    """line with `{expr}` / `$name` expanded, unless the magic takes Python."""
    return line if name in _CODE_MAGICS else expand(line, frame)


def magic(name, args=""):
    """`%name args`: run a line magic (_LINE_MAGICS) and return its value.
    `{expr}` / `$name` in args are expanded, except for %time and %timeit."""
    return _line_magic(name, args, sys._getframe(1))


def cell_magic(name, line, cell):
    """A cell `%%name line` followed by cell: run the cell magic
    (_CELL_MAGICS) and return its value.  `{expr}` / `$name` in line are
    expanded, except for %%time and %%timeit; cell is passed as written."""
    frame = sys._getframe(1)
    return _magic_function(name, cell=True)(_magic_line(name, line, frame), frame, cell)


def _line_magic(name, args, frame):
    """The line magic name run with args as if written in frame."""
    return _magic_function(name, cell=False)(_magic_line(name, args, frame), frame)


class Shell:
    """What get_ipython() returns: the part of IPython's shell that notebook
    code and `jupyter nbconvert --to script` output call (run_line_magic,
    run_cell_magic, system, getoutput, user_ns, ev, ex, push).  It is not
    IPython's ZMQInteractiveShell and does not pretend to be: code that
    looks for that class (to use widgets, say) takes its plain path."""

    @property
    def user_ns(self):
        return _USER_NS

    def run_line_magic(self, magic_name, line, _stack_depth=1):
        return _line_magic(magic_name, line, sys._getframe(_stack_depth))

    # The module's own functions: as static methods they add no frame, so
    # they expand names from the caller's as they do when called directly.
    run_cell_magic = staticmethod(cell_magic)
    system = staticmethod(system)
    getoutput = staticmethod(getoutput)

    def ev(self, expr):
        return eval(expr, _USER_NS)

    def ex(self, cmd):
        exec(cmd, _USER_NS)

    def push(self, variables):
        """Put variables (a dict, or names of the caller's) in user_ns."""
        if isinstance(variables, str):
            frame = sys._getframe(1)
            names = variables.replace(",", " ").split()
            variables = {n: eval(n, frame.f_globals, frame.f_locals) for n in names}
        _USER_NS.update(variables)


_SHELL = Shell()


def get_ipython():
    """The kernel's shell (a builtin, as in IPython): see Shell."""
    return _SHELL


def _code_origin(frame, name, source, cell):
    """(file name, first line, column) under which a magic called from frame
    compiles source, so that tracebacks show what the user wrote: a cell
    magic's body is the lines after the `%%` line (or, when cell_magic was
    called by hand, a file "<%%name>" of its own); a line magic's code is
    the end of the caller's line."""
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    written = linecache.getline(filename, lineno).rstrip()
    if not cell:
        code = source.strip()
        column = len(written) - len(code) if code and written.endswith(code) else 0
        return filename, lineno, len(written[:column].encode("utf-8"))
    if written.lstrip().startswith("%%"):
        return filename, lineno + 1, 0
    return _source_filename("<%%%%%s>" % name, source), 1, 0


def _shift_columns(tree, column):
    """Move every node of a one-line tree column bytes to the right."""
    if not column:
        return
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        for field in ("col_offset", "end_col_offset"):
            if getattr(node, field, None) is not None:
                setattr(node, field, getattr(node, field) + column)
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, ast.AST):
                nodes.append(value)
            elif isinstance(value, list):
                nodes.extend(item for item in value if isinstance(item, ast.AST))


def _placed(source, first_line):
    """source (magics and all) as Python, after first_line - 1 newlines."""
    return "\n" * (first_line - 1) + transform_cell(strip_leading_indent(source))


def _compile_at(source, origin):
    """_compile_cell's (body, last expression, quiet) for source from
    origin (see _code_origin)."""
    filename, line, column = origin
    return _compile_cell(_placed(source, line), filename, column)


def _run_at(source, frame, name, cell):
    """Run the code of a magic called from frame (see _code_origin) in
    frame's namespaces; the value of a last expression, or None."""
    body, last, quiet = _compile_at(source, _code_origin(frame, name, source, cell))
    value = _run_body_and_last(body, last, *_namespaces(frame))
    return None if quiet else value


def _namespaces(frame):
    """(globals, locals) to run code in as if in frame: locals is None at
    module level (a cell), a snapshot of a function's variables otherwise."""
    if frame.f_locals is frame.f_globals:
        return frame.f_globals, None
    return frame.f_globals, frame.f_locals


def _format_time(seconds, precision=3):
    """A duration as IPython writes it: `precision` significant digits in
    s, ms, µs or ns ("1.23 ms", "850 ns"); from a minute on, whole days,
    hours, minutes and seconds ("1h 2min 5s")."""
    if seconds >= 60:
        parts, left = [], seconds
        for unit, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            count = int(left // length)
            if count:
                parts.append("%d%s" % (count, unit))
                left -= count * length
        return " ".join(parts)
    rounded = float("%.*g" % (precision, seconds))  # 999.9 µs is "1 ms"
    for unit, scale in (("s", 1), ("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        if rounded * scale >= 1:
            break
    return "%.*g %s" % (precision, seconds * scale, unit)


def _magic_time(line, frame, cell=None):
    """%time STATEMENT and %%time: run the code once, then print the CPU
    (user, sys) and wall time it took; returns the value of a last
    expression.  An exception propagates and nothing is printed."""
    import resource
    if cell is not None and line.strip():
        raise UsageError("Can't use statement directly after '%%time'!")
    source = line if cell is None else cell
    started = time.perf_counter()
    body, last, quiet = _compile_at(source, _code_origin(frame, "time", source, cell is not None))
    compiling = time.perf_counter() - started
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    value = _run_body_and_last(body, last, *_namespaces(frame))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print("CPU times: user %s, sys: %s, total: %s"
          % (_format_time(user), _format_time(system), _format_time(user + system)))
    print("Wall time: %s" % _format_time(wall))
    if compiling > 0.1:
        print("Compiler : %s" % _format_time(compiling))
    return None if quiet else value


class TimeitResult:
    """What `%timeit -o` returns: loops (per run), repeat (runs), all_runs
    (seconds each run took), timings (per loop), best, worst, average and
    stdev (per loop), compile_time; str() is the line %timeit prints."""

    def __init__(self, loops, repeat, best, worst, all_runs, compile_time, precision):
        self.loops = loops
        self.repeat = repeat
        self.best = best
        self.worst = worst
        self.all_runs = all_runs
        self.compile_time = compile_time
        self._precision = precision
        self.timings = [run / loops for run in all_runs]

    @property
    def average(self):
        return sum(self.timings) / len(self.timings)

    @property
    def stdev(self):
        mean = self.average
        return (sum((t - mean) ** 2 for t in self.timings) / len(self.timings)) ** 0.5

    def __str__(self):
        return "%s ± %s per loop (mean ± std. dev. of %d run%s, %s loop%s each)" % (
            _format_time(self.average, self._precision),
            _format_time(self.stdev, self._precision),
            self.repeat, "" if self.repeat == 1 else "s",
            format(self.loops, ","), "" if self.loops == 1 else "s")

    def __repr__(self):
        return "<TimeitResult : %s>" % self


# The function %timeit times; the setup replaces the first `pass`, the
# statement the second.  Statement and setup run with the cell's globals.
_TIMEIT_TEMPLATE = """\
def inner(_it, _timer):
    pass
    _t0 = _timer()
    for _i in _it:
        pass
    return _timer() - _t0
"""


def _timeit_function(stmt, setup, frame, cell):
    """inner(iterations, timer) -> seconds: runs setup (written on the
    caller's line) once, then stmt iterations times, compiled so that names
    resolve as they do in frame."""
    filename, first, column = _code_origin(frame, "timeit", stmt, cell)
    template = compile(_TIMEIT_TEMPLATE, filename, "exec", PyCF_ONLY_AST, dont_inherit=True)
    function = template.body[0]
    loop = function.body[-2]
    setup_origin = _code_origin(frame, "timeit", setup, False)
    for source, (_, line, shift), body in ((stmt, (filename, first, column), loop.body),
                                           (setup, setup_origin, function.body)):
        tree = compile(_placed(source, line), filename, "exec",
                       _future_flags | PyCF_ONLY_AST, dont_inherit=True)
        _shift_columns(tree, shift)
        if tree.body:  # in place of the `pass` that starts body
            body[:1] = tree.body
    code = compile(template, filename, "exec", _future_flags, dont_inherit=True)
    globals_, locals_ = _namespaces(frame)
    if locals_ is not None:  # called in a function: its variables too
        globals_ = dict(globals_)
        globals_.update(locals_)
    made = {}
    exec(code, globals_, made)
    return made["inner"]


def _time_loops(inner, loops):
    """Seconds inner takes for loops iterations, the garbage collector off
    as in timeit."""
    import gc
    import itertools
    collecting = gc.isenabled()
    gc.disable()
    try:
        return inner(itertools.repeat(None, loops), time.perf_counter)
    finally:
        if collecting:
            gc.enable()


def _autorange(inner, budget=0.2):
    """The first of 1, 2, 5, 10, 20, 50, ... loops that take budget seconds
    or more (timeit.Timer.autorange's rule)."""
    base = 1
    while True:
        for factor in (1, 2, 5):
            if _time_loops(inner, base * factor) >= budget:
                return base * factor
        base *= 10


def _short_options(line, spec, name):
    """getopt-style options at the start of line: ({letter: value, or True
    for a flag}, the rest of line as written).  spec lists the letters, a
    `:` after those that take a value (`-n 10`, `-n10`); options end at
    `--` or at a word that is not `-` and a letter (`-1` is code)."""
    import re
    options, rest = {}, line.strip()
    while True:
        match = re.match(r"-(\S*)\s*", rest)
        if not match or not (match.group(1)[:1].isalpha() or match.group(1) == "-"):
            break
        rest = rest[match.end():]
        letters = match.group(1)
        if letters == "-":
            break
        while letters:
            letter, letters = letters[0], letters[1:]
            where = spec.find(letter)
            if not letter.isalpha() or where < 0:
                raise UsageError("%%%s: option -%s not recognized (allowed: %s)"
                                 % (name, letter, " ".join("-" + c for c in spec if c != ":")))
            if spec[where + 1:where + 2] != ":":
                options[letter] = True
                continue
            if not letters:
                if not rest:
                    raise UsageError("%%%s: option -%s needs a value" % (name, letter))
                letters, rest = re.match(r"(\S*)\s*(.*)", rest, re.S).groups()
            options[letter], letters = letters, ""
    return options, rest


def _count_option(options, letter, default, name, least):
    """The integer value of option letter (default when absent)."""
    text = options.get(letter, default)
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise UsageError("%%%s: -%s takes a whole number of at least %d, not %r"
                         % (name, letter, least, text))
    return value


def _magic_timeit(line, frame, cell=None):
    """%timeit [-n N] [-r R] [-p P] [-q] [-o] STATEMENT, and %%timeit
    [options] [SETUP] with the cell as the statement: R runs (default 7) of
    N loops each (default: enough loops for a run to take 0.2 s), then
    `mean ± std. dev. per loop`.  -q prints nothing, -o returns the
    TimeitResult; -t and -c are accepted (the clock is always perf_counter)."""
    options, rest = _short_options(line, "n:r:p:qotc", "timeit")
    loops = _count_option(options, "n", 0, "timeit", 0)
    repeat = _count_option(options, "r", 7, "timeit", 1)
    precision = _count_option(options, "p", 3, "timeit", 1)
    if cell is None and not rest.strip():
        return None
    stmt, setup = (rest, "") if cell is None else (cell, rest)
    started = time.perf_counter()
    inner = _timeit_function(stmt, setup, frame, cell is not None)
    compiling = time.perf_counter() - started
    loops = loops or _autorange(inner)
    all_runs = [_time_loops(inner, loops) for _ in range(repeat)]
    per_loop = [run / loops for run in all_runs]
    result = TimeitResult(loops, repeat, min(per_loop), max(per_loop), all_runs,
                          compiling, precision)
    if "q" not in options:
        if result.worst > 4 * result.best > 0 and result.worst > 1e-6:
            print("The slowest run took %0.2f times longer than the fastest. This could mean "
                  "that an intermediate result is being cached." % (result.worst / result.best))
        print(result)
        if compiling > 0.1:
            print("Compiler time: %.2f s" % compiling)
    return result if "o" in options else None


def _words(line, name, flags, most):
    """(the flags given, the other words) of a magic's line split as a shell
    would; flags maps each accepted spelling (`-a`, `--append`) to a name,
    and at most `most` other words are allowed."""
    import shlex
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError("%%%s: %s" % (name, exc)) from None
    given, others = set(), []
    for word in words:
        if word[:1] == "-" and len(word) > 1:
            if word not in flags:
                raise UsageError("%%%s: unrecognized argument: %s (allowed: %s)"
                                 % (name, word, " ".join(flags) or "none"))
            given.add(flags[word])
        else:
            others.append(word)
    if len(others) > most:
        raise UsageError("%%%s: unrecognized arguments: %s" % (name, " ".join(others[most:])))
    return given, others


def _magic_writefile(line, frame, cell):
    """%%writefile [-a] FILE: write the cell to FILE (-a: append to it)."""
    given, words = _words(line, "writefile", {"-a": "append", "--append": "append"}, 1)
    if not words:
        raise UsageError("usage: %%writefile [-a] FILE")
    path = os.path.expanduser(words[0])
    append = "append" in given
    if not os.path.exists(path):
        print("Writing %s" % path)
    else:
        print(("Appending to %s" if append else "Overwriting %s") % path)
    with open(path, "a" if append else "w", encoding="utf-8") as file:
        file.write(cell)


def _display_magic(mime, kind):
    """A cell magic that shows the cell as mime, as IPython.display.<kind>
    would (%%html also takes --isolated)."""
    flags = {"--isolated": "isolated"} if mime == "text/html" else {}

    def show(line, frame, cell):
        given, _ = _words(line, kind.lower(), flags, 0)
        publish_display_data({mime: cell, "text/plain": "<IPython.core.display.%s object>" % kind},
                             {mime: {"isolated": True}} if given else {})
    show.__doc__ = "%%%%%s: show the cell as %s." % (kind.lower(), mime)
    return show


class RichOutput:
    """A display kept by %%capture: .data (a mime bundle) and .metadata.
    display() shows it; as a cell's value it shows as what it holds."""

    def __init__(self, data, metadata=None, transient=None, update=False):
        self.data = data
        self.metadata = metadata or {}
        self.transient = transient
        self.update = update

    def display(self):
        publish_display_data(self.data, self.metadata, transient=self.transient,
                             update=self.update)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata


class CapturedIO:
    """What %%capture keeps: .stdout and .stderr (str) and .outputs (a
    list of RichOutput); show(), or calling it, shows them all."""

    def __init__(self, stdout, stderr, outputs):
        self._stdout = stdout  # io.StringIO, or None when not captured
        self._stderr = stderr
        self.outputs = outputs

    @property
    def stdout(self):
        return self._stdout.getvalue() if self._stdout else ""

    @property
    def stderr(self):
        return self._stderr.getvalue() if self._stderr else ""

    def __str__(self):
        return self.stdout

    def show(self):
        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)
        for output in self.outputs:
            output.display()

    __call__ = show


def _magic_capture(line, frame, cell):
    """%%capture [--no-stdout] [--no-stderr] [--no-display] [NAME]: run the
    cell, keeping its output (and the value of a last expression, as a
    display) in a CapturedIO stored as NAME instead of showing it.  Shell
    commands' output is captured too; an exception still propagates."""
    given, words = _words(line, "capture", {"--no-stdout": "no-stdout", "--no-stderr":
                                            "no-stderr", "--no-display": "no-display"}, 1)
    out = None if "no-stdout" in given else io.StringIO()
    err = None if "no-stderr" in given else io.StringIO()
    displays = "no-display" not in given
    captured = CapturedIO(out, err, [])
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out or sys.stdout, err or sys.stderr
    if displays:
        _DISPLAY_CAPTURES.append(captured.outputs)
    try:
        value = _run_at(cell, frame, "capture", True)
        if displays:
            if value is not None:
                display(value)
                value = None
            if "matplotlib.pyplot" in sys.modules:
                show_figures()
        return value
    finally:
        sys.stdout, sys.stderr = saved
        if displays:
            _DISPLAY_CAPTURES.pop()
        if words:
            frame.f_globals[words[0]] = captured


# Line magics are called as function(line, frame), cell magics as
# function(line, frame, cell); frame is the caller's (the cell's).
_LINE_MAGICS = {
    "pip": _magic_pip,
    "cd": _magic_cd,
    "env": _magic_env,
    "pwd": _magic_pwd,
    "matplotlib": _magic_matplotlib,
    "time": _magic_time,
    "timeit": _magic_timeit,
}
_CELL_MAGICS = {
    "time": _magic_time,
    "timeit": _magic_timeit,
    "capture": _magic_capture,
    "writefile": _magic_writefile,
    "html": _display_magic("text/html", "HTML"),
    "markdown": _display_magic("text/markdown", "Markdown"),
    "svg": _display_magic("image/svg+xml", "SVG"),
    "latex": _display_magic("text/latex", "Latex"),
}
_CODE_MAGICS = frozenset(("time", "timeit"))  # their line is Python: never expanded

_CELLGATE_API += [system, getoutput, magic, cell_magic, expand, SList, UsageError,
                  TimeitResult, RichOutput, CapturedIO, Shell, get_ipython]
for _public in _CELLGATE_API:
    _public.__module__ = "cellgate"  # so pickle and help() find them there
del _public


# ---------------------------------------------------------------------------
# Import hooks
#
# One finder at the front of sys.meta_path does two things without importing
# anything up front: it makes modules no file provides, on first import (the
# matplotlib backend below, and `cellgate` itself should it be dropped from
# sys.modules), and it runs a function on some real modules right after they
# executed and before any other code can take names from them (how IPython's
# display functions become ours).  Any other import costs a dict lookup.

_MADE_MODULES = {}  # module name -> function(module) that fills it in
_AFTER_IMPORT = {}  # module name -> function(module) run once it has executed


class _ImportHooks:
    """The meta_path finder for _MADE_MODULES and _AFTER_IMPORT."""

    def find_spec(self, name, path=None, target=None):
        if name in _MADE_MODULES:
            import importlib.util
            return importlib.util.spec_from_loader(name, _MadeLoader(_MADE_MODULES[name]))
        hook = _AFTER_IMPORT.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:  # the real module, as the others find it
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, hook)
                return spec
        return None


class _MadeLoader:
    def __init__(self, fill):
        self.fill = fill

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.fill(module)


class _HookedLoader:
    """Runs the real loader, then the hook.  The module only ever sees the
    real loader (as __loader__ and __spec__.loader), so source lookups and
    resource readers work as usual."""

    def __init__(self, loader, hook):
        self.loader = loader
        self.hook = hook

    def create_module(self, spec):
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        try:
            self.hook(module)
        except Exception as exc:  # never break the user's import
            _warn("could not adapt module %s: %s: %s" % (
                module.__name__, type(exc).__name__, _safe_str(exc)))


def _after_import(name, hook):
    """Run hook(module) when the module named name is imported (now, if it is)."""
    _AFTER_IMPORT[name] = hook
    if name in sys.modules:
        hook(sys.modules[name])


# ---------------------------------------------------------------------------
# IPython.display
#
# Without an InteractiveShell, IPython's display() prints the objects' repr
# and clear_output() prints escape codes.  Its display functions are
# replaced by ours as soon as the module defining them has run, so
# `from IPython.display import display, HTML` (whose star import copies the
# replaced names), DisplayHandle.update() and the display objects' own calls
# all send display records.  IPython is never imported by the driver.

_IPYTHON_DISPLAY_MODULES = ("IPython.core.display_functions",  # IPython >= 7.14
                            "IPython.core.display",  # older ones define them here
                            "IPython.display")


def _adopt_ipython_display(module):
    for obj in (display, update_display, clear_output, publish_display_data,
                DisplayHandle):
        if obj.__name__ in module.__dict__:
            setattr(module, obj.__name__, obj)


# ---------------------------------------------------------------------------
# plotly
#
# plotly picks its renderer when plotly.io._renderers runs: a notebook's
# ("plotly_mimetype+notebook") only when IPython.get_ipython() is a shell,
# which here it is not, so fig.show() showed nothing.  Unless the user chose
# one (PLOTLY_RENDERER), it gets what it gets under ipykernel.  Not set
# through the environment, so plotly in a script run from a cell keeps its
# own choice.

def _plotly_renderer(module):
    if not os.environ.get("PLOTLY_RENDERER"):
        module.renderers.default = "plotly_mimetype+notebook"


# ---------------------------------------------------------------------------
# matplotlib, inline
#
# MPLBACKEND names a backend module, cellgate_inline, that no file provides:
# the import hooks make it when matplotlib asks for it, so nothing of
# matplotlib is imported until the user's code imports it.  plt.show() sends
# every open figure as a PNG display and closes it; figures still open when a
# cell ends are shown the same way, once.

_INLINE = "cellgate_inline"


def _fill_inline_backend(module):
    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    module.FigureCanvas = FigureCanvasAgg
    module.FigureManager = FigureManagerBase
    module.show = show_figures


def show_figures(*args, **kwargs):
    """Send each open figure as image/png + text/plain, then close them all."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    import base64
    for number in pyplot.get_fignums():
        figure = pyplot.figure(number)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        width, height = figure.get_size_inches() * figure.dpi
        text = "<Figure size %dx%d with %d Axes>" % (width, height, len(figure.axes))
        publish_display_data({"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                              "text/plain": text})
    pyplot.close("all")


def _install_import_hooks(ipython):
    # The user's own backend choice (MPLBACKEND set in the box, or
    # matplotlib.use()) wins; a cache directory in /tmp keeps /mnt/data free
    # of it.  With IPython's shell, matplotlib_inline is the backend, as
    # under ipykernel, and IPython's display functions are IPython's.
    os.environ.setdefault("MPLBACKEND", "module://" + (
        "matplotlib_inline.backend_inline" if ipython else _INLINE))
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/cellgate-matplotlib")
    _MADE_MODULES[_INLINE] = _fill_inline_backend
    _MADE_MODULES["cellgate"] = _fill_cellgate_module
    if not ipython:
        for name in _IPYTHON_DISPLAY_MODULES:
            _after_import(name, _adopt_ipython_display)
    else:
        _AFTER_IMPORT["ipykernel.comm"] = _ipython_comm_kernel
    _after_import("plotly.io._renderers", _plotly_renderer)
    sys.meta_path.insert(0, _ImportHooks())


def _user_expressions(expressions):
    """Evaluate the execute's user_expressions in the user namespace."""
    replies = {}
    for name, source in expressions.items():
        try:
            value = _interruptibly(eval, source, _USER_NS)
            data, metadata = _interruptibly(mime_bundle, value)
            replies[name] = {"status": "ok", "data": data, "metadata": metadata}
        except BaseException as exc:
            reply = {"status": "error"}
            reply.update(_error_fields(exc, False))
            replies[name] = reply
    return replies


def _run_cell_end(color):
    """Figures the cell left open are shown now (an error doing it is the
    cell's error)."""
    try:
        _interruptibly(show_figures)
    except BaseException as exc:
        _report_error(exc, color)
        return exc
    return None


def _exit_forked_child(exc):
    """A child made by os.fork() in a cell must never reach the request loop."""
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
    flush_streams()
    _flush_process_streams()
    os._exit(code)


def handle_execute(request):
    global _allow_stdin, _pending_interrupt, _in_execute
    _refresh_user_site()
    code = request.get("code")
    code = code if isinstance(code, str) else ""
    silent = bool(request.get("silent"))
    store = bool(request.get("store_history", True)) and not silent
    count = request.get("execution_count")
    color = bool(request.get("color"))
    expressions = request.get("user_expressions")
    _allow_stdin = bool(request.get("allow_stdin"))
    _pending_interrupt = False
    replies = {}
    _in_execute = True
    # Before any user code: if we die before this, the cell never ran and
    # the kernel may give it to a fresh runtime (PROTOCOL.md, "started").
    # The kernel holds back an interrupt until this has come.
    send({"t": "started"}, output=False)
    try:
        if _IPY is not None:
            failure = _ipython_execute(code, count, silent, store, color)
            if _in_forked_child:
                _exit_forked_child(failure)
            if failure is None and isinstance(expressions, dict) and expressions:
                replies = _ipython_user_expressions(expressions)
            return
        failure = _run_cell(code, count, silent, store, color)
        if _in_forked_child:
            _exit_forked_child(failure)
        if "matplotlib.pyplot" in sys.modules and not silent:
            failure = _run_cell_end(color) or failure
        if failure is None and isinstance(expressions, dict) and expressions:
            replies = _user_expressions(expressions)
    finally:
        _in_execute = False
        _allow_stdin = False
        _flush_process_streams()
        send({"t": "done", "user_expressions": replies}, output=False)


# ---------------------------------------------------------------------------
# Names and objects, for completion, inspection and `obj?`

def _is_dotted_name(text):
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def lookup(dotted):
    """The object a dotted name refers to in the user namespace (or builtins).
    Only attribute lookups run: nothing is called.  Raises on failure."""
    if not _is_dotted_name(dotted):
        raise LookupError(dotted)
    head, *rest = dotted.split(".")
    if head in _USER_NS:
        obj = _USER_NS[head]
    elif hasattr(builtins, head):
        obj = getattr(builtins, head)
    else:
        raise LookupError(dotted)
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _help_request(code):
    """(name, detail_level) when the cell is `name?`, `name??`, `?name`."""
    text = code.strip()
    if "\n" in text:
        return None
    if text.endswith("?"):
        name = text.rstrip("?")
        marks = len(text) - len(name)
    elif text.startswith("?"):
        name = text.lstrip("?")
        marks = len(text) - len(name)
    else:
        return None
    name = name.strip()
    if marks > 2 or not _is_dotted_name(name):
        return None
    return name, marks - 1


def _page_help(name, detail):
    """`obj?`: the inspection text as a pager payload, like IPython."""
    try:
        obj = lookup(name)
    except Exception:
        _STDOUT.write("Object `%s` not found.\n" % name)
        return
    send({"t": "page", "data": {"text/plain": describe(obj, name, detail)}})


def _signature(obj, name):
    import inspect
    try:
        return name + str(inspect.signature(obj))
    except Exception:  # no signature (print, C types) or a broken __signature__
        return None


def _source(obj):
    import inspect
    try:
        return inspect.getsource(obj)
    except Exception:  # builtins, classes defined in cells, frozen modules...
        pass
    # Frozen stdlib modules (os, posixpath, ...) report "<frozen x>" as the
    # file of their functions; the real file is still there to read.
    code = getattr(inspect.unwrap(obj) if inspect.isroutine(obj) else obj, "__code__", None)
    path = _file(obj)
    if code is None or not path or not os.path.isfile(path):
        return None
    try:
        lines = linecache.getlines(path)
        return "".join(inspect.getblock(lines[code.co_firstlineno - 1:])) or None
    except Exception:
        return None


def _file(obj):
    import inspect
    if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
        return None
    try:
        path = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except Exception:
        return None
    if path.startswith("<frozen "):  # the module knows where it came from
        module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
        path = getattr(module, "__file__", None) or path
    return path


_PLAIN_TYPES = (int, float, complex, bool, str, bytes, type(None))


def describe(obj, name, detail=0):
    """The IPython-like inspection text: signature, docstring (or the source
    at detail 1), file and type.  Never calls obj."""
    import inspect
    fields = []
    if isinstance(obj, type):
        signature = _signature(obj, name)
        if signature:
            fields.append(("Init signature", signature))
    elif callable(obj):
        signature = _signature(obj, name)
        if signature:
            fields.append(("Signature", signature))
    source = _source(obj) if detail else None
    if source:
        fields.append(("Source", source.rstrip("\n")))
    else:
        try:
            doc = inspect.getdoc(obj)
        except Exception:
            doc = None
        fields.append(("Docstring", doc or "<no docstring>"))
    if type(obj) in _PLAIN_TYPES:  # repr of these runs no user code
        text = repr(obj)
        fields.append(("String form", text if len(text) <= 200 else text[:200] + "..."))
    if type(obj) in (list, tuple, dict, set, frozenset, str, bytes):
        fields.append(("Length", str(len(obj))))
    path = _file(obj)
    if path:
        fields.append(("File", path))
    fields.append(("Type", type(obj).__name__))
    lines = []
    for title, value in fields:
        if "\n" in value:
            lines.append(title + ":\n" + value)
        else:
            lines.append((title + ":").ljust(11) + value)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# complete

_TOP_LEVEL_MODULES = {}  # (sys.path, cwd) -> names


def _visible(name, prefix):
    """Hide _private names unless the user typed the underscore."""
    return not name.startswith("_") or prefix.startswith("_")


def _top_level_modules():
    import pkgutil
    key = (tuple(sys.path), os.getcwd())
    names = _TOP_LEVEL_MODULES.get(key)
    if names is None:
        names = set(sys.builtin_module_names)
        names.update(name for name in sys.modules if "." not in name)
        try:
            names.update(info.name for info in pkgutil.iter_modules())
        except Exception:
            pass
        _TOP_LEVEL_MODULES.clear()
        _TOP_LEVEL_MODULES[key] = names
    return names


def _package_path(dotted):
    """The package's __path__ (submodule locations), found without running
    any module that is not imported yet; None if it is not a package."""
    import importlib.machinery
    import importlib.util
    parts = dotted.split(".")
    locations = None
    for depth, part in enumerate(parts):
        module = sys.modules.get(".".join(parts[:depth + 1]))
        if module is not None:
            locations = getattr(module, "__path__", None)
        else:
            try:
                if depth == 0:
                    spec = importlib.util.find_spec(part)
                else:
                    spec = importlib.machinery.PathFinder.find_spec(part, list(locations))
            except Exception:
                return None
            locations = spec and spec.submodule_search_locations
        if not locations:
            return None
    return locations


def _submodules(dotted):
    """Names of dotted's submodules: imported ones (os.path is not in a
    package directory) and those in its package directories."""
    import pkgutil
    prefix = dotted + "."
    names = {name[len(prefix):] for name in list(sys.modules)
             if name.startswith(prefix) and "." not in name[len(prefix):]}
    locations = _package_path(dotted)
    if locations:
        try:
            names.update(info.name for info in pkgutil.iter_modules(list(locations)))
        except Exception:
            pass
    return names


def _module_matches(token):
    """Completions of a (dotted) module name after `import ` or `from `."""
    parent, dot, prefix = token.rpartition(".")
    if not dot:
        names = _top_level_modules()
        return sorted(n for n in names if n.startswith(prefix) and _visible(n, prefix))
    return sorted(parent + "." + n for n in _submodules(parent)
                  if n.startswith(prefix) and _visible(n, prefix))


def _stdlib_module(dotted):
    """Import dotted only if it is part of the standard library (no user
    code runs); return it, or None."""
    import importlib
    import importlib.util
    try:
        spec = importlib.util.find_spec(dotted.split(".")[0])
    except Exception:
        return None
    origin = getattr(spec, "origin", None) or ""
    stdlib = os.path.dirname(os.__file__) + os.sep
    if origin not in ("built-in", "frozen") and (
            not origin.startswith(stdlib) or "-packages" in origin):
        return None
    try:
        return importlib.import_module(dotted)
    except Exception:
        return None


def _names_in_module(dotted, prefix):
    """Completions after `from dotted import `: submodules, and the
    module's names when it is imported already (or from the stdlib)."""
    names = _submodules(dotted)
    module = sys.modules.get(dotted) or _stdlib_module(dotted)
    if module is not None:
        try:
            names.update(dir(module))
        except Exception:
            pass
    return sorted(n for n in names if n.startswith(prefix) and _visible(n, prefix))


def _complete_import(line):
    import re
    match = (re.match(r"\s*import\s+(?:[\w.]+\s*,\s*)*([\w.]*)$", line)
             or re.match(r"\s*from\s+([\w.]*)$", line))
    if match:
        return match.start(1), _module_matches(match.group(1))
    match = re.match(r"\s*from\s+[\w.]+\s+(\w*)$", line)
    if match:
        return match.start(1), ["import"] if "import".startswith(match.group(1)) else []
    match = re.match(r"\s*from\s+([\w.]+)\s+import\s+\(?\s*"
                     r"(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*(\w*)$", line)
    if match:
        return match.start(2), _names_in_module(match.group(1), match.group(2))
    return None


def _open_quote(line):
    """Index of the quote opening a string the line ends inside, else -1."""
    quote, start, i = None, -1, 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == "\\":
                i += 1
            elif line.startswith(quote, i):
                i += len(quote) - 1
                quote = None
        elif char == "#":
            return -1
        elif char in "'\"":
            quote = line[i:i + 3] if line[i:i + 3] in ("'''", '"""') else char
            start = i + len(quote) - 1
            i += len(quote) - 1
        i += 1
    return start if quote else -1


def _path_matches(text):
    expanded = os.path.expanduser(text)
    head, tail = os.path.split(expanded)
    directory = head or "."
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    typed_head = text[:len(text) - len(tail)]
    matches = []
    for name in entries:
        if not name.startswith(tail) or (name.startswith(".") and not tail.startswith(".")):
            continue
        full = typed_head + name
        if os.path.isdir(os.path.join(directory, name)):
            full += "/"
        matches.append(full)
    return matches[:1000]


def _complete_path(line):
    start = _open_quote(line)
    if start < 0:
        return None
    return start + 1, _path_matches(line[start + 1:])


def _complete_name(line):
    import keyword
    import re
    match = re.search(r"[\w.]*$", line)
    token, start = match.group(), match.start()
    if token[:1].isdigit() or token.startswith("."):
        return start, []
    if "." in token:
        base, _, prefix = token.rpartition(".")
        try:
            names = dir(lookup(base))
        except Exception:
            return start, []
        return start, sorted({base + "." + n for n in names
                              if isinstance(n, str) and n.startswith(prefix)
                              and _visible(n, prefix)})
    names = set(_USER_NS) | set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)
    return start, sorted(n for n in names if isinstance(n, str) and n.isidentifier()
                         and n.startswith(token) and _visible(n, token))


def complete(code, cursor_pos):
    """matches, cursor_start: module names in imports, paths in strings,
    else names and attributes.  Positions are code-point offsets."""
    line_start = code.rfind("\n", 0, cursor_pos) + 1
    line = code[line_start:cursor_pos]
    found = _complete_import(line) or _complete_path(line) or _complete_name(line)
    start, matches = found
    return matches, line_start + start


# ---------------------------------------------------------------------------
# inspect

def _is_name_char(char):
    return char.isalnum() or char == "_"


def _names_at_cursor(code, cursor_pos):
    """Candidate dotted names to inspect: the one at (or just before) the
    cursor, then the function whose call parentheses hold the cursor."""
    candidates = []
    end = cursor_pos
    while end < len(code) and _is_name_char(code[end]):
        end += 1
    start = cursor_pos
    while start > 0 and (_is_name_char(code[start - 1]) or code[start - 1] == "."):
        start -= 1
    token = code[start:end].rstrip(".")
    if _is_dotted_name(token):
        candidates.append(token)
    depth = 0
    for i in range(cursor_pos - 1, -1, -1):
        char = code[i]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            if depth:
                depth -= 1
            elif char == "(":
                name_end = i
                while name_end > 0 and code[name_end - 1] in " \t":
                    name_end -= 1
                name_start = name_end
                while name_start > 0 and (_is_name_char(code[name_start - 1])
                                          or code[name_start - 1] == "."):
                    name_start -= 1
                name = code[name_start:name_end]
                if _is_dotted_name(name) and name not in candidates:
                    candidates.append(name)
                break
    return candidates


def inspect_at(code, cursor_pos, detail):
    """The reply members for an inspect request."""
    for name in _names_at_cursor(code, cursor_pos):
        try:
            obj = lookup(name)
        except Exception:
            continue
        return {"found": True, "data": {"text/plain": describe(obj, name, detail)},
                "metadata": {}}
    return {"found": False, "data": {}, "metadata": {}}


# ---------------------------------------------------------------------------
# is_complete

def _indent_of(line):
    return line[:len(line) - len(line.lstrip(" \t"))]


def _opens_block(line):
    """Does the line end with ':' (ignoring a trailing comment)?"""
    text = line.rstrip()
    if text.endswith(":"):
        return True
    if "#" in text:
        return text[:text.rindex("#")].rstrip().endswith(":")
    return False


def _last_statement(body):
    """The innermost last statement of a block (for the indent to offer)."""
    node = body[-1]
    while True:
        children = []
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                children.extend(child for child in value if hasattr(child, "lineno"))
        if not children:
            return node
        node = max(children, key=lambda child: (child.lineno, child.col_offset))


def is_complete(code):
    """(status, indent): codeop-like, with IPython's rule that an indented
    block is complete only once a newline follows it."""
    import warnings
    if not code.strip() or _help_request(code):
        return "complete", None
    if _split_cell_magic(code) is not None:  # as IPython: a blank line ends it
        last_line = (code if code.endswith("\n") else code + "\n").splitlines()[-1]
        return ("incomplete", _indent_of(last_line)) if last_line.strip() else ("complete", None)
    # same lines, so indents come from code
    source = transform_shell_lines(strip_leading_indent(code))
    lines = code.rstrip("\n").split("\n")
    stripped = code.rstrip(" \t\f\r")
    ends_with_newline = stripped.endswith("\n")
    last_line = next((line for line in reversed(lines) if line.strip()), "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = compile(source, "<input>", "exec",
                           PyCF_ONLY_AST | PyCF_DONT_IMPLY_DEDENT
                           | PyCF_ALLOW_INCOMPLETE_INPUT | PyCF_ALLOW_TOP_LEVEL_AWAIT,
                           dont_inherit=True)
            compile(tree, "<input>", "exec", PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        if exc.msg != "incomplete input":
            return "invalid", None
        indent = _indent_of(last_line)
        if _opens_block(last_line):
            indent += "    "
        return "incomplete", indent
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError):
        return "invalid", None
    if tree.body and not ends_with_newline and hasattr(tree.body[-1], "body"):
        # still inside a compound statement: offer its indentation
        inner = _last_statement(tree.body)
        return "incomplete", _indent_of(code.split("\n")[inner.lineno - 1])
    return "complete", None


# ---------------------------------------------------------------------------
# IPython's own shell, when the box has IPython
#
# Where IPython is importable (Debian's python3-ipython), a cell runs through
# IPython's InteractiveShell, as under ipykernel: its input transformers
# (magics, `!cmd`, automagic aliases such as `ls`), its display formatter and
# pretty printer, its magics and extensions, its traceback formatting, and
# matplotlib_inline as the default backend.  get_ipython() is that shell, so
# libraries that look for it (SymPy's init_printing, pandas, matplotlib,
# plotly) find what they find under ipykernel.  Only the edges are ours: the
# display publisher, the displayhook and the traceback are sent as records
# (PROTOCOL.md), `!cmd` writes to the raw pipes, the pager becomes a `page`
# record.  Without IPython the hand-written code above is the fallback.
# CELLGATE_PYTHON_IPYTHON=0 in the kernel's environment (passed into the
# box by runtime.c) chooses the fallback.

_IPY = None  # the shell, once made; None: the fallback runs the cells
_IPY_STATE = {"color": None, "traceback": None}


def _ipython_wanted():
    if os.environ.get("CELLGATE_PYTHON_IPYTHON", "1") == "0":
        return False
    import importlib.util
    try:
        return importlib.util.find_spec("IPython") is not None
    except Exception:
        return False


def _skip_terminal_ipython():
    """IPython's package imports its terminal front-end (prompt_toolkit,
    ~100 ms and 5 MB) only to offer IPython.embed(); a kernel has no
    terminal.  A placeholder module stands in for it; embed() says why."""
    if "IPython.terminal.embed" in sys.modules:
        return
    module = type(sys)("IPython.terminal.embed")

    def embed(**kwargs):
        raise RuntimeError("IPython.embed() needs a terminal; this is a notebook kernel")

    module.embed = embed
    module.__cellgate_placeholder__ = True
    sys.modules["IPython.terminal.embed"] = module


# Modules IPython's shell imports with a plain `import NAME` but uses only
# in functions a notebook may never call: asyncio (top-level await), ssl
# (through asyncio), pydoc (help()), pexpect (%%script), cProfile/pstats
# (%prun), pickle (%store), sqlite3 (IPython's history file, which a
# kernel keeps in memory: see _history_manager), hashlib (IPython's cell
# names, which ipykernel's compiler makes without it: loading it maps
# OpenSSL's libcrypto, 3.4 MB resident and ~6 ms), ...  Each is made a lazy module: it is in
# sys.modules as ipykernel has it, and runs the first time anything of it
# is used, by IPython or by the user's code.  Together they were ~5 MB of
# the driver's memory and ~40 ms of its start (kernelbench rss_mb).
# Only modules of the standard library and IPython's own dependencies
# that have no import-time side effects anyone could see are listed.
_LAZY_MODULES = frozenset((
    "asyncio", "ssl", "pydoc", "pexpect", "ptyprocess", "cProfile", "pstats",
    "profile", "pickle", "uuid", "lzma", "bz2", "calendar", "code", "dataclasses",
    "email.parser", "ipaddress", "logging.handlers", "mimetypes", "shlex",
    "signal", "traceback", "sqlite3", "hashlib",
))


class _LazyModule(type(sys)):
    """A module whose code runs at the first access to one of its
    attributes (importlib.util.LazyLoader's idea, as Python 3.12 has it:
    other threads wait while it runs, and the module's own code sees it
    as it fills in), retried if it failed or was interrupted, so a
    KeyboardInterrupt never leaves half a module."""

    def __getattribute__(self, attr):
        state = object.__getattribute__(self, "__dict__")
        lock = state.get("__cg_lazy__")
        if lock is None or attr == "__spec__":
            # loaded; or what `import NAME` checks (is it initialising?),
            # no reason to run the module yet
            return object.__getattribute__(self, attr)
        with lock:
            if "__cg_lazy__" in state:
                if state.get("__cg_loading__"):  # its own code, while it runs
                    return object.__getattribute__(self, attr)
                _load_lazy_module(self, state)
        return getattr(self, attr)

    def __setattr__(self, attr, value):
        self.__getattribute__("__name__")
        object.__setattr__(self, attr, value)

    def __delattr__(self, attr):
        self.__getattribute__("__name__")
        object.__delattr__(self, attr)


def _load_lazy_module(module, state):
    """Run the module's code; the caller holds its lock."""
    state["__cg_loading__"] = True
    try:
        state["__spec__"].loader.exec_module(module)
    finally:
        del state["__cg_loading__"]
    del state["__cg_lazy__"]
    object.__setattr__(module, "__class__", type(sys))


class _LazyLoader:
    """Wraps a module's real loader; the module only ever sees the real
    one (as __loader__ and __spec__.loader)."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        module.__dict__["__cg_lazy__"] = _thread.RLock()
        module.__class__ = _LazyModule


class _LazyFinder:
    """The meta_path finder that makes the _LAZY_MODULES lazy."""

    def find_spec(self, name, path=None, target=None):
        if name not in _LAZY_MODULES:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is None:
                continue
            # source modules only: an extension module cannot be re-typed
            if type(spec.loader).__name__ == "SourceFileLoader":
                spec.loader = _LazyLoader(spec.loader)
            return spec
        return None


def _direct_format_calls():
    """IPython wraps each display formatter's __call__ in catch_format_error
    with the `decorator` package, whose wrapper binds the call's
    inspect.Signature on every call: 12 binds for a cell's value, ~40% of
    a warm cell of `1`.  The same wrapper body is called directly instead
    (every one of these __call__ takes the object first), so a formatter
    that raises still shows its traceback and yields nothing."""
    from IPython.core import formatters
    catch = getattr(formatters.catch_format_error, "__wrapped__", None)
    if catch is None:
        return
    for cls in (formatters.BaseFormatter, formatters.PlainTextFormatter,
                formatters.IPythonDisplayFormatter, formatters.MimeBundleFormatter):
        method = getattr(cls.__dict__.get("__call__"), "__wrapped__", None)
        if method is not None:
            cls.__call__ = _format_call(catch, method)


def _format_call(catch, method):
    def __call__(self, obj, *args, **kwargs):
        return catch(method, self, obj, *args, **kwargs)
    __call__.__doc__, __call__.__wrapped__ = method.__doc__, method
    __call__.__qualname__ = method.__qualname__
    return __call__


def _history_manager():
    """IPython's HistoryManager, except that the DummyDB of a history kept
    in memory is taken without importing sqlite3 (IPython's check names
    sqlite3.Connection first: ~1.6 MB of the driver's memory); any other
    database is checked as IPython checks it.  Named as IPython's, which
    %config shows."""
    from traitlets import TraitError, observe
    from IPython.core import history

    class HistoryManager(history.HistoryManager):
        @observe("db")
        def _db_changed(self, change):
            new = change["new"]
            if not isinstance(new, history.DummyDB) \
                    and not isinstance(new, history.sqlite3.Connection):
                raise TraitError("%s.db must be sqlite3 Connection or DummyDB, not %r"
                                 % (self.__class__.__name__, new))

    HistoryManager.__module__ = history.HistoryManager.__module__
    HistoryManager.__qualname__ = history.HistoryManager.__qualname__
    return HistoryManager


def _make_ipython_shell():
    """Make the InteractiveShell (subclass) that runs cells from now on."""
    global _IPY
    os.environ.setdefault("IPYTHONDIR", "/tmp/cellgate-ipython")
    _skip_terminal_ipython()
    sys.meta_path.insert(0, _LazyFinder())
    # jedi (~5 MB, ~0.1 s) is for completion: IPython's completer is made
    # without it and gets it with the first complete request (_ipython_jedi)
    jedi_found = "jedi" not in sys.modules
    if jedi_found:
        sys.modules["jedi"] = None
    try:
        import IPython.core.completer
    finally:
        if jedi_found:
            del sys.modules["jedi"]
    _IPY_STATE["jedi"] = jedi_found
    from traitlets import Any
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell, InteractiveShellABC
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.error import UsageError as IPyUsageError
    from IPython.core import page
    _direct_format_calls()
    history_class = _history_manager()

    class CellgatePublisher(DisplayPublisher):
        """display() and friends: `display` and `clear` records."""

        def publish(self, data, metadata=None, source=None, *, transient=None,
                    update=False, **kwargs):
            publish_display_data(data, metadata, transient=transient, update=update)

        def clear_output(self, wait=False):
            clear_output(wait)

    class CellgateDisplayHook(DisplayHook):
        """The value of a cell's last expression: one `result` record."""

        def start_displayhook(self):
            self._bundle = None

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self._bundle = (format_dict, md_dict or {})

        def finish_displayhook(self):
            if self._bundle and self._bundle[0]:
                data, metadata = self._bundle
                send({"t": "result", "data": _raw_bundle(data),
                      "metadata": metadata if _json_safe(metadata) else {}})
            self._bundle = None

    class ZMQInteractiveShell(InteractiveShell):
        """IPython's shell as cellgate's Python kernel runs it.  Named as
        ipykernel's shell is, because libraries tell a notebook kernel from a
        terminal by that name (pandas, tqdm, plotly); `kernel` is a trait for
        the same reason (plotly looks for it)."""

        kernel = Any(None, allow_none=True)
        displayhook_class = CellgateDisplayHook
        display_pub_class = CellgatePublisher
        autoindent = False  # as ipykernel: the front-end indents

        def init_io(self):
            pass  # sys.stdout and sys.stderr are the driver's already

        def init_history(self):
            self.history_manager = history_class(shell=self, parent=self)
            self.configurables.append(self.history_manager)

        def init_virtualenv(self):
            pass  # ipykernel does not warn about virtualenvs either

        def init_environment(self):
            """The environment ipykernel gives the code's subprocesses
            (ipykernel.zmqshell): colour for `ls` on BSD-like systems, no
            pager (nobody can press a key)."""
            os.environ.update(TERM="xterm-color", CLICOLOR="1", PAGER="cat", GIT_PAGER="cat")

        def enable_gui(self, gui=None):
            if gui not in (None, "inline"):
                raise IPyUsageError("%%gui %s needs a desktop; this kernel has none" % gui)

        def ask_exit(self):
            self.exit_now = True

        def _showtraceback(self, etype, evalue, stb):
            _send_ipython_error(etype, evalue, stb)

        def _get_exc_info(self, exc_tuple=None):
            """The exception to show, without the driver's frames (the
            SIGINT handler's, print()'s): only the user's code and the
            libraries it called, as under ipykernel."""
            etype, value, tb = super()._get_exc_info(exc_tuple)
            if value is not None and tb is not None:
                _strip_driver_frames(value)
                tb = value.__traceback__ or tb
            return etype, value, tb

        def system(self, cmd):
            """`!cmd`: /bin/sh writing to the cell's raw stdout, in order
            with print(); the status is `_exit_code`.  IPython's own runs
            the command on a pty, which the box does not have; like it,
            the command's stderr comes out as stdout."""
            _run_shell(self.var_expand(cmd, depth=1), merged=True)

        system_piped = system

        def set_next_input(self, text, replace=False):
            pass

    from IPython.core.magic import Magics, magics_class, line_magic

    @magics_class
    class KernelMagics(Magics):
        """The magics ipykernel adds for a kernel with no terminal (as in
        ipykernel.zmqshell); %connect_info and %qtconsole say why they
        cannot work in the box, %edit is IPython's."""

        @line_magic
        def clear(self, arg_s):
            """Clear the terminal."""
            self.shell.system("clear")

        @line_magic
        def less(self, arg_s):
            """Show a file through the pager.

            Files ending in .py are syntax-highlighted."""
            from IPython.utils import openpy
            if not arg_s:
                raise IPyUsageError("Missing filename.")
            if arg_s.endswith(".py"):
                cont = self.shell.pycolorize(openpy.read_py_file(arg_s, skip_encoding_cookie=False))
            else:
                with open(arg_s) as f:
                    cont = f.read()
            page.page(cont)

        more = line_magic("more")(less)

        @line_magic
        def man(self, arg_s):
            """Find the man page for the given command and display in pager."""
            page.page(self.shell.getoutput("man %s | col -b" % arg_s, split=False))

        @line_magic
        def connect_info(self, arg_s):
            """Print information for connecting other clients to this kernel."""
            raise IPyUsageError("the kernel's connection file stays outside its box: "
                                "other clients connect through the host")

        @line_magic
        def qtconsole(self, arg_s):
            """Open a qtconsole connected to this kernel."""
            raise IPyUsageError("%qtconsole needs a desktop; this kernel's box has none")

        @line_magic
        def autosave(self, arg_s):
            """Set the autosave interval in the notebook (in seconds)."""
            from IPython.display import Javascript, display as show
            try:
                interval = int(arg_s)
            except ValueError as e:
                raise IPyUsageError("%%autosave requires an integer, got %r" % arg_s) from e
            show(Javascript("IPython.notebook.set_autosave_interval(%i)" % (1000 * interval)),
                 include=["application/javascript"])
            print("Autosaving every %i seconds" % interval if interval else "Autosave disabled")

    compiler = _ipykernel_compiler()
    if compiler is not None:
        ZMQInteractiveShell.compiler_class = compiler
    InteractiveShellABC.register(ZMQInteractiveShell)
    config = Config()
    config.HistoryManager.enabled = False  # no sqlite file in the box's home
    config.InteractiveShell.colors = "NoColor"
    shell = ZMQInteractiveShell.instance(config=config, user_module=_USER_MODULE)
    shell.set_hook("show_in_pager", page.as_hook(_ipython_page), 99)
    shell.register_magics(KernelMagics)
    try:  # %store: IPython's apps load it by default, ipykernel's too
        shell.extension_manager.load_extension("storemagic")
    except Exception as exc:
        _log("storemagic not loaded: %r" % exc)
    builtins.get_ipython = shell.get_ipython
    _IPY = shell
    return shell


def _ipykernel_compiler():
    """ipykernel's XCachingCompiler, which names a cell's code as ipykernel
    does (/tmp/ipykernel_PID/HASH.py: SyntaxErrors show that name), loaded
    from ipykernel's compiler.py alone: the ipykernel package itself would
    import jupyter_client and zmq.  None where ipykernel is not installed."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("ipykernel")
        locations = spec and spec.submodule_search_locations
        if not locations:
            return None
        path = os.path.join(list(locations)[0], "compiler.py")
        if not os.path.exists(path):
            return None
        spec = importlib.util.spec_from_file_location("_cellgate_ipykernel_compiler", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.XCachingCompiler
    except Exception as exc:
        _log("ipykernel's compiler not used: %r" % exc)
        return None


def _ipython_page(strng, start=0, screen_lines=0, pager_cmd=None):
    """IPython's pager (`obj?`, %pinfo, %magic): a `page` record, as
    ipykernel's payload pager makes one."""
    data = strng if isinstance(strng, dict) else {"text/plain": strng}
    data = {k: v for k, v in data.items() if k != "text/html"}
    send({"t": "page", "data": data})


def _send_ipython_error(etype, evalue, stb):
    """A traceback IPython formatted: shown as an error output, as ipykernel
    shows every one (a cell can show several: a failing post-execute hook
    after the cell's own); whether the cell failed is decided at its end."""
    record = {"t": "error", "ename": getattr(etype, "__name__", str(etype)),
              "evalue": _safe_str(evalue), "traceback": [_safe_str(line) for line in stb],
              "reply": False}
    _IPY_STATE["traceback"] = record["traceback"]
    send(record)


def _ipython_execute(code, count, silent, store, color):
    """Run one cell through IPython; the exception that ended it, or None."""
    shell = _IPY
    if _IPY_STATE["color"] != color:
        shell.colors = "Linux" if color else "NoColor"
        shell.InteractiveTB.set_colors(shell.colors)
        shell.SyntaxTB.set_colors(shell.colors)
        _IPY_STATE["color"] = color
    _IPY_STATE["traceback"] = None
    if isinstance(count, int) and store:
        shell.execution_count = count
    try:
        result = _interruptibly(shell.run_cell, code, store, silent)
    except KeyboardInterrupt as exc:  # one kept from before the cell's code started
        shell.showtraceback()
        failure = exc
    else:
        if _in_forked_child:
            return result.error_before_exec or result.error_in_exec
        failure = result.error_before_exec or result.error_in_exec
    if failure is not None:
        # the reply's error, as ipykernel makes it: the cell's exception and
        # the last traceback shown (none for a UsageError, printed as text)
        send({"t": "error", "ename": type(failure).__name__, "evalue": _safe_str(failure),
              "traceback": _IPY_STATE["traceback"] or [], "publish": False})
    return failure


# Comms in the box (ipywidgets): ipykernel's Comm and CommManager, given a
# kernel object whose session sends `comm` records instead of ZeroMQ
# messages; the client's comm messages arrive as `comm` records (see
# handle_comm).  Made when ipykernel.comm is first imported (ipywidgets
# imports it), so no kernel without widgets pays for ipykernel and zmq.

def _ipython_comm_kernel(module=None):
    if _IPY is None or getattr(_IPY, "kernel", None) is not None:
        return
    import logging
    from ipykernel.kernelbase import Kernel
    from ipykernel.comm import CommManager
    from jupyter_client.session import Session

    class RecordSession(Session):
        def send(self, stream, msg_or_type, content=None, parent=None, ident=None,
                 buffers=None, track=False, header=None, metadata=None):
            if msg_or_type in ("comm_open", "comm_msg", "comm_close") and isinstance(content, dict):
                send({"t": "comm", "msg_type": msg_or_type, "content": content})

    class CellgateKernel(Kernel):
        """Just enough of ipykernel's Kernel for its comms."""
        implementation = "cellgate"
        implementation_version = "0"
        banner = ""
        language_info = {"name": "python"}

        def get_parent(self, channel="shell"):
            return {}

    log = logging.getLogger("cellgate.comm")  # ipykernel logs to its terminal;
    log.addHandler(logging.NullHandler())     # here there is none
    log.propagate = False
    kernel = CellgateKernel.instance(session=RecordSession(key=b""), log=log)
    kernel.shell = _IPY  # a comm message runs the shell's pre/post_execute hooks
    kernel.comm_manager = CommManager(parent=kernel, kernel=kernel)
    _IPY.kernel = kernel


def handle_comm(request):
    """A client's comm_open / comm_msg / comm_close for the comms of the
    code in the box; ignored until something opened a comm machinery."""
    kernel = getattr(_IPY, "kernel", None) if _IPY is not None else None
    kind = request.get("msg_type")
    content = request.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("comm_id"), str):
        return
    if kernel is None:
        if kind == "comm_open":  # no target can exist yet: closed, as ipykernel does
            send({"t": "comm", "msg_type": "comm_close",
                  "content": {"comm_id": content["comm_id"], "data": {}}})
        return
    if kind not in ("comm_open", "comm_msg", "comm_close"):
        return
    msg = {"header": {"msg_type": kind}, "parent_header": {}, "metadata": {},
           "content": content, "buffers": []}
    try:
        _interruptibly(getattr(kernel.comm_manager, kind), None, None, msg)
    except BaseException as exc:
        _log("%s failed: %r" % (kind, exc))
    flush_streams()


def _ipython_user_expressions(expressions):
    try:
        return _interruptibly(_IPY.user_expressions, expressions)
    except BaseException as exc:
        _log("user_expressions failed: %r" % exc)
        return {}


def _ipython_jedi():
    """Give IPython's completer jedi, as if it had been there at import
    (see _make_ipython_shell); False where jedi is not installed."""
    if not _IPY_STATE.get("jedi"):
        return False
    _IPY_STATE["jedi"] = False
    import IPython.core.completer as completer
    try:
        import jedi
        jedi.settings.case_insensitive_completion = False
        import jedi.api.helpers  # noqa: F401 (as IPython imports them)
        import jedi.api.classes  # noqa: F401
    except ImportError:
        return False
    completer.jedi, completer.JEDI_INSTALLED = jedi, True
    if "use_jedi" not in _IPY.Completer.config.get("IPCompleter", {}):
        _IPY.Completer.use_jedi = True
    return True


def _ipython_complete(code, cursor_pos):
    """As ipykernel completes: IPython's completer (jedi where installed);
    the metadata carries the typed completions JupyterLab shows."""
    from IPython.core.completer import provisionalcompleter, rectify_completions
    _ipython_jedi()
    with provisionalcompleter():
        raw = _IPY.Completer.completions(code, cursor_pos)
        completions = list(rectify_completions(code, raw))
    typed = [{"start": c.start, "end": c.end, "text": c.text, "type": c.type,
              "signature": c.signature} for c in completions]
    if completions:
        start, end = completions[0].start, completions[0].end
    else:
        start = end = cursor_pos
    return {"matches": [c.text for c in completions], "cursor_start": start,
            "cursor_end": end, "metadata": {"_jupyter_types_experimental": typed}}


def _ipython_inspect(code, cursor_pos, detail):
    from IPython.utils.tokenutil import token_at_cursor
    name = token_at_cursor(code, cursor_pos)
    try:
        bundle = _IPY.object_inspect_mime(name, detail_level=detail)
    except KeyError:
        return {"found": False, "data": {}, "metadata": {}}
    bundle.pop("text/html", None)
    return {"found": True, "data": bundle, "metadata": {}}


def _ipython_is_complete(code):
    status, indent = _IPY.input_transformer_manager.check_complete(code)
    return status, (" " * indent if indent else "")


# ---------------------------------------------------------------------------
# The request loop

def _reply(members):
    record = {"t": "reply"}
    record.update(members)
    send(record)


def handle_complete(request):
    code, cursor_pos = _code_and_cursor(request)
    if _IPY is not None:
        try:
            _reply(_interruptibly(_ipython_complete, code, cursor_pos))
            return
        except BaseException as exc:
            _log("IPython's completer failed: %r" % exc)
    try:
        matches, start = _interruptibly(complete, code, cursor_pos)
    except BaseException as exc:  # a user __getattr__ failing or interrupted
        _log("complete failed: %r" % exc)
        matches, start = [], cursor_pos
    _reply({"matches": matches, "cursor_start": start, "cursor_end": cursor_pos,
            "metadata": {}})


def handle_inspect(request):
    code, cursor_pos = _code_and_cursor(request)
    detail = 1 if request.get("detail_level") else 0
    try:
        inspect = _ipython_inspect if _IPY is not None else inspect_at
        members = _interruptibly(inspect, code, cursor_pos, detail)
    except BaseException as exc:
        _log("inspect failed: %r" % exc)
        members = {"found": False, "data": {}, "metadata": {}}
    _reply(members)


def handle_is_complete(request):
    code = request.get("code")
    try:
        check = _ipython_is_complete if _IPY is not None else is_complete
        status, indent = check(code if isinstance(code, str) else "")
    except Exception as exc:
        _log("is_complete failed: %r" % exc)
        status, indent = "unknown", None
    members = {"status": status}
    if status == "incomplete":
        members["indent"] = indent or ""
    _reply(members)


def _code_and_cursor(request):
    code = request.get("code")
    code = code if isinstance(code, str) else ""
    cursor_pos = request.get("cursor_pos")
    if not isinstance(cursor_pos, int) or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    return code, cursor_pos


_HANDLERS = {
    "execute": handle_execute,
    "complete": handle_complete,
    "inspect": handle_inspect,
    "is_complete": handle_is_complete,
    "comm": handle_comm,
}


def serve():
    """Answer requests from fd 3 until the kernel closes it."""
    while True:
        request = _REQUESTS.next()
        if request is None:
            return
        kind = request.get("t")
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind != "input_reply":  # stray replies to an interrupted input()
                _log("ignoring request of unknown type %r" % (kind,))
            continue
        try:
            handler(request)
        except Exception as exc:  # a driver bug: say so, keep serving
            _log("%s request failed: %r" % (kind, exc))


# ---------------------------------------------------------------------------
# Installation

_STDOUT = DriverStream("stdout", _STDOUT_PARTS, _STDERR_PARTS)
_STDERR = DriverStream("stderr", _STDERR_PARTS, _STDOUT_PARTS)


def _import_late():
    """Modules the requests need, imported once `ready` is out."""
    global json, ast, linecache, _ENCODER, _FUTURE_MASK
    import json
    import _ast as ast  # the node classes; ast.py itself adds ~0.6 MB
    import linecache
    import __future__
    _ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                separators=(",", ":"), default=_unencodable)
    for feature in __future__.all_feature_names:
        _FUTURE_MASK |= getattr(__future__, feature).compiler_flag


def _make_user_module():
    """A fresh __main__ for user code: pickling finds classes defined in cells."""
    global _USER_MODULE, _USER_NS
    module = type(sys)("__main__")
    module.__dict__.update(__builtins__=builtins, Out=_OUT_HISTORY)
    sys.modules["__main__"] = module
    _USER_MODULE, _USER_NS = module, module.__dict__


def _fill_cellgate_module(module):
    module.__doc__ = "Display helpers of the cellgate kernel."
    for obj in _CELLGATE_API:
        setattr(module, obj.__name__, obj)


def _make_cellgate_module():
    module = type(sys)("cellgate")
    _fill_cellgate_module(module)
    sys.modules["cellgate"] = module


def _after_fork_in_child():
    """In a child forked by user code fd 3 is the parent's: output goes to
    the raw pipes from now on and no record is ever sent."""
    global _in_forked_child, _LOCK
    _in_forked_child = True
    _LOCK = _thread.RLock()  # another thread may have held the old one
    del _STDOUT_PARTS[:], _STDERR_PARTS[:]  # the parent sends those
    _FLUSHER.scheduled = True  # never start a flusher thread here


# Audit events raised just before a program starts writing to our fd 1/2.
_SPAWN_EVENTS = frozenset(("os.system", "subprocess.Popen", "os.posix_spawn",
                           "os.exec", "os.spawn", "pty.spawn"))


def _flush_before_spawn(event, args):
    """Audit hook: `print('x'); os.system('echo y')` must show x first, so the
    buffered text goes out before a subprocess can write to the raw pipes."""
    if event in _SPAWN_EVENTS:
        flush_streams()


def _flush_before_fork():
    # an at-fork hook must not raise: no pending KeyboardInterrupt here
    with _LOCK:
        _flush_locked()


# The user site: where pip installs in the box (PIP_USER, egress.c). The
# driver runs isolated (-I), so it is added here, as plain Python does.
_USER_SITE = None


def _add_user_site():
    global _USER_SITE
    import site
    try:
        _USER_SITE = site.getusersitepackages()
    except Exception:
        return
    if _USER_SITE not in sys.path:
        sys.path.append(_USER_SITE)


def _refresh_user_site():
    """A package installed by a subprocess (`!pip install x`, pip from
    Bash) can be imported in the next cell: the import system remembers a
    user site that did not exist yet as having no finder; forget that once
    it exists."""
    if _USER_SITE and sys.path_importer_cache.get(_USER_SITE, 0) is None \
            and os.path.isdir(_USER_SITE):
        del sys.path_importer_cache[_USER_SITE]


def _install():
    if "" not in sys.path[:1]:
        sys.path.insert(0, "")  # the cwd first, as in ipykernel
    _add_user_site()
    _make_user_module()
    _make_cellgate_module()
    sys.stdout, sys.stderr = _STDOUT, _STDERR
    builtins.input = cell_input
    builtins.display = display
    builtins.get_ipython = get_ipython
    import getpass
    getpass.getpass = cell_getpass
    os.register_at_fork(before=_flush_before_fork, after_in_child=_after_fork_in_child)
    sys.addaudithook(_flush_before_spawn)
    if _ipython_wanted():
        try:
            _make_ipython_shell()
        except Exception as exc:  # a broken IPython: the fallback runs the cells
            _log("IPython's shell could not be made, using the driver's own: %r" % exc)
    _install_import_hooks(_IPY is not None)


def main():
    os.set_blocking(CONTROL_FD, True)
    os.set_inheritable(CONTROL_FD, False)  # os.system children must not get it
    _signal.signal(_signal.SIGINT, _on_sigint)
    os.write(CONTROL_FD, b'{"t":"ready","language_version":"%s"}\n'
             % _python_version().encode())
    _import_late()
    _install()
    serve()
    # The kernel closed fd 3: exit 0; atexit output goes to the raw pipes.
    flush_streams()
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    sys.exit(0)


main()
