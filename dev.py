#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.11+ and the standard library.

    python3 dev.py demo     set up .venv (when needed) and run `bulkex demo`
    python3 dev.py test     set up .venv, then ruff check, ruff format --check,
                            mypy --strict and pytest; exits non-zero on any failure

The virtual environment lives in ./.venv. `pip install -e '.[dev]'` runs only
when pyproject.toml changed since the last install: the SHA-256 of
pyproject.toml is kept in .venv/.bulkex-installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
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


def demo(extra: list[str]) -> int:
    setup()
    return _run([_bin("bulkex"), "demo", *extra])


def test(extra: list[str]) -> int:
    setup()
    steps: list[list[str | Path]] = [
        [_bin("ruff"), "check", "."],
        [_bin("ruff"), "format", "--check", "."],
        [_bin("mypy"), "--strict", *PACKAGES],
        [_bin("python"), "-m", "pytest", "-q", *extra],
    ]
    failed = [" ".join(str(a) for a in step[:2]) for step in steps if _run(step) != 0]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


def main(argv: list[str]) -> int:
    commands = {"demo": demo, "test": test}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
