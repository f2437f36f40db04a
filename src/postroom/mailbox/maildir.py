"""Maildir store: create, deliver into, measure and remove one mailbox's Maildir.

Contract:
- Format: Maildir (https://cr.yp.to/proto/maildir.html) with Maildir++ folders
  (subdirectories of the root whose names start with ".") and the Maildir++ quota
  file `maildirsize` as Courier writes it and Dovecot's "maildir" quota backend
  reads it (https://www.courier-mta.org/imap/README.maildirquota.html).
- `ensure_maildir(path)` creates the root, cur/, new/ and tmp/ (and missing
  parents) with mode 0o700; idempotent.
- `deliver(path, content, hostname=..., quota_bytes=...)` writes `content` byte
  for byte (CRLF kept: Dovecot reads CRLF files) into tmp/, fsyncs it, links it
  into new/, fsyncs new/, and returns the name relative to the root
  ("new/<name>"). Only then is the message committed; any failure before that
  removes what was written and raises `MaildirError`. Afterwards it records the
  message in `maildirsize`; bookkeeping failures after the commit are logged,
  not raised, so that a caller never retries (and duplicates) a stored message.
  It does not enforce the quota: callers compare `usage()` with their limit.
  With `folder=".Junk"` the message goes into that Maildir++ folder (created
  with its `maildirfolder` marker, as Dovecot expects) and counts against the
  root's quota like every folder.
- `usage(path)` returns bytes and messages from `maildirsize`, recalculating it
  from the directories when it is missing, unreadable, malformed or too big
  (5120 bytes or more); a Maildir that does not exist yet holds nothing.
- `set_quota(path, quota_bytes)` rewrites the quota definition (recalculating).
- `remove_maildir(path)` deletes a whole Maildir tree, refusing anything that
  does not look like a Maildir.
All functions block on file I/O: async callers run them in a thread. `content`
is untrusted bytes but is only stored, never parsed. File and directory names
read back from disk are parsed only for their ",S=<size>" part.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from postroom.core.statefiles import make_directories

log = logging.getLogger(__name__)

SUBDIRECTORIES = ("cur", "new", "tmp")
QUOTA_FILE = "maildirsize"
FOLDER_MARKER = "maildirfolder"  # Maildir++: marks a folder, so deliveries count at the root
# Courier and Dovecot recalculate a maildirsize of 5120 bytes or more (Dovecot
# reads at most 5120 bytes and rebuilds when the buffer fills), which also bounds
# how long the append-only file grows.
QUOTA_FILE_MAX_BYTES = 5120
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# Names collide only if time, pid, counter and 32 random bits all coincide, so a
# few attempts are plenty; the bound keeps a broken filesystem from looping.
NAME_ATTEMPTS = 5

# The Maildir spec defines Q as a per-process delivery counter, so it has to live
# for the whole process. next() on itertools.count is atomic under the GIL, which
# makes it safe for deliveries running in several threads; after fork() the pid
# in the name changes, so a copied counter cannot collide.
_delivery_counter = itertools.count(1)

_FOLDER_NAME = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9_.-]*")
_SIZE_IN_NAME = re.compile(r",S=(\d+)(?=$|[:,])")
_QUOTA_DEFINITION = re.compile(r"\d+[SC](,\d+[SC])*")
_DELTA_LINE = re.compile(r"\s*(-?\d+)\s+(-?\d+)\s*")


class MaildirError(Exception):
    """A Maildir operation failed; carries the path involved and the cause."""

    def __init__(self, message: str, *, path: Path, cause: BaseException | None = None) -> None:
        detail = f"{message}: {path}" if cause is None else f"{message}: {path}: {cause}"
        super().__init__(detail)
        self.path = path
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Usage:
    """What a Maildir holds, all folders included."""

    bytes_used: int
    messages: int


def ensure_maildir(path: Path) -> None:
    """Create `path` with cur/, new/ and tmp/; existing directories are kept as they are."""
    try:
        for name in SUBDIRECTORIES:  # with `path` and its missing parents, each 0700
            make_directories(path / name, DIRECTORY_MODE)
    except OSError as exc:
        raise MaildirError("cannot create Maildir", path=path, cause=exc) from exc


def deliver(
    path: Path, content: bytes, *, hostname: str, quota_bytes: int = 0, folder: str = ""
) -> str:
    """Store one message in new/ (of `folder`, a Maildir++ folder name such as ".Junk",
    when given) and return its name relative to the Maildir root."""
    if not hostname or "\0" in hostname:
        raise ValueError(f"unusable hostname for Maildir file names: {hostname!r}")
    if folder and not _FOLDER_NAME.fullmatch(folder):
        raise ValueError(f"not a Maildir++ folder name: {folder!r}")
    # Checked before writing: a ValueError after the commit would invite a retry.
    definition = _definition_for(quota_bytes)
    ensure_maildir(path)
    box = path / folder if folder else path
    if folder:
        _ensure_folder(box)
    size = len(content)
    tmp_file, fd = _create_unique(box / "tmp", hostname, size)
    try:
        try:
            _write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        delivered = _link_durably(tmp_file, box / "new", hostname, size)
    except BaseException as exc:
        _unlink_quietly(tmp_file)
        if isinstance(exc, OSError):
            raise MaildirError("cannot deliver into Maildir", path=path, cause=exc) from exc
        raise
    # Committed: from here on a failure must not make the caller deliver again.
    try:
        os.unlink(tmp_file)
        _fsync_directory(box / "tmp")
    except OSError as exc:
        # A stray file in tmp/ is harmless: Maildir readers delete old ones.
        log.warning("cannot remove %s after delivery: %s", tmp_file, exc)
    try:
        _record_delivery(path, size, definition)
    except (OSError, MaildirError) as exc:
        log.warning("cannot update %s: %s", path / QUOTA_FILE, exc)
    return f"{folder}/new/{delivered.name}" if folder else f"new/{delivered.name}"


def _ensure_folder(box: Path) -> None:
    ensure_maildir(box)
    marker = box / FOLDER_MARKER
    if not marker.exists():
        try:
            marker.touch(FILE_MODE)
        except OSError as exc:
            raise MaildirError("cannot create Maildir++ folder", path=box, cause=exc) from exc


def usage(path: Path) -> Usage:
    """Bytes and messages in the Maildir, from maildirsize or by recounting."""
    recorded = _read_quota_file(path)
    if recorded is not None:
        return recorded[1]
    if not path.exists():
        # A mailbox is created before its first delivery creates the Maildir.
        return Usage(bytes_used=0, messages=0)
    definition = _read_definition(path) or _definition_for(0)
    counted = _count(path)
    try:
        _rewrite_quota_file(path, definition, counted)
    except MaildirError as exc:
        # The count is right even if it cannot be cached for the next reader.
        log.warning("cannot rewrite %s: %s", path / QUOTA_FILE, exc)
    return counted


def set_quota(path: Path, quota_bytes: int) -> None:
    """Record `quota_bytes` (0 = no limit) as the Maildir's quota definition."""
    _rewrite_quota_file(path, _definition_for(quota_bytes), _count(path))


