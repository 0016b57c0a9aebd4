"""The compiled build: the hot modules of the core and the gateway compiled to C with mypyc.

bulkex runs the same source either way. ``python3 dev.py native`` compiles
the modules in ``NATIVE_MODULES`` into ``.native/packages/`` at the project root and
writes ``.native/manifest.json`` with the SHA-256 of every compiled source
and the interpreter's tag. Each package's ``__init__`` (matching, clearing, exchange, api) calls
``native_path`` first: when the manifest matches the sources on disk
exactly, ``.native/<package>`` goes in front of the package's ``__path__``
so the compiled modules load instead of the ``.py`` files; otherwise (no
build, a source edited since, another interpreter, or ``BULKEX_NATIVE=0``)
the package runs as plain Python. A stale build is never loaded.

``native_status()`` says which build runs and why; the benchmarks print it
beside their figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import cache
from pathlib import Path

__all__ = ["NATIVE_MODULES", "build_status", "native_path", "native_status", "source_digests"]

ROOT = Path(__file__).resolve().parent.parent
"""The project root (the folder holding the packages)."""

NATIVE_MODULES = (
    "matching/_engine.py",
    "matching/_book.py",
    "matching/_auction.py",
    "matching/_commands.py",
    "clearing/_engine.py",
    "clearing/_ledger.py",
    "clearing/_risk.py",
    "exchange/_core.py",
    "api/_server.py",
    "api/_session.py",
    "api/_handlers.py",
    "api/_limits.py",
    "api/_marketdata.py",
    "api/_private.py",
    "api/_views.py",
)
"""Sources compiled by ``python3 dev.py native``, relative to the project root: the core's
(book, engine, ledger, risk, the exchange core) and the gateway's per-order path (frames in,
handlers, rate limits, the read models, market data and private streams, answers out)."""

MANIFEST = "manifest.json"
PACKAGES_FOLDER = "packages"
"""``.native/packages/<package>`` holds the compiled modules; ``.native`` itself only the
manifest and mypyc's runtime library, so putting it on ``sys.path`` shadows no package."""
_MAX_MANIFEST_BYTES = 64 * 1024


def native_dir() -> Path:
    """Where the compiled build lives (``BULKEX_NATIVE_DIR`` or ``.native/``)."""
    return Path(os.environ.get("BULKEX_NATIVE_DIR") or ROOT / ".native")


def interpreter_tag() -> str:
    """The build is valid for this interpreter only."""
    return f"{sys.implementation.cache_tag}-{sys.platform}-{sys.maxsize.bit_length() + 1}bit"


def source_digests(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each compiled source as it is on disk now."""
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in NATIVE_MODULES}


def build_status() -> tuple[bool, str]:
    """(the build in ``native_dir()`` matches the sources on disk, description), whether or
    not this process uses it (``BULKEX_NATIVE``)."""
    manifest_path = native_dir() / MANIFEST
    try:
        raw = manifest_path.read_bytes()[:_MAX_MANIFEST_BYTES]
        manifest = json.loads(raw)
        sources = source_digests()
    except FileNotFoundError:
        return False, "pure Python (no compiled build: python3 dev.py native)"
    except (OSError, ValueError) as exc:
        return False, f"pure Python (unreadable compiled build: {exc})"
    if not isinstance(manifest, dict) or manifest.get("interpreter") != interpreter_tag():
        return False, "pure Python (compiled build is for another interpreter)"
    if manifest.get("sources") != sources:
        return False, "pure Python (sources changed since the compiled build: python3 dev.py native)"
    return True, f"compiled ({len(sources)} modules, mypyc)"


@cache
def native_status() -> tuple[bool, str]:
    """(compiled build in use, description), decided once per process."""
    if os.environ.get("BULKEX_NATIVE", "1") == "0":
        return False, "pure Python (BULKEX_NATIVE=0)"
    return build_status()


def native_path(package: str, path: list[str]) -> list[str]:
    """The ``__path__`` for `package`: the compiled folder first when the
    build matches the sources, else `path` unchanged."""
    compiled, _ = native_status()
    if not compiled:
        return path
    folder = native_dir()
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # the mypyc runtime library of the build
    return [str(folder / PACKAGES_FOLDER / package), *path]
