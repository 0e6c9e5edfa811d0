# cellgate's Python bootstrap, passed as `python3 -I -c`. The kernel writes
# the driver to fd 3 first: a header of two 16-digit hex lengths, the
# driver compiled at build time (the interpreter's 4-byte bytecode magic,
# then marshal data), then its source. The compiled form starts faster and
# leaves ~4 MB less heap behind than compiling the source here; the source
# is the fallback when this interpreter's magic differs from the build's.
import marshal as _cg_marshal
import os as _cg_os
import _frozen_importlib_external as _cg_bootstrap


def _cg_read(n):
    data = bytearray()
    while len(data) < n:
        chunk = _cg_os.read(3, n - len(data))
        if not chunk:
            raise SystemExit("cellgate: the kernel closed fd 3 during start-up")
        data += chunk
    return bytes(data)


_cg_head = _cg_read(32)
_cg_compiled = _cg_read(int(_cg_head[:16], 16))
_cg_source = _cg_read(int(_cg_head[16:], 16))
if _cg_compiled[:4] == _cg_bootstrap.MAGIC_NUMBER:
    _cg_code = _cg_marshal.loads(_cg_compiled[4:])
else:
    _cg_code = compile(_cg_source, "<cellgate python driver>", "exec")
del _cg_head, _cg_compiled, _cg_source, _cg_read
exec(_cg_code)
