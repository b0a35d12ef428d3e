"""Small file-system helpers shared by the caches and the outbox: atomic writes, stable names, and
not trusting the disk blindly.

``spool_dir`` and ``cache_dir`` may be reachable by others (a shared volume, a careless ``chmod``), so
what is read from them is checked: :func:`read_regular_file` reads only regular files (no symbolic
link followed, no FIFO, device or directory, a size cap), :func:`check_private_dir` refuses a
directory others could plant files in (with the fix), and :func:`mac`/:func:`seal` authenticate
what this provider wrote with a random key kept beside it (:func:`load_secret`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import pwd
import secrets
import stat
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600, file and directory fsynced): readers see the old file or
    the new one, and the new one survives a crash once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Create ``path``, a name nothing else uses and nothing reads while it is written (an outbox
    entry's claim: unique, and not looked at before its lease ends), with ``data``, mode 0600; the
    file and its name survive a crash of the machine once this returns (with ``sync``; without,
    once :func:`sync_written` has returned: until then they survive the writer being killed, not a
    crash of the machine).

    The file is created in place (``O_EXCL``, no symbolic link followed) rather than written under a
    temporary name and renamed: a temporary name and the rename cost ~0.1 ms of the ~0.25 ms the
    write-ahead takes after an idle wait, on the path of every sent event. What a reader could then
    find is what a crash of the machine could leave anyway: a name whose file is empty or short,
    which no reader trusts (an outbox entry's size and authentication code are in its name; see
    :meth:`~airflow_provider_alation.outbox.store.LocalOutbox._read_entry`). A write that fails
    removes what it created. The file is fsynced, then its directory: on a journalling file system
    the one commit of the file's fsync carries its creation and its name, so the directory's fsync
    finds little left to do.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # the folder was removed since it was checked
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):  # not durable: not left behind either
            os.unlink(path)
        raise
    finally:
        os.close(fd)
    if sync:
        fsync_dir(path.parent)


def sync_written(path: Path) -> None:
    """Make a file :func:`write_new` wrote with ``sync=False`` durable: the file, then its folder.
    ``FileNotFoundError`` if it has been moved or removed since."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a power loss after it must not lose the new name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cache_key(*parts: str) -> str:
    """A short stable file-name key for a tenant URL (and user): no secret goes into it."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class UntrustedFile(OSError):
    """A file this provider did not write, or that is not a regular file it can read safely: a symbolic
    link, a FIFO, a device, a directory, one above its size cap, or one whose authentication code does
    not verify. ``reason`` says which, in words."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class UnsafeDirectory(OSError):
    """A directory others could plant files in (or that is not ours): its message names the fix."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def kind_of(mode: int) -> str:
    """``"a FIFO"``, ``"a directory"``... for a ``st_mode`` that is not a regular file's."""
    return next((word for test, word in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: Path | str, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``, else :class:`UntrustedFile`.

    Opened without following a symbolic link and without blocking (a FIFO never hangs the reader),
    then checked on the open descriptor (no race with a rename); at most ``max_bytes + 1`` bytes are
    ever read, so a file that grows (or ``/dev/zero`` behind a name) cannot exhaust memory.
    ``FileNotFoundError`` is raised as is.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFile(path, "a symbolic link") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a socket; a directory (where open refuses it)
            raise UntrustedFile(path, "not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFile(path, kind_of(info.st_mode))
        if info.st_size > max_bytes:
            raise UntrustedFile(path, f"{info.st_size} bytes, above the cap of {max_bytes}")
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise UntrustedFile(path, f"more than the cap of {max_bytes} bytes")
        return data
    finally:
        os.close(fd)


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return str(uid)


def check_private_dir(path: Path | str, what: str = "directory", *, create: bool = True) -> bool:
    """Make sure nobody but this user (or root) can plant files in ``path``; create it (mode 0700) if
    missing and ``create``. True if it exists (and is safe), False if missing and not created.

    Refused, with :class:`UnsafeDirectory` naming the directory, its owner and mode, and the fix: a
    symbolic link, not a directory, owned by another user, or group- or world-writable. One ``lstat``.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(path)
    me = os.geteuid()
    problem, fix = "", ""
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
        fix = f"point it at the real directory ({os.path.realpath(path)}) after checking that it is yours"
    elif not stat.S_ISDIR(info.st_mode):
        problem = f"is {kind_of(info.st_mode)}, not a directory"
        fix = f"remove {path} or choose another directory"
    elif info.st_uid not in (me, 0):
        problem = f"is owned by {_owner_name(info.st_uid)}, not by {_owner_name(me)} who runs this"
        fix = f"chown {_owner_name(me)} {path} && chmod 700 {path}, or choose a directory of your own"
    elif info.st_mode & 0o022:
        writable = (
            "group- and world-writable"
            if info.st_mode & 0o002 and info.st_mode & 0o020
            else ("world-writable" if info.st_mode & 0o002 else "group-writable")
        )
        problem = f"is {writable} (mode {stat.S_IMODE(info.st_mode):04o})"
        fix = f"chmod 700 {path}"
    if problem:
        raise UnsafeDirectory(
            f"Alation lineage: the {what} {path} {problem}, so others could plant files in it that this "
            f"provider would trust; it is not used. Fix: {fix}"
        )
    return True


def load_secret(path: Path, size: int = 32) -> bytes:
    """The random ``size``-byte secret in ``path`` (mode 0600), created atomically the first time.

    Created as a temporary file hard-linked into place, so of several processes creating it at once
    exactly one wins and every one reads the same complete secret. Read with the safe reader; refused
    (:class:`UnsafeDirectory`, with the fix) when it is not a private regular file of ours of that size.
    """
    try:
        try:
            data = read_regular_file(path, size)
        except FileNotFoundError:
            _create_secret(path, size)
            data = read_regular_file(path, size)
        info = os.stat(path, follow_symlinks=False)
    except UntrustedFile as exc:
        problem = exc.reason
    else:
        problem = ""
        if len(data) != size:
            problem = f"{len(data)} bytes, not {size}"
        elif info.st_uid not in (os.geteuid(), 0):
            problem = f"owned by {_owner_name(info.st_uid)}"
        elif info.st_mode & 0o077:
            problem = f"readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem:
        raise UnsafeDirectory(
            f"Alation lineage: the key file {path} is {problem}, so it is not used. Fix: remove it if you "
            f"did not make it (a new key is made; what was written with the old one is quarantined or "
            f"read again), or chmod 600 {path}"
        )
    return data


def _create_secret(path: Path, size: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(size))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: everyone uses theirs
        else:
            fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def mac(key: bytes, *parts: bytes) -> str:
    """HMAC-SHA256 (hex) of ``parts``, each length-prefixed so that no two lists give the same input."""
    code = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        code.update(len(part).to_bytes(8, "big"))
        code.update(part)
    return code.hexdigest()


SEAL_PREFIX = b"hmac-sha256:"


def seal(key: bytes, domain: bytes, payload: bytes) -> bytes:
    """``payload`` behind one header line holding its authentication code (see :func:`unseal`)."""
    return SEAL_PREFIX + mac(key, domain, payload).encode() + b"\n" + payload


def unseal(key: bytes, domain: bytes, data: bytes, path: Path | str) -> bytes:
    """The payload of :func:`seal`'s ``data``, or :class:`UntrustedFile` if its code does not verify."""
    header, _, payload = data.partition(b"\n")
    if not header.startswith(SEAL_PREFIX):
        raise UntrustedFile(path, "no authentication code (planted, or written by an older version)")
    expected = mac(key, domain, payload).encode()
    if not hmac.compare_digest(header[len(SEAL_PREFIX) :], expected):
        raise UntrustedFile(path, "its authentication code does not verify (not written by this provider)")
    return payload


#: Process memo of checked directories and their keys: one ``lstat`` and one read per process.
_DIR_KEYS: dict[str, bytes] = {}


def dir_key(directory: Path | str, what: str, key_file: str = ".cache-key") -> bytes:
    """The authentication key kept in ``directory`` (created, mode 0700, if missing), after checking
    that nobody else can plant files there (:class:`UnsafeDirectory` otherwise). Memoised per process."""
    known = _DIR_KEYS.get(f"{directory}\0{key_file}")
    if known is not None:
        return known
    check_private_dir(directory, what)
    key = load_secret(Path(directory) / key_file)
    _DIR_KEYS[f"{directory}\0{key_file}"] = key
    return key


def create_marker(path: Path) -> bool:
    """Create the empty file ``path`` (mode 0600) if it does not exist: True for the one caller,
    of any number of processes racing on a local or NFS (v3+) file system, that created it; False
    when it already existed. ``O_EXCL`` makes the test and the creation one step."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    fsync_dir(path.parent)
    return True


def prune_markers(directory: Path, max_age: float, keep: int, now: float) -> int:
    """Remove marker files older than ``max_age`` seconds, then the oldest beyond ``keep``; the
    number removed. Regular files only; a file another process removed meanwhile is skipped."""
    entries: list[tuple[float, str]] = []
    with os.scandir(directory) as found:
        for entry in found:
            if entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                entries.append((info.st_mtime, entry.name))
    entries.sort()
    expired = [name for mtime, name in entries if now - mtime > max_age]
    left = len(entries) - len(expired)
    if left > keep:
        expired += [name for _, name in entries[len(expired) : len(expired) + left - keep]]
    removed = 0
    for name in expired:
        with contextlib.suppress(OSError):
            os.unlink(directory / name)
            removed += 1
    return removed