def remove_maildir(path: Path) -> None:
    """Delete the Maildir at `path` with all its folders and messages."""
    if not all((path / name).is_dir() for name in SUBDIRECTORIES):
        raise MaildirError("refusing to remove, not a Maildir", path=path)
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise MaildirError("cannot remove Maildir", path=path, cause=exc) from exc


def _unique_name(hostname: str, size: int) -> str:
    now_ns = time.time_ns()
    seconds, microseconds = now_ns // 1_000_000_000, now_ns // 1000 % 1_000_000
    host = hostname.replace("/", "\\057").replace(":", "\\072")
    unique = f"M{microseconds}P{os.getpid()}Q{next(_delivery_counter)}R{os.urandom(4).hex()}"
    # ",S=<size>" lets Dovecot and quota recalculation skip stat() (Maildir++).
    return f"{seconds}.{unique}.{host},S={size}"


def _create_unique(directory: Path, hostname: str, size: int) -> tuple[Path, int]:
    for _ in range(NAME_ATTEMPTS):
        candidate = directory / _unique_name(hostname, size)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            return candidate, os.open(candidate, flags, FILE_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise MaildirError("cannot create file", path=candidate, cause=exc) from exc
    raise MaildirError("no unique file name after retries", path=directory)


def _link_unique(source: Path, directory: Path, hostname: str, size: int) -> Path:
    # A hard link never replaces an existing message (rename would), so a name
    # collision shows up as EEXIST and is retried under a new name.
    target = directory / source.name
    for _ in range(NAME_ATTEMPTS):
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            target = directory / _unique_name(hostname, size)
    raise FileExistsError(f"no unique name in {directory} after {NAME_ATTEMPTS} attempts")


def _link_durably(source: Path, directory: Path, hostname: str, size: int) -> Path:
    target = _link_unique(source, directory, hostname, size)
    try:
        _fsync_directory(directory)
    except OSError:
        # Not known to be on disk, so not committed: the caller will retry.
        _unlink_quietly(target)
        raise
    return target


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(file: Path) -> None:
    try:
        os.unlink(file)
    except OSError as exc:
        log.warning("cannot remove %s: %s", file, exc)


def _definition_for(quota_bytes: int) -> str:
    # With no limit, Dovecot writes "0S" rather than an empty first line, and
    # both Courier and Dovecot read a 0 limit as "unlimited"; an empty line
    # would read as a malformed file to stricter readers.
    if quota_bytes < 0:
        raise ValueError(f"quota must be 0 (no limit) or positive, not {quota_bytes}")
    return f"{quota_bytes}S"


def _record_delivery(path: Path, size: int, definition: str) -> None:
    """Append this delivery to maildirsize, or rebuild it when it cannot be trusted."""
    recorded = _read_quota_file(path)
    if recorded is None or recorded[0] != definition:
        # The count includes the message just delivered.
        _rewrite_quota_file(path, definition, _count(path))
        return
    # O_APPEND makes each short write land whole at the end even with several
    # writers at once; that is how Courier and Dovecot share the file.
    fd = os.open(path / QUOTA_FILE, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        _write_all(fd, f"{size} 1\n".encode("ascii"))
    finally:
        os.close(fd)


def _read_quota_file(path: Path) -> tuple[str, Usage] | None:
    """(definition, usage) from maildirsize, or None when it must be recalculated."""
    try:
        with open(path / QUOTA_FILE, "rb") as file:
            data = file.read(QUOTA_FILE_MAX_BYTES)
    except OSError:
        return None
    if len(data) >= QUOTA_FILE_MAX_BYTES or not data.endswith(b"\n"):
        return None
    try:
        lines = data.decode("ascii").split("\n")[:-1]
    except UnicodeDecodeError:
        return None
    if not lines or not _QUOTA_DEFINITION.fullmatch(lines[0].strip()):
        return None
    total_bytes = total_messages = 0
    for line in lines[1:]:
        delta = _DELTA_LINE.fullmatch(line)
        if delta is None:
            return None
        total_bytes += int(delta[1])
        total_messages += int(delta[2])
    if total_bytes < 0 or total_messages < 0:
        return None
    return lines[0].strip(), Usage(bytes_used=total_bytes, messages=total_messages)


def _read_definition(path: Path) -> str | None:
    """The first line of maildirsize when it is a valid definition, even if the rest is not."""
    try:
        with open(path / QUOTA_FILE, "rb") as file:
            first = file.readline(QUOTA_FILE_MAX_BYTES).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return first if _QUOTA_DEFINITION.fullmatch(first) else None


def _count(path: Path) -> Usage:
    """Sum new/ and cur/ of the root and of every Maildir++ folder."""
    folders = [path]
    try:
        folders += sorted(
            entry for entry in path.iterdir() if entry.name.startswith(".") and entry.is_dir()
        )
    except OSError as exc:
        raise MaildirError("cannot list Maildir", path=path, cause=exc) from exc
    total_bytes = total_messages = 0
    for folder in folders:
        for directory in (folder / "new", folder / "cur"):
            size_bytes, messages = _count_directory(directory)
            total_bytes += size_bytes
            total_messages += messages
    return Usage(bytes_used=total_bytes, messages=total_messages)


def _count_directory(directory: Path) -> tuple[int, int]:
    total_bytes = messages = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        raise MaildirError("cannot list Maildir directory", path=directory, cause=exc) from exc
    for name in names:
        if name.startswith("."):
            continue
        in_name = _SIZE_IN_NAME.search(name)
        if in_name is not None:
            total_bytes += int(in_name[1])
            messages += 1
            continue
        try:
            status = os.stat(directory / name)
        except FileNotFoundError:
            # Moved from new/ to cur/ or expunged while we were counting.
            continue
        except OSError as exc:
            raise MaildirError("cannot stat message", path=directory / name, cause=exc) from exc
        if stat.S_ISREG(status.st_mode):
            total_bytes += status.st_size
            messages += 1
    return total_bytes, messages


def _rewrite_quota_file(path: Path, definition: str, counted: Usage) -> None:
    """Replace maildirsize atomically so that readers see the old or the new file, never half."""
    text = f"{definition}\n{counted.bytes_used} {counted.messages}\n".encode("ascii")
    temporary, fd = _create_unique(path / "tmp", "maildirsize", len(text))
    try:
        try:
            _write_all(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path / QUOTA_FILE)
    except OSError as exc:
        _unlink_quietly(temporary)
        raise MaildirError("cannot write quota file", path=path / QUOTA_FILE, cause=exc) from exc
