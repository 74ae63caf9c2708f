"""The package's layers import downward only (DESIGN.md, "Layout"): a module imports from its own
layer or below. Checked two ways: every import statement in the source, function-local ones
included, and what importing each layer really loads, in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clarify_jax"

# Lowest first. A top-level module or package of clarify_jax belongs to exactly one layer.
LAYERS = (
    ("util", "prompts", "pyparse", "sandbox"),
    ("parallel",),
    ("model",),
    ("hf",),
    ("checkpoints",),
    ("sample",),
    ("backends",),
    ("data",),
    ("train",),
    ("evaluate",),
    ("commands",),
    ("cli",),
)
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def top_name(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "clarify_jax" and len(parts) > 1 else None


def source_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module)]
            # `from clarify_jax import data` names a layer in its alias
            if node.module == "clarify_jax":
                found += [(node.lineno, f"clarify_jax.{alias.name}") for alias in node.names]
    return found


def test_every_module_has_a_layer():
    tops = {top_name(m) for m in source_modules()} - {None}
    assert sorted(tops - set(LAYER_OF)) == []


def test_no_import_statement_reaches_up():
    upward = []
    for module, path in source_modules().items():
        own = LAYER_OF.get(top_name(module))
        if own is None:
            continue  # the package's own __init__
        for line, target in imported_modules(path):
            level = LAYER_OF.get(top_name(target))
            if level is not None and level > own:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}")
    assert upward == []


CHECK_LOADED = """
import importlib, sys
layers = {layers!r}
modules = {modules!r}
for level, names in enumerate(layers):
    for module in modules:
        if module.split(".")[1] in names:
            importlib.import_module(module)
    above = {{n for names in layers[level + 1:] for n in names}}
    loaded = sorted(m for m in sys.modules if m.startswith("clarify_jax.") and m.split(".")[1] in above)
    if loaded:
        sys.exit(f"importing layer {{names}} loaded higher layers: {{loaded}}")
"""


@pytest.mark.slow
def test_importing_a_layer_loads_nothing_above_it():
    modules = [m for m in source_modules() if top_name(m) is not None]
    script = CHECK_LOADED.format(layers=LAYERS, modules=modules)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
