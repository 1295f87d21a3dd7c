"""A small disk for the chaos suite: the SuperLink's state on a tiny tmpfs it can fill.

`fill()` writes a ballast file until the file system says ENOSPC (a full disk: SQLite's
SQLITE_FULL, the object store's ENOSPC); `free()` removes it (space comes back). Mounting
needs root (a container's root will do); `SmallDisk.available()` says whether this
process may, and the suite skips the fault otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

__all__ = ["SmallDisk"]

_CHUNK = b"\0" * (1 << 20)


class SmallDisk:
    """A tmpfs of `size_mb` MiB mounted at `path` until `close()`."""

    def __init__(self, path: Path, size_mb: int = 64) -> None:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
        self.path = path
        self._ballast = path / "ballast"

    @staticmethod
    def available(probe: Path) -> bool:
        """Whether a tmpfs can be mounted here (tried on `probe`, then unmounted)."""
        if os.geteuid() != 0:
            return False
        try:
            SmallDisk(probe, size_mb=1).close()
        except (OSError, subprocess.CalledProcessError):
            return False
        return True

    def fill(self) -> int:
        """Fill the file system up; the bytes the ballast took."""
        written = 0
        with open(self._ballast, "ab", buffering=0) as ballast:
            try:
                while True:
                    written += ballast.write(_CHUNK) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        return written

    def free(self) -> None:
        """Give the space back."""
        self._ballast.unlink(missing_ok=True)

    def close(self) -> None:
        self.free()
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)
