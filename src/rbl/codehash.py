"""Hashes of the code behind a result, derived from the source so that no list is kept by hand.

A stage's code is its module rbl/stages/<stage>.py (stage `a-b`: rbl.stages.a_b, which the CLI's
table of stages names), every module of the package it imports, followed through their own
imports (the static import closure: an import written anywhere in a module counts, lazy ones
included), and the statements of rbl/cli.py with what it imports besides the stage modules: the
table, the parser and `main`, whose defaults and error handling every stage runs under. Other
stages' modules are not part of it. A rule passes this hash as a param, so an edit reruns exactly
the rules whose stage can reach the edited code. The feature cache keys its entries the same way
with the modules that compute a clip's vector.

Static analysis over-approximates (an imported module may not be used on every path), which can
rerun a rule needlessly but never keeps a stale result.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "rbl"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of package module `name` (rbl.x.y), or None when it is not one."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(node: ast.AST, module: str) -> set[str]:
    """Names of the modules imported anywhere under `node` (relative imports resolved)."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            found.update(alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            base = sub.module or ""
            if sub.level:
                anchor = module.split(".")[: -sub.level]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from rbl.vggish import frontend` imports a module, not only a name
            found.update(f"{base}.{alias.name}" for alias in sub.names)
    return found


@cache
def _parsed(path: Path) -> tuple[str, ast.Module]:
    text = path.read_text(encoding="utf-8")
    return text, ast.parse(text, filename=str(path))


# (path, module) -> (the parsed tree, its imports): each module's tree is walked once per process,
# not once per stage hashed (the workflow hashes every stage when it is parsed). Keyed on the tree
# itself too, so that clearing `_parsed` (a file edited) finds its imports again.
_IMPORTS: dict[tuple[Path, str], tuple[ast.Module, set[str]]] = {}


def _module_imports(path: Path, module: str) -> set[str]:
    tree = _parsed(path)[1]
    known = _IMPORTS.get((path, module))
    if known is None or known[0] is not tree:
        known = _IMPORTS[(path, module)] = (tree, _imports(tree, module))
    return known[1]


def closure(modules: list[str], root: Path = PACKAGE_DIR) -> list[Path]:
    """Source files of the given package modules and of every package module they import."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = _module_file(name, root)
        if path is None or name in seen:
            continue
        seen[name] = path
        # a submodule's package __init__ runs on import too
        todo.append(name.rpartition(".")[0])
        todo.extend(_module_imports(path, name if path.name != "__init__.py" else f"{name}.__init__"))
    return sorted(set(seen.values()))


def _digest(chunks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "little") + chunk)
    return digest.hexdigest()[:16]


def modules_hash(modules: list[str], root: Path = PACKAGE_DIR) -> str:
    """Hash of the source of the modules' import closure (file names and bytes)."""
    files = closure(modules, root)
    return _digest([p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() for p in files])


STAGES_PACKAGE = f"{PACKAGE}.stages"


def _table(tree: ast.Module) -> list[str]:
    """The stage names of the CLI's table (`STAGES = {"name": module, ...}` in cli.py)."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(isinstance(t, ast.Name) and t.id == "STAGES" for t in node.targets)
        ):
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    return []


def _stage_parts(stage: str, root: Path) -> tuple[list[ast.AST], str, set[str]]:
    """The CLI statements a stage runs, the CLI's source text and the package modules of the stage.

    Those modules are the stage's own (rbl.stages.<stage>) and those the CLI imports besides the
    stage modules (the table names every stage's module; only this stage's is followed).
    """
    text, tree = _parsed(root / "cli.py")
    module = f"{STAGES_PACKAGE}.{stage.replace('-', '_')}"
    if stage not in _table(tree) or _module_file(module, root) is None:
        raise KeyError(f"rbl has no stage '{stage}' (not in the STAGES table of {root / 'cli.py'}, or no {module})")
    nodes = list(tree.body)  # the table and main: every stage runs all of cli.py
    imported = _module_imports(root / "cli.py", f"{PACKAGE}.cli")  # (the imports of all its statements)
    modules = {m for m in imported if _module_file(m, root) is not None and not m.startswith(STAGES_PACKAGE + ".")}
    return nodes, text, modules | {module}


def stage_modules(stage: str, root: Path = PACKAGE_DIR) -> list[str]:
    """Package files (relative to the package) whose source goes into the stage's hash, cli.py aside."""
    return [p.relative_to(root).as_posix() for p in closure(sorted(_stage_parts(stage, root)[2]), root)]


def stage_hash(stage: str, root: Path = PACKAGE_DIR) -> str:
    """Hash of the code that `rbl <stage>` runs (see the module docstring)."""
    nodes, text, modules = _stage_parts(stage, root)
    lines = text.splitlines()  # (ast.get_source_segment splits the whole text on every call)
    chunks = ["\n".join(lines[n.lineno - 1 : n.end_lineno]).encode() for n in nodes]
    return _digest(chunks + [modules_hash(sorted(modules), root).encode()])
