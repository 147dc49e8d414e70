"""The stages of the data flow, as the package's imports draw them: each module imports only modules of
its own stage or below (docs/DESIGN.md draws the same table), the numeric core imports no file, flow
or command-line module, and only the command line imports click."""

from __future__ import annotations

import ast

import pytest

from conftest import ROOT

PACKAGE = ROOT / "filtervis"
# lowest first; a module is named by its path under filtervis/ (a package by its folder)
STAGES = (
    ("ground", {"__init__", "errors", "options", "filters", "images", "exact", "appearance"}),
    ("model", {"models"}),
    ("image", {"params", "transforms", "tiles", "starts", "seeds", "measures"}),
    ("objective", {"objectives", "targets"}),
    ("optimizer", {"optimize", "memory", "rescue"}),
    ("schedule", {"records", "schedule"}),
    ("plan", {"plan", "progress"}),
    ("output", {"files", "store", "views", "report", "diff", "result", "stitch"}),
    ("flow", {"run"}),
    ("clients", {"api", "cli", "keras", "__main__"}),
)
NUMERIC = {"models", "params", "transforms", "tiles", "starts", "measures", "objectives", "targets", "optimize",
           "memory", "rescue", "records", "schedule"}
FILES_AND_ABOVE = {"files", "store", "views", "report", "diff", "result", "stitch", "run", "api", "cli", "keras",
                   "plan", "progress", "options"}


def stage_of(module: str) -> int:
    top = module.split(".")[0]
    for level, (_, names) in enumerate(STAGES):
        if top in names:
            return level
    raise AssertionError(f"filtervis/{module.replace('.', '/')} is in no stage of tests/test_layout.py: add it")


def modules(package=PACKAGE) -> dict[str, set[str]]:
    """{module: the filtervis modules it imports}, modules named as in STAGES (`models.graph`)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        name = ".".join(parts)
        folder = list(parts[:-1])  # the package the module's relative imports start from
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = folder[:len(folder) - (node.level - 1)]
                if node.module:
                    imported.add(".".join(base + node.module.split(".")) or "__init__")
                else:
                    imported |= {".".join(base + [alias.name]) for alias in node.names}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                imported |= {n.split(".", 1)[1] if "." in n else "__init__" for n in names if n.startswith("filtervis")}
        found[name] = {"__init__" if i == "__version__" else i for i in imported}
    return found


def test_every_module_has_a_stage():
    for module in modules():
        stage_of(module)


@pytest.mark.parametrize("module, imported", sorted(modules().items()))
def test_no_module_imports_a_higher_stage(module, imported):
    own = stage_of(module)
    higher = sorted(i for i in imported if stage_of(i) > own)
    assert not higher, (f"filtervis/{module} ({STAGES[own][0]}) imports {higher} "
                        f"({', '.join(STAGES[stage_of(i)][0] for i in higher)}): a lower stage must not")


def test_the_numeric_core_imports_no_file_flow_or_command_line_module():
    for module, imported in modules().items():
        if module.split(".")[0] in NUMERIC:
            assert not {i.split(".")[0] for i in imported} & FILES_AND_ABOVE, module


def test_only_the_command_line_imports_click():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "cli.py":
            assert "import click" not in path.read_text(), path


def upward(package) -> list[tuple[str, str]]:
    return [(m, i) for m, imported in modules(package).items() for i in imported if stage_of(i) > stage_of(m)]


def test_the_check_finds_an_upward_import(tmp_path):
    """The check itself, on a copy of the package whose schedule imports the file layer."""
    import shutil

    copy = tmp_path / "filtervis"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert upward(copy) == []
    schedule = copy / "schedule.py"
    schedule.write_text(schedule.read_text() + "\nfrom .store import LayerWriter\n")
    assert upward(copy) == [("schedule", "store")]
