"""/mnt/data is bounded by --data-size (CELLGATE_DATA_SIZE): as root an
ext4 image of that size on a loop device, mounted on the host's data
directory and in the box. Writing past it is ENOSPC in the box; the kernel
keeps serving, the files written before stay intact and readable from the
host, other kernels are unaffected; 0 means no bound; the default (10G)
applies when nothing is set; a killed kernel leaves no mount behind."""
import contextlib
import os
import shutil
import signal
import subprocess

import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from conftest import CELLGATE, descendants, run, stream_text, wait_until
from proctree import pids_where

MiB = 1 << 20
GiB = 1 << 30

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control")
    or not shutil.which("mke2fs", path="/usr/sbin:/sbin"),
    reason="bounding /mnt/data needs root, loop devices and mke2fs")


def py(kc, code):
    """Runs code; returns its stdout, failing on an error."""
    reply, out = run(kc, code, timeout=60)
    assert reply["content"]["status"] == "ok", (reply["content"], out)
    return stream_text(out, "stdout")


def data_dir(km):
    """The host directory of a kernel's /mnt/data: STATE_DIR/<kernel id>,
    the id being the connection file's name less "kernel-" and ".json"."""
    base = os.path.basename(km.connection_file)
    kid = base.removeprefix("kernel-").split(".")[0]
    return os.path.join(os.environ["CELLGATE_STATE_DIR"], kid)


def box_total(kc):
    return int(py(kc, "import os\ns = os.statvfs('/mnt/data')\n"
                      "print(s.f_blocks * s.f_frsize)"))


@contextlib.contextmanager
def raw_kernel(cf, env, *args, stderr=None):
    """`cellgate kernel -f cf ARGS` with env, and a client to it once it is
    ready; shut down and waited for at the end of the block, killed if the
    block failed or the kernel does not end."""
    proc = subprocess.Popen([CELLGATE, "kernel", "-f", cf, *args], env=env, stderr=stderr)
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=20)
        yield kc
        kc.shutdown()
        proc.wait(timeout=20)
    finally:
        kc.stop_channels()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


FILL = """
import errno, os
err = None
try:
    with open('big.bin', 'wb') as f:
        for _ in range(64):
            f.write(b'x' * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
except OSError as e:
    err = errno.errorcode[e.errno]
print(err)
"""


