"""What the data root holds now: each sub-folder, the format a reader recognises in it (or why none
does), and fingerprints that tell when its files changed.

Two fingerprints, because the sensor that watches the root runs every half minute and a real dump
is hundreds of MB: `stat_fingerprint` (names, sizes, modification times) is free and says "maybe
changed"; `content_hash` (SHA-256 of every file's bytes) is read only then, and says "changed".
A copy that only touches the files keeps its content hash, so it is not re-materialized.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from genrec_ml.data.readers import detect_format

CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetFolder:
    name: str
    path: Path
    format: str | None  # the reader that recognises it; None when none does
    error: str | None  # why no reader recognises it (the reader's message)

    @property
    def readable(self) -> bool:
        return self.format is not None


def scan_data_root(data_root: str | Path | None) -> list[DatasetFolder]:
    """Every non-hidden sub-folder of the data root, sorted by name; [] when there is no root."""
    if not data_root or not Path(data_root).is_dir():
        return []
    found = []
    for folder in sorted(Path(data_root).iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            found.append(DatasetFolder(folder.name, folder, detect_format(folder), None))
        except ValueError as err:
            found.append(DatasetFolder(folder.name, folder, None, str(err)))
    return found


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))


def stat_fingerprint(folder: str | Path) -> str:
    """Names, sizes and modification times of the folder's files, hashed: cheap, changes on any write."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in _files(folder):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def content_hash(folder: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes, in name order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in _files(folder):
        digest.update(f"{path.relative_to(folder)}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
