"""Dependencies: the whole environment pinned (constraints.txt), requirements that agree with
it, dev tools kept out of the runtime and the image, runtime imports declared in pyproject.

The fresh resolution itself (`pip install --dry-run -r requirements.txt -r
requirements-dev.txt -c constraints.txt` in a new venv) needs minutes of the package index;
it was run when constraints.txt was made, and `make setup` on a clean clone runs it for real.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
CONSTRAINTS = ROOT / "constraints.txt"
DEV_TOOLS = {"pytest", "pytest-xdist", "ruff", "import-linter", "aiosmtpd", "selenium"}
# Installed but not from a package index: the project itself (editable).
NOT_CONSTRAINED = {"slmops"}
# Left to the user's own installer.
UNPINNED_TOOLS = {"pip"}


def requirement_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, requirement) of a requirements file, comments stripped."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split(" #")[0].strip()
        if text and not text.startswith("#"):
            found.append((number, text))
    return found


def pins(path: Path) -> dict[str, str]:
    """name -> version of a file whose every line is `name==version`."""
    pinned = {}
    for number, text in requirement_lines(path):
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}:{number}: {text!r} is not pinned with == (add the version "
            f"constraints.txt has)"
        )
        assert "*" not in specifiers[0].version, f"{path.name}:{number}: wildcard in {text!r}"
        assert not requirement.extras and requirement.marker is None, f"{path.name}:{number}"
        name = canonicalize_name(requirement.name)
        assert name not in pinned, f"{path.name}:{number}: {name} listed twice"
        pinned[name] = specifiers[0].version
    return pinned


@pytest.fixture(scope="module")
def constraints() -> dict[str, str]:
    return pins(CONSTRAINTS)


@pytest.fixture(scope="module")
def installed() -> dict[str, str]:
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "path", [REQUIREMENTS, DEV_REQUIREMENTS, CONSTRAINTS], ids=lambda path: path.name
)
def test_every_line_is_pinned(path):
    assert pins(path)


@pytest.mark.parametrize("path", [REQUIREMENTS, DEV_REQUIREMENTS], ids=lambda p: p.name)
def test_requirements_agree_with_constraints(path, constraints):
    for name, version in pins(path).items():
        assert constraints.get(name) == version, (
            f"{path.name} pins {name}=={version}, constraints.txt "
            f"{'has ' + constraints[name] if name in constraints else 'lacks it'}"
        )


def test_installed_environment_matches_constraints(constraints, installed):
    """Every installed package is pinned at its installed version, and nothing pinned is
    missing: constraints.txt describes this environment (regenerate it as its header says)."""
    local = {name: Version(version).public for name, version in installed.items()}
    unpinned = local.keys() - constraints.keys() - NOT_CONSTRAINED - UNPINNED_TOOLS
    assert not unpinned, f"installed but not in constraints.txt: {sorted(unpinned)}"
    absent = constraints.keys() - local.keys()
    assert not absent, f"in constraints.txt but not installed: {sorted(absent)}"
    differ = {
        name: (local[name], constraints[name])
        for name in constraints
        if Version(local[name]) != Version(constraints[name])
    }
    assert not differ, f"installed != constraints.txt: {differ}"


def test_dev_tools_are_only_in_the_dev_requirements():
    runtime, dev = pins(REQUIREMENTS), pins(DEV_REQUIREMENTS)
    assert not DEV_TOOLS & runtime.keys(), DEV_TOOLS & runtime.keys()
    assert dev.keys() >= DEV_TOOLS
    assert not runtime.keys() & dev.keys()


def test_torch_is_pinned_to_the_cpu_wheel_version(constraints):
    assert pins(REQUIREMENTS)["torch"] == constraints["torch"] == "2.13.0"


def test_dockerfile_installs_runtime_requirements_with_constraints_only():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert re.search(r"^COPY\s.*\brequirements\.txt\s+constraints\.txt\s", instructions, re.M)
    assert re.search(r"pip install [^\n]*-r requirements\.txt -c constraints\.txt", instructions)
    assert "requirements-dev" not in instructions


def test_make_installs_with_constraints_and_dev_tools_for_test_and_lint():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "CONSTRAINED := -c constraints.txt" in makefile
    assert "-r requirements.txt $(CONSTRAINED)" in makefile
    assert "-r requirements-dev.txt $(CONSTRAINED)" in makefile
    for target in ("test", "lint"):
        prerequisites = re.search(rf"^{target}:(.*)$", makefile, re.M).group(1)
        assert "$(DEV_STAMP)" in prerequisites, target
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M).group(1)
    assert "constraints.txt" in stamp_rule and "requirements-dev" not in stamp_rule


def test_pyproject_runtime_dependencies_are_pinned_and_satisfied(installed):
    project = pyproject()["project"]
    runtime = pins(REQUIREMENTS)
    declared = [Requirement(text) for text in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(text) for text in extra]
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"pyproject declares {name}; pin it in requirements.txt"
        assert requirement.specifier.contains(runtime[name], prereleases=True), requirement
        assert requirement.specifier.contains(installed[name], prereleases=True), requirement
    assert not {canonicalize_name(r.name) for r in declared} & DEV_TOOLS


def _third_party_imports(package: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for every non-stdlib, non-relative import."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"slmops", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_library_import_is_declared_in_pyproject():
    """What include/slmops imports at run time is in [project] dependencies (or an extra)."""
    project = pyproject()["project"]
    declared = {canonicalize_name(Requirement(t).name) for t in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {canonicalize_name(Requirement(t).name) for t in extra}
    providers = metadata.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports(ROOT / "include" / "slmops").items():
        distributions = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = sorted(files)[:3]
    assert not undeclared, f"imported by the library, not in pyproject.toml: {undeclared}"
