"""The environment the tests run in is the one the committed locks describe.

A drifted environment (a package upgraded by hand, a lock regenerated without reinstalling)
fails here with what differs and how to repair it, rather than later with a puzzling error.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
REPAIR = "Run ./scripts/bootstrap.sh test to re-apply the lock."
# Present in every virtual environment, or the project itself: not pinned by the locks.
UNLOCKED = {"pip", "setuptools", "gpubridge"}


def pins(lock: str) -> dict[str, Version]:
    """``{canonical name: version}`` of a lock file's ``name==version`` lines."""
    text = (LOCKS / lock).read_text()
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in found}


def test_pins_reads_name_and_version_of_each_locked_package() -> None:
    locked = pins("tools.lock")
    assert list(locked) == ["uv"]
    assert locked["uv"] == Version("0.13.8")


def installed() -> dict[str, Version]:
    return {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }


def test_the_installed_packages_are_exactly_the_locked_ones() -> None:
    locked = pins("test.lock") | pins("no-deps.lock") | pins("tools.lock")
    present = installed()
    problems = [
        f"{name}: locked {version}, installed {present.get(name, 'nothing')}"
        for name, version in sorted(locked.items())
        if present.get(name) != version
    ]
    problems += [
        f"{name}: installed {version}, in no lock"
        for name, version in sorted(present.items())
        if name not in locked and name not in UNLOCKED
    ]
    assert not problems, "The environment drifted from requirements/:\n" + "\n".join(
        [*problems, REPAIR]
    )


def test_the_serve_lock_is_the_test_lock_without_the_test_tools() -> None:
    serve, test = pins("serve.lock"), pins("test.lock")
    assert {name: test.get(name) for name in serve} == serve


def test_the_test_lock_satisfies_every_requirement_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["local"], *extras["dev"], *extras["starter"]]
    locked = pins("test.lock")
    unmet = []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{line}: locked {version}")
    assert not unmet, "pyproject.toml changed without ./scripts/lock:\n" + "\n".join(unmet)
