"""What a container may see of the host's files, checked before it starts.

Bind mounts keep host owners and modes, and the container user (uid 65534) owns nothing on
the host: the work folder is opened to it, every read-only input is checked readable by it
(a failure names the file and the fix, rather than surfacing as a puzzling error inside the
container), and a host interpreter is mounted only when it is self-contained and holds no
credential or listening socket, since nothing can be masked inside a container.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from sandbox.isolation import runtime_mounts
from sandbox.masks import default_credential_paths, listening_unix_sockets, masks_for

# Host folders that an image has its own of: mounting the host's would replace the image's.
_SYSTEM_FOLDERS = tuple(Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"))


def host_python_mounts(python: str | None = None) -> list[Path]:
    """What ``python`` (default: this interpreter) runs from, mounted at the same paths.

    The venv, the base interpreter's prefix and the import path entries outside them
    (:func:`sandbox.isolation.runtime_mounts`), under ``/tmp`` too: the container's ``/tmp``
    tmpfs is mounted first and these over it. Only for interpreters in a prefix of their own
    (pyenv, uv, a venv over them): mounting a system ``/usr`` over the image's would replace
    the image. Nothing is masked in a container, so a mount holding a credential file or a
    listening unix socket (a Docker socket in a checkout) is refused too.
    """
    mounts = runtime_mounts(python or sys.executable)
    for mount in mounts:
        if any(mount == system or system in mount.parents for system in _SYSTEM_FOLDERS):
            raise ValueError(
                f"cannot mount the host interpreter from {mount}: it is not self-contained"
            )
    hidden = masks_for([*default_credential_paths(), *listening_unix_sockets()], [])
    for mask in hidden:
        holder = next((m for m in mounts if mask.path == m or m in mask.path.parents), None)
        if holder is not None:
            raise ValueError(
                f"cannot mount {holder} into containers: it holds {mask.path}, "
                "which a container cannot be kept from"
            )
    return mounts


def open_to_user(workdir: Path, user: str | None) -> None:
    """Make the work folder writable by the container user, who owns nothing on the host.

    Folders get mode a+rwx and files a+rw unless the user is the folder's owner (or root).
    Files the command creates then belong to that uid on the host.
    """
    uid = (user or "0").split(":")[0]
    if uid in ("0", "root", str(workdir.stat().st_uid)):
        return
    for folder, _dirs, files in os.walk(workdir):
        os.chmod(folder, os.stat(folder).st_mode | 0o777)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o666)


def _user_ids(user: str | None) -> tuple[int, int | None] | None:
    """Numeric uid and gid of a ``uid[:gid]`` user; None for root, names or the image's user."""
    uid, _, gid = (user or "").partition(":")
    if not uid.isdigit() or int(uid) == 0:
        return None
    return int(uid), int(gid) if gid.isdigit() else None


def _permits(info: os.stat_result, uid: int, gid: int | None, need: int) -> bool:
    if info.st_uid == uid:
        bits = info.st_mode >> 6
    elif gid is not None and info.st_gid == gid:
        bits = info.st_mode >> 3
    else:
        bits = info.st_mode
    return bits & need == need


def _entries(mount: Path) -> Iterator[tuple[Path, int]]:
    """Every path under ``mount``, with the permission bits that reading it needs."""
    if not mount.is_dir():
        yield mount, 0o4
        return
    yield mount, 0o5
    for folder, dirs, files in os.walk(mount):
        yield from ((Path(folder, name), 0o5) for name in dirs)
        yield from ((Path(folder, name), 0o4) for name in files)


def first_unreadable(paths: Sequence[Path], user: str | None) -> tuple[Path, Path] | None:
    """The first (mount, path) under ``paths`` that the container ``user`` could not read.

    Bind mounts keep host owners and modes, and the container user owns nothing on the host,
    so it reads only what the group or "other" permission bits allow. Files need read,
    folders read and search permission; symlinks are judged by their targets.
    """
    ids = _user_ids(user)
    if ids is None:
        return None
    uid, gid = ids
    for mount in paths:
        for path, need in _entries(mount):
            try:
                info = path.stat()
            except OSError:
                continue  # a dangling link: nothing to read either way
            if not _permits(info, uid, gid, need):
                return mount, path
    return None
