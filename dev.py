#!/usr/bin/env python3
"""Zero-setup entry point: needs only Python 3.11+ (standard library) to start.

    python3 dev.py start   # install, then run web + worker + scheduler on embedded defaults
    python3 dev.py test    # install, then run the whole test suite
    python3 dev.py manage COMMAND [ARGS]   # a manage.py command with start's environment
    python3 dev.py docs    # serve the documentation (docs/) at http://127.0.0.1:8001/

They create ./.venv and install the pinned requirements into it the first time (and again
whenever a requirements file changes). With DATABASE_URL / REDIS_URL set, they use those;
without, SQLite and an embedded real Redis.

`manage` runs with the environment `start` gives its processes (DEBUG on unless you set
it, so the development SECRET_KEY; the same Redis): while a `start` runs, the one it wrote
to var/dev-run.json; otherwise an embedded Redis of the command's own, emptied when it ends.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
DOCS_ADDRESS = "127.0.0.1:8001"


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
    if requirements == "requirements.txt" and _dev_requirements_current():
        return  # `dev.py test` installed the runtime requirements too
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


def _dev_requirements_current() -> bool:
    digest = hashlib.sha256()
    for name in ("requirements.txt", "requirements-dev.txt"):
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / ".installed-requirements-dev.txt"
    return stamp.exists() and stamp.read_text() == digest.hexdigest()


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


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``command`` in place of this process where possible, so that signals (Ctrl-C, a
    supervisor's SIGTERM) reach it directly and it can shut its children down cleanly."""
    sys.stdout.flush()
    env = dict(os.environ) if env is None else env
    if os.name == "posix":
        os.execve(command[0], command, env)
    return subprocess.call(command, env=env)


def start_debug_default(env: MutableMapping[str, str]) -> None:
    """The first run's default: a local demo with DEBUG on, which also makes the simulator
    the default provider and gives the development SECRET_KEY (settings.py). A DEBUG you
    set, in the environment or .env, wins."""
    if "DEBUG" not in env and not dotenv_sets("DEBUG"):
        env["DEBUG"] = "1"


def manage_command(args: list[str], environ: dict[str, str]) -> tuple[list[str], dict[str, str], str]:
    """``manage.py ARGS`` as `start` runs its processes: (argv, environment, a note on which
    Redis it talks to).

    While a `start` runs, its environment (its Redis, webhook secret, demo timings) is read
    from its run file, under what ``environ`` sets itself; with no `start` and no REDIS_URL,
    the command gets an embedded Redis of its own, as `start` would."""
    from relevel.embedded_redis import dev_run_env, dev_run_file

    env = dict(environ)
    running = dev_run_env()
    for name, value in (running or {}).items():
        env.setdefault(name, value)
    start_debug_default(env)
    command = [str(PYTHON), "manage.py", *args]
    if running and env.get("REDIS_URL") == running.get("REDIS_URL"):
        note = f"using the Redis of the running `dev.py start` ({env['REDIS_URL']}, from {dev_run_file()})"
    elif env.get("REDIS_URL") or dotenv_sets("REDIS_URL"):
        note = "using REDIS_URL as set"
    else:
        command = [str(PYTHON), "-m", "relevel.embedded_redis", "--", *command]
        note = "no `dev.py start` is running: this command gets an embedded Redis of its own"
    return command, env, note


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "test", "manage", "docs"):
        print(__doc__.strip())
        return 2
    os.chdir(ROOT)
    if argv[0] == "test":
        ensure_venv("requirements-dev.txt")
        return run(with_redis([str(PYTHON), "-m", "pytest", *argv[1:]]))
    if argv[0] == "docs":
        # MkDocs is a development requirement. Port 8001: `start` has 8000.
        ensure_venv("requirements-dev.txt")
        say(f"serving the documentation at http://{DOCS_ADDRESS}/ (Ctrl-C stops)")
        return run([str(PYTHON), "-m", "mkdocs", "serve", "--dev-addr", DOCS_ADDRESS, *argv[1:]])
    ensure_venv("requirements.txt")
    if argv[0] == "manage":
        if len(argv) < 2:
            sys.exit("relevel: name a manage.py command, such as: python3 dev.py manage shell")
        command, env, note = manage_command(argv[1:], dict(os.environ))
        # On stderr: the command's own output (dumpdata > file) stays clean.
        print(f"relevel: {note}", file=sys.stderr, flush=True)
        return run(command, env)
    # runall reads its settings before it can change anything, so the first run's default is
    # set here.
    start_debug_default(os.environ)
    return run([str(PYTHON), "manage.py", "runall", *argv[1:]])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"relevel: {' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}")
    except KeyboardInterrupt:
        sys.exit(130)
