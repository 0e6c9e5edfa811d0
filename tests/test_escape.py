"""The box, tested from the inside through real kernels: each case tries
something the box must stop and fails loudly if it gets through. Network
checks never send traffic off this machine: a UDP connect() is a route
lookup, and the only server used listens on the host's 127.0.0.1."""
import os
import socket
import threading

import pytest

from conftest import ROOT, descendants, kernel_pid, run, stream_text

TEST_NET = "192.0.2.1"  # RFC 5737 documentation range: nothing answers there


def py(kc, code, **kw):
    """Runs code; returns (reply content, stdout)."""
    reply, out = run(kc, code, **kw)
    return reply["content"], stream_text(out, "stdout")


def value(kc, expr):
    """The repr() of a Python expression evaluated in the box."""
    content, out = py(kc, f"print(repr({expr}))")
    assert content["status"] == "ok", content
    return eval(out)  # noqa: S307 - our own repr output


@pytest.fixture(scope="module")
def box(request):
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="cellgate",
                              env={**os.environ, "CELLGATE_TEST_SECRET": "leaked"})
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def can_list(kc, path):
    return value(kc, f"__import__('os').path.isdir({path!r}) and "
                     f"bool(__import__('os').listdir({path!r}))")


# ---- files -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/root", "/home", ROOT, "/var", "/srv"])
def test_cannot_see_host_directories(box, path):
    km, kc = box
    assert not can_list(kc, path), f"{path} is visible in the box"


def test_run_holds_only_cellgate_display(box):
    """The box's own /run: the display command and its socket, read-only."""
    km, kc = box
    assert value(kc, "sorted(__import__('os').listdir('/run'))") == ["cellgate"]
    listed = value(kc, "sorted(__import__('os').listdir('/run/cellgate'))")
    assert listed == ["bin", "display.sock"]
    # and `python` (-> /usr/bin/python3) where the system has only python3
    extra = [] if os.path.exists("/usr/bin/python") else ["python"]
    assert value(kc, "sorted(__import__('os').listdir('/run/cellgate/bin'))") == \
        ["cellgate-display"] + extra
    if extra:
        assert value(kc, "__import__('os').readlink('/run/cellgate/bin/python')") == \
            "/usr/bin/python3"
    content, out = py(kc, "%%bash\n(cd /run/cellgate; touch x; echo x > bin/cellgate-display\n"
                          "rm display.sock) 2>&1; echo done")
    assert out.count("Read-only file system") == 3 and "done" in out, out


def test_cannot_read_connection_file(box):
    km, kc = box
    assert not value(kc, f"__import__('os').path.exists({km.connection_file!r})")
    runtime_dir = os.path.dirname(km.connection_file)
    # The box may have a directory of that name (its own /tmp, where the
    # Python driver keeps IPython's profile): none of the host's entries
    # may show in it.
    if can_list(kc, runtime_dir):
        seen = set(value(kc, f"__import__('os').listdir({runtime_dir!r})"))
        assert not seen & set(os.listdir(runtime_dir)) - {"cellgate-ipython", ".cache",
                                                          "cellgate-matplotlib"}, seen


def test_cannot_read_host_secrets_with_bash(box):
    km, kc = box
    content, out = py(kc, "%%bash\ncat /etc/shadow 2>&1; ls /root 2>&1; echo done")
    assert "root:" not in out and "done" in out


@pytest.mark.parametrize("path", ["/usr/cellgate-escape", "/etc/cellgate-escape",
                                  "/cellgate-escape", "/bin/cellgate-escape"])
def test_cannot_write_outside_data_and_tmp(box, path):
    km, kc = box
    content, out = py(kc, f"open({path!r}, 'w')")
    assert content["status"] == "error"
    assert content["ename"] in ("OSError", "PermissionError", "FileNotFoundError")
    assert not os.path.exists(path)


