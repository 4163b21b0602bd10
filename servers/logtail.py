"""Reading a server's log for the dashboard: the last lines, then whatever is new since a byte
offset. Only ever reads the tail of a huge file, and follows the supervisor's size rotation
(`server-N.log` -> `server-N.log.1`): when the file shrank or its inode changed, the rest of the
old file (now `.log.1`) is read and then the new file from its start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# What the first view of a log shows, and the most one poll returns.
TAIL_BYTES = 64 * 1024
CHUNK_CAP = 256 * 1024


@dataclass(frozen=True)
class LogChunk:
    text: str
    offset: int  # where the next read starts
    inode: int | None  # the file `offset` belongs to (None: there is no file)
    reset: bool = False  # the client should drop what it shows (rotation, or a gap was skipped)
    skipped: int = 0  # bytes left out to stay within the cap
    missing: bool = False


def read_log(
    path: Path, *, offset: int | None = None, inode: int | None = None, cap: int = CHUNK_CAP, tail: int = TAIL_BYTES
) -> LogChunk:
    """The log text after `offset` of the file `inode`, or its last `tail` bytes when offset is None.

    Returns whole lines only (a line still being written comes with the next read), at most `cap`
    bytes; when more is waiting, the oldest part is skipped and said so.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return LogChunk("", 0, None, reset=offset is not None and offset > 0, missing=True)
    with handle:
        stat = os.fstat(handle.fileno())
        size, current = stat.st_size, stat.st_ino
        if offset is None:
            start = max(0, size - tail)
            return _read(handle, start, size, current, cap, reset=True, align=start > 0)
        if (inode is not None and inode != current) or offset > size:
            # Rotated (or truncated): finish the old file if it is still at .1, then the new one.
            before = _rest_of_rotated(path, inode, offset, cap // 2)
            chunk = _read(handle, 0, size, current, cap - len(before), reset=False, align=False)
            if chunk.reset:  # the new file alone is over the cap: only its tail matters
                return chunk
            return LogChunk(before + chunk.text, chunk.offset, current)
        return _read(handle, offset, size, current, cap, reset=False, align=False)


def _read(handle: BinaryIO, start: int, size: int, inode: int, cap: int, *, reset: bool, align: bool) -> LogChunk:
    """Bytes start..size of the open file, keeping only the last `cap` of them."""
    first, capped = start, size - start > cap
    if capped:
        start, align, reset = size - cap, True, True
    handle.seek(start)
    data = handle.read(size - start)
    if align:  # begin at a line start, not in the middle of one
        newline = data.find(b"\n")
        cut = newline + 1 if newline >= 0 else 0
        data, start = data[cut:], start + cut
    skipped = start - first if capped else 0
    end = data.rfind(b"\n")
    if end >= 0:
        data = data[: end + 1]
    elif len(data) < cap:  # a partial line: wait for its end, unless it alone fills the cap
        data = b""
    return LogChunk(data.decode("utf-8", errors="replace"), start + len(data), inode, reset=reset, skipped=skipped)


def _rest_of_rotated(path: Path, inode: int | None, offset: int, cap: int) -> str:
    """What was written to the old file after `offset` before it was rotated to `.log.1`."""
    if inode is None:
        return ""
    old = path.with_name(path.name + ".1")
    try:
        with old.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_ino != inode or stat.st_size <= offset:
                return ""
            return _read(handle, offset, stat.st_size, inode, cap, reset=False, align=False).text
    except FileNotFoundError:
        return ""
