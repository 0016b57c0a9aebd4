#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.11+ and the standard library.

    python3 dev.py demo     set up .venv (when needed), run `bulkex demo` (auction and
                            continuous trading through the sequencer, printed), then start
                            the exchange's server on the same database with `bulkex serve
                            --demo` (URL, demo keys, a client example; Ctrl-C stops it
                            gracefully); `--no-serve` stops after the first part
    python3 dev.py test     set up .venv, then ruff check, ruff format --check,
                            mypy --strict and pytest; exits non-zero on any failure
    python3 dev.py native   set up .venv and (re)build the compiled core into .native/

Both `demo` and `test` build the compiled core first when its sources changed
(mypyc, a C compiler needed; see matching/_native.py). Without a compiler the
build is skipped with a warning and the exchange runs as plain Python.

The virtual environment lives in ./.venv. `pip install -e '.[dev]'` runs only
when pyproject.toml changed since the last install: the SHA-256 of
pyproject.toml is kept in .venv/.bulkex-installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
import warnings
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".bulkex-installed"
PACKAGES = ["matching", "clearing", "warehouse", "api", "exchange", "bench"]


def _bin(name: str) -> Path:
    folder = "Scripts" if os.name == "nt" else "bin"
    suffix = ".exe" if os.name == "nt" else ""
    return VENV / folder / f"{name}{suffix}"


def _run(args: list[str | Path]) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def setup() -> None:
    """Create .venv and install the project with its dev extra when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"bulkex needs Python 3.11 or later, this is {sys.version.split()[0]}")
    if not _bin("python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and _bin("bulkex").exists():
        return
    code = _run([_bin("python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    if code == 0:
        code = _run([_bin("python"), "-m", "pip", "install", "--quiet", "-e", ".[dev]"])
    if code != 0:
        sys.exit(f"installing the project into {VENV} failed (exit {code})")
    STAMP.write_text(digest + "\n")


def native(extra: list[str]) -> int:
    """Build the compiled core unless the build in .native/ matches the sources."""
    setup()
    code = _run([_bin("python"), Path(__file__).resolve(), "_build-native", *extra])
    if code != 0:
        print("warning: the compiled core was not built; bulkex runs as plain Python", file=sys.stderr)
    return code


def _build_native(extra: list[str]) -> int:
    """Runs inside .venv (mypyc and setuptools are there): compile into a fresh
    folder, write the manifest last, then swap it in for .native/."""
    sys.path.insert(0, str(ROOT))
    from matching import _native  # noqa: PLC0415 - the project, importable only inside .venv

    target = _native.native_dir()
    if "--force" not in extra and _native.build_status()[0]:  # current, whatever BULKEX_NATIVE says
        print(f"compiled core is current ({target})")
        return 0
    from mypyc.build import mypycify  # noqa: PLC0415 - installed in .venv only
    from setuptools import setup as setuptools_setup  # noqa: PLC0415

    digests = _native.source_digests()  # what is compiled is what was hashed
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    work = ROOT / "build" / f"native-{os.getpid()}"
    started = time.monotonic()
    print(f"compiling {len(_native.NATIVE_MODULES)} modules with mypyc into {target} ...", flush=True)
    os.chdir(ROOT)
    warnings.filterwarnings("ignore", message=".*tool.setuptools.*")  # setuptools reads our pyproject.toml
    try:
        extensions = mypycify(list(_native.NATIVE_MODULES), opt_level="3", target_dir=str(work / "c"))
        setuptools_setup(
            name="bulkex-native",
            ext_modules=extensions,
            script_args=["-q", "build_ext", "-j", "2", "--build-lib", str(staging), "--build-temp", str(work / "o")],
        )
        packages = staging / _native.PACKAGES_FOLDER  # only the runtime library stays at the top (on sys.path)
        packages.mkdir()
        for folder in [p for p in staging.iterdir() if p.is_dir() and p != packages]:
            folder.rename(packages / folder.name)
        (staging / _native.MANIFEST).write_text(
            json.dumps({"interpreter": _native.interpreter_tag(), "sources": digests}, indent=1) + "\n"
        )
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:  # a failed build leaves the previous one (if any) in place, and no debris
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"compiled core built in {time.monotonic() - started:.0f} s")
    return 0


def demo(extra: list[str]) -> int:
    native([])
    serve = "--no-serve" not in extra
    code = _run([_bin("bulkex"), "demo", *(a for a in extra if a != "--no-serve")])
    if code != 0 or not serve:
        return code
    return _run_server([_bin("bulkex"), "serve", "--demo"])


def _run_server(args: list[str | Path]) -> int:
    """Run a server in the foreground: Ctrl-C reaches it (the whole terminal's process group) and
    this process waits for its graceful stop instead of killing it."""
    print("+", " ".join(str(a) for a in args), flush=True)
    process = subprocess.Popen([str(a) for a in args], cwd=ROOT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def test(extra: list[str]) -> int:
    native([])
    steps: list[list[str | Path]] = [
        [_bin("ruff"), "check", "."],
        [_bin("ruff"), "format", "--check", "."],
        [_bin("mypy"), "--strict", *PACKAGES, "tests"],  # tests/ as tests.*: explicit_package_bases in pyproject
        [_bin("python"), "-m", "pytest", "-q", *extra],
    ]
    failed = [" ".join(str(a) for a in step[:2]) for step in steps if _run(step) != 0]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


def main(argv: list[str]) -> int:
    commands = {"demo": demo, "test": test, "native": native, "_build-native": _build_native}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
