"""Finding the input files named on the command line (files and directories of them), and saying
why every other entry of a directory was not taken.

``discover(inputs)`` takes the user's input strings as they were given (a dispatch for other kinds
of input, such as URLs, can sit in front of it) and returns a :class:`Discovery`: the files taken,
in order, and the entries skipped, each once, with its reason (:class:`SkipReason`).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.gzstream import GZIP_MAGIC, is_gzip

INPUT_SUFFIXES = (".ndjson", ".jsonl", ".csv")
JSON_SUFFIX = ".json"  # taken as NDJSON when it is one (see ``_json_is_ndjson``)
JSON_SNIFF_BYTES = 1 << 20  # at most this much of a .json is read to tell NDJSON from one document...
JSON_SNIFF_CHUNK = 1 << 14  # ... in reads of this size, until its first line is whole
BLANK = b" \t\r\n\xef\xbb\xbf"  # blanks and the UTF-8 byte order mark


class SkipReason(StrEnum):
    """Why a directory entry was not taken (``report.json``: ``skipped_inputs[].reason``)."""

    EXTENSION = "extension"  # not an input name
    DIRECTORY = "directory"  # a subdirectory, without --recursive
    NOT_NDJSON = "not_ndjson"  # a .json that is not NDJSON (one pretty-printed document, an array...)
    NOT_A_FILE = "not_a_file"  # a FIFO, a socket, a device, a broken link under a name that is no input's


@dataclass(frozen=True)
class Skipped:
    """One entry not taken; ``message`` is the sentence for people (``skipped: extension .txt``)."""

    path: Path
    reason: SkipReason
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Discovery:
    """What ``discover`` found: ``files`` to read, in order, and ``skipped`` entries of directories."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def input_stem(name: str) -> str:
    """The name without a ``.gz`` suffix, lower-cased: what the input kind is told from."""
    lower = name.lower()
    return lower[:-3] if lower.endswith(".gz") else lower


def is_input_name(name: str) -> bool:
    """Whether a directory entry is an input by its name alone (case-insensitive, ``.gz`` too)."""
    return input_stem(name).endswith(INPUT_SUFFIXES)


def is_csv_name(path: Path) -> bool:
    return input_stem(path.name).endswith(".csv")


def _stat(path: Path) -> os.stat_result:
    """``path.stat()`` (symbolic links followed), or an ``InputError`` saying why it cannot be."""
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            try:
                target = f" {os.readlink(path)!r}"
            except OSError:
                target = ""
            raise InputError(path, f"broken symbolic link (its target{target} does not exist)") from None
        raise InputError(path, "no such file or directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop (too many levels of symbolic links)") from None
        raise InputError(path, f"cannot access ({exc.strerror or exc})") from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_a_file(mode: int) -> str:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), None)
    return f"not a regular file ({kind})" if kind else "not a regular file"


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except PermissionError:
        raise InputError(path, "not readable (permission denied)") from None
    except OSError as exc:
        raise InputError(path, f"not readable ({exc.strerror or exc})") from None
    if is_gzip(path) and magic and magic != GZIP_MAGIC:
        raise InputError(path, "named .gz but not a gzip file")


def _head(path: Path) -> bytes:
    """The start of a file (decompressed for a ``.gz``) up to the end of its first non-blank line,
    at most ``JSON_SNIFF_BYTES``; b"" if unreadable. A directory of a thousand Spark part files is
    sniffed in a thousand small reads, not a thousand megabytes."""
    head = b""
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as f:
            while len(head) < JSON_SNIFF_BYTES:
                chunk = f.read(JSON_SNIFF_CHUNK)
                head += chunk
                if not chunk or b"\n" in head.lstrip(BLANK):
                    break
    except (OSError, EOFError, zlib.error):
        return b""  # taken or not, the reader (or _check_readable) says what is wrong with it
    return head


def _json_is_ndjson(path: Path) -> str | None:
    """``None`` when a ``.json`` file is NDJSON: its first non-blank byte is ``{`` and its first
    line is a whole JSON object (one pretty-printed document's first line is ``{`` alone);
    otherwise why not."""
    head = _head(path)
    body = head.lstrip(BLANK)
    if not body:
        return "not NDJSON (empty .json file)"
    if body[:1] != b"{":
        return f"not NDJSON (a .json file starting with {body[:1].decode('latin-1')!r}, not '{{')"
    line, newline, _ = body.partition(b"\n")
    if not newline and len(head) >= JSON_SNIFF_BYTES:
        return None  # a first line longer than the sniff: one long record, not a pretty-printed document
    try:
        whole = isinstance(json.loads(line), dict)
    except ValueError:
        whole = False
    return None if whole else "not NDJSON (one pretty-printed JSON document: its first line is not a whole object)"


