"""Processes and their command lines, read from /proc: shared by the tests
(through conftest) and bench/soak.py, without conftest's set-up."""
import os


def parent_of(pid):
    """pid's parent's pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid):
    """True while pid is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def box_inits(kernel_pid):
    """The kernel's children in a pid namespace other than the kernel's: its
    box's init (one while the box is up; the data volume's keeper, also a
    child, stays in the kernel's namespace)."""
    try:
        mine = os.readlink(f"/proc/{kernel_pid}/ns/pid")
    except OSError:
        return []
    out = []
    for pid in all_pids():
        try:
            if parent_of(pid) == kernel_pid and os.readlink(f"/proc/{pid}/ns/pid") != mine:
                out.append(pid)
        except OSError:
            pass
    return out


def descendants(pid):
    """All processes below pid (from /proc), as a set of pids."""
    kids = {}
    for p in all_pids():
        ppid = parent_of(p)
        if ppid is not None:
            kids.setdefault(ppid, []).append(p)
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def all_pids():
    """Every process's pid now."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def argv_of(pid):
    """pid's command line as a list of bytes ([] once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    if data.endswith(b"\0"):
        data = data[:-1]
    return data.split(b"\0") if data else []


def pids_where(pids, test):
    """Those of pids whose command line (argv_of) passes test, in order."""
    out = []
    for pid in pids:
        argv = argv_of(pid)
        if argv and test(argv):
            out.append(pid)
    return out
