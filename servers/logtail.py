"""Reading a server's log for the dashboard: the last lines, then whatever is new since a byte
offset. Only ever reads the tail of a huge file, and follows the supervisor's size rotation.

The supervisor rotates a live log by copy-then-truncate (`servers/supervisor/logfile.py`): the
server holds the file open, so `server-N.log` keeps its inode, its bytes are copied to a new
`server-N.log.1`, and it starts again from zero. A reader whose offset is now past the end of the
file therefore reads the rest of `.log.1` from that same offset (the copy has the old file's byte
offsets) and then the new file from its start. If the new file has already grown past the reader's
offset by the next poll, the rotation is not seen and the reader continues in the new file: polls
come every few seconds and a rotation happens at megabytes, so that is left as a known limit. A
file replaced by another one (a new inode: deleted and created again) is read from its start."""

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
        replaced = inode is not None and inode != current
        if replaced or offset > size:
            # Copy-truncated (same file, now shorter): finish the copy at .1, then the new start.
            before = "" if replaced else _rest_of_rotated(path, offset, cap // 2)
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


def _rest_of_rotated(path: Path, offset: int, cap: int) -> str:
    """What the file held after `offset` when it was copied to `.log.1` and truncated."""
    old = path.with_name(path.name + ".1")
    try:
        with old.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size <= offset:  # not the copy of what the reader saw (or nothing new)
                return ""
            return _read(handle, offset, stat.st_size, stat.st_ino, cap, reset=False, align=False).text
    except FileNotFoundError:
        return ""
