"""The lock file and pyproject.toml agree.

pyproject.toml states compatible ranges (splitbrain is also a pytest plugin, so
exact pins would fight its users' environments); requirements.lock holds the
exact versions CI and ``scripts/setup.sh`` install. A dependency added to one
and not the other, or a lock that falls outside a range, fails here rather
than on a fresh CI machine.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    return [Requirement(t) for t in texts]


def _locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (ROOT / "requirements.lock").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        assert version, f"requirements.lock: {raw!r} is not an exact pin"
        pins[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return pins


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={locked[name]}, outside {req.specifier}")


def test_runtime_dependencies_are_ranges_not_pins() -> None:
    for req in _declared():
        assert not any(spec.operator == "==" for spec in req.specifier), (
            f"{req} is pinned exactly in pyproject.toml; pins belong in requirements.lock")
