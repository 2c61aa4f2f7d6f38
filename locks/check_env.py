"""Check that the running interpreter's environment holds exactly what a lock file pins.

Usage: ``VENV/bin/python locks/check_env.py locks/requirements.txt``. Exit 0 and one line when the installed
distributions equal the lock (name and exact version; the project's own editable install aside);
otherwise exit 1 with one line per difference, each naming the package and saying how to fix it.
Standard library only: it runs in every venv the project creates, before anything else is trusted.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "prefloop"  # installed editable with --no-deps, not from the lock
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503 name: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` line of a pip requirements lock."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[canonical(match[1])] = match[2]
    if not pins:
        raise SystemExit(f"{lock}: no name==version lines; regenerate it with `make lock`")
    return pins


def installed() -> dict[str, str]:
    """``name -> version`` of the distributions on this interpreter's path (the first of a duplicate)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        found.setdefault(canonical(dist.metadata["Name"]), dist.version)
    found.pop(PROJECT, None)
    return found


def differences(want: dict[str, str], have: dict[str, str], lock: str) -> list[str]:
    """One line per package whose installed version is not the locked one, sorted by name."""
    lines = []
    for name in sorted(want.keys() | have.keys()):
        if name not in have:
            lines.append(f"{name}: locked {want[name]} in {lock}, not installed")
        elif name not in want:
            lines.append(f"{name}: {have[name]} installed, not in {lock}")
        elif have[name] != want[name]:
            lines.append(f"{name}: {have[name]} installed, {lock} locks {want[name]}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python locks/check_env.py LOCK_FILE", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    want = locked(lock)
    problems = differences(want, installed(), str(lock))
    for line in problems:
        print(f"{sys.prefix}: {line} (rebuild it from the lock: rm -rf {sys.prefix}; make)", file=sys.stderr)
    if problems:
        return 1
    print(f"{sys.prefix}: {len(want)} packages, exactly as {lock} pins them")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
