"""Whether the active Python already has what a make target needs, so `make run` and `make test`
install only what is missing and start at once the second time.

    python tools/installed.py [EXTRA ...]

Exit 0 when cl-runner is installed editable from this checkout and every requirement that
pyproject.toml lists for the package and for the given extras (as they are now, so a dependency
added since the last install counts as missing) is installed in a version that satisfies it;
else exit 1 with one line naming the first thing missing. Only the standard library (and pip's
vendored `packaging`, where present, for the version ranges): it runs before anything is
installed. It reads the metadata of installed distributions, which takes a fraction of a second.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")

try:  # pip is in every virtualenv; its copy of `packaging` checks version ranges and markers
    from pip._vendor.packaging.requirements import Requirement
except ImportError:  # then only the presence of each requirement is checked
    Requirement = None


def _project() -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        raise SystemExit("installed: cannot read pyproject.toml without tomllib (Python < 3.11): installing") from None
    return tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The requirements of the package and of `extras`, with the package's own extras
    (`cl-runner[tensorboard,...]` inside `dev`) expanded."""
    wanted, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in project.get("optional-dependencies", {}):
            raise SystemExit(f"installed: pyproject.toml has no extra {extra!r}")
        for req in project["optional-dependencies"][extra]:
            name, inner = NAME.match(req).groups()
            if name.replace("_", "-").lower() == project["name"]:
                todo += [e.strip() for e in (inner or "[]")[1:-1].split(",") if e.strip()]
            else:
                wanted.append(req)
    return wanted


def missing(req: str) -> str | None:
    """Why `req` is not satisfied here, or None when it is."""
    name = NAME.match(req).group(1)
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return f"{name} is not installed"
    if Requirement is not None:
        parsed = Requirement(req)
        if parsed.marker is not None and not parsed.marker.evaluate():
            return None
        if not parsed.specifier.contains(version, prereleases=True):
            return f"{name} {version} does not satisfy {req}"
    return None


def editable_here(project: dict) -> str | None:
    """Why the installed cl-runner is not this checkout's editable install, or None."""
    try:
        dist = metadata.distribution(project["name"])
    except metadata.PackageNotFoundError:
        return f"{project['name']} is not installed"
    origin = json.loads(dist.read_text("direct_url.json") or "{}")
    if origin.get("url") != CHECKOUT.as_uri() or not origin.get("dir_info", {}).get("editable"):
        return f"{project['name']} is installed from {origin.get('url', 'an index')}, not editable from {CHECKOUT}"
    return None


def main(extras: list[str]) -> int:
    project = _project()
    for problem in [editable_here(project), *map(missing, requirements(project, extras))]:
        if problem is not None:
            print(f"installed: {problem}: installing", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main([e for arg in sys.argv[1:] for e in arg.split(",") if e]))