DEVICES = {"/dev/" + n for n in ("null", "zero", "full", "random", "urandom", "tty")}
WRITABLE = {"/mnt/data", "/tmp", "/dev", "/dev/shm", "/proc"} | DEVICES


def test_every_mount_is_restricted(box):
    """Every mount in the box is nosuid; only the data volume, the private
    tmpfs's, /proc and the device nodes are writable; only the device nodes
    and /dev, which holds them, allow devices. Submounts of a bind count too."""
    km, kc = box
    mounts = value(kc, "[(l.split()[4], l.split()[5].split(',')) for l in "
                       "open('/proc/self/mountinfo')]")
    points = {point for point, _ in mounts}
    assert {"/", "/usr", "/etc/ssl", "/mnt/data", "/dev/null"} <= points, points
    for point, opts in mounts:
        assert "nosuid" in opts, (point, opts)
        assert ("rw" in opts) == (point in WRITABLE), (point, opts)
        assert ("nodev" in opts) == (point not in DEVICES | {"/dev"}), (point, opts)


def test_data_is_home_cwd_and_shared_between_languages(box):
    km, kc = box
    assert value(kc, "(__import__('os').getcwd(), __import__('os').environ['HOME'])") == \
        ("/mnt/data", "/mnt/data")
    py(kc, "%%bash\necho from-bash > shared.txt")
    assert value(kc, "open('/mnt/data/shared.txt').read()") == "from-bash\n"
    assert value(kc, "open('/tmp/t', 'w').write('ok')") == 2


