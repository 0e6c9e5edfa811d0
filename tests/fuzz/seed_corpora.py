#!/usr/bin/python3
"""seed_corpora.py - writes fuzz seeds taken from real traffic into a folder
per target (default build/seeds/TARGET), to merge into tests/fuzz/corpus with
libFuzzer's -merge=1 (see /work/notes/i14-soakfuzz.md, or the Makefile's fuzz
target).

  wire      signed Jupyter messages captured from jupyter_client talking to a
            real ipykernel (key "k", as fuzz_wire.c checks), both directions,
            plus their unsigned form
  connfile  connection files written by jupyter_client
  image     PNG/JPEG/GIF/WebP files written by Pillow, SVGs by matplotlib
  display   cellgate-display requests ({"name", "mime"}) NUL the file: real
            matplotlib PNG/SVG plots, pandas HTML tables, Pillow images
  marker    the output of real commands, cut by exec-session end markers
  download  allow lists, URLs found in files on this machine (package locks,
            Python package metadata), seen files of such URLs
  regpath   npm tarball paths from package-lock.json files on this machine and
            PyPI paths for the Python packages installed here

Usage: /usr/bin/python3 tests/fuzz/seed_corpora.py [--out DIR] [TARGET...]
"""
import argparse
import glob
import hashlib
import io
import json
import os
import random
import re
import struct
import subprocess
import sys

MAX = 16384  # bytes per seed: fuzz runs use -max_len of this order


def writer(out, target):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    count = [0]

    def put(data):
        if isinstance(data, str):
            data = data.encode()
        if len(data) > MAX or not data:
            return
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        count[0] += 1

    return put, count


# ---- wire ---------------------------------------------------------------


def frames_input(first, frames):
    out = bytes([first])
    for fr in frames:
        fr = bytes(fr)
        if len(fr) > 0xFFFF:
            return None
        out += struct.pack("<H", len(fr)) + fr
    return out


def seed_wire(put):
    from jupyter_client import KernelManager
    from jupyter_client.session import Session

    captured = []
    orig_serialize = Session.serialize
    orig_feed = Session.feed_identities

    def serialize(self, msg, ident=None):
        frames = orig_serialize(self, msg, ident)
        captured.append(list(frames))
        return frames

    def feed(self, msg_list, copy=True):
        captured.append([bytes(getattr(m, "bytes", m)) for m in msg_list])
        return orig_feed(self, msg_list, copy)

    Session.serialize = serialize
    Session.feed_identities = feed
    km = KernelManager(kernel_name="python3")
    km.session.key = b"k"
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        cells = [
            "print('hello')",
            "1/0",
            "import sys; print('x' * 50, file=sys.stderr)",
            "from IPython.display import HTML, display; display(HTML('<b>b</b>'))",
            "{'a': [1, 2.5, None, True], 'é': 'ü'}",
            "for i in range(5): print(i, flush=True)",
            "import time; time.sleep(0.1); 'done'",
            "x = input('name? ')",
            "from IPython.display import clear_output; print(1); clear_output(wait=True)",
            "%whos",
            "raise KeyError('k')",
            "def f(a, b=2):\n    '''doc'''\n    return a + b\nf(1)",
            "print('\\x1b[31mred\\x1b[0m \\u2603 \\U0001F600')",
        ]
        for code in cells:
            allow = "input(" in code
            mid = kc.execute(code, allow_stdin=allow)
            if allow:
                kc.get_stdin_msg(timeout=20)
                kc.input("ada")
            kc._recv_reply(mid, timeout=30) if hasattr(kc, "_recv_reply") else None
            while True:
                try:
                    m = kc.get_iopub_msg(timeout=5)
                except Exception:
                    break
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" \
                        and m["parent_header"].get("msg_id") == mid:
                    break
            try:
                kc.get_shell_msg(timeout=5)
            except Exception:
                pass
        for req in (lambda: kc.kernel_info(), lambda: kc.complete("pri", 3),
                    lambda: kc.inspect("print", 5), lambda: kc.is_complete("for i in x:"),
                    lambda: kc.history(hist_access_type="tail", n=3),
                    lambda: kc.comm_info()):
            req()
            try:
                kc.get_shell_msg(timeout=10)
            except Exception:
                pass
        mid = kc.execute("import time; time.sleep(5)")
        km.interrupt_kernel()
        try:
            kc.get_shell_msg(timeout=10)
        except Exception:
            pass
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        Session.serialize = orig_serialize
        Session.feed_identities = orig_feed
    delim = b"<IDS|MSG>"
    for frames in captured:
        frames = [bytes(f) for f in frames]
        if delim not in frames:
            continue
        put(frames_input(0, frames) or b"")
        put(frames_input(0, [b"client-identity"] + frames) or b"")
        i = frames.index(delim)
        plain = frames[:i + 1] + [b""] + frames[i + 2:]
        put(frames_input(1, plain) or b"")


