"""cellgate-display (issue 5): any language in the box shows a PNG, JPEG,
GIF, WebP, SVG or HTML file as display_data, with `cellgate-display FILE
[--mime TYPE]`. The command opens the file itself, in the box, so only what
the box's user can read is shown; what the program printed before comes
first; errors go to its stderr with exit status 1 (2 for usage); hostile
clients of the display socket get an error and the kernel keeps serving."""
import base64
import os
import time

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from conftest import CELLGATE, ROOT, TIMEOUT, kernel_pid, run, stream_text, wait_until
from test_tools import PNG_3x2

INSTALLED = set(KernelSpecManager().find_kernel_specs())
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "image")


def corpus(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


GIF = b"GIF89a\x05\x00\x07\x00" + bytes(20)
SVG = corpus("svg")
JPEG = corpus("jpeg")
WEBP = corpus("webp_vp8x")
HTML = "<h1>Hello</h1><p>from cellgate-display \u2713</p>\n".encode()

FILES = (PNG_3x2 + "open('plot.png', 'wb').write(png)\n"
         f"open('anim.gif', 'wb').write({GIF!r})\n"
         f"open('drawing.svg', 'wb').write({SVG!r})\n"
         f"open('photo.jpg', 'wb').write({JPEG!r})\n"
         f"open('pic.webp', 'wb').write({WEBP!r})\n"
         f"open('page.html', 'wb').write({HTML!r})\n"
         "open('notes.txt', 'w').write('not an image')\n"
         "open('latin1.html', 'wb').write(b'<p>caf\\xe9</p>')\n"
         "with open('big.png', 'wb') as f:\n"
         "    f.write(png[:24]); f.truncate((16 << 20) + 1)\n"
         "import os\n"
         "os.makedirs('adir', exist_ok=True)\n"
         "os.path.exists('fifo') or os.mkfifo('fifo')\n"
         "os.path.lexists('hostlink.png') or "
         "os.symlink('/tmp/cellgate-host-secret.png', 'hostlink.png')\n"
         "os.path.lexists('rootlink.png') or "
         "os.symlink('/proc/1/root/tmp/cellgate-host-secret.png', 'rootlink.png')\n")


def needs(name):
    return pytest.mark.skipif(f"cellgate-{name}" not in INSTALLED,
                              reason=f"no {name} toolchain on this machine")


@pytest.fixture(scope="module")
def box(multi_kernel):
    """The cellgate kernel (Python, with %%bash and friends in one box),
    with the files of FILES in /mnt/data."""
    km, kc = multi_kernel
    reply, out = run(kc, FILES)
    assert reply["content"]["status"] == "ok", (reply["content"], out)
    return km, kc


def displays(out):
    return [m["content"] for m in out if m["msg_type"] == "display_data"]


def shown(kc, code, timeout=TIMEOUT):
    """Runs code; returns (the one display_data's content, outputs)."""
    reply, out = run(kc, code, timeout=timeout)
    assert reply["content"]["status"] == "ok", (reply["content"], out)
    d = displays(out)
    assert len(d) == 1, out
    return d[0], out


# ---- every kind of file ------------------------------------------------------------

@pytest.mark.parametrize("name,mime,raw,size", [
    ("plot.png", "image/png", None, (3, 2)),
    ("anim.gif", "image/gif", GIF, (5, 7)),
    ("photo.jpg", "image/jpeg", JPEG, (11, 9)),
    ("pic.webp", "image/webp", WEBP, (20, 10)),
    ("drawing.svg", "image/svg+xml", SVG, (120, 80)),
    ("page.html", "text/html", HTML, None),
])
def test_each_kind_from_bash(box, name, mime, raw, size):
    km, kc = box
    d, out = shown(kc, f"%%bash\ncellgate-display {name}")
    data = d["data"]
    assert set(data) == {mime, "text/plain"}
    if mime in ("image/svg+xml", "text/html"):
        assert data[mime] == raw.decode()
    else:
        got = base64.b64decode(data[mime])
        assert got == raw if raw else got.startswith(b"\x89PNG")
    if size:
        assert data["text/plain"] == f"<image {name}, {size[0]}x{size[1]}>"
        assert d["metadata"] == {mime: {"width": size[0], "height": size[1]}}
    else:
        assert data["text/plain"] == name
    assert stream_text(out) == ""


def test_from_python_subprocess(box):
    km, kc = box
    d, out = shown(kc, "import subprocess\n"
                       "print(subprocess.run(['cellgate-display', 'plot.png']).returncode)")
    assert "image/png" in d["data"]
    assert stream_text(out, "stdout") == "0\n"


def test_cellgate_display_subcommand(box):
    """The same program called cellgate takes `display` as a command."""
    km, kc = box
    d, out = shown(kc, "%%bash\n(exec -a cellgate /run/cellgate/bin/cellgate-display display "
                       "anim.gif)\ncellgate-display --help | head -1")
    assert "image/gif" in d["data"]
    assert stream_text(out) == "usage: cellgate-display FILE [--mime TYPE]\n"


@needs("javascript")
def test_from_javascript(box):
    km, kc = box
    d, out = shown(kc, "%%javascript\nrequire('child_process')"
                       ".execFileSync('cellgate-display', ['drawing.svg']);\n"
                       "console.log('shown')")
    assert d["data"]["image/svg+xml"] == SVG.decode()
    assert stream_text(out, "stdout") == "shown\n"


@needs("ruby")
def test_from_ruby(box):
    km, kc = box
    d, out = shown(kc, "%%ruby\nputs system('cellgate-display', 'photo.jpg')")
    assert base64.b64decode(d["data"]["image/jpeg"]) == JPEG
    assert stream_text(out, "stdout") == "true\n"


@needs("c")
def test_from_a_c_program(box):
    km, kc = box
    d, out = shown(kc, "%%c\n#include <stdio.h>\n#include <stdlib.h>\n"
                       "int main(void) {\n"
                       "    int rc = system(\"cellgate-display page.html\");\n"
                       "    printf(\"status %d\\n\", rc);\n"
                       "    return rc != 0;\n}\n", timeout=60)
    assert d["data"]["text/html"] == HTML.decode()
    assert stream_text(out, "stdout") == "status 0\n"


# ---- order -------------------------------------------------------------------------

def kinds(out):
    """The outputs as (kind, text) with adjacent stream pieces merged."""
    merged = []
    for m in out:
        if m["msg_type"] == "stream":
            key = ("stream", m["content"]["name"])
            if merged and merged[-1][0] == key:
                merged[-1] = (key, merged[-1][1] + m["content"]["text"])
            else:
                merged.append((key, m["content"]["text"]))
        else:
            merged.append((m["msg_type"], None))
    return merged


def test_order_bash(box):
    km, kc = box
    reply, out = run(kc, "%%bash\necho before\ncellgate-display anim.gif\necho after\n"
                         "cellgate-display plot.png\necho end")
    assert kinds(out) == [(("stream", "stdout"), "before\n"), ("display_data", None),
                          (("stream", "stdout"), "after\n"), ("display_data", None),
                          (("stream", "stdout"), "end\n")]


def test_order_python(box):
    """print() goes over the driver's control socket, the subprocess's
    output over the raw pipe: both come before the display."""
    km, kc = box
    reply, out = run(kc, "import subprocess, sys\nprint('before')\n"
                         "subprocess.run(['sh', '-c', 'echo raw; cellgate-display anim.gif'])\n"
                         "print('after')\n_ = sys.stderr.write('err after\\n')")
    assert kinds(out) == [(("stream", "stdout"), "before\nraw\n"), ("display_data", None),
                          (("stream", "stdout"), "after\n"), (("stream", "stderr"), "err after\n")]


# ---- --mime ------------------------------------------------------------------------

def test_mime_forces_html(box):
    km, kc = box
    d, out = shown(kc, "%%bash\ncellgate-display --mime text/html notes.txt")
    assert d["data"] == {"text/html": "not an image", "text/plain": "notes.txt"}


def test_html_by_name_even_with_svg_inside(box):
    km, kc = box
    reply, out = run(kc, "open('inline.htm', 'w').write('<div><svg width=\"2\"></svg></div>')")
    reply, out = run(kc, "%%bash\ncellgate-display --mime=text/html inline.htm\n"
                         "cellgate-display inline.htm")
    assert [set(d["data"]) for d in displays(out)] == [{"text/html", "text/plain"}] * 2
    assert stream_text(out) == ""


def bash_fails(kc, cmd, status=1):
    """Runs cmd in bash; asserts it shows nothing and exits with status;
    returns its stderr."""
    reply, out = run(kc, f"%%bash\n{cmd}\necho status=$?")
    assert not displays(out), out
    assert stream_text(out, "stdout") == f"status={status}\n", out
    return stream_text(out, "stderr")


def test_mime_png_on_a_gif_is_refused(box):
    km, kc = box
    err = bash_fails(kc, "cellgate-display --mime image/png anim.gif")
    assert err == "cellgate-display: anim.gif is not a PNG image (its bytes are a GIF image)\n"


def test_unknown_mime_is_a_usage_error(box):
    km, kc = box
    err = bash_fails(kc, "cellgate-display --mime text/plain notes.txt", status=2)
    assert "--mime text/plain" in err and "image/png" in err


@pytest.mark.parametrize("args", ["", "a.png b.png", "--bogus plot.png", "--mime"])
def test_usage_errors(box, args):
    km, kc = box
    assert "cellgate-display" in bash_fails(kc, f"cellgate-display {args}", status=2)


# ---- refusals ----------------------------------------------------------------------

@pytest.mark.parametrize("name,why", [
    ("notes.txt", "notes.txt is not a PNG, JPEG, GIF, WebP or SVG image nor an .html file"),
    ("missing.png", "missing.png: No such file or directory"),
    ("adir", "adir: not a regular file (a directory)"),
    ("fifo", "fifo: not a regular file (a FIFO)"),
    ("big.png", "big.png: larger than the 16 MiB that can be shown"),
    ("latin1.html", "latin1.html: the HTML is not valid UTF-8 text"),
    ("/dev/null", "/dev/null: not a regular file (a character device)"),
])
def test_refused_with_a_clear_message(box, name, why):
    km, kc = box
    err = bash_fails(kc, f"cellgate-display {name}")
    assert err.startswith(f"cellgate-display: {why}"), err


def test_fifo_with_a_writer_does_not_hang(box):
    km, kc = box
    start = time.monotonic()
    err = bash_fails(kc, "sleep 30 > fifo & w=$!; cellgate-display fifo; s=$?; kill $w; (exit $s)")
    assert "a FIFO" in err
    assert time.monotonic() - start < 10
    reply, out = run(kc, "print('still here')")
    assert stream_text(out) == "still here\n"


@pytest.mark.parametrize("link", ["hostlink.png", "rootlink.png"])
def test_symlink_to_a_host_path_shows_nothing_of_the_host(box, link):
    km, kc = box
    secret = "/tmp/cellgate-host-secret.png"  # a real image on the host
    with open(secret, "wb") as f:
        f.write(GIF)
    try:
        err = bash_fails(kc, f"cellgate-display {link}")
        # The box's /tmp has no such file; the box user may not enter /proc/1/root.
        assert err == f"cellgate-display: {link}: " + (
            "No such file or directory\n" if link == "hostlink.png" else "Permission denied\n")
    finally:
        os.remove(secret)


def test_output_limit_counts_displays(kernel_factory):
    km, kc = kernel_factory("cellgate-bash", env={"CELLGATE_OUTPUT_LIMIT": "3000"})
    reply, out = run(kc, "cd \"$(mktemp -d)\"\nhead -c 2000 /dev/zero | tr '\\0' x; echo\n"
                         "printf '<p>%04000d</p>' 0 > big.html\n"
                         "cellgate-display big.html 2>err.txt; echo status=$? >>err.txt")
    assert not displays(out)
    assert stream_text(out, "stdout") == "x" * 2000 + "\n"
    assert "output passed the limit" in stream_text(out, "stderr")
    # Past the limit the cell shows nothing more: the client's message is in the file.
    reply, out = run(kc, "cat err.txt")
    assert stream_text(out, "stdout") == ("cellgate-display: not shown: this cell's output "
                                          "passed its limit (--output-limit)\nstatus=1\n")


def test_display_record_past_the_limit_publishes_no_stray_bytes(kernel_factory):
    """A python display() crossing the limit is dropped whole (it once
    published memory past a string literal as stdout)."""
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_OUTPUT_LIMIT": "3000"})
    reply, out = run(kc, "print('x' * 1999)\ndisplay({'text/html': 'y' * 5000}, raw=True)")
    assert not displays(out)
    assert stream_text(out, "stdout") == "x" * 1999 + "\n"
    assert "output passed the limit" in stream_text(out, "stderr")


# ---- hostile clients ---------------------------------------------------------------

HOSTILE = r"""
import array, json, os, socket
P = os.environ['CELLGATE_DISPLAY_SOCKET']

def ask(payload, fds=()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    s.connect(P)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
    s.sendmsg([payload], anc)
    try:
        return s.recv(4096).decode()
    finally:
        s.close()

f = os.open('plot.png', os.O_RDONLY)
d = os.open('adir', os.O_RDONLY)
w = os.open('notes.txt', os.O_WRONLY)
p = os.open('plot.png', os.O_PATH)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
answers = {
    'garbage': ask(b'\xff\x00garbage', [f]),
    'not an object': ask(b'[1, 2]', [f]),
    'no fd': ask(b'{"name": "plot.png"}'),
    'two fds': ask(b'{}', [f, f]),
    'five fds': ask(b'{}', [f] * 5),
    'huge': ask(b'{"name": "' + b'a' * 100000 + b'"}', [f]),
    'long name': ask(json.dumps({'name': 'a' * 2000}).encode(), [f]),
    'bad mime': ask(b'{"mime": "text/plain"}', [f]),
    'mime not a string': ask(b'{"mime": 7}', [f]),
    'nested': ask(b'[' * 2000 + b']' * 2000, [f]),
    'directory': ask(b'{}', [d]),
    'write-only': ask(b'{"mime": "text/html"}', [w]),
    'O_PATH': ask(b'{}', [p]),
    'socket': ask(b'{}', [sock.fileno()]),
    'ok': ask(b'{"name": "plot.png"}', [f]),
}
print(json.dumps(answers))
"""


def kernel_fds(km):
    return len(os.listdir(f"/proc/{kernel_pid(km)}/fd"))


def test_hostile_requests_are_answered_and_the_kernel_keeps_serving(box):
    import json
    km, kc = box
    before = kernel_fds(km)
    reply, out = run(kc, HOSTILE)
    assert reply["content"]["status"] == "ok", (reply["content"], out)
    answers = json.loads(stream_text(out, "stdout"))
    assert answers.pop("ok") == "ok"
    assert len(displays(out)) == 1
    expect = {
        "garbage": "not a JSON object", "not an object": "not a JSON object",
        "no fd": "no file attached", "two fds": "exactly one file",
        "five fds": "exactly one file", "huge": "larger than 4096 bytes",
        "long name": "\"name\" must be a string of at most", "bad mime": "\"mime\" must be one of",
        "mime not a string": "\"mime\" must be one of", "nested": "not a JSON object",
        "directory": "a directory", "write-only": "cannot read it", "O_PATH": "cannot read it",
        "socket": "a socket",
    }
    for what, text in expect.items():
        assert text in answers[what], (what, answers[what])
    # Every fd that came with a request was closed again.
    assert wait_until(lambda: kernel_fds(km) <= before), (before, kernel_fds(km))


def test_many_idle_connections_do_not_stop_the_kernel(box):
    km, kc = box
    before = kernel_fds(km)
    reply, out = run(kc, "import os, socket\nheld = []\n"
                         "for i in range(40):\n"
                         "    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
                         "    s.settimeout(0.2)\n"
                         "    try:\n"
                         "        s.connect(os.environ['CELLGATE_DISPLAY_SOCKET'])\n"
                         "    except OSError:\n"
                         "        s.close()\n"
                         "        continue\n"
                         "    held.append(s)\n"
                         "print(len(held) > 8)")
    assert stream_text(out, "stdout") == "True\n", out
    # The kernel goes on serving cells meanwhile ...
    reply, out = run(kc, "print(6 * 7)")
    assert stream_text(out, "stdout") == "42\n"
    # ... and tells each idle client, after a short wait, why it gave up.
    reply, out = run(kc, "held[0].settimeout(10)\nprint(held[0].recv(4096).decode())")
    assert stream_text(out, "stdout") == "no request came within 3 seconds of connecting\n"
    reply, out = run(kc, "for s in held: s.close()\ndel held")
    d, out = shown(kc, "%%bash\ncellgate-display anim.gif", timeout=60)
    assert "image/gif" in d["data"]
    assert wait_until(lambda: kernel_fds(km) <= before), (before, kernel_fds(km))


# ---- without the box ---------------------------------------------------------------

def test_without_the_box(kernel_factory, tmp_path):
    km, kc = kernel_factory("cellgate-bash", env={"CELLGATE_SANDBOX": "0"})
    secret = tmp_path / "host.gif"
    secret.write_bytes(GIF)
    reply, out = run(kc, f"cd {tmp_path}\necho before; cellgate-display host.gif; echo after\n"
                         "cellgate-display --mime image/png host.gif; echo status=$?\n"
                         "echo \"$CELLGATE_DISPLAY_SOCKET\"; command -v cellgate-display")
    assert reply["content"]["status"] == "ok", out
    assert kinds(out)[:3] == [(("stream", "stdout"), "before\n"), ("display_data", None),
                              (("stream", "stdout"), "after\n")]
    assert base64.b64decode(displays(out)[0]["data"]["image/gif"]) == GIF
    lines = stream_text(out, "stdout").splitlines()
    assert lines[2] == "status=1"
    sock, link = lines[3], lines[4]
    private = os.path.dirname(sock)
    assert link == os.path.join(private, "bin", "cellgate-display")
    assert os.readlink(link) == os.path.realpath(CELLGATE)
    assert oct(os.stat(private).st_mode & 0o777) == "0o700"
    assert "is not a PNG image" in stream_text(out, "stderr")
    kc.shutdown()
    assert wait_until(lambda: not os.path.exists(private)), private
