"""The package's architecture, read from its source (AST): subpackages by role, imports that run one way
(library <- data, runs <- analysis <- training <- cli <- tools), no cycles, no Lightning in the model
library, and no private name of Lightning or torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
from helpers.processes import TIMEOUT

import spe_lightning

PACKAGE = Path(spe_lightning.__file__).parent
ROOT = "spe_lightning"
LEVELS = {
    "core": 0,  # errors, registries, number checks: the standard library only
    "kernels": 1,  # the model library, torch only
    "layers": 2,
    "models": 3,
    "data": 4,  # LightningDataModules
    "runs": 4,  # what a run folder holds and who may write it
    "analysis": 5,  # reading runs back and drawing them
    "training": 6,  # LightningModule, recipe, metrics, speed options, loggers, callbacks
    "cli": 7,  # LightningCLI, the checks before a run, the exit policy
    "tools": 8,  # grid, report, export, configs, summary
    "benchmarks": 8,
    "__main__": 9,  # routes between cli and tools
    "summary": 10,  # the 0.1 spelling of ``python -m spe_lightning summary``: an entry point too
}
"""Each top-level part of the package and its level: a module may import its own part and lower levels."""
LIBRARY = ("core", "kernels", "layers", "models")
FRAMEWORKS = ("lightning", "pytorch_lightning", "lightning_fabric")
SIBLINGS_APART = ("tools",)
"""Parts whose modules never import each other (each tool stands alone)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The package module ``name`` refers to (a module, or its nearest package), or None outside it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, module_level_only: bool = False) -> dict[str, int]:
    """Modules of the package (and external top-level packages, as ``!name``) that ``module`` imports, with
    a line number each: every import statement, or only those that run when the module loads."""
    tree = ast.parse(MODULES[module].read_text())
    found: dict[str, int] = {}

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            guarded = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [f"{child.module}.{alias.name}" for alias in child.names] or [child.module]
                names = [name if resolve(name) == name else child.module for name in names]
            else:
                names = []
            for name in names:
                if name.split(".")[0] == ROOT:
                    target = resolve(name)
                    if target and target != module:
                        found.setdefault(target, child.lineno)
                else:
                    found.setdefault(f"!{name.split('.')[0]}", child.lineno)
            if not guarded and (nested or not module_level_only):
                visit(child, nested)

    visit(tree, True)
    if module_level_only:  # loading a module loads its packages first
        parents = [module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)]
        found.update({parent: 0 for parent in parents if parent in MODULES})
    return found


def part(module: str) -> str:
    """``spe_lightning.runs.plan`` -> ``runs``; the root package is its own part."""
    return module.split(".")[1] if module != ROOT else ROOT


def test_every_part_of_the_package_has_a_level():
    parts = {part(module) for module in MODULES} - {ROOT}
    assert parts == set(LEVELS), parts ^ set(LEVELS)
    assert (PACKAGE / "configs").is_dir()  # the packaged configs: data, not code


def test_imports_run_one_way():
    wrong = []
    for module in MODULES:
        if module == ROOT:
            continue
        mine = part(module)
        for target, line in imports(module).items():
            if target.startswith("!"):
                continue
            theirs = part(target)
            if theirs == ROOT:
                allowed = LEVELS[mine] >= LEVELS["__main__"]  # only the entry point needs the version
            elif theirs == mine:
                allowed = mine not in SIBLINGS_APART or target == f"{ROOT}.{mine}"
            else:
                allowed = LEVELS[theirs] < LEVELS[mine]
            if not allowed:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_the_root_package_loads_the_model_library_only():
    loaded = {part(target) for target in imports(ROOT, module_level_only=True) if not target.startswith("!")}
    assert loaded <= set(LIBRARY)


def test_no_import_cycle():
    graph = {module: [t for t in imports(module) if not t.startswith("!")] for module in MODULES}
    # a package imports its own modules to re-export them; its modules load it first (not a cycle of ours)
    graph = {m: [t for t in targets if not m.startswith(f"{t}.")] for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target] if target in path else [module, target])
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_model_library_never_reaches_lightning():
    """Read from the source: nothing that loads with the library imports Lightning, at any depth."""
    seen, pending, reached = set(), [m for m in MODULES if part(m) in LIBRARY], []
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for target, line in imports(module, module_level_only=True).items():
            if target.startswith("!"):
                if target[1:] in FRAMEWORKS:
                    reached.append(f"{module}:{line}")
            else:
                pending.append(target)
    assert reached == []
    assert {part(m) for m in seen} <= set(LIBRARY) | {ROOT}


@pytest.mark.slow
def test_importing_the_library_loads_no_lightning():
    """And at run time, in a fresh interpreter (torch and torchvision load nothing of Lightning)."""
    code = (
        "import sys, spe_lightning.layers, spe_lightning.models, spe_lightning.kernels.cpu_max_min\n"
        "import spe_lightning\nspe_lightning.create_backbone('cifar_resnet', 10, depth=8, block='basic',"
        " attention='spem')\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


DOCUMENTED_UNDERSCORES = {("os", "_exit")}
"""Standard-library names that start with ``_`` and are public, documented API."""


def test_no_private_lightning_or_torch_name_is_used_in_the_package():
    """No ``_``-prefixed module or name imported from lightning/torch, no foreign ``_`` attribute used,
    and no ``_`` method of a Lightning base class overridden."""
    own, used, private_imports = set(), {}, []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("register_"):
                own.update(arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "lightning",
                "torch",
            ):
                parts = [*node.module.split("."), *(alias.name for alias in node.names)]
                private_imports += [f"{path.name}: from {node.module}" for p in parts if p.startswith("_")]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and (getattr(node.value, "id", None), node.attr) not in DOCUMENTED_UNDERSCORES
            ):
                used.setdefault(node.attr, f"{path.name}:{node.lineno}")
    foreign = {name: where for name, where in used.items() if name not in own}
    assert not private_imports and not foreign, (private_imports, foreign)
    import spe_lightning.cli.lightning_cli  # noqa: F401  (every module with Lightning subclasses)

    overridden = [
        f"{cls.__name__}.{name}"
        for cls in _subclasses(lightning.pytorch.Callback) + _subclasses(lightning.pytorch.cli.LightningCLI)
        if cls.__module__.startswith(ROOT)
        for name in vars(cls)
        if name.startswith("_")
        and not name.startswith("__")
        and any(name in vars(base) for base in cls.__mro__[1:] if base.__module__.startswith("lightning"))
    ]
    assert not overridden


@pytest.mark.parametrize("mistake", ["cycle", "direction", "lightning"])
def test_the_rules_catch_what_they_are_for(mistake, monkeypatch, tmp_path):
    """Each check fails on the mistake it is for, planted in a copy of one module's source."""
    planted = {
        "cycle": ("spe_lightning.core.registry", "import spe_lightning.layers.pool\n", "core", "layers"),
        "direction": ("spe_lightning.models.factory", "from spe_lightning.cli import exit_policy\n", "", ""),
        "lightning": ("spe_lightning.layers.pool", "import lightning\n", "", ""),
    }[mistake]
    module, line, _, _ = planted
    copy = tmp_path / "planted.py"
    copy.write_text(MODULES[module].read_text() + line)
    monkeypatch.setitem(MODULES, module, copy)
    check = {
        "cycle": test_no_import_cycle,
        "direction": test_imports_run_one_way,
        "lightning": test_the_model_library_never_reaches_lightning,
    }[mistake]
    with pytest.raises(AssertionError):
        check()
