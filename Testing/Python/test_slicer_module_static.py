"""Static checks of what can only run inside Slicer: the module compiles, has the classes
Slicer looks for, and the CMake files name files that exist."""
from __future__ import annotations

import ast
import re

from conftest import ROOT


def test_module_compiles_and_defines_slicer_classes():
    source = (ROOT / "SpineLabel" / "SpineLabel.py").read_text()
    tree = ast.parse(source)
    compile(source, "SpineLabel.py", "exec")
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"SpineLabel", "SpineLabelWidget", "SpineLabelLogic", "SpineLabelTest"} <= set(classes)
    test_methods = {n.name for n in classes["SpineLabelTest"].body if isinstance(n, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= test_methods
    # the module file stays thin: no heavy library imports at module load
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top_imports for a in n.names} | {getattr(n, "module", None) for n in top_imports}
    assert not names & {"torch", "monai", "SimpleITK", "nibabel", "SpineLabelLib"}


def test_cmake_lists_reference_existing_files():
    top = (ROOT / "CMakeLists.txt").read_text()
    assert 'EXTENSION_DEPENDS "PyTorch"' in top
    for sub in re.findall(r"add_subdirectory\((\w+)\)", top):
        assert (ROOT / sub / "CMakeLists.txt").is_file()
    module = (ROOT / "SpineLabel" / "CMakeLists.txt").read_text()
    scripts = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", module, re.S).group(1).split()
    for script in scripts:
        assert (ROOT / "SpineLabel" / script.replace("${MODULE_NAME}", "SpineLabel")).is_file(), script
    assert (ROOT / "Resources" / "Icons" / "SpineLabel.png").is_file()
    assert "SpineLabelLib" in module
