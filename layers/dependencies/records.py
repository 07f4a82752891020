"""Bring every installed package's RECORD in line with what the layer ships (run by the Makefile, last).

    python3.13 records.py LAYER/python

The install leaves console scripts in bin/, which the layer does not ship: Lambda never puts /opt/python/bin
on PATH, and each script's first line names the build machine's Python. They are removed here, and so are their
rows in RECORD. Every other row must still name a file with its recorded hash and size (the build removed
nothing else), and the bytecode compiled for CPython 3.13 is added beside its source, with its hash, as an
installer that compiles does. Each RECORD then lists exactly the files of its package, so tools that read
installed metadata (an SBOM generator, an auditor, `pip uninstall`) see the layer as it is.

Standard library only; the output is the same on every build (rows sorted, bytecode is hash-based).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import sys
from pathlib import Path, PurePosixPath

SCRIPTS = "bin"


def digest(data: bytes) -> str:
    """RECORD's hash format: sha256, URL-safe base64 without padding."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def compiled(source: PurePosixPath) -> PurePosixPath:
    return source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"


def rewrite(target: Path, record: Path) -> None:
    own = record.relative_to(target).as_posix()
    rows: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
        if not row:
            continue
        name, recorded_hash, size = row[0], row[1], row[2]
        path = PurePosixPath(name)
        if name == own or path.parts[0] == SCRIPTS or path.suffix == ".pyc":
            continue  # RECORD itself goes last; scripts are gone; bytecode is listed afresh below
        if ".." in path.parts or path.is_absolute():
            raise SystemExit(f"{own}: {name} lies outside the layer")
        file = target / path
        if not file.is_file():
            raise SystemExit(f"{own}: {name} is listed but missing from the layer")
        data = file.read_bytes()
        if (digest(data), str(len(data))) != (recorded_hash, size):
            raise SystemExit(f"{own}: {name} differs from what was installed")
        rows[name] = (recorded_hash, size)
    for name in list(rows):
        if name.endswith(".py"):
            bytecode = compiled(PurePosixPath(name))
            file = target / bytecode
            if file.is_file():
                data = file.read_bytes()
                rows[bytecode.as_posix()] = (digest(data), str(len(data)))
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerows([name, *rows[name]] for name in sorted(rows))
    writer.writerow([own, "", ""])
    record.write_text(output.getvalue(), encoding="utf-8")


def main(target: Path) -> None:
    shutil.rmtree(target / SCRIPTS, ignore_errors=True)
    for record in sorted(target.glob("*.dist-info/RECORD")):
        rewrite(target, record)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
