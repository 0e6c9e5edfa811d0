"""Pure-Python wheels (PEP 427) built in memory, for the tests and the
benchmark that serve a PyPI-style index themselves: one top-level module, a
METADATA, a WHEEL and a RECORD with every file's hash. The bytes are the
same every time (fixed timestamps), so a cached copy can be compared."""
import base64
import hashlib
import io
import zipfile


def build_wheel(module, version, module_text, metadata):
    """The wheel of `module` (its import name) at `version`: module_text as
    module/__init__.py, metadata (bytes) as the METADATA file."""
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": module_text.encode(),
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: cellgate-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2023, 1, 1, 0, 0, 0)), data)
    return out.getvalue()
