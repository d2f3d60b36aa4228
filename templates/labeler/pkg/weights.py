"""Model weights that travel with the package, checked against ``models.lock.json``.

A Hub voter's pinned files (safetensors, config, tokenizer) are bundled under
``models/<voter>/``. Before such a voter loads, its files must be exactly those the lock
pins: every file's sha256 equal, none missing, none added. Hashing gigabytes at every start
would be slow, so a check that passed leaves a *stamp*: a key over each file's (path, size,
mtime_ns, inode) and the pinned hashes, kept in the package folder when it is writable, else
in the user's cache folder (else every start hashes). A file that changes changes the key,
and the files are hashed again.

``<labeler> verify`` runs the check for every voter at once (the Dockerfile runs it at build
time, so the stamp is in the image); it also checks the files of voters the package only
references (``--no-bundle-weights``) in the Hugging Face cache the Dockerfile fetched them to.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LOCK = "models.lock.json"
"""The lock, in the package folder: each voter's pinned files and their sha256."""
STAMP = ".verified-weights.json"
"""The stamp of checks that passed (in the package folder, or the user's cache folder)."""
BLOCK = 1 << 20


class WeightsError(RuntimeError):
    """A voter's files are not those ``models.lock.json`` pins (or cannot be checked).

    Kept apart from :class:`.voters.VoterLoadError` so that this module imports no other of
    the package (the voters' loader imports it); that loader raises it as one.
    """


@dataclass(frozen=True)
class Verification:
    """One voter's files, checked."""

    voter: str
    files: int
    size: int
    """Bytes checked."""
    hashed: bool
    """False: the stamp vouched for the files, nothing was hashed."""
    where: str
    """The folder checked (relative to the package for bundled files)."""


def read_lock(package_root: Path) -> dict:
    path = package_root / LOCK
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{LOCK} is missing from {package_root}") from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"{LOCK} is unreadable ({error})") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("voters"), list):
        raise WeightsError(f"{LOCK} holds no list of voters")
    return lock


def pinned_files(lock: dict, voter: str) -> dict[str, str]:
    """The voter's files (relative path -> sha256) as the lock pins them."""
    entry = next((e for e in lock["voters"] if isinstance(e, dict) and e.get("name") == voter), {})
    files = entry.get("files")
    if not files or not isinstance(files, dict):
        raise WeightsError(f"voter {voter}: {LOCK} pins no files for it")
    for relative in files:
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts or not parts:
            raise WeightsError(f"voter {voter}: {LOCK} names the file {relative!r}")
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(
    voter: str, folder: Path, label: str, pinned: dict[str, str], *, exact: bool = True
) -> int:
    """Hash every pinned file in ``folder`` (shown as ``label``); returns the bytes hashed.
    Raises :class:`WeightsError` naming the first file missing or different, or with
    ``exact`` the first file there that the lock does not pin (a tokenizer file added to a
    model folder changes how it reads text)."""
    if not folder.is_dir():
        raise WeightsError(f"voter {voter}: {label} is missing ({LOCK} pins its files)")
    if exact:
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        added = sorted(present - set(pinned))
        if added:
            raise WeightsError(f"voter {voter}: {label}/{added[0]} is not pinned in {LOCK}")
    size = 0
    for relative, expected in sorted(pinned.items()):
        path = folder / relative
        if not path.is_file():
            raise WeightsError(f"voter {voter}: {label}/{relative} is missing ({LOCK} pins it)")
        actual = sha256_of(path)
        if actual != expected:
            raise WeightsError(
                f"voter {voter}: {label}/{relative} does not match {LOCK} "
                f"(sha256 {actual[:16]}..., pinned {expected[:16]}...)"
            )
        size += path.stat().st_size
    return size


def stamp_key(folder: Path, pinned: dict[str, str]) -> str | None:
    """A key over each pinned file's (path, size, mtime_ns, inode) and hash; None when a
    file is missing (then nothing is vouched for)."""
    identity = []
    for relative, expected in sorted(pinned.items()):
        try:
            stat = os.stat(folder / relative)
        except OSError:
            return None
        identity.append([relative, stat.st_size, stat.st_mtime_ns, stat.st_ino, expected])
    return hashlib.sha256(json.dumps([str(folder), identity]).encode()).hexdigest()


