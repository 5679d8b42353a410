"""The package's layers: data flows one way, so every module imports only its own layer and those below, the
module-level imports form no loop, every module imports on its own, and no import hides inside a function (which
would hide a loop) except for a heavy optional dependency or in the command layer.

The layers, bottom first (docs/architecture.md draws them):"""
import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "volgen"
LAYERS = [
    # 0: facts and pure operators, nothing of volgen's above them
    ("volgen.version", "volgen.errors", "volgen.ops", "volgen.config", "volgen.memory", "volgen.provenance"),
    # 1: files, physics, measures
    ("volgen.io", "volgen.kinetics", "volgen.metrics", "volgen.baselines", "volgen.int8_weights", "volgen.phantom"),
    # 2: fused kernels and their eager references
    ("volgen.kernels",),
    # 3: what diffusion runs in and how it steps
    ("volgen.codecs", "volgen.sampling"),
    # 4-5: the networks
    ("volgen.backbones",),
    ("volgen.modules",),
    # 6: saved models, and what a task is
    ("volgen.hub", "volgen.error_model", "volgen.taskspec"),
    # 7: training and the jobs
    ("volgen.training", "volgen.tasks"),
    # 8: what users call
    ("volgen.api", "volgen.augment", "volgen.batch", "volgen.evaluate", "volgen.calibrate"),
    # 9: the command layer
    ("volgen.cli", "volgen.training.cli", "volgen.__main__", "volgen"),
]
# Imports that may sit inside a function: optional and heavy (compiled on first use, or absent on most machines)
LAZY_ALLOWED = ("triton", "nilearn", "torch.utils.tensorboard", "volgen.kernels._haar_triton")
# The command layer imports each sub-command's job when it runs, so `volgen --help` answers in 0.1 s, not 6 s; the
# package's __init__ imports the jobs on first use for the same reason
LAZY_MODULES = ("volgen.cli", "volgen.training.cli", "volgen")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    best, length = None, -1
    for layer, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                best, length = layer, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best


def imports(name: str) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for every import in module `name`."""
    tree = ast.parse(MODULES[name].read_text())
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:                                   # relative: resolve against the package
                    package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                for alias in child.names:                         # `from volgen import hub` imports volgen.hub
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in MODULES else base, inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_module_is_in_a_layer_and_imports_only_its_own_and_those_below():
    wrong = []
    for name in MODULES:
        for target, _, line in imports(name):
            if target.startswith("volgen") and target != "volgen" and layer_of(target) > layer_of(name):
                wrong.append(f"{name}:{line} imports {target} (layer {layer_of(target)} above {layer_of(name)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_sits_inside_a_function_but_an_optional_dependency():
    hidden = [f"{name}:{line} imports {target} inside a function"
              for name in MODULES if name not in LAZY_MODULES
              for target, inner, line in imports(name)
              if inner and not any(target == a or target.startswith(a + ".") for a in LAZY_ALLOWED)]
    assert not hidden, "\n".join(hidden)


def test_the_module_level_imports_form_no_loop():
    graph = {name: {t for t, inner, _ in imports(name) if not inner and t in MODULES and t != "volgen"}
             for name in MODULES}
    state: dict[str, int] = {}

    def walk(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import loop: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            walk(name, [name])


def test_the_layer_check_catches_an_import_that_points_up(tmp_path, monkeypatch):
    """The check itself: a module of layer 0 importing the jobs is reported."""
    fake = PACKAGE / "ops.py"
    monkeypatch.setitem(MODULES, "volgen.ops", tmp_path / "ops.py")
    (tmp_path / "ops.py").write_text(fake.read_text() + "\nfrom volgen.tasks import generate\n")
    with pytest.raises(AssertionError, match="volgen.ops:.* imports volgen.tasks"):
        test_every_module_is_in_a_layer_and_imports_only_its_own_and_those_below()


@pytest.mark.parametrize("chunk", range(4))
def test_every_module_imports_on_its_own(chunk):
    """Each module in a fresh interpreter (a loop hidden by import order would fail here); two at a time."""
    names = [n for n in sorted(MODULES) if n not in ("volgen.__main__",) and "_triton" not in n][chunk::4]

    def run(name):
        result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        return name, result.returncode, result.stderr.strip().splitlines()[-1:] if result.returncode else []

    with ThreadPoolExecutor(2) as pool:
        failed = [(n, err) for n, rc, err in pool.map(run, names) if rc]
    assert not failed, failed