def _extension(name: str) -> str:
    gz = name.lower().endswith(".gz")
    suffix = Path(name[:-3] if gz else name).suffix + (name[-3:] if gz else "")
    return f"skipped: extension {suffix}" if suffix else "skipped: no extension"


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir(), key=lambda p: p.name)
    except PermissionError:
        raise InputError(directory, "directory not readable (permission denied)") from None


def _walk(directory: Path, recursive: bool, found: Discovery, seen_dirs: set[Path]) -> Iterator[Path]:
    """The input files of ``directory`` in name order (subdirectories in place when recursive);
    everything else goes to ``found.skipped``."""
    seen_dirs.add(directory.resolve())
    for entry in _entries(directory):
        name = entry.name
        if not _named_like_an_input(name):
            try:
                mode = entry.stat().st_mode
            except OSError:
                found.skipped.append(Skipped(entry, SkipReason.NOT_A_FILE, "skipped: broken symbolic link"))
                continue
            if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                found.skipped.append(Skipped(entry, SkipReason.NOT_A_FILE, f"skipped: {_not_a_file(mode)}"))
                continue
            if not stat.S_ISDIR(mode):
                found.skipped.append(Skipped(entry, SkipReason.EXTENSION, _extension(name)))
                continue
        mode = _stat(entry).st_mode  # an input name must be a readable file: an error says why not
        if stat.S_ISDIR(mode):
            if not recursive and _named_like_an_input(name):  # a Spark-style "out.ndjson/": skipping it loses data
                raise InputError(entry, "a directory named like an input file: use --recursive to read its files")
            if not recursive:
                found.skipped.append(Skipped(entry, SkipReason.DIRECTORY, "skipped: directory (use --recursive)"))
            elif entry.resolve() not in seen_dirs:  # a link back up the tree is walked once
                yield from _walk(entry, recursive, found, seen_dirs)
            continue
        if not stat.S_ISREG(mode):
            raise InputError(entry, _not_a_file(mode))
        if not is_input_name(name):
            why = _json_is_ndjson(entry)
            if why is not None:
                found.skipped.append(Skipped(entry, SkipReason.NOT_NDJSON, f"skipped: {why}"))
                continue
        yield entry


def _named_like_an_input(name: str) -> bool:
    return is_input_name(name) or input_stem(name).endswith(JSON_SUFFIX)


def _no_input_files(path: Path, skipped: list[Skipped]) -> InputError:
    names = ", ".join(f"{s.path.relative_to(path)} ({s.message.removeprefix('skipped: ')})" for s in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    listed = f"; skipped: {names}{more}" if skipped else ""
    return InputError(
        path, f"directory holds no input files (*.ndjson, *.jsonl, *.csv, NDJSON *.json, or those .gz){listed}"
    )


def discover(inputs: Sequence[str | Path], *, recursive: bool = False) -> Discovery:
    """The input files named by ``inputs``: files (plain or ``.gz``, whatever their name) and
    directories: their ``*.ndjson``, ``*.jsonl``, ``*.csv`` files, ``*.json`` files that are NDJSON,
    and the ``.gz`` of those (extensions in any case), in name order; subdirectories only when
    ``recursive``. Every other directory entry is in ``skipped``, once, with why.

    Raises :class:`InputError` naming the path for a missing path, a directory without input files,
    an unreadable file, or something that is not a regular file (a broken symbolic link, a link
    loop, a FIFO...), given or in a directory under an input name. Duplicates are dropped.
    """
    found = Discovery()
    taken: list[Path] = []
    for given in inputs:
        path = Path(given)
        st = _stat(path)
        if stat.S_ISDIR(st.st_mode):
            before = len(found.skipped)
            files = list(_walk(path, recursive, found, set()))
            if not files:
                raise _no_input_files(path, found.skipped[before:])
            taken.extend(files)
        elif stat.S_ISREG(st.st_mode):
            taken.append(path)
        else:
            raise InputError(path, _not_a_file(st.st_mode))
    seen: set[Path] = set()
    for path in taken:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            _check_readable(path)
            found.files.append(path)
    skipped: dict[Path, Skipped] = {}
    for entry in found.skipped:  # a directory given twice lists its skipped entries once
        skipped.setdefault(entry.path.resolve(), entry)
    found.skipped = list(skipped.values())
    return found


def discover_inputs(paths: Sequence[str | Path], *, recursive: bool = False) -> list[Path]:
    """The files of :func:`discover` (for callers that do not report what was skipped)."""
    return discover(paths, recursive=recursive).files
