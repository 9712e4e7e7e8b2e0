"""The models commands: the catalog's models and whether this machine holds their weights,
downloading them from the Hugging Face hub, and deleting them from its cache."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubridge.catalog.availability import DEFAULT_TTL_S
from gpubridge.catalog.tokens import PACKAGE_PREFIX, package_directory
from gpubridge.catalog.weights import (
    HubCache,
    Located,
    directory_size,
    hub_cache_dir,
    hub_installed,
    hub_offline,
    kind_of,
    local_backend,
    locate,
    scan_hub_cache,
)
from gpubridge.engines.runtimes import Weights, weights_for
from gpubridge.errors import ConfigurationError
from gpubridge.suggest import did_you_mean

if TYPE_CHECKING:
    from gpubridge.catalog import Catalog, ModelSpec, Service

Command = Callable[..., argparse.ArgumentParser]
Option = Callable[[argparse.ArgumentParser], None]


def add_model_commands(commands: Any, command: Command, starter_option: Option) -> None:
    """Add ``models list|pull|rm`` (``command`` makes a subcommand, ``starter_option`` adds
    ``--starter``, so that the models are those the server would offer)."""
    models = command(
        commands,
        "models",
        "the catalog's model weights on this machine: list, pull, rm",
        "Local runtimes load weights from the Hugging Face cache (HF_HUB_CACHE), a directory,\n"
        "or a package (package:<module>/<path>). With HF_HUB_OFFLINE=1 nothing is downloaded\n"
        "and a job for a model whose weights are not here is refused: pull them first.",
    )
    actions = models.add_subparsers(required=True, metavar="ACTION", title="actions")
    listing = command(
        actions, "list", "list each model: its service, source, and its weights here and size"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    starter_option(listing)
    listing.set_defaults(handler=_list)

    pull = command(
        actions,
        "pull",
        "download a model's weights from the Hugging Face hub into the cache",
        "Prints the size first, then downloads with progress bars. Gated models need their\n"
        "licence accepted on huggingface.co and HF_TOKEN set.",
    )
    pull.add_argument("model", help="a model id, as 'gpubridge models list' shows it")
    pull.add_argument("--service", help="only the model of this service (when an id repeats)")
    starter_option(pull)
    pull.set_defaults(handler=_pull)

    remove = command(
        actions,
        "rm",
        "delete a model's weights from the Hugging Face cache",
        "Weights that another model of the catalog also loads (a shared base model) are kept.",
    )
    remove.add_argument("model", help="a model id, as 'gpubridge models list' shows it")
    remove.add_argument("--service", help="only the model of this service (when an id repeats)")
    starter_option(remove)
    remove.set_defaults(handler=_remove)


@dataclass(frozen=True)
class Entry:
    """A model of a service and the weights this machine would load for it (none when every
    backend of the service is remote)."""

    service: Service
    model: ModelSpec
    weights: list[Weights]
    remote: bool


def entries(catalog: Catalog) -> list[Entry]:
    found = []
    for service in catalog.services.values():
        backend = local_backend(service.backends)
        for model in service.models:
            weights = weights_for(backend, model.ref()) if backend else []
            found.append(Entry(service, model, weights, backend is None))
    return found


def matching(catalog: Catalog, model_id: str, service: str | None) -> list[Entry]:
    """The entries of ``model_id`` (in ``service`` when given); an unknown id is refused
    with the closest ones."""
    every = entries(catalog)
    found = [
        e for e in every if e.model.id == model_id and (service is None or e.service.key == service)
    ]
    if not found:
        ids = sorted({e.model.id for e in every if service is None or e.service.key == service})
        hint, _ = did_you_mean(model_id, ids)
        where = f" in {service}" if service else ""
        raise ConfigurationError(
            f"no model {model_id!r}{where}{hint}; 'gpubridge models list' lists them"
        )
    return found


# -- list ---------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    cache = scan_hub_cache()
    rows = [_row(entry, cache) for entry in entries(catalog)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["model"]) for r in rows)
    print(f"{'service':<16} {'model':<{width}} {'weights':<8} {'size':>9}  source")
    for r in rows:
        size = _size(r["size_bytes"]) if r["size_bytes"] else "-"
        print(f"{r['service']:<16} {r['model']:<{width}} {r['state']:<8} {size:>9}  {r['source']}")
    offline = " (offline: HF_HUB_OFFLINE=1)" if hub_offline() else ""
    print(f"\nHugging Face cache: {cache.directory or 'huggingface_hub is not installed'}{offline}")
    print(
        "'gpubridge models pull MODEL' downloads a model, 'gpubridge models rm MODEL' deletes it."
    )
    return 0


def _row(entry: Entry, cache: HubCache) -> dict[str, Any]:
    """A model's line: ``state`` is present (every weights it needs is here), partial, absent,
    or remote (its service has no local runtime)."""
    located = [locate(w, cache) for w in entry.weights]
    needed = [found for found in located if not found.weights.optional]
    if entry.remote:
        state = "remote"
    elif all(found.present for found in needed):
        state = "present"
    elif any(found.present for found in needed):
        state = "partial"
    else:
        state = "absent"
    return {
        "service": entry.service.key,
        "model": entry.model.id,
        "source": entry.model.source,
        "state": state,
        "size_bytes": sum(_size_on_disk(found, cache) for found in located if found.present),
        "weights": [
            {
                "source": found.weights.source,
                "kind": found.kind,
                "present": found.present,
                "optional": found.weights.optional,
            }
            for found in located
        ],
    }


def _size_on_disk(found: Located, cache: HubCache) -> int:
    weights = found.weights
    if found.kind == "hub":
        repo = cache.repos.get(weights.source)
        revision = repo.revision(weights.revision) if repo else None
        return revision.size_bytes if revision else 0
    if found.kind == "package":
        directory = package_directory(weights.source)
        return directory_size(directory) if directory else 0
    return directory_size(Path(weights.source).expanduser())


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


# -- pull -----------------------------------------------------------------------------------------
def _pull(args: argparse.Namespace) -> int:
    found = matching(_catalog(args), args.model, args.service)
    weights = _unique(w for entry in found for w in entry.weights)
    if all(entry.remote for entry in found):
        print(f"{args.model} runs on a remote backend: there is nothing to download here")
        return 0
    hub = [w for w in weights if kind_of(w.source) == "hub"]
    for w in weights:
        if w not in hub:
            print(_not_from_hub(w))
    if not hub:
        return 0
    if not hub_installed():
        raise ConfigurationError(
            "downloading needs huggingface_hub: install the `local` extra "
            "(pip install 'gpubridge[local]')"
        )
    if hub_offline():
        raise ConfigurationError(
            f"cannot download {args.model}: the hub is offline (HF_HUB_OFFLINE=1); unset "
            "HF_HUB_OFFLINE (or set it to 0) where huggingface.co can be reached"
        )
    return _download(args.model, hub)


def _not_from_hub(weights: Weights) -> str:
    if weights.source.startswith(PACKAGE_PREFIX):
        state = "installed" if package_directory(weights.source) else "not installed"
        return f"{weights.source} ships in a Python package ({state}): nothing to download"
    return f"{weights.source} is a local path: nothing to download"


def _download(model_id: str, hub: list[Weights]) -> int:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    api = HfApi()
    current = hub[0].source
    try:
        sizes = []
        for w in hub:
            current = w.source
            sizes.append(_download_size(api, w))
        total = sum(size for size, _ in sizes)
        print(f"{model_id}: {_size(total)} in {len(hub)} repositories (at most; cached files stay)")
        for w, (size, files) in zip(hub, sizes, strict=True):
            print(f"  {w.source}: {files} files, {_size(size)}")
        for w in hub:
            current = w.source
            print(f"downloading {w.source}", flush=True)
            snapshot_download(w.source, revision=w.revision, allow_patterns=list(w.files) or None)
    except GatedRepoError:
        print(
            f"error: {current} is gated: accept its licence on https://huggingface.co/{current} "
            "and set HF_TOKEN",
            file=sys.stderr,
        )
        return 1
    except RepositoryNotFoundError:
        print(f"error: {current} is not on the hub (or is private)", file=sys.stderr)
        return 1
    except HfHubHTTPError as exc:
        print(f"error: the hub refused {current}: {exc}", file=sys.stderr)
        return 1
    print(f"{model_id} is downloaded; a running server sees it within {DEFAULT_TTL_S:g} s")
    return 0


def _download_size(api: Any, weights: Weights) -> tuple[int, int]:
    """Bytes and number of the files ``weights`` needs, from the hub's file listing."""
    info = api.model_info(weights.source, revision=weights.revision, files_metadata=True)
    files = [
        sibling
        for sibling in info.siblings or []
        if not weights.files or any(fnmatchcase(sibling.rfilename, p) for p in weights.files)
    ]
    return sum(f.size or 0 for f in files), len(files)


