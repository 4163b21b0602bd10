"""Per-server log files, rotated by size: server-N.log, server-N.log.1 (newest old), ... .N.

The server writes its own file (opened with O_APPEND), so the supervisor rotates a live file by
copying it to .1 and truncating it (logrotate's copytruncate); the fresh file starts with a line
saying where the earlier lines went. The file keeps its inode and `.1` is a new file with the same
byte offsets, which is what the log view (`servers/logtail.py`) relies on. Lines the server writes
while the copy runs are appended to `.1` just before the truncate; only a line written in the
instant between that last read and the truncate can still be lost (no lock is shared with the
server, so there is no guarantee).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path


def _shift(path: Path, backups: int) -> None:
    oldest = path.with_name(f"{path.name}.{backups}")
    oldest.unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{n + 1}"))


def rotate_if_large(path: Path, *, max_bytes: int, backups: int) -> bool:
    """Rotate `path` when it has grown past `max_bytes`; True when it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    _shift(path, backups)
    first_backup = path.with_name(f"{path.name}.1")
    shutil.copyfile(path, first_backup)
    copied = first_backup.stat().st_size
    with open(path, "r+b") as log, open(first_backup, "ab") as backup:
        log.seek(copied)
        shutil.copyfileobj(log, backup)  # what arrived during the copy
        log.truncate(0)
    with open(path, "ab") as log:
        log.write(f"--- log rotated: earlier lines are in {first_backup.name} ---\n".encode())
    return True


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        log.write((line.rstrip("\n") + "\n").encode())


def tail(path: Path, lines: int = 20, *, max_bytes: int = 16_384) -> str:
    """The last `lines` lines of the file (reads at most `max_bytes` from its end)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_from(path: Path, offset: int, *, max_bytes: int = 262_144) -> str:
    """What was written to the file after byte `offset` (at most its last `max_bytes`)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            end = log.tell()
            log.seek(max(offset, end - max_bytes) if end >= offset else 0)
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


# mlx-lm logs this when its generation thread (which also loads the model) ends with an exception;
# the server keeps running but can never answer again.
GENERATION_DIED = "generation thread died"
ERROR_LINE = re.compile(r"( - (ERROR|CRITICAL) - )|^\w+(\.\w+)*(Error|Exception|Interrupt)\b")


def error_lines(text: str, *, limit: int = 6) -> str:
    """The lines of a server's log that say what went wrong: its ERROR lines and the final line
    of each traceback (the exception), the last `limit` of them."""
    found = [line.rstrip() for line in text.splitlines() if ERROR_LINE.search(line)]
    return "\n".join(found[-limit:])
