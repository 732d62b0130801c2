"""Finding remote inputs: a URL names one object, a prefix (``s3://bucket/exports/``) or a glob
(``s3://bucket/exports/*.ndjson.gz``) names the input objects it holds, in name order.

Each object is described as listed (:class:`~pipeline.reading.sources.RemoteObject`: size, ETag,
version id, whether its store serves byte ranges); that description is the object's fingerprint,
compared again before each upload and on resume (:func:`changed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.errors import InputError
from pipeline.reading.sources import RemoteObject, display_url, filesystem, scrub

#: input names (case-insensitive), plain or ``.gz``: as local directories are read
REMOTE_SUFFIXES = (".ndjson", ".jsonl", ".csv", ".json")
_GLOB = frozenset("*?[")


def _is_input_name(name: str) -> bool:
    name = name.lower().removesuffix(".gz")
    return name.endswith(REMOTE_SUFFIXES)


def expand_url(given: str) -> list[RemoteObject]:
    """The objects ``given`` names (one object, or the input objects under a prefix or glob)."""
    fs = filesystem(given)
    shown = display_url(given)
    if given.partition("://")[0].lower() in ("http", "https"):
        return [http_object(fs, given)]
    fs.invalidate_cache()  # a listing cached by an earlier run in this process may be stale
    try:
        if _GLOB & set(given.partition("://")[2]):
            listed = fs.glob(given, detail=True)
            entries = sorted((v for v in listed.values() if v.get("type") != "directory"), key=lambda v: v["name"])
            objects = [_object(fs, info) for info in entries if _is_input_name(info["name"])]
            if not objects:
                raise InputError(shown, "the pattern matches no input objects (*.ndjson, *.jsonl, *.csv, or those .gz)")
            return objects
        info = None if given.endswith("/") else fs.info(given)
        if info is not None and info.get("type") != "directory":
            return [_object(fs, info)]
        return _list_prefix(fs, given)
    except FileNotFoundError:
        raise InputError(shown, "no such object or prefix") from None
    except PermissionError as exc:
        raise InputError(shown, f"access denied ({scrub(str(exc), given)})") from None
    except OSError as exc:
        raise InputError(shown, f"cannot list or read it ({scrub(str(exc), given)})") from None


def _list_prefix(fs: Any, given: str) -> list[RemoteObject]:
    entries = sorted(
        (e for e in fs.ls(given.rstrip("/"), detail=True) if e.get("type") != "directory"), key=lambda e: e["name"]
    )
    objects = [_object(fs, e) for e in entries if _is_input_name(e["name"])]
    if not objects:
        raise InputError(
            display_url(given), "prefix holds no input objects (*.ndjson, *.jsonl, *.csv, *.json, or those .gz)"
        )
    return objects


def _field(info: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = info.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _object(fs: Any, info: Mapping[str, Any]) -> RemoteObject:
    return RemoteObject(
        url=fs.unstrip_protocol(info["name"]),
        size=int(info["size"]) if info.get("size") is not None else None,
        etag=_field(info, "ETag", "etag", "md5Hash"),
        version_id=_field(info, "VersionId", "version_id", "generation"),
    )


def http_object(fs: Any, url: str) -> RemoteObject:
    """An ``https://`` object from the headers of a HEAD: size, ETag (or Last-Modified), and
    whether ranged reads are possible (``Accept-Ranges: bytes`` and a known size)."""
    from fsspec.asyn import sync

    async def head() -> tuple[int, Mapping[str, str]]:
        session = await fs.set_session()
        async with session.head(url, allow_redirects=True, headers={"Accept-Encoding": "identity"}) as answer:
            return answer.status, dict(answer.headers)

    try:
        status, headers = sync(fs.loop, head)
    except Exception as exc:  # aiohttp's errors, whatever they are: one clear line
        raise InputError(display_url(url), f"cannot reach it ({type(exc).__name__}: {scrub(str(exc), url)})") from None
    if status == 404:
        raise InputError(display_url(url), "no such object (HTTP 404)")
    if status >= 400:
        raise InputError(display_url(url), f"HTTP {status} to a HEAD request")
    length = headers.get("Content-Length")
    size = int(length) if length is not None and "Content-Encoding" not in headers else None
    ranges = headers.get("Accept-Ranges", "").lower() == "bytes" and size is not None
    return RemoteObject(
        url=url,
        size=size,
        etag=headers.get("ETag") or headers.get("Last-Modified"),
        serves_ranges=ranges,
    )


def refreshed(obj: RemoteObject) -> RemoteObject | None:
    """The object as its store describes it now; ``None`` when it is gone."""
    fs = filesystem(obj.url)
    try:
        if obj.url.partition("://")[0].lower() in ("http", "https"):
            return http_object(fs, obj.url)
        fs.invalidate_cache()
        return _object(fs, fs.info(obj.url))
    except (FileNotFoundError, InputError):
        return None


def changed(was: Mapping[str, Any], now: RemoteObject | None) -> str | None:
    """Why the object is not the one fingerprinted as ``was`` (``None``: it is the same)."""
    if now is None:
        return "is gone"
    if was.get("size") != now.size:
        return f"changed (size {was.get('size')}, now {now.size})"
    if was.get("etag") != now.etag:
        return f"changed (ETag {was.get('etag')}, now {now.etag})"
    if was.get("version_id") != now.version_id:
        return f"changed (version {was.get('version_id')}, now {now.version_id})"
    return None
