"""Errors that tell the user which file, line or field is wrong and what to do next."""

from __future__ import annotations

from pathlib import Path


class GenrecDataError(ValueError):
    """Bad input data. The message always names where: file, line and/or field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class GenrecConfigError(ValueError):
    """An impossible or inconsistent configuration; the message names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config field '{field}': {message}")