def stamp_paths(package_root: Path) -> list[Path]:
    """Where stamps are kept: the package folder, then the user's cache folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    where = hashlib.sha256(str(package_root).encode()).hexdigest()[:16]
    return [package_root / STAMP, Path(cache) / package_root.name / f"verified-{where}.json"]


def _read_stamp(path: Path) -> dict[str, str]:
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def stamped(package_root: Path, voter: str, key: str) -> bool:
    return any(_read_stamp(path).get(voter) == key for path in stamp_paths(package_root))


def save_stamp(package_root: Path, voter: str, key: str) -> Path | None:
    """Record a passed check in the first place that takes it; None when none does."""
    for path in stamp_paths(package_root):
        stamp = _read_stamp(path) | {voter: key}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".stamp-", dir=path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(stamp, stream, sort_keys=True)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
            return path
        except OSError:
            continue
    return None


def verify_bundled(
    package_root: Path, voter: str, bundled: str, force: bool = False
) -> Verification:
    """Check a voter's bundled folder against the lock, once per install (see the module)."""
    pinned = pinned_files(read_lock(package_root), voter)
    folder = package_root / bundled
    key = stamp_key(folder, pinned)
    if not force and key is not None and stamped(package_root, voter, key):
        return Verification(voter, len(pinned), _size(folder, pinned), False, bundled)
    size = check_files(voter, folder, bundled, pinned)
    # The key again: a file replaced while it was hashed must not be vouched for.
    if stamp_key(folder, pinned) == key and key is not None:
        save_stamp(package_root, voter, key)
    return Verification(voter, len(pinned), size, True, bundled)


_verified: set[tuple[Path, str]] = set()
"""(package folder, voter) checked in this process."""


def ensure_bundled(package_root: Path, voter: str, bundled: str) -> None:
    """Before a voter with bundled files loads: on the first call in a process, every bundled
    voter of the lock is checked, so a mismatch stops the labeler before any model loads."""
    if not any(root == package_root for root, _ in _verified):
        for entry in read_lock(package_root)["voters"]:
            if isinstance(entry, dict) and entry.get("bundled"):
                verify_bundled(package_root, entry["name"], entry["bundled"])
                _verified.add((package_root, entry["name"]))
    if (package_root, voter) not in _verified:
        verify_bundled(package_root, voter, bundled)
        _verified.add((package_root, voter))


def _size(folder: Path, pinned: dict[str, str]) -> int:
    return sum((folder / relative).stat().st_size for relative in pinned)


def verify_hub_cache(entry: dict) -> Verification:
    """Check a referenced Hub voter's files in the Hugging Face cache (``HF_HUB_CACHE``)."""
    from huggingface_hub import try_to_load_from_cache

    voter, repo = entry["name"], entry["source"].partition(":")[2]
    pinned = pinned_files({"voters": [entry]}, voter)
    label = f"{repo}@{entry['revision'][:12]} in the Hugging Face cache"
    folders = set()
    for relative in sorted(pinned):
        found = try_to_load_from_cache(repo, relative, revision=entry["revision"])
        if not isinstance(found, str):
            raise WeightsError(f"voter {voter}: {relative} of {label} is missing")
        folders.add(Path(found).parents[len(PurePosixPath(relative).parts) - 1])
    # The snapshot may hold files fetched for other uses: only the pinned ones are checked.
    size = check_files(voter, folders.pop(), label, pinned, exact=False)
    return Verification(voter, len(pinned), size, True, label)


def verify_package(package_root: Path, force: bool = False) -> list[Verification]:
    """Every voter whose weights are bundled, or referenced on the Hub, checked."""
    checked = []
    for entry in read_lock(package_root)["voters"]:
        if entry.get("bundled"):
            checked.append(verify_bundled(package_root, entry["name"], entry["bundled"], force))
        elif str(entry.get("source", "")).startswith("hub:"):
            checked.append(verify_hub_cache(entry))
    return checked


def describe(check: Verification) -> str:
    how = "hashed" if check.hashed else "the stamp of an earlier check, not hashed again"
    return (
        f"voter {check.voter}: {check.files} files ({check.size / 1e6:.1f} MB) in "
        f"{check.where} match {LOCK} ({how})"
    )


def main(argv: list[str] | None = None) -> int:
    """``<labeler> verify``: check the weights against the lock; exit 1 on a mismatch."""
    parser = argparse.ArgumentParser(
        prog="verify", description=f"Check the model weights against {LOCK}."
    )
    parser.add_argument("--force", action="store_true", help="hash again even if stamped")
    args = parser.parse_args(argv)

    try:
        checked = verify_package(Path(__file__).resolve().parent, force=args.force)
    except WeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for check in checked:
        print(describe(check), file=sys.stderr)
    if not checked:
        print("no voter's weights are bundled or fetched: nothing to verify", file=sys.stderr)
    return 0
