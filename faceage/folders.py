"""Walk a folder for images: sorted, loop-safe, and never silent about a file.

Every non-hidden entry that is not a directory is listed (not only known image suffixes,
nor only regular files), so a file that is not an image gets an error row downstream
instead of vanishing from the run.
Directories whose names look like images are walked like any directory; symlink loops
are visited once; unreadable directories are logged and skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from faceage.errors import ImageNotFoundError

logger = logging.getLogger(__name__)


def iter_image_files(path: str | os.PathLike[str], *, recursive: bool = False) -> Iterator[str]:
    """Yield the files under ``path`` in sorted order, as strings.

    Args:
        path: a directory (or a single file, yielded as is).
        recursive: descend into sub-directories (following symlinks, each real
            directory once).

    Raises:
        ImageNotFoundError: ``path`` does not exist.
    """
    root = Path(os.fsdecode(path))
    if root.is_file():
        yield str(root)
        return
    if not root.is_dir():
        raise ImageNotFoundError(f"{root}: no such directory; check the path")
    yield from _walk(root, recursive=recursive, seen=set())


def _walk(directory: Path, *, recursive: bool, seen: set[tuple[int, int]]) -> Iterator[str]:
    try:
        info = directory.stat()
        key = (info.st_dev, info.st_ino)
        if key in seen:
            logger.warning("skipping %s: already visited (symlink loop)", directory)
            return
        seen.add(key)
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        logger.warning("skipping directory %s: %s", directory, exc.strerror or exc)
        return
    subdirs: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            subdirs.append(Path(entry.path))
        else:
            # A dangling symlink, a file deleted meanwhile or a pipe, socket or device
            # still gets its (error) row.
            yield entry.path
    if recursive:
        for subdir in subdirs:
            yield from _walk(subdir, recursive=True, seen=seen)
