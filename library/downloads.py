"""Downloads run inside the supervisor. The issue "The model library" fills this in.

The supervisor creates one DownloadRunner, calls `tick()` at every loop iteration and
`shutdown()` when it stops.
"""

from __future__ import annotations


class DownloadRunner:
    def tick(self) -> None:
        """Start queued downloads (at most two at a time), act on cancellations, record progress."""

    def shutdown(self) -> None:
        """Stop running downloads, leaving their partial files to resume from."""
