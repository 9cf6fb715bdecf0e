"""The package's structure: imports flow one way, the model core needs torch alone, and no fork runs Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2exp_plugin"
#: The model core (`nn/`, `model/`) builds and runs with torch and numpy alone...
CORE_THIRD_PARTY = {"torch", "numpy"}
#: ...and imports these only inside the function that needs them: the optional scan backends
#: (Triton kernels, mamba_ssm's CUDA scan when asked for) and the ridge baseline's fitting.
CORE_LAZY = {"triton", "mamba_ssm", "sklearn"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports as absolute names: all of them, or with ``top_level_only``
    those imported when the module loads (not inside functions)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nodes = _top_level(tree) if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            # `from . import x` names a module x; `from .m import f` names the module m
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def _top_level(tree: ast.AST):
    """The nodes that run when a module loads: everything outside function bodies."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def _internal_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports (names that are not modules are dropped)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _folder(module: str) -> str:
    """``seq2exp_plugin.train.fit`` -> ``train``; a top-level module is its own node."""
    return module.split(".")[1] if module.count(".") else module


def _imported_only_lazily() -> set[str]:
    """Package modules that some module imports, but none when it loads (inside functions only)."""
    paths = list(PACKAGE.rglob("*.py"))
    everywhere = set().union(*(_imports(p) for p in paths))
    at_load = set().union(*(_imports(p, top_level_only=True) for p in paths))
    return {_module_name(p) for p in paths} & (everywhere - at_load)


def test_triton_kernels_load_only_on_first_use():
    lazy = _imported_only_lazily()
    assert {"seq2exp_plugin.nn.triton_scan", "seq2exp_plugin.nn.triton_conv"} <= lazy, lazy


def test_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve():
    graph = _internal_graph()
    assert "seq2exp_plugin.nn.config" in graph["seq2exp_plugin.nn.bimamba"]
    assert "seq2exp_plugin.model.config" in graph["seq2exp_plugin.model.mask"]


def test_no_import_cycle_between_modules():
    assert _find_cycle(_internal_graph()) is None, _find_cycle(_internal_graph())


def test_no_import_cycle_between_folders():
    """Folders form layers: nn < model < train < adapters < discover < cli (data beside model).
    The package's ``__init__`` is left out: it only holds gReLU's registration, which any layer may call."""
    folders: dict[str, set[str]] = {}
    for module, imported in _internal_graph().items():
        if module == "seq2exp_plugin":
            continue
        src = _folder(module)
        folders.setdefault(src, set()).update(
            _folder(m) for m in imported if _folder(m) != src and m != "seq2exp_plugin")
    assert _find_cycle(folders) is None, _find_cycle(folders)


@pytest.mark.parametrize("folder", ["nn", "model"])
def test_model_core_imports_only_torch_and_numpy(folder):
    allowed = CORE_THIRD_PARTY | set(sys.stdlib_module_names) | {"seq2exp_plugin", "__future__"}
    lazy_modules = _imported_only_lazily()
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        at_load = {m.split(".")[0] for m in _imports(path, top_level_only=True)}
        if _module_name(path) in lazy_modules:  # e.g. the Triton kernels: loaded on first use
            at_load -= CORE_LAZY
        assert at_load <= allowed, f"{path.relative_to(PACKAGE)} imports {sorted(at_load - allowed)}"
        lazy = {m.split(".")[0] for m in _imports(path)} - allowed
        assert lazy <= CORE_LAZY, f"{path.relative_to(PACKAGE)} imports {sorted(lazy - CORE_LAZY)}"


def test_top_level_imports_skip_function_bodies():
    tree = ast.parse("import os\ndef f():\n    import json\nclass C:\n    import re\n")
    names = {a.name for n in _top_level(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"os", "re"}


def test_model_builds_and_runs_without_framework_imports():
    """The issue's bar, in a fresh interpreter: building and running the model loads no
    framework or attribution library."""
    code = (
        "import sys, torch, seq2exp_plugin.model.seq2exp as m\n"
        "net = m.Seq2ExpModel(generator={'d_model': 8, 'n_layers': 1, 'd_state': 2},"
        " predictor={'d_model': 8, 'n_layers': 1, 'd_state': 2}, pool_width=8,"
        " mask={'promoter_keep': 8})\n"
        "net(torch.eye(4)[torch.randint(0, 4, (1, 32))].transpose(1, 2), torch.rand(1, 3, 32),"
        " torch.randn(1, 9))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in"
        " {'grelu', 'tangermeme', 'kipoi', 'lightning', 'pytorch_lightning', 'captum'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr


def _calls_with_keyword(path: Path, keyword: str) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and any(k.arg == keyword for k in node.keywords)]


def test_no_subprocess_runs_python_between_fork_and_exec(tmp_path):
    """``preexec_fn`` makes ``subprocess`` fork() instead of vfork(), which runs the native at-fork
    handlers: hictkpy's deadlocks the child once a .hic file has been read, and the parent then
    waits for its exec forever (this hung a whole CI run). Start a Python entry point instead."""
    repo = PACKAGE.parent
    sources = [p for folder in ("seq2exp_plugin", "tests", "benchmarks", "dataloaders", "model_zoo")
               for p in (repo / folder).rglob("*.py")]
    assert len(sources) > 50
    found = {str(p.relative_to(repo)): lines for p in sources if (lines := _calls_with_keyword(p, "preexec_fn"))}
    assert found == {}
    (tmp_path / "bad.py").write_text("import subprocess\n\nsubprocess.Popen(['true'], preexec_fn=print)\n")
    assert _calls_with_keyword(tmp_path / "bad.py", "preexec_fn") == [3]  # the check sees such calls
