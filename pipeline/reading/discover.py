"""Finding the input files named on the command line (files and directories of them)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.gzstream import GZIP_MAGIC

INPUT_SUFFIXES = (".ndjson", ".jsonl", ".csv")


def _is_input_name(name: str) -> bool:
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(INPUT_SUFFIXES)


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
    if path.name.endswith(".gz") and magic and magic != GZIP_MAGIC:
        raise InputError(path, "named .gz but not a gzip file")


def discover_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The input files named by ``paths``: files (plain or ``.gz``) and directories (their
    ``*.ndjson``, ``*.jsonl``, ``*.csv`` files and the ``.gz`` of those, in name order, not recursive).

    Raises :class:`InputError` naming the path for a missing path, a directory without input files,
    an unreadable file, or something that is not a regular file (a broken symbolic link, a link
    loop, a FIFO...), given or in a directory under an input name (``x.ndjson`` being a directory,
    say: directories are not searched recursively); in a directory, entries under other names are
    ignored whatever they are. Duplicates are dropped.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        st = _stat(path)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(p.name for p in path.iterdir())
            except PermissionError:
                raise InputError(path, "directory not readable (permission denied)") from None
            files = [path / n for n in names if _is_input_name(n)]
            for entry in files:
                mode = _stat(entry).st_mode
                if stat.S_ISDIR(mode):
                    raise InputError(entry, "not a regular file (a directory: directories in a directory are not read)")
                if not stat.S_ISREG(mode):
                    raise InputError(entry, _not_a_file(mode))
            if not files:
                raise InputError(path, "directory holds no input files (*.ndjson, *.jsonl, *.csv, or those .gz)")
            found.extend(files)
        elif stat.S_ISREG(st.st_mode):
            found.append(path)
        else:
            raise InputError(path, _not_a_file(st.st_mode))
    result: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            _check_readable(path)
            result.append(path)
    return result
