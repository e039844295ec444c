"""File names derived from user strings (case names), kept inside the folder they belong to.

A case name is the user's text: it may hold ``..``, slashes, an absolute path, a NUL or a
thousand characters. Every file diffbench names after a case goes through :func:`slug`, which
keeps letters, digits, ``.``, ``_`` and ``-`` and nothing that could leave a folder; a name that
had to change gets a short hash of the original, so two names that clean up alike never share a
file. :func:`inside` is the last check before a write.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

#: the longest slug, well below any file system's limit of 255 bytes per name (room for suffixes)
MAX_SLUG = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: object) -> str:
    """A file-name-safe form of ``name``: at most ``MAX_SLUG`` characters of ``[A-Za-z0-9._-]``, never starting
    with a dot or a dash. A name that is already safe is kept as it is; any other gets ``-`` and 8 hex digits of
    its SHA-1, so two different names never give the same slug."""
    text = str(name)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_text).lstrip("._-")
    if cleaned == text and 0 < len(cleaned) <= MAX_SLUG:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned[:MAX_SLUG - 9] or 'case'}-{digest}"


def inside(folder: Path, path: Path) -> Path:
    """``path``, after checking that it lies inside ``folder`` once both are resolved; raises ValueError if not."""
    root = Path(folder).resolve()
    target = Path(path).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"refusing to write {path}: it is outside {folder}")
    return path
