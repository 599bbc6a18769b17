#!/usr/bin/env python3
"""Zero-setup entry point: needs only Python 3.11+ (standard library) to start.

    python3 dev.py start   # install, then run web + worker + scheduler on embedded defaults
    python3 dev.py test    # install, then run the whole test suite

Both create ./.venv and install the pinned requirements into it the first time (and again
whenever a requirements file changes). With DATABASE_URL / REDIS_URL set, they use those;
without, SQLite and an embedded real Redis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def say(message: str) -> None:
    print(f"relevel: {message}", flush=True)


def ensure_venv(requirements: str) -> None:
    # Run by whatever python3 a newcomer has, possibly older than the project needs.
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit("relevel: Python 3.11 or newer is needed (this is {}.{})".format(*sys.version_info[:2]))
    if not PYTHON.exists():
        say(f"creating a virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256()
    for name in ("requirements.txt", requirements):
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    say(f"installing {requirements} (first run only)")
    subprocess.check_call(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
            str(ROOT / requirements),
        ]
    )
    stamp.write_text(digest.hexdigest())


def with_redis(command: list[str]) -> list[str]:
    """Wrap a command so that it runs with an embedded Redis when REDIS_URL is not set."""
    if os.environ.get("REDIS_URL"):
        return command
    return [str(PYTHON), "-m", "relevel.embedded_redis", "--", *command]


def dotenv_sets(name: str) -> bool:
    """Whether ./.env (read by the settings too) gives ``name`` a value."""
    path = ROOT / ".env"
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").lstrip()
        if line.startswith(f"{name}=") or line.startswith(f"{name} ="):
            return True
    return False


def run(command: list[str]) -> int:
    """Run ``command`` in place of this process where possible, so that signals (Ctrl-C, a
    supervisor's SIGTERM) reach it directly and it can shut its children down cleanly."""
    sys.stdout.flush()
    if os.name == "posix":
        os.execv(command[0], command)
    return subprocess.call(command)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "test"):
        print(__doc__.strip())
        return 2
    os.chdir(ROOT)
    if argv[0] == "test":
        ensure_venv("requirements-dev.txt")
        return run(with_redis([str(PYTHON), "-m", "pytest", *argv[1:]]))
    ensure_venv("requirements.txt")
    # runall reads its settings before it can change anything, so the first run's default is
    # set here: a local demo with DEBUG on, which also makes the simulator the default
    # provider (settings.py). A DEBUG you set, in the environment or .env, wins.
    if "DEBUG" not in os.environ and not dotenv_sets("DEBUG"):
        os.environ["DEBUG"] = "1"
    return run([str(PYTHON), "manage.py", "runall", *argv[1:]])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"relevel: {' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}")
    except KeyboardInterrupt:
        sys.exit(130)
