"""Downloads of official assets (weights, dataset archives) and safe unpacking of archives.

A download lands in its final place only when complete: bytes go to `<file>.part` beside it, the
size is checked against what the server announced (and a SHA-256 where one is known), then the file
is renamed into place. A file lock beside the target makes every process of a node (8 DDP ranks, 16
trials) wait for one download instead of starting their own; an interrupted transfer is resumed from
the `.part` file with an HTTP Range request, also by a later process after a crash.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from filelock import FileLock
from tqdm import tqdm

from yolo_ray.config import UserError

LOGGER = logging.getLogger(__name__)

# A mirror holding the official assets by file name (weights and dataset archives), for air-gapped clusters.
ASSETS_URL_ENV = "YOLO_RAY_ASSETS_URL"
ATTEMPTS = 4
CHUNK = 1 << 20
TIMEOUT_S = 60
RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A transfer that may succeed when tried again (connection lost, server busy, short body)."""


class _Refused(Exception):
    """The server answered that it will not send the file (404, 403, ...): trying again cannot help."""


def asset_url(default_url: str) -> str:
    """default_url, or the same file name under $YOLO_RAY_ASSETS_URL when a mirror is set."""
    mirror = os.environ.get(ASSETS_URL_ENV, "").strip()
    if not mirror:
        return default_url
    return f"{mirror.rstrip('/')}/{PurePosixPath(default_url).name}"


def download(url: str, dest: str | Path, sha256: str | None = None, what: str | None = None) -> Path:
    """dest, fetched from url unless it is already there; once per node, however many processes ask.

    what: how the error names the file for the user (default dest's name). Raises UserError with one
    line naming the URL and where to put the file by hand when the download cannot be done.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{dest.parent}: cannot create the download folder ({e.strerror or e})") from None
    with FileLock(str(dest.with_name(f".{dest.name}.lock"))):
        if dest.is_file():  # another process finished it while this one waited
            return dest
        partial = dest.with_name(dest.name + ".part")
        _transfer_with_retries(url, partial, dest, what or dest.name)
        if sha256 and _sha256(partial) != sha256.lower():
            partial.unlink()
            raise UserError(
                f"{what or dest.name}: {url} sent a file whose SHA-256 differs from the expected "
                f"{sha256}; put a good copy at {dest}"
            )
        os.replace(partial, dest)
    return dest


def _transfer_with_retries(url: str, partial: Path, dest: Path, what: str) -> None:
    for attempt in range(ATTEMPTS):
        try:
            _transfer(url, partial)
            return
        except _Refused as e:
            raise UserError(_cannot(what, url, e, dest)) from None
        except _Retryable as e:
            if attempt + 1 == ATTEMPTS:
                raise UserError(_cannot(what, url, e, dest)) from None
            LOGGER.info(f"{what}: download interrupted ({e}); retrying")
            time.sleep(0.5 * 2**attempt)


def _cannot(what: str, url: str, reason: Exception, dest: Path) -> str:
    return (
        f"{what}: cannot download {url} ({reason}); put the file at {dest} "
        f"(or set {ASSETS_URL_ENV} to a mirror holding it)"
    )


def _transfer(url: str, partial: Path) -> None:
    """Append the rest of url's bytes to partial (all of them when the server ignores the Range asked)."""
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "yolo_ray"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http(s) URLs of assets)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is not a prefix the server recognises: start over
            partial.unlink()
            raise _Retryable("the server refused to resume; starting over") from None
        if e.code in RETRY_HTTP:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise _Refused(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _Retryable(str(getattr(e, "reason", e))) from None
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = (have if resumed else 0) + int(length) if length is not None else None
        if not resumed:
            have = 0
        if resumed or not have:
            LOGGER.info(f"Downloading {url} to {partial.with_suffix('')}...")
        _copy_body(response, partial, have, total, resumed)
    size = partial.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"got {size} of {total} bytes")


def _copy_body(response: http.client.HTTPResponse, partial: Path, have: int, total: int | None, resumed: bool) -> None:
    name = partial.with_suffix("").name
    with (
        open(partial, "ab" if resumed else "wb") as f,
        tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=name) as bar,
    ):
        while True:
            try:
                chunk = response.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as e:  # keeps what arrived; the next try resumes
                raise _Retryable(f"connection lost after {f.tell()} bytes ({type(e).__name__})") from None
            if not chunk:
                return
            f.write(chunk)
            bar.update(len(chunk))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: str | Path, into: str | Path) -> None:
    """Unpack a .zip or .tar(.gz/.bz2/.xz) into a folder; members that would land outside it are refused.

    macOS metadata (__MACOSX, .DS_Store) is left out, as upstream's unzip does.
    """
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.namelist() if _wanted(m)]
            _check_members(archive, members)
            for m in tqdm(members, desc=f"Unzipping {archive.name}", unit="file", mininterval=1.0):
                z.extract(m, into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if _wanted(m.name)]
            _check_members(archive, [m.name for m in members])
            bad = [m.name for m in members if not (m.isfile() or m.isdir())]
            if bad:
                raise UserError(f"{archive}: holds links or devices ({bad[0]}); refusing to unpack it")
            t.extractall(into, members=members)  # noqa: S202 (members checked above)
    else:
        raise UserError(f"{archive}: neither a zip nor a tar archive")


def archive_top_folders(archive: str | Path) -> set[str]:
    """The first path components of an archive's members (coco128.zip: {"coco128"})."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    else:
        with tarfile.open(archive) as t:
            names = t.getnames()
    return {PurePosixPath(n).parts[0] for n in names if _wanted(n) and PurePosixPath(n).parts}


def _wanted(name: str) -> bool:
    return "__MACOSX" not in name and not name.endswith(".DS_Store")


def _check_members(archive: Path, names: list[str]) -> None:
    for name in names:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UserError(f"{archive}: member {name!r} would unpack outside the target folder; refusing it")