def test_tmp_is_private_and_size_limited(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_TMP": "8M"})
    content, out = py(kc, "f = open('/tmp/big', 'wb')\n"
                          "for i in range(64): f.write(b'x' * (1 << 20))\nf.close()")
    assert content["status"] == "error" and "No space left" in content["evalue"]
    content, out = py(kc, "import os; os.remove('/tmp/big'); print('next cell runs')")
    assert out == "next cell runs\n"


# ---- processes, identity ---------------------------------------------------

def test_own_pid_namespace(box):
    km, kc = box
    pids = value(kc, "sorted(int(p) for p in __import__('os').listdir('/proc') if p.isdigit())")
    assert 1 in pids and len(pids) < 20, pids
    assert os.getpid() not in pids or len(pids) < 20
    host_kernel = km.provisioner.process.pid
    comm = value(kc, "[open(f'/proc/{p}/comm').read().strip() for p in "
                     "__import__('os').listdir('/proc') if p.isdigit()]")
    assert "cellgate" not in comm  # the kernel (monitor) is invisible
    assert host_kernel not in pids or "cellgate" not in comm


def test_hostname_and_user(box):
    km, kc = box
    assert value(kc, "__import__('socket').gethostname()") == "cellgate"
    assert value(kc, "__import__('os').getuid()") == 1000
    status = value(kc, "open('/proc/self/status').read()")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapPrm"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"


def test_environment_is_built_from_scratch(box):
    km, kc = box
    env = value(kc, "dict(__import__('os').environ)")
    assert "CELLGATE_TEST_SECRET" not in env
    assert not [k for k in env if k.startswith("JPY_")]
    assert env["HOME"] == "/mnt/data"
    assert env["PATH"] == "/run/cellgate/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["CELLGATE_DISPLAY_SOCKET"] == "/run/cellgate/display.sock"
    host_only = set(os.environ) - set(env)
    assert "CELLGATE_TEST_SECRET" in host_only or "CELLGATE_TEST_SECRET" not in os.environ


def test_init_cannot_be_killed_or_traced(box):
    km, kc = box
    content, out = py(kc, "%%bash\nkill -9 1; echo rc=$?")
    assert value(kc, "1 + 1") == 2
    rc = value(kc, "__import__('ctypes').CDLL(None, use_errno=True).ptrace(16, 1, 0, 0)")
    assert rc == -1  # PTRACE_ATTACH to init refused


def socket_inodes(pid):
    """The inodes of the sockets process pid holds open."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def test_init_holds_none_of_the_kernels_sockets(box):
    # The kernel takes its TCP ports before it builds the box (so clients
    # connecting early are queued); the box's init, a fork of the kernel,
    # closes them and everything else but its own descriptors.
    km, kc = box
    kernel = kernel_pid(km)
    with open(f"/proc/{kernel}/net/tcp") as f:
        listening = {int(line.split()[9]) for line in f.readlines()[1:]
                     if line.split()[3] == "0A"}  # TCP_LISTEN
    ports = socket_inodes(kernel) & listening
    assert len(ports) == 5, ports  # shell, iopub, stdin, control, heartbeat
    inits = [p for p in descendants(kernel)
             if open(f"/proc/{p}/comm").read().strip() == "cellgate-box"]
    assert inits
    for init in inits:
        assert not socket_inodes(init) & ports
        assert len(os.listdir(f"/proc/{init}/fd")) <= 8, os.listdir(f"/proc/{init}/fd")


# ---- network ---------------------------------------------------------------

def test_no_route_out(box):
    km, kc = box
    content, out = py(kc, f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                          f"s.connect(({TEST_NET!r}, 53))")
    assert content["status"] == "error"
    assert "Network is unreachable" in content["evalue"]
    content, out = py(kc, "%%bash\ncat < /dev/tcp/192.0.2.1/80")
    assert content["status"] == "error"


def test_only_loopback(box):
    km, kc = box
    assert value(kc, "[n for i, n in __import__('socket').if_nameindex()]") == ["lo"]


def test_host_loopback_services_unreachable(box):
    km, kc = box
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(srv.accept())
        except OSError:  # closed below: nothing came, as it should
            pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        content, out = py(kc, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)")
        assert content["status"] == "error" and "refused" in content["evalue"]
        assert not accepted
    finally:
        srv.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        srv.close()
        t.join(timeout=5)


def test_box_loopback_server_survives_cells(box):
    km, kc = box
    py(kc, "import socket, threading\nsrv = socket.socket()\nsrv.bind(('127.0.0.1', 8765))\n"
           "srv.listen(1)\n"
           "threading.Thread(target=lambda: srv.accept()[0].sendall(b'hi'), daemon=True).start()")
    content, out = py(kc, "%%bash\nexec 3<>/dev/tcp/127.0.0.1/8765; head -c 2 <&3; echo")
    assert out == "hi\n"


# ---- system calls ----------------------------------------------------------

SYSCALLS = {  # x86_64 numbers, harmless bad arguments, expected errno
    "bpf": (321, (-1, 0, 0), "EPERM"),
    "keyctl": (250, (0, 0, 0), "EPERM"),
    "add_key": (248, (0, 0, 0), "EPERM"),
    "mount": (165, (0, 0, 0), "EPERM"),
    "umount2": (166, (0, 0, 0), "EPERM"),
    "pivot_root": (155, (0, 0, 0), "EPERM"),
    "kexec_load": (246, (0, 0, 0), "EPERM"),
    "init_module": (175, (0, 0, 0), "EPERM"),
    "swapon": (167, (0, 0, 0), "EPERM"),
    "reboot": (169, (0, 0, 0), "EPERM"),
    "perf_event_open": (298, (0, 0, 0), "EPERM"),
    "userfaultfd": (323, (0, 0, 0), "EPERM"),
    "open_by_handle_at": (304, (0, 0, 0), "EPERM"),
    "setns": (308, (-1, 0, 0), "EPERM"),
    "unshare(NEWUSER)": (272, (0x10000000, 0, 0), "EPERM"),
    "clone3": (435, (0, 0, 0), "ENOSYS"),
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_refused_syscalls(box):
    km, kc = box
    code = ("import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\nres = {}\n"
            f"for name, (nr, args, _) in {SYSCALLS!r}.items():\n"
            "    ctypes.set_errno(0)\n"
            "    rc = libc.syscall(nr, *[ctypes.c_long(a) for a in args])\n"
            "    res[name] = (rc, errno.errorcode.get(ctypes.get_errno(), '?'))\n"
            "print(repr(res))")
    content, out = py(kc, code)
    got = eval(out)  # noqa: S307
    for name, (nr, args, want) in SYSCALLS.items():
        assert got[name][0] == -1, f"{name} succeeded in the box"
        assert got[name][1] == want or (want == "EPERM" and got[name][1] == "ENOSYS"
                                       and name.startswith("io_uring")), (name, got[name])
    assert value(kc, "2 + 2") == 4  # the runtime survived every probe


def test_no_nested_namespaces_or_mounts(box):
    km, kc = box
    content, out = py(kc, "%%bash\nunshare -U true 2>&1; echo U=$?; unshare -n true 2>&1; "
                          "echo N=$?; mount -t tmpfs none /tmp 2>&1; echo M=$?")
    assert "U=0" not in out and "N=0" not in out and "M=0" not in out, out
    content, out = py(kc, "import threading, subprocess\n"
                          "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                          "print(subprocess.run(['true']).returncode)")
    assert out == "0\n"  # threads and fork still work


# ---- resource bombs --------------------------------------------------------

def test_fork_bomb_is_contained(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_PIDS": "64"})
    content, out = py(kc, "import os, time\nkids = 0\nfor _ in range(400):\n"
                          "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
                          "    if pid == 0:\n        time.sleep(5); os._exit(0)\n    kids += 1\n"
                          "print(kids)", timeout=60)
    assert int(out) < 64, out
    content, out = py(kc, "%%bash\npkill -9 -f 'python3' -P $PPID 2>/dev/null; echo next")
    content, out = py(kc, "print('next cell runs')", timeout=60)
    assert "next cell runs" in out


def test_memory_bomb_is_contained(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_MEMORY": "256M"})
    content, out = py(kc, "x = bytearray(1 << 30)\nx[::4096] = b'x' * len(x[::4096])",
                      timeout=60)
    assert content["status"] == "error"
    assert content["ename"] in ("MemoryError", "RuntimeExited"), content
    if content["ename"] == "RuntimeExited":
        assert "memory" in content["evalue"]
    content, out = py(kc, "print('next cell runs')", timeout=60)
    assert "next cell runs" in out


def test_file_size_limit(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_FSIZE": "1M"})
    content, out = py(kc, "open('big', 'wb').write(b'x' * (4 << 20))")
    assert content["status"] == "error" and "too large" in content["evalue"].lower()
    assert value(kc, "'next'") == "next"


def test_open_files_limit(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_NOFILE": "64"})
    assert value(kc, "__import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE)") \
        == (64, 64)
    content, out = py(kc, "fs = [open('/dev/null') for _ in range(200)]")
    assert content["status"] == "error" and "Too many open files" in content["evalue"]
    assert value(kc, "len(fs) if 'fs' in dir() else 'gone'") == "gone"


def test_kill_everything_in_the_box(kernel_factory):
    km, kc = kernel_factory("cellgate")
    py(kc, "a = 1")
    content, out = py(kc, "%%bash\nsleep 100 & kill -9 -1")
    content, out = py(kc, "print('next cell runs')")
    assert "next cell runs" in out


def test_cell_timeout(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_TIMEOUT": "1"})
    py(kc, "kept = 5")
    content, out = py(kc, "import time\nwhile True: time.sleep(0.1)", timeout=30)
    assert content["ename"] == "CellTimeout" and "1 s" in content["evalue"]
    assert value(kc, "kept") == 5  # interrupted, not killed: state is intact
    content, out = py(kc, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                          "while True: pass", timeout=30)
    assert content["ename"] == "CellTimeout"
    assert value(kc, "'after a kill'") == "after a kill"
