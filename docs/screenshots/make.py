"""Take the README's screenshots again and put them here.

    python3 docs/screenshots/make.py

runs tests/browser/test_screenshots.py through ``dev.py test`` (SQLite and an embedded Redis,
or DATABASE_URL and REDIS_URL when set, as for the suite), which seeds a month of calls,
checks the pages and saves them at 1366 px in tests/browser/screenshots/, then copies the
two pictures here. It needs Chromium and its driver, as the browser tests do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEST = "tests/browser/test_screenshots.py"
TAKEN = ROOT / "tests" / "browser" / "screenshots"
PICTURES = {"readme-dashboard.png": "dashboard.png", "readme-user-record.png": "user-record.png"}


def _taken_since(path: Path, started: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= started


def main() -> int:
    started = time.time()
    tests = subprocess.run([sys.executable, "dev.py", "test", TEST, "-q", "-rs"], cwd=ROOT)
    if tests.returncode != 0:
        print(f"make.py: {TEST} failed (exit code {tests.returncode}): nothing copied", file=sys.stderr)
        return 1
    # A skipped test (no Chromium) passes but takes no picture: only this run's count.
    stale = [name for name in PICTURES if not _taken_since(TAKEN / name, started)]
    if stale:
        print(
            f"make.py: {', '.join(stale)} not taken (were the browser tests skipped?): nothing copied",
            file=sys.stderr,
        )
        return 1
    for taken, kept in PICTURES.items():
        shutil.copyfile(TAKEN / taken, HERE / kept)
        print(f"docs/screenshots/{kept}: {(HERE / kept).stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
