"""Compile the Python driver for embedding: the interpreter's bytecode
magic, then the marshalled code object (see kernel/drivers/python_boot.py).

    /usr/bin/python3 scripts/pycompile.py SOURCE OUTPUT
"""
import importlib.util
import marshal
import sys

src, out = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    code = compile(f.read(), "<cellgate python driver>", "exec", dont_inherit=True)
with open(out, "wb") as f:
    f.write(importlib.util.MAGIC_NUMBER + marshal.dumps(code))