# ---- connfile -----------------------------------------------------------


def seed_connfile(put):
    from jupyter_client.connect import write_connection_file
    import tempfile

    rnd = random.Random(14)
    tmp = tempfile.mkdtemp(prefix="cg-seed-")
    n = 0
    for transport in ("tcp", "ipc"):
        for ip in ("127.0.0.1", "0.0.0.0", "localhost", "::1", "10.1.2.3"):
            if transport == "ipc" and ip != "127.0.0.1":
                ip = os.path.join(tmp, "kernel-%d" % n)
            for scheme in ("hmac-sha256", "hmac-sha512", "hmac-md5", ""):
                for key in (b"", b"k", os.urandom(16).hex().encode()):
                    n += 1
                    fname = os.path.join(tmp, "kernel-%d.json" % n)
                    kw = dict(fname=fname, ip=ip, key=key, transport=transport,
                              signature_scheme=scheme or "hmac-sha256")
                    if rnd.random() < 0.5:
                        kw["kernel_name"] = rnd.choice(["python3", "cellgate", "cellgate-bash"])
                    if transport == "tcp" and (ip != "127.0.0.1" or rnd.random() < 0.5):
                        for p in ("shell_port", "iopub_port", "stdin_port", "hb_port",
                                  "control_port"):
                            kw[p] = rnd.randint(1, 65535)
                    write_connection_file(**kw)
                    with open(fname, "rb") as f:
                        data = f.read()
                    if not scheme:
                        d = json.loads(data)
                        d["signature_scheme"] = ""
                        data = json.dumps(d).encode()
                    put(data)
                    if rnd.random() < 0.3:
                        put(data[: rnd.randint(1, len(data))])
    # what KernelManager writes when it starts a kernel
    from jupyter_client import KernelManager
    km = KernelManager(kernel_name="python3")
    km.connection_file = os.path.join(tmp, "km.json")
    km.write_connection_file()
    with open(km.connection_file, "rb") as f:
        put(f.read())


# ---- images -------------------------------------------------------------


def pillow_images():
    from PIL import Image, ImageDraw

    rnd = random.Random(14)
    out = []
    sizes = [(1, 1), (3, 2), (16, 16), (64, 33), (200, 120), (1, 300)]
    for w, h in sizes:
        im = Image.new("RGB", (w, h), (rnd.randrange(256), 40, 200))
        ImageDraw.Draw(im).line((0, 0, w, h), fill=(255, 255, 0))
        for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I"):
            b = io.BytesIO()
            im.convert(mode).save(b, "PNG", interlace=1 if mode == "RGB" and w > 10 else 0)
            out.append(("png", b.getvalue()))
        for kw in ({}, {"progressive": True}, {"quality": 5}, {"optimize": True},
                   {"subsampling": 0}):
            b = io.BytesIO()
            im.save(b, "JPEG", **kw)
            out.append(("jpeg", b.getvalue()))
        b = io.BytesIO()
        im.convert("L").save(b, "JPEG")
        out.append(("jpeg", b.getvalue()))
        b = io.BytesIO()
        im.convert("CMYK").save(b, "JPEG")
        out.append(("jpeg", b.getvalue()))
        exif = Image.Exif()
        exif[0x0112] = 6
        b = io.BytesIO()
        im.save(b, "JPEG", exif=exif.tobytes())
        out.append(("jpeg", b.getvalue()))
        for ver in ("GIF87a", "GIF89a"):
            b = io.BytesIO()
            im.convert("P").save(b, "GIF")
            data = b.getvalue()
            out.append(("gif", ver.encode() + data[6:]))
        b = io.BytesIO()
        frames = [im.rotate(a) for a in (0, 90, 180)]
        frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
        out.append(("gif", b.getvalue()))
        for kw in ({}, {"lossless": True}, {"quality": 10}):
            b = io.BytesIO()
            im.save(b, "WEBP", **kw)
            out.append(("webp", b.getvalue()))
        b = io.BytesIO()
        im.convert("RGBA").save(b, "WEBP")  # alpha: VP8X
        out.append(("webp", b.getvalue()))
        b = io.BytesIO()
        frames[0].save(b, "WEBP", save_all=True, append_images=frames[1:], duration=50)
        out.append(("webp", b.getvalue()))
    return out