# -- rm -------------------------------------------------------------------------------------------
def _remove(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    found = matching(catalog, args.model, args.service)
    chosen = {(e.service.key, e.model.id) for e in found}
    others: dict[str, list[str]] = {}
    for entry in entries(catalog):
        if (entry.service.key, entry.model.id) not in chosen:
            for w in entry.weights:
                others.setdefault(w.source, []).append(entry.model.id)
    cache = scan_hub_cache()
    repos = [w.source for w in _unique(w for e in found for w in e.weights)]
    cached = [cache.repos[r] for r in dict.fromkeys(repos) if r in cache.repos]
    if not cached:
        print(f"nothing of {args.model} is in the Hugging Face cache ({cache.directory})")
        return 0
    doomed = []
    for repo in cached:
        users = others.get(repo.repo_id)
        if users:
            print(f"kept {repo.repo_id}: {', '.join(sorted(set(users)))} also load it")
        else:
            doomed.append(repo)
    if not doomed:
        return 0
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache.directory or hub_cache_dir())
    strategy = info.delete_revisions(*(c for repo in doomed for c in repo.commits))
    strategy.execute()
    for repo in doomed:
        print(f"deleted {repo.repo_id} ({_size(repo.size_bytes)})")
    return 0


def _unique(weights: Iterable[Weights]) -> list[Weights]:
    return list(dict.fromkeys(weights))


def _catalog(args: argparse.Namespace) -> Catalog:
    from gpubridge.catalog import Catalog
    from gpubridge.cli import command_settings

    settings = command_settings(args)
    return Catalog.load(settings.catalog, starter=settings.starter)
