"""Host paths hidden from process sandboxes even though the root is visible read-only.

Read-only is not enough for two kinds of files. Credentials can be *read*: a Hub token or a
``.netrc`` would leak through stdout. Unix sockets can be *connected to* on a read-only mount
and across network namespaces: the Docker socket alone gives root on the host. The sandboxed
command runs as uid 0 (mapped, without capabilities), the owner of most such files, so file
permissions do not stop it either. Each one is covered with an empty file or folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Relative to a home folder. Files and folders that hold credentials for tools a developer of
# this project plausibly has: Hugging Face, git, Docker, cloud SDKs, package indexes.
HOME_CREDENTIALS = (
    ".cache/huggingface/token",
    ".cache/huggingface/stored_tokens",
    ".huggingface/token",
    ".netrc",
    ".git-credentials",
    ".docker/config.json",
    ".pypirc",
    ".npmrc",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".kube",
    ".ssh",
    ".gnupg",
)
# Secrets that container orchestrators place at fixed paths.
SYSTEM_CREDENTIALS = ("/run/secrets", "/var/run/secrets")


@dataclass(frozen=True)
class Mask:
    """One path to cover: folders get an empty tmpfs, anything else an empty file."""

    path: Path
    is_dir: bool


def default_credential_paths() -> list[Path]:
    """Credential paths for the current user's home (and ``$HOME``, ``$HF_HOME`` if set)."""
    homes = {Path.home()}
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]))
    paths = [home / rel for home in sorted(homes) for rel in HOME_CREDENTIALS]
    if os.environ.get("HF_HOME"):
        paths += [
            Path(os.environ["HF_HOME"]) / "token",
            Path(os.environ["HF_HOME"]) / "stored_tokens",
        ]
    if os.environ.get("HF_TOKEN_PATH"):
        paths.append(Path(os.environ["HF_TOKEN_PATH"]))
    return paths + [Path(p) for p in SYSTEM_CREDENTIALS]


def listening_unix_sockets(proc_net_unix: Path = Path("/proc/net/unix")) -> list[Path]:
    """Filesystem paths of bound unix sockets in this network namespace (Docker, D-Bus...)."""
    try:
        lines = proc_net_unix.read_text(errors="replace").splitlines()[1:]
    except OSError:
        return []
    paths = set()
    for line in lines:
        fields = line.split(maxsplit=7)
        # Abstract sockets start with "@" and live in the network namespace, which is cut.
        if len(fields) == 8 and fields[7].startswith("/"):
            paths.add(Path(fields[7]))
    return sorted(paths)


def masks_for(candidates: Iterable[Path], keep_visible: Iterable[Path]) -> list[Mask]:
    """The existing candidates as masks, skipping any that would hide a path we must show.

    A credential folder that contains the work folder or a read-only mount is left alone:
    the caller mounted it on purpose, and covering it would hide the mount too.
    """
    visible = [p.resolve() for p in keep_visible]
    masks: dict[Path, Mask] = {}
    for candidate in candidates:
        try:
            mode = candidate.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            candidate = candidate.resolve()
            try:
                mode = candidate.stat().st_mode
            except OSError:
                continue
        path = candidate.absolute()
        if any(v == path or path in v.parents for v in visible):
            continue
        masks[path] = Mask(path=path, is_dir=stat.S_ISDIR(mode))
    return [masks[p] for p in sorted(masks)]