def matplotlib_images():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for i, kind in enumerate(("plot", "bar", "scatter", "hist")):
        fig, ax = plt.subplots(figsize=(1.5 + i * 0.3, 1.2), dpi=40)
        getattr(ax, kind)(*([range(5), [3, 1, 4, 1, 5]] if kind != "hist" else [[1, 2, 2, 3]]))
        ax.set_title("t%d é" % i)
        for fmt in ("png", "svg", "jpeg", "gif", "webp"):
            b = io.BytesIO()
            try:
                fig.savefig(b, format=fmt)
            except ValueError:
                continue
            out.append(("svg+xml" if fmt == "svg" else fmt, b.getvalue()))
        plt.close(fig)
    return out


def seed_image(put):
    for _, data in pillow_images() + matplotlib_images():
        put(data)
        put(data[: max(1, len(data) // 3)])  # a file cut while being written


def html_tables():
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "<y>", "ü"], "c": [0.5, None, 2.25]})
    out = [df.to_html(), df.style.to_html() if hasattr(df, "style") else df.to_html(),
           df.describe().to_html(), "<!DOCTYPE html><html><body><h1>Report</h1>%s</body></html>"
           % df.to_html()]
    return out


def seed_display(put):
    rnd = random.Random(14)
    images = pillow_images() + matplotlib_images()
    rnd.shuffle(images)
    for i, (fmt, data) in enumerate(images[:160]):
        ext = {"jpeg": "jpg", "svg+xml": "svg"}.get(fmt, fmt)
        req = {"name": "plot%d.%s" % (i, ext)}
        if i % 3 == 0:
            req["mime"] = "image/" + fmt
        if i % 7 == 0:
            req["name"] = "/mnt/data/out/figure %d.%s" % (i, ext)
        put(json.dumps(req).encode() + b"\0" + data)
    for i, html in enumerate(html_tables()):
        put(json.dumps({"name": "table%d.html" % i, "mime": "text/html"}).encode() + b"\0"
            + html.encode())
        put(json.dumps({"name": "table%d.html" % i}).encode() + b"\0" + html.encode())


# ---- marker -------------------------------------------------------------

NONCE = "0123456789abcdef"


def seed_marker(put):
    cmds = [
        ["ls", "-la", "/usr"], ["printf", "a\\tb\\r\\nc"], ["date"], ["uname", "-a"],
        ["/usr/bin/python3", "-c", "import sys\nfor i in range(20): print(i, end='\\r')\n"],
        ["/usr/bin/python3", "-c", "print('\\x1b[1;31mred\\x1b[0m \\x1b]0;title\\x07 \\u2603')"],
        ["/usr/bin/python3", "-c", "print(bytes(range(256)).decode('latin-1'))"],
        ["ls", "--color=always", "/"], ["seq", "1", "40"], ["env", "-i", "A=1", "env"],
        ["bash", "-c", "echo out; echo err >&2; exit 3"], ["grep", "--color=always", "root",
                                                           "/etc/passwd"],
        ["bash", "-c", "printf '\\033]777;cg-notthenonce;0\\007 spoof'"],
        ["bash", "-c", "printf '\\033]7;file:///tmp\\007\\033]8;;http://x\\007link\\033]8;;\\007'"],
    ]
    rnd = random.Random(14)
    for i, c in enumerate(cmds):
        p = subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout[:3000]
        end = ("\033]777;cg-%s;%d\a" % (NONCE, p.returncode)).encode()
        for step in (0, 3, 16, rnd.randrange(17)):
            put(bytes([step]) + out + end)
            put(bytes([step]) + out + end + out[:50] + end.replace(b";0\a", b";130\a"))
            cut = rnd.randrange(1, len(end))
            put(bytes([step]) + out + end[:cut])  # session output ending mid-marker


