"""Which model weights this machine holds: the local Hugging Face cache, installed packages that
ship weights (``package:`` sources) and local directories; and whether the hub can be reached.

The cache is read with ``huggingface_hub.scan_cache_dir`` (its own reading of the cache's
``models--org--name/{refs,snapshots,blobs}`` layout), never over the network. Offline mode
(``HF_HUB_OFFLINE=1``) means the hub is out of reach; otherwise it is taken as reachable, without
asking it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from gpubridge.catalog.tokens import PACKAGE_PREFIX, package_directory
from gpubridge.engines.base import BackendConfig
from gpubridge.engines.local import is_local_path
from gpubridge.engines.runtimes import RUNTIMES, Weights, is_installed, missing_modules

Kind = Literal["hub", "path", "package"]


@dataclass(frozen=True)
class CachedRevision:
    """One snapshot of a repository in the cache: its commit, the refs naming it (``main``,
    a tag), its files (paths inside the repository) and their size."""

    commit: str
    refs: frozenset[str]
    files: frozenset[str]
    size_bytes: int


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    size_bytes: int
    revisions: tuple[CachedRevision, ...]
    commits: tuple[str, ...] = ()
    """Every revision's commit hash (what ``rm`` deletes)."""

    def revision(self, wanted: str | None) -> CachedRevision | None:
        """The snapshot that ``wanted`` (a ref such as ``main``, or a commit hash) names."""
        name = wanted or "main"
        for revision in self.revisions:
            if name in revision.refs or revision.commit == name:
                return revision
        return None


@dataclass(frozen=True)
class HubCache:
    """What a scan of the local Hugging Face cache found (model repositories only)."""

    directory: Path | None
    repos: dict[str, CachedRepo] = field(default_factory=dict)

    def holds(self, weights: Weights) -> bool:
        """Whether the revision ``weights`` asks for is cached with every file it needs."""
        repo = self.repos.get(weights.source)
        revision = repo.revision(weights.revision) if repo else None
        if revision is None or not revision.files:
            return False
        return all(
            any(fnmatchcase(n, pattern) for n in revision.files) for pattern in weights.files
        )


def hub_installed() -> bool:
    return is_installed("huggingface_hub")


def hub_cache_dir() -> Path | None:
    """The cache directory huggingface_hub uses now (``HF_HUB_CACHE``, ``HF_HOME``); None when
    huggingface_hub is not installed."""
    if not hub_installed():
        return None
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def hub_offline() -> bool:
    """Whether downloads are off (``HF_HUB_OFFLINE=1``), or impossible (no huggingface_hub)."""
    if not hub_installed():
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def scan_hub_cache(directory: Path | None = None) -> HubCache:
    """Read the cache at ``directory`` (default: huggingface_hub's); an absent cache is empty.
    This walks the cache's snapshots on disk: call it off the event loop."""
    directory = directory or hub_cache_dir()
    if directory is None or not directory.is_dir():
        return HubCache(directory)
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(directory)
    except (CacheNotFound, ValueError, OSError):
        return HubCache(directory)
    repos = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        revisions = tuple(
            CachedRevision(
                commit=revision.commit_hash,
                refs=frozenset(revision.refs),
                files=frozenset(
                    f.file_path.relative_to(revision.snapshot_path).as_posix()
                    for f in revision.files
                ),
                size_bytes=revision.size_on_disk,
            )
            for revision in repo.revisions
        )
        repos[repo.repo_id] = CachedRepo(
            repo.repo_id,
            repo.size_on_disk,
            revisions,
            tuple(r.commit for r in revisions),
        )
    return HubCache(directory, repos)


@dataclass(frozen=True)
class Located:
    """Where weights come from and whether this machine has them (``detail`` says why not)."""

    weights: Weights
    kind: Kind
    present: bool
    detail: str = ""


def kind_of(source: str) -> Kind:
    if source.startswith(PACKAGE_PREFIX):
        return "package"
    if is_local_path(source):
        return "path"
    return "hub"


def locate(weights: Weights, cache: HubCache) -> Located:
    """Whether this machine holds ``weights``: a package's or a directory's files on disk, or
    the hub repository's revision in ``cache``."""
    kind = kind_of(weights.source)
    if kind == "hub":
        if cache.holds(weights):
            return Located(weights, kind, True)
        where = f" in {cache.directory}" if cache.directory else ""
        return Located(
            weights, kind, False, f"{weights.source} is not in the Hugging Face cache{where}"
        )
    if kind == "package":
        directory = package_directory(weights.source)
        if directory is None:
            package = weights.source.removeprefix(PACKAGE_PREFIX).split("/", 1)[0]
            return Located(
                weights, kind, False, f"the package {package!r} that ships it is not installed"
            )
    else:
        directory = Path(weights.source).expanduser()
    if not directory.exists():
        return Located(weights, kind, False, f"{directory} does not exist")
    missing = [p for p in weights.files if not _has(directory, p)]
    if missing:
        return Located(weights, kind, False, f"{directory} has no {', '.join(missing)}")
    return Located(weights, kind, True)


def _has(directory: Path, pattern: str) -> bool:
    if directory.is_file():
        return fnmatchcase(directory.name, pattern)
    return any(directory.glob(pattern))


def directory_size(path: Path) -> int:
    """Bytes of the files under ``path`` (a file's own size)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def local_backend(backends: list[BackendConfig]) -> BackendConfig | None:
    """The backend whose weights this machine would load: the first built-in local runtime
    that is installed, else the first built-in local runtime; None when every backend is
    remote."""
    local = [b for b in backends if b.type in RUNTIMES]
    installed = [b for b in local if not missing_modules(b.type)]
    chosen = installed or local
    return chosen[0] if chosen else None
