"""The box where users run it: as an ordinary user (unprivileged user
namespaces), as root, without it when the operator says so, and with a
clear error when the machine refuses to build one."""
import errno
import os
import shutil
import subprocess

import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from conftest import CELLGATE, run, stream_text


def py_value(kc, expr):
    reply, out = run(kc, f"print(repr({expr}))")
    assert reply["content"]["status"] == "ok", reply["content"]
    return eval(stream_text(out, "stdout"))  # noqa: S307


def start_raw_kernel(tmp_path, env=None, prefix=(), program=CELLGATE, args=("-f", "{cf}")):
    """A kernel launched by hand (optionally as another user), and a client.
    args: the kernel's options, "{cf}" standing for the connection file."""
    cf, _ = write_connection_file(str(tmp_path / "kernel-raw.json"), key=b"secret")
    os.chmod(cf, 0o644)
    proc = subprocess.Popen([*prefix, program, "kernel", *(a.format(cf=cf) for a in args)],
                            env={**os.environ, **(env or {})})
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=20)
    return proc, kc


def stop(proc, kc):
    kc.shutdown()
    kc.stop_channels()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to become an ordinary user")
def test_box_as_an_ordinary_user():
    # pytest's tmp_path sits below a root-only directory: use one that the
    # ordinary user can reach, for its connection file and state.
    import pathlib
    import tempfile
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="cellgate-user-"))
    os.chmod(tmp_path, 0o755)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    proc, kc = start_raw_kernel(
        tmp_path, env={"CELLGATE_STATE_DIR": str(state), "HOME": str(state)},
        prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    try:
        assert py_value(kc, "(__import__('os').getuid(), __import__('os').getcwd())") == \
            (1000, "/mnt/data")
        assert py_value(kc, "__import__('socket').gethostname()") == "cellgate"
        assert py_value(kc, "len([p for p in __import__('os').listdir('/proc') "
                            "if p.isdigit()]) < 10")
        reply, out = run(kc, "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                             ".connect(('192.0.2.1', 53))")
        assert "Network is unreachable" in reply["content"]["evalue"]
    finally:
        stop(proc, kc)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_no_sandbox_is_explicit_and_runs_as_the_kernel(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_SANDBOX": "0"})
    assert py_value(kc, "__import__('os').getuid()") == os.getuid()
    assert py_value(kc, "__import__('socket').gethostname()") == os.uname().nodename


def test_data_dir_removed_at_shutdown_unless_kept(tmp_path):
    for keep in ("0", "1"):
        state = tmp_path / f"state{keep}"
        proc, kc = start_raw_kernel(tmp_path, env={"CELLGATE_STATE_DIR": str(state),
                                                   "CELLGATE_KEEP_DATA": keep})
        run(kc, "open('note.txt', 'w').write('kept?')")
        host = state / "raw" / "note.txt"
        assert host.read_text() == "kept?"  # /mnt/data is this host directory
        stop(proc, kc)
        assert host.exists() == (keep == "1")
        if os.path.ismount(state / "raw"):  # kept data stays mounted (--data-size)
            subprocess.run(["umount", str(state / "raw")], check=True)


def test_clear_error_when_namespaces_are_refused(tmp_path):
    # In a user namespace of our own whose limit on nested user namespaces
    # is 0, the machine refuses the box with ENOSPC: cells must say so.
    script = (f"echo 0 > /proc/sys/user/max_user_namespaces && "
              f"exec '{CELLGATE}' doctor")
    r = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert "box                  FAILS" in r.stdout, r.stdout + r.stderr
    assert "max_user_namespaces" in r.stdout


def test_refused_box_is_an_error_in_every_cell_never_a_fallback(tmp_path):
    cf, _ = write_connection_file(str(tmp_path / "kernel-refused.json"), key=b"k")
    script = (f"echo 0 > /proc/sys/user/max_user_namespaces && "
              f"exec '{CELLGATE}' kernel -f '{cf}'")
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "sh", "-c", script])
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=20)
        reply, out = run(kc, "print('this must not run unboxed')")
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "RuntimeUnavailable"
        assert "box" in reply["content"]["evalue"] and "--no-sandbox" not in \
            stream_text(out, "stdout")
        assert "this must not run" not in stream_text(out, "stdout")
    finally:
        kc.stop_channels()
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("args", [
    ("-f", "{cf}"),
    ("--language", "python", "-f{cf}"),
    # as getopt_long reads them in cellgate-kernel: a unique prefix of
    # --connection-file, and a language that looks like an option
    ("--conn={cf}",),
    ("-l", "-f", "--language=python", "--connection-file", "{cf}"),
], ids=["f", "glued", "prefix", "value-like-f"])
def test_cellgate_kernel_listens_before_its_exec(tmp_path, args):
    # `cellgate kernel` takes the five ports before it execs cellgate-kernel
    # (a client connecting at once is queued, not refused for 100 ms) and
    # names the sockets in CELLGATE_LISTEN_FDS, which the kernel's initial
    # environment shows; the kernel takes them and no runtime sees it. It
    # finds the connection file with cellgate-kernel's own option table.
    proc, kc = start_raw_kernel(tmp_path, args=args)
    try:
        with open(f"/proc/{proc.pid}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        fds = [int(x) for x in env[b"CELLGATE_LISTEN_FDS"].split(b",")]
        assert len(fds) == 5 and all(fd >= 0 for fd in fds), fds
        for fd in fds:
            assert os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("socket:"), fd
        assert py_value(kc, "__import__('os').environ.get('CELLGATE_LISTEN_FDS')") is None
    finally:
        stop(proc, kc)


def test_cellgate_kernel_checks_handed_down_sockets(tmp_path):
    # Run by hand with CELLGATE_LISTEN_FDS naming descriptors that are not
    # listening sockets on its ports, cellgate-kernel listens itself.
    kernel = os.path.join(os.path.dirname(CELLGATE), "cellgate-kernel")
    proc, kc = start_raw_kernel(tmp_path, env={"CELLGATE_LISTEN_FDS": "0,1,2,x,99999"},
                                program=kernel)
    try:
        assert py_value(kc, "6 * 7") == 42
    finally:
        stop(proc, kc)


def refusing_mount_setattr(err):
    """A preexec_fn after which mount_setattr() fails with errno err (a
    seccomp filter, libseccomp): ENOSYS as on a kernel older than 5.12,
    EPERM as under a container's seccomp profile."""
    def refuse():
        import ctypes
        lib = ctypes.CDLL("libseccomp.so.2")
        lib.seccomp_init.restype = ctypes.c_void_p
        ctx = lib.seccomp_init(ctypes.c_uint32(0x7fff0000))  # SCMP_ACT_ALLOW
        nr = lib.seccomp_syscall_resolve_name(b"mount_setattr")
        act = ctypes.c_uint32(0x00050000 | err)  # SCMP_ACT_ERRNO(err)
        if not ctx or nr < 0 or lib.seccomp_rule_add(ctypes.c_void_p(ctx), act, nr, 0) != 0 \
                or lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:
            os._exit(99)
    return refuse


def box_mounts(preexec_fn=None):
    """(mount point, options) of every mount `cellgate box` shows inside."""
    r = subprocess.run([CELLGATE, "box", "--", "/bin/cat", "/proc/self/mountinfo"],
                       capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)
    assert r.returncode == 0, r.stderr
    return [(l.split()[4], l.split()[5]) for l in r.stdout.splitlines()]


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_mounts_restricted_alike_without_mount_setattr(err):
    # The box makes /etc's and /dev's binds read-only (and nosuid, nodev)
    # with one mount_setattr() each; where that fails, a remount per bind
    # must give the same flags.
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
         "print(libc.syscall(442, -100, b'/', 0, None, 0), ctypes.get_errno())"],
        capture_output=True, text=True, timeout=60, preexec_fn=refusing_mount_setattr(err))
    assert probe.stdout.split() == ["-1", str(err)], probe  # the filter works
    usual = box_mounts()
    assert ("/etc", "ro,nosuid,nodev,relatime") in usual, usual
    assert box_mounts(refusing_mount_setattr(err)) == usual


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root for a mount namespace of the test's own")
def test_mounts_below_a_bound_system_directory_are_restricted_too():
    # A host mount below /usr (here a writable tmpfs on /usr/local, in a
    # mount namespace of this test's own) comes into the box with /usr's
    # recursive bind: it must be as read-only, nosuid and nodev as /usr.
    script = (f"mount -t tmpfs -o mode=0755,size=1m cellgate-test /usr/local && "
              f"exec '{CELLGATE}' box -- /bin/cat /proc/self/mountinfo")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mounts = dict((l.split()[4], l.split()[5]) for l in r.stdout.splitlines())
    assert mounts.get("/usr/local") == mounts["/usr"] == "ro,nosuid,nodev,relatime", mounts
