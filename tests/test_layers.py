"""The layering check (scripts/layers.py): the real build passes it, and each
kind of violation planted in a small tree of its own fails it with a
message naming the files."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = os.path.join(ROOT, "scripts", "layers.py")
CC = os.environ.get("CC", "cc")


def layers(*args, cwd=ROOT):
    return subprocess.run([sys.executable, LAYERS, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def plant(root, files):
    """Writes {relative path: text} under root and compiles each .c into
    root/build/<path>.o; returns the object paths."""
    objects = []
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    for rel in files:
        if rel.endswith(".c"):
            obj = os.path.join(root, "build", rel[:-2] + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            subprocess.run([CC, "-c", "-I", root, os.path.join(root, rel), "-o", obj],
                           check=True)
            objects.append(obj)
    return objects


def check_tree(root, files):
    """Plants files in root and runs both checks on it; the failing result."""
    plant(str(root), files)
    r = layers("--root", str(root), "--build", str(root / "build"))
    assert r.returncode == 1, r.stdout
    return r.stderr


def test_the_build_is_layered():
    build = os.path.dirname(os.path.abspath(os.environ.get("CELLGATE_BIN", "build/cellgate")))
    r = layers("--root", ROOT, "--build", build)
    assert r.returncode == 0, r.stderr
    assert "no call cycles" in r.stdout


def test_a_planted_call_cycle_fails_naming_the_files(tmp_path):
    objs = plant(str(tmp_path), {
        "kernel/ping.c": "/* ping */\nvoid pong(void);\nvoid ping(void) { pong(); }\n",
        "kernel/pong.c": "/* pong */\nvoid ping(void);\nvoid pong(void) { ping(); }\n",
        "kernel/top.c": "/* top */\nvoid ping(void);\nint main(void) { ping(); return 0; }\n",
    })
    r = layers("--objects", *objs)
    assert r.returncode == 1
    err = r.stderr
    assert "call each other in a circle: ping.c, pong.c" in err
    assert "ping.c -> pong.c (pong)" in err and "pong.c -> ping.c (ping)" in err
    assert "top.c" not in err.split("circle:")[1].splitlines()[0]


def test_a_longer_cycle_through_a_build_tree_fails(tmp_path):
    err = check_tree(tmp_path, {
        "kernel/a.c": "/* a */\nvoid b(void);\nvoid a(void) { b(); }\n",
        "kernel/b.c": "/* b */\nvoid c(void);\nvoid b(void) { c(); }\n",
        "kernel/c.c": "/* c */\nvoid a(void);\nvoid c(void) { a(); }\n",
    })
    assert "kernel/a.c, kernel/b.c, kernel/c.c" in err


def test_a_lower_folder_including_a_higher_one_fails(tmp_path):
    err = check_tree(tmp_path, {
        "kernel/chan.h": "/* chan */\nvoid chan_send(void);\n",
        "common/wire.c": '/* wire */\n#include "kernel/chan.h"\nvoid wire(void) {}\n',
        "sandbox/box.c": '/* box */\n#include "common/wire.h"\nvoid box(void) {}\n',
        "common/wire.h": "/* wire */\nvoid wire(void);\n",
    })
    assert 'common/wire.c:2: common/ may not include kernel/ ("kernel/chan.h")' in err
    assert "sandbox/box.c" not in err


@pytest.mark.parametrize("folder", ["gateway", "registry"])
def test_the_gateways_may_not_include_the_kernel_or_the_box(tmp_path, folder):
    err = check_tree(tmp_path, {
        "sandbox/box.h": "/* box */\nvoid box(void);\n",
        folder + "/main.c": '/* main */\n#include "sandbox/box.h"\nint main(void) { return 0; }\n',
    })
    assert "%s/ may not include sandbox/" % folder in err


def test_modules_that_include_each_other_fail(tmp_path):
    err = check_tree(tmp_path, {
        "sandbox/box.h": '/* box */\n#ifndef BOX_H\n#define BOX_H\n#include "sandbox/init.h"\n#endif\n',
        "sandbox/init.h": '/* init */\n#ifndef INIT_H\n#define INIT_H\n#include "sandbox/box.h"\n#endif\n',
        "sandbox/box.c": '/* box */\n#include "sandbox/box.h"\nvoid box(void) {}\n',
    })
    assert "include each other in a circle: sandbox/box, sandbox/init" in err


def test_includes_are_written_from_the_root(tmp_path):
    err = check_tree(tmp_path, {
        "common/buf.h": "/* buf */\n",
        "common/buf.c": '/* buf */\n#include "buf.h"\nvoid buf(void) {}\n',
    })
    assert 'include "buf.h" is not written from the repository root' in err
