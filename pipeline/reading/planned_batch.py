"""The batches of a retry, planned (:class:`PlannedBatch`): :class:`Piece` s of byte ranges of one
input, packed under the batch limits (:func:`pack`), each with the digest of its body.

Apart from :mod:`pipeline.reading.selection`, which finds the pieces in the inputs, because this is
the plan's own data: what ``retry.json`` holds (``to_dict`` / ``from_dict``), what
:mod:`pipeline.reading.selection_reader` turns into batches again and what the refusals map a
server's line numbers back through.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError
from pipeline.reading.crc import crc32
from pipeline.reading.source_view import SourceView

if TYPE_CHECKING:  # selection imports this module
    from pipeline.reading.selection import Record


@dataclass(frozen=True, slots=True)
class Piece:
    """Contiguous whole records of one input: ``[start, end)``, lines ``first_line``-``last_line``."""

    start: int
    end: int
    first_line: int
    last_line: int
    records: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def as_list(self) -> list[int]:
        return [self.start, self.end, self.first_line, self.last_line, self.records]

    @classmethod
    def from_list(cls, values: list[int]) -> Piece:
        return cls(*(int(v) for v in values))

    @classmethod
    def of(cls, record: Record) -> Piece:
        return cls(record.start, record.end, record.line, record.line + record.lines - 1, 1)


def join(pieces: list[Piece]) -> list[Piece]:
    """Adjacent pieces (one ends where the next starts) as one, in order of their start."""
    out: list[Piece] = []
    for p in sorted(pieces, key=lambda p: p.start):
        if out and out[-1].end == p.start:
            last = out[-1]
            out[-1] = Piece(last.start, p.end, last.first_line, p.last_line, last.records + p.records)
        else:
            out.append(p)
    return out


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """A batch of a retry: pieces of one input, its header in front, and the digest of that body."""

    number: int
    path: str
    header: bytes
    pieces: tuple[Piece, ...]
    digest: str

    @property
    def records(self) -> int:
        return sum(p.records for p in self.pieces)

    @property
    def size(self) -> int:
        return len(self.header) + sum(p.size for p in self.pieces)

    def source_line(self, upload_line: int) -> int | None:
        """The source line of a physical line of the uploaded body (1-based, the CSV header
        included), or ``None`` for the header: how a server's line number maps back."""
        line = upload_line - self.header.count(b"\n")
        for p in self.pieces:
            span = p.last_line - p.first_line + 1
            if 1 <= line <= span:
                return p.first_line + line - 1
            line -= span
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "path": self.path,
            "header": base64.b64encode(self.header).decode("ascii"),
            "pieces": [p.as_list() for p in self.pieces],
            "records": self.records,
            "size": self.size,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedBatch:
        return cls(
            number=int(data["number"]),
            path=str(data["path"]),
            header=base64.b64decode(data["header"]),
            pieces=tuple(Piece.from_list(p) for p in data["pieces"]),
            digest=str(data["digest"]),
        )


def body_digest_of(view: SourceView, header: bytes, pieces: tuple[Piece, ...] | list[Piece]) -> str:
    """The digest (``batch.body_digest``) of the header and the pieces as they are in the input now."""
    crc, size = crc32(header, 0), len(header)
    for p in pieces:
        for chunk in view.chunks(p.start, p.end):
            crc = crc32(chunk, crc)
            size += len(chunk)
    return f"crc32:{crc:08x}:{size}"


def pack(path: str, header: bytes, pieces: list[Piece], *, max_bytes: int, max_lines: int) -> list[list[Piece]]:
    """``pieces`` of one input (in order) cut into batches: greedily, never splitting a piece
    (each comes from one batch of the original run, which fit the same limits)."""
    batches: list[list[Piece]] = []
    size = records = 0
    for p in sorted(pieces, key=lambda p: p.start):
        if len(header) + p.size > max_bytes or (max_lines and p.records > max_lines):
            raise InputError(path, f"lines {p.first_line}-{p.last_line} do not fit in one batch of max_bytes")
        if not batches or size + p.size > max_bytes or (max_lines and records + p.records > max_lines):
            batches.append([])
            size, records = len(header), 0
        batches[-1].append(p)
        size += p.size
        records += p.records
    return [join(b) for b in batches]