def test_writing_past_data_size_is_enospc_and_nothing_else_breaks(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_DATA_SIZE": "8M"})
    other_km, other = kernel_factory("cellgate-python", env={"CELLGATE_DATA_SIZE": "64M"})
    assert 4 * MiB < box_total(kc) <= 8 * MiB
    py(kc, "import hashlib, os\ndata = os.urandom(1 << 20)\nopen('before.bin', 'wb').write(data)\n"
           "digest = hashlib.sha256(data).hexdigest()")

    assert py(kc, FILL).strip() in ("ENOSPC", "EDQUOT")

    # The kernel keeps serving; what was written before is intact, in the
    # box and on the host, where the file lives in the mounted image.
    assert py(kc, "print(hashlib.sha256(open('before.bin', 'rb').read()).hexdigest() == digest)"
              ).strip() == "True"
    host = os.path.join(data_dir(km), "before.bin")
    assert os.path.getsize(host) == MiB
    # Removing the filler gives the space back.
    assert py(kc, "os.remove('big.bin')\nopen('after.bin', 'wb').write(b'y' * (1 << 20))\n"
                  "print(os.path.getsize('after.bin'))").strip() == str(MiB)
    # Bash fills it the same way: dd says so, the cell ends, the kernel serves.
    reply, out = run(kc, "%%bash\ndd if=/dev/zero of=big2.bin bs=1M count=32 2>&1; echo rc=$?",
                     timeout=60)
    text = stream_text(out)
    assert "No space left on device" in text and "rc=1" in text, text
    assert py(kc, "print(1 + 1)").strip() == "2"
    # Another kernel is not affected by this one being full.
    assert py(other, FILL.replace("range(64)", "range(16)")).strip() == "None"


FIRST_CELL = {
    "cellgate-python": "import os\nprint(os.stat('.').st_dev == os.stat('/mnt/data').st_dev,"
                       " os.getcwd())\nopen('first.txt', 'w').write('first')",
    "cellgate-c": "#include <stdio.h>\n#include <sys/stat.h>\n#include <unistd.h>\n"
                  "int main(void) {\n  struct stat here, data; char cwd[256];\n"
                  "  stat(\".\", &here); stat(\"/mnt/data\", &data);\n"
                  "  printf(\"%s %s\\n\", here.st_dev == data.st_dev ? \"True\" : \"False\","
                  " getcwd(cwd, sizeof cwd));\n"
                  "  FILE *f = fopen(\"first.txt\", \"w\"); fputs(\"first\", f); fclose(f);\n}\n",
    "cellgate-bash": "[ $(stat -c %d .) = $(stat -c %d /mnt/data) ] && echo True || echo False; pwd\n"
                     "printf first > first.txt",
}


@pytest.mark.parametrize("kernel", sorted(FIRST_CELL))
def test_first_cell_works_in_the_volume(kernel_factory, kernel):
    # A fresh kernel's first cell runs in the bounded volume, whatever its
    # driver (the box's init enters /mnt/data only after the volume is
    # mounted over it), and what it writes is in the host's data directory.
    if kernel == "cellgate-c" and not shutil.which("gcc"):
        pytest.skip("no gcc")
    km, kc = kernel_factory(kernel, env={"CELLGATE_DATA_SIZE": "8M"})
    reply, out = run(kc, FIRST_CELL[kernel], timeout=60)
    assert reply["content"]["status"] == "ok", (reply["content"], out)
    assert stream_text(out, "stdout").split() == ["True", "/mnt/data"]
    with open(os.path.join(data_dir(km), "first.txt")) as f:
        assert f.read() == "first"


def test_zero_means_no_bound(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_DATA_SIZE": "0"})
    host = os.statvfs(os.environ["CELLGATE_STATE_DIR"])
    assert box_total(kc) == host.f_blocks * host.f_frsize  # the host's own filesystem
    assert not os.path.ismount(data_dir(km))
    assert not os.path.exists(data_dir(km) + ".img")


def test_default_applies(kernel_factory):
    saved = os.environ.pop("CELLGATE_DATA_SIZE", None)
    try:
        km, kc = kernel_factory("cellgate-python")
    finally:
        if saved is not None:
            os.environ["CELLGATE_DATA_SIZE"] = saved
    assert 9 * GiB < box_total(kc) <= 10 * GiB
    assert os.path.ismount(data_dir(km))
    # Sparse: the 10G image takes a few MB of the host's disk.
    assert os.stat(data_dir(km) + ".img").st_blocks * 512 < 64 * MiB


def test_flag_and_bad_values(tmp_path):
    r = subprocess.run([CELLGATE, "kernel", "--help"], capture_output=True, text=True, timeout=30)
    assert "--data-size SIZE" in r.stdout and "CELLGATE_DATA_SIZE" in r.stdout
    for bad in ("lots", "1M"):
        r = subprocess.run([CELLGATE, "kernel", "-f", "x.json", "--data-size", bad],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "data-size" in r.stderr, r.stderr
    cf, _ = write_connection_file(str(tmp_path / "kernel-flag.json"), key=b"k")
    state = tmp_path / "state"
    with raw_kernel(cf, {**os.environ, "CELLGATE_STATE_DIR": str(state),
                         "CELLGATE_DATA_SIZE": "1G"}, "--data-size", "16M") as kc:
        assert 8 * MiB < box_total(kc) <= 16 * MiB  # the flag wins over the environment
    # Shut down without --keep-data: nothing left of it.
    assert not os.path.exists(state / "flag") and not os.path.exists(state / "flag.img")


def volume_keepers(pid):
    """{pid: /proc/PID/exe} of the data volume keepers below pid."""
    found = {}
    for p in pids_where(descendants(pid), lambda argv: argv[1:2] == [b"volume-keeper"]):
        try:
            found[p] = os.readlink(f"/proc/{p}/exe")
        except OSError:
            pass
    return found


def test_killed_kernel_leaves_no_mount(kernel_factory):
    km, kc = kernel_factory("cellgate-python", env={"CELLGATE_DATA_SIZE": "8M"})
    py(kc, "open('x', 'w').write('x')")
    d = data_dir(km)
    assert os.path.ismount(d)
    # The keeper that removes it waits in the static `cellgate` (~1 MB
    # resident), not in a copy of cellgate-kernel (~2 MB).
    assert wait_until(lambda: list(volume_keepers(km.provisioner.process.pid).values())
                      == [os.path.realpath(CELLGATE)], timeout=10), \
        volume_keepers(km.provisioner.process.pid)
    os.killpg(os.getpgid(km.provisioner.process.pid), signal.SIGKILL)
    assert wait_until(lambda: not os.path.ismount(d) and not os.path.exists(d + ".img"),
                      timeout=10), os.listdir(os.path.dirname(d))


def test_kept_data_stays_readable_and_is_reused(tmp_path):
    state = tmp_path / "state"
    cf, _ = write_connection_file(str(tmp_path / "kernel-kept.json"), key=b"k")
    env = {**os.environ, "CELLGATE_STATE_DIR": str(state), "CELLGATE_KEEP_DATA": "1",
           "CELLGATE_DATA_SIZE": "8M"}
    d = state / "kept"
    try:
        for round_ in range(2):
            with raw_kernel(cf, env) as kc:
                if round_ == 0:
                    py(kc, "open('note.txt', 'w').write('kept')")
                else:  # a kernel with the same id finds the files again
                    assert py(kc, "print(open('note.txt').read())").strip() == "kept"
                    assert box_total(kc) <= 8 * MiB
            assert (d / "note.txt").read_text() == "kept"  # readable on the host after
    finally:
        if os.path.ismount(d):
            subprocess.run(["umount", str(d)], check=False)


def test_unbounded_fallback_is_said_and_keeps_files(tmp_path):
    # A data directory already holding files (kept by a kernel that ran
    # without a bound) is used as it is, and the log says /mnt/data is not
    # bounded and why, rather than hiding the files under a new volume.
    state = tmp_path / "state"
    (state / "pre").mkdir(parents=True)
    (state / "pre" / "old.txt").write_text("old")
    cf, _ = write_connection_file(str(tmp_path / "kernel-pre.json"), key=b"k")
    log = open(tmp_path / "kernel.log", "w+")
    with raw_kernel(cf, {**os.environ, "CELLGATE_STATE_DIR": str(state),
                         "CELLGATE_KEEP_DATA": "1"}, "--data-size", "8M", stderr=log) as kc:
        assert py(kc, "print(open('old.txt').read())").strip() == "old"
        host = os.statvfs(str(state))
        assert box_total(kc) == host.f_blocks * host.f_frsize
    log.seek(0)
    text = log.read()
    log.close()
    assert "/mnt/data is not bounded" in text and "already holds files" in text, text


NO_SIZE_ENV = {k: v for k, v in os.environ.items() if k != "CELLGATE_DATA_SIZE"}


def box(*cmd, env=None):
    """`cellgate box -- CMD`: its stdout, failing on a non-zero exit."""
    r = subprocess.run([CELLGATE, "box", "--", *cmd], capture_output=True, text=True, timeout=60,
                       env=env or NO_SIZE_ENV)
    assert r.returncode == 0, r.stderr
    return r.stdout


def loop_backing_files():
    """{loop device: the file behind it} for every attached loop device."""
    found = {}
    for dev in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                found[dev] = f.read().strip()
        except OSError:
            pass
    return found


def test_box_volume_leaves_no_loop_device():
    # `cellgate box` with its default volume, held open while we look from
    # the host: its loop device, and the image behind it, go once it ends.
    proc = subprocess.Popen([CELLGATE, "box", "--", "/bin/sh", "-c",
                             "grep ' /mnt/data ' /proc/self/mountinfo; echo end; read line"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=NO_SIZE_ENV)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        # the bound host directory first, the volume mounted over it last
        assert lines[-1] == "end\n", lines
        dev = lines[-2].split(" - ext4 ")[1].split()[0].removeprefix("/dev/")
        image = loop_backing_files()[dev]
        assert image.startswith("/tmp/cellgate-box-") and image.endswith("/data.img"), image
        proc.communicate("go\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert wait_until(lambda: all(not f.startswith(image) for f in loop_backing_files().values()),
                      timeout=10), loop_backing_files()
    assert not os.path.exists(image) and not os.path.exists(os.path.dirname(image))


def test_volume_template_is_small_to_copy():
    # Each box's volume is a copy of a template per size and owner: made
    # without the blocks reserved for growing a mounted filesystem
    # (resize_inode, 4 MB at 10G), it holds ~200 KB of data to copy.
    box("/bin/true")
    template = f"/var/cache/cellgate/volume-{10 * GiB}-65534-65534.img"
    assert os.path.getsize(template) == 10 * GiB
    assert os.stat(template).st_blocks * 512 < MiB
    dumpe2fs = shutil.which("dumpe2fs", path="/usr/sbin:/sbin")
    if dumpe2fs:
        features = subprocess.run([dumpe2fs, "-h", template], capture_output=True, text=True)
        assert "has_journal" in features.stdout and "resize_inode" not in features.stdout


POOL = "/var/cache/cellgate"


def ready_folder(size):
    """The pool's ready volume for size, owned by nobody (a root kernel's box)."""
    return f"{POOL}/ready-{size}-65534-65534"


def drop_ready(size):
    """Unmounts and removes the ready volume for size (a size only one test
    uses: other tests, or another worker's, never wait for it)."""
    if os.path.ismount(f"{ready_folder(size)}/mnt"):
        subprocess.run(["umount", "-l", f"{ready_folder(size)}/mnt"], check=False)
    shutil.rmtree(ready_folder(size), ignore_errors=True)


def test_box_takes_the_ready_volume_and_it_is_made_again():
    # The next volume of a size and owner waits mounted in the pool; a box
    # takes it (fresh and empty, its home's owner and mode), and another is
    # made for the box after it.
    size = 20 * MiB
    ready = f"{ready_folder(size)}/mnt"
    env = {**NO_SIZE_ENV, "CELLGATE_DATA_SIZE": str(size)}
    try:
        box("/bin/true", env=env)
        assert wait_until(lambda: os.path.ismount(ready), timeout=20)
        dev = os.stat(ready).st_dev
        out = box("/bin/sh", "-c", "stat -c '%d %U %a' /mnt/data; ls -A /mnt/data",
                  env=env).split("\n")
        assert out[0] == f"{dev} user 700" and out[1] == "", out
        assert wait_until(lambda: os.path.ismount(ready), timeout=20)
    finally:
        drop_ready(size)


def test_pool_leftovers_of_killed_processes_are_removed():
    # A keeper killed while taking a ready volume leaves taking-<pid>, still
    # mounted (here a tmpfs stands for it): the next maker unmounts and
    # removes it, as no process holds its lock.
    left = f"{POOL}/taking-pytest{os.getpid()}"
    os.makedirs(f"{left}/mnt")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", f"{left}/mnt"], check=True)
        open(f"{left}/img", "w").close()
        # A box takes the ready volume and a maker makes the next one (a
        # maker of an earlier box may have come first: then one box more).
        for _ in range(4):
            box("/bin/true")
            if wait_until(lambda: not os.path.exists(left), timeout=5):
                break
        assert not os.path.exists(left), os.listdir(left)
    finally:
        if os.path.ismount(f"{left}/mnt"):
            subprocess.run(["umount", "-l", f"{left}/mnt"], check=False)
        shutil.rmtree(left, ignore_errors=True)


def test_unmounted_ready_volume_is_never_used():
    # A ready folder whose volume is not mounted (after a restart, or one
    # mounted in another mount namespace only) is removed, not mounted a
    # second time: the box gets a fresh copy of the template.
    size = 12 * MiB
    stale = ready_folder(size)
    os.makedirs(f"{stale}/mnt", exist_ok=True)
    with open(f"{stale}/img", "wb") as f:
        f.write(b"not a filesystem" * 4096)
    try:
        env = {**NO_SIZE_ENV, "CELLGATE_DATA_SIZE": str(size)}
        total = int(box("/usr/bin/python3", "-c", "import os; s = os.statvfs('/mnt/data'); "
                        "print(s.f_blocks * s.f_frsize)", env=env))
        assert 8 * MiB < total <= size
        # In its place, once made, the next box's: a copy of the template.
        assert wait_until(lambda: os.path.ismount(f"{stale}/mnt"), timeout=20)
        assert os.path.getsize(f"{stale}/img") == size
    finally:
        drop_ready(size)


def test_ready_volume_for_a_data_directory_on_another_filesystem(tmp_path):
    # The pool's image cannot be renamed onto another filesystem (here a
    # tmpfs): the box still gets the ready volume, its image unlinked, and
    # nothing is left behind once the kernel is gone.
    state = f"/dev/shm/cellgate-test-{os.getpid()}"
    size = 18 * MiB
    env = {**NO_SIZE_ENV, "CELLGATE_DATA_SIZE": str(size)}
    assert os.stat("/dev/shm").st_dev != os.stat(POOL).st_dev
    box("/bin/true", env=env)
    assert wait_until(lambda: os.path.ismount(f"{ready_folder(size)}/mnt"), timeout=20)
    cf, _ = write_connection_file(str(tmp_path / "kernel-shm.json"), key=b"k")
    try:
        with raw_kernel(cf, {**env, "CELLGATE_STATE_DIR": state}) as kc:
            assert 14 * MiB < box_total(kc) <= size
            py(kc, "open('f.txt', 'w').write('on the volume')")
            assert open(f"{state}/shm/f.txt").read() == "on the volume"
            assert not os.path.exists(f"{state}/shm.img")
        assert wait_until(lambda: not os.path.exists(f"{state}/shm"), timeout=10), \
            os.listdir(state)
    finally:
        if os.path.ismount(f"{state}/shm"):
            subprocess.run(["umount", "-l", f"{state}/shm"], check=False)
        shutil.rmtree(state, ignore_errors=True)
        wait_until(lambda: os.path.ismount(f"{ready_folder(size)}/mnt"), timeout=10)
        drop_ready(size)