# ---- download -----------------------------------------------------------


def real_urls():
    urls = set()
    pat = re.compile(rb"https?://[^\s\"'<>)\]]+")
    files = glob.glob("/tmp/ci*/tests/browser/package-lock.json")[:2]
    files += glob.glob("/usr/lib/python3/dist-packages/*.dist-info/METADATA")[:150]
    files += glob.glob("/usr/share/doc/*/copyright")[:150]
    for fn in files:
        try:
            with open(fn, "rb") as f:
                urls.update(m.decode("latin-1") for m in pat.findall(f.read(200000)))
        except OSError:
            pass
    return sorted(urls)


def seed_download(put):
    rnd = random.Random(14)
    urls = real_urls()
    rnd.shuffle(urls)
    for i, u in enumerate(urls[:110]):
        host = re.match(r"https?://([^/:]*)", u)
        host = host.group(1) if host else "x"
        allow = rnd.choice([
            "", "*", "https://%s/*" % host, "https://*.%s/*" % host.split(".", 1)[-1],
            "%s,https://files.pythonhosted.org/*" % u, "http://127.0.0.1:8000/*"])
        seen = "\n".join(rnd.sample(urls, min(len(urls), rnd.randint(0, 6))))
        if i % 5 == 0:
            seen += "\n" + u
        put("%s\n%s\n%s" % (allow, u, seen))
    # redirect targets the download tool meets: relative, protocol-relative,
    # to another scheme, to loopback and metadata addresses
    for loc in ("http://127.0.0.1:8000/file.csv", "http://[::1]/x", "//example.org/a",
                "https://169.254.169.254/latest/meta-data/", "http://0x7f000001/",
                "http://localhost./x", "https://files.pythonhosted.org/packages/x.whl#sha256=1",
                "https://user:pw@example.org/", "http://[::ffff:10.0.0.1]:80/"):
        put("https://example.org/*\n%s\n" % loc)


# ---- regpath ------------------------------------------------------------


def seed_regpath(put):
    rnd = random.Random(14)
    paths = []
    for fn in glob.glob("/tmp/ci*/tests/browser/package-lock.json")[:2] + \
            glob.glob("/usr/lib/ruby/gems/*/gems/*/vscode/package-lock.json"):
        try:
            lock = json.load(open(fn))
        except (OSError, ValueError):
            continue
        for dep in (lock.get("packages") or lock.get("dependencies") or {}).values():
            r = dep.get("resolved", "")
            m = re.match(r"https://registry\.npmjs\.org/(.+)", r)
            if m:
                paths.append("/npm/" + m.group(1))
                name = m.group(1).split("/-/")[0]
                paths.append("/npm/" + name)
                paths.append("/npm/" + name.replace("/", "%2f"))
    rnd.shuffle(paths)
    paths = paths[:70]
    for fn in sorted(glob.glob("/usr/lib/python3/dist-packages/*.dist-info"))[:60]:
        base = os.path.basename(fn)[: -len(".dist-info")]
        name, _, ver = base.partition("-")
        h = hashlib.sha256(base.encode()).hexdigest()
        paths.append("/pypi/simple/%s/" % rnd.choice([name, name.lower().replace("_", "-")]))
        paths.append("/pypi/files/packages/%s/%s/%s/%s-%s-py3-none-any.whl"
                     % (h[:2], h[2:4], h[4:], name, ver))
        if rnd.random() < 0.3:
            paths.append("/pypi/files/packages/%s/%s/%s/%s-%s.tar.gz"
                         % (h[:2], h[2:4], h[4:], name, ver))
    for p in paths:
        put(rnd.choice(["GET ", "GET ", "GET ", "HEAD "]) + p)


TARGETS = {"wire": seed_wire, "connfile": seed_connfile, "image": seed_image,
           "display": seed_display, "marker": seed_marker, "download": seed_download,
           "regpath": seed_regpath}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/seeds")
    ap.add_argument("targets", nargs="*", default=list(TARGETS))
    a = ap.parse_args()
    for t in a.targets:
        put, count = writer(a.out, t)
        TARGETS[t](put)
        print("%s: %d seeds" % (t, count[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
