"""Pid 1 of an ``unshare`` sandbox: builds the read-only view, drops privileges, runs the command.

Used where bubblewrap is missing but we are root (the GPU machines). ``unshare`` gives new
network, pid, mount, ipc and uts namespaces; this script, run inside them by the host
interpreter with ``-I -S`` (standard library only, never imports the ``sandbox`` package),
then does what bubblewrap would have done:

- private tmpfs on ``/tmp`` and ``/dev/shm``; the work folder and read-only mounts (the
  caller's inputs and the interpreter's folders, see ``sandbox.isolation.runtime_mounts``)
  are bound back in at their own paths, shortest first, through file descriptors opened
  before ``/tmp`` was covered;
- every other mount is remounted read-only, and ``/proc/sys`` & co. too;
- credential files and unix sockets are covered with ``/dev/null`` or an empty tmpfs, after
  the binds, so one inside a bound folder is covered too;
- all capabilities are dropped (bounding set included) and ``no_new_privs`` is set, so the
  command, although uid 0, cannot remount, mknod, load modules or regain privileges;
- it forks the command and reaps orphans like an init, and exits with the command's status
  (128 + signal when it was killed, like bubblewrap). When it exits, the kernel kills
  everything left in the pid namespace.

Argument: one JSON object with ``workdir``, ``read_only`` (paths), ``masks`` ([path, is_dir])
and ``command``. A setup failure prints ``SETUP_FAILED`` and exits 125.
"""

import ctypes
import json
import os
import re
import sys

SETUP_FAILED = "autoannotator-sandbox: setup failed:"

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_PRIVATE = 1024, 2048, 1 << 21, 1 << 18
# statvfs f_flag bit (Linux values, as os.ST_*) -> mount flag that a bind remount must repeat,
# or it is cleared.
_KEPT_FLAGS = {
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Kernel interfaces under /proc that uid 0 can write without any capability: sysctl checks
# only the file mode, and kernel.core_pattern alone would run a program as host root. (Docker's
# read-only /proc list.)
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    if _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _remount_read_only(target: str) -> None:
    kept = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for stat_flag, mount_flag in _KEPT_FLAGS.items():
        if kept & stat_flag:
            flags |= mount_flag
    _mount(None, target, None, flags)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo", "rb") as info:
        fields = [line.split() for line in info]
    # Field 5 is the mount point, with space, tab, newline and backslash written as \ooo.
    unescape = re.compile(rb"\\([0-7]{3})")
    points = [unescape.sub(lambda m: bytes([int(m.group(1), 8)]), f[4]) for f in fields]
    return [os.fsdecode(point) for point in points]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _bind_back(fd: int, path: str) -> None:
    """Bind the folder or file held open by ``fd`` at ``path`` (creating the mount point)."""
    if not os.path.lexists(path):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)


def build_view(workdir: str, read_only: list[str], masks: list[tuple[str, bool]]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Shortest path first, so a mount never hides one bound inside it (an input inside the
    # work folder is bound after the work folder, then made read-only below).
    keep = sorted({*read_only, workdir}, key=len)
    fds = {path: os.open(path, os.O_PATH) for path in keep}
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for path in keep:
        _bind_back(fds[path], path)
        os.close(fds[path])
    writable = (workdir, "/tmp", "/dev/shm", "/dev/pts", "/proc")
    for point in _mount_points():
        if any(_inside(point, folder) for folder in writable):
            continue
        try:
            _remount_read_only(point)
        except OSError as error:
            # Hidden by a later mount (ENOENT) or not a mount point at this path any more
            # (EINVAL): what is visible there belongs to a parent that is remounted itself.
            if error.errno not in (2, 22):
                raise
    for path in read_only:  # those under /tmp were skipped above
        _remount_read_only(path)
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _remount_read_only(path)
    for path, is_dir in masks:
        if not os.path.lexists(path):
            continue
        if is_dir:
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
        else:
            _mount("/dev/null", path, None, MS_BIND)
            _remount_read_only(path)


def drop_privileges() -> None:
    libc = _libc()
    with open("/proc/sys/kernel/cap_last_cap") as last:
        last_cap = int(last.read())
    for cap in range(last_cap + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"dropping capability {cap} from the bounding set")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words: all zero
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")


def run_as_init(command: list[str]) -> int:
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        except OSError as error:
            print(f"{command[0]}: {error.strerror}", file=sys.stderr)
            os._exit(127)
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        build_view(spec["workdir"], spec["read_only"], [tuple(m) for m in spec["masks"]])
        os.chdir(spec["workdir"])
        drop_privileges()
    except OSError as error:
        print(f"{SETUP_FAILED} {error}", file=sys.stderr)
        os._exit(125)
    sys.stderr.flush()
    os._exit(run_as_init(spec["command"]))


if __name__ == "__main__":
    main()
