"""Static checks of what can only run inside Slicer (no Slicer application, no Qt here):
the module, the effect and the batch script compile; the classes Slicer looks for exist;
every widget the code references exists in the .ui with the class the code expects; the
effect implements the methods the Segment Editor calls; CMake installs every file the
module needs; the extension description agrees with CMake."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET

from conftest import ROOT

MODULE = ROOT / "SpineLabel" / "SpineLabel.py"
EFFECT = ROOT / "SpineLabel" / "SegmentEditorSpineLabelClickLib" / "SegmentEditorEffect.py"
UI = ROOT / "Resources" / "UI" / "SpineLabel.ui"
BATCH = ROOT / "scripts" / "slicer_batch.py"


def _tree(path):
    source = path.read_text()
    compile(source, str(path), "exec")
    return ast.parse(source)


def _classes(tree):
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _methods(cls):
    return {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}


def _ui_widgets():
    root = ET.parse(UI).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def test_module_compiles_and_defines_slicer_classes():
    tree = _tree(MODULE)
    classes = _classes(tree)
    assert {"SpineLabel", "SpineLabelWidget", "SpineLabelLogic", "SpineLabelTest", "SpineLabelParameterNode"} <= set(classes)
    assert {"setUp", "runTest"} <= _methods(classes["SpineLabelTest"])
    assert {"setup", "cleanup", "enter", "exit"} <= _methods(classes["SpineLabelWidget"])
    decorators = [ast.unparse(d) for d in classes["SpineLabelParameterNode"].decorator_list]
    assert decorators == ["parameterNodeWrapper"]
    # thin: no heavy or library import at module load (the library is imported lazily)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top_imports for a in n.names} | {getattr(n, "module", None) for n in top_imports}
    assert not {n for n in names if n} & {"torch", "monai", "SimpleITK", "nibabel", "numpy", "SpineLabelLib"}


def test_batch_script_compiles():
    _tree(BATCH)


def _ui_references(tree):
    """(widget name, attribute used on it) for every ``self.ui.<name>.<attr>``."""
    refs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner = node.value
            if isinstance(inner.value, ast.Attribute) and inner.value.attr == "ui" \
                    and isinstance(inner.value.value, ast.Name) and inner.value.value.id == "self":
                refs.add((inner.attr, node.attr))
    return refs


#: what the code does with a widget -> the classes that support it
_ATTRIBUTE_CLASSES = {
    "currentPath": {"ctkPathLineEdit"},
    "currentRow": {"QTableWidget"}, "setRowCount": {"QTableWidget"}, "setItem": {"QTableWidget"},
    "resizeColumnsToContents": {"QTableWidget"},
    "addItem": {"QComboBox"}, "currentText": {"QComboBox"}, "currentData": {"QComboBox"},
    "findData": {"QComboBox"}, "setCurrentIndex": {"QComboBox"},
    "checked": {"QCheckBox"}, "setPlainText": {"QTextBrowser"}, "toPlainText": {"QTextBrowser"},
    "text": {"QLineEdit"},
    "enabled": {"QPushButton", "ctkPathLineEdit", "QLabel"},
    "visible": {"QProgressBar"}, "setRange": {"QProgressBar"}, "setValue": {"QProgressBar"},
    "setFormat": {"QProgressBar"},
}
_SIGNAL_CLASSES = {
    "clicked(bool)": {"QPushButton"}, "cellDoubleClicked(int,int)": {"QTableWidget"},
    "itemSelectionChanged()": {"QTableWidget"}, "currentIndexChanged(int)": {"QComboBox"},
    "currentPathChanged(QString)": {"ctkPathLineEdit"}, "toggled(bool)": {"QCheckBox"},
    "editingFinished()": {"QLineEdit"},
}


def test_every_widget_the_code_uses_exists_in_the_ui_with_the_expected_class():
    tree = _tree(MODULE)
    widgets = _ui_widgets()
    refs = _ui_references(tree)
    assert refs, "the widget references no ui elements"
    for name, attr in refs:
        assert name in widgets, f"self.ui.{name} is not in {UI.name}"
        # every attribute used is one this check knows (a typo or a method of another class fails)
        assert attr == "connect" or attr in _ATTRIBUTE_CLASSES, f"self.ui.{name}.{attr}: unchecked attribute"
        if attr in _ATTRIBUTE_CLASSES:
            assert widgets[name] in _ATTRIBUTE_CLASSES[attr], f"self.ui.{name}.{attr} needs {_ATTRIBUTE_CLASSES[attr]}, the .ui has {widgets[name]}"
    # every signal connection names a signal of the widget's class
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect":
            target = node.func.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) and target.value.attr == "ui":
                signal = node.args[0].value
                assert signal in _SIGNAL_CLASSES, f"unchecked signal {signal}"
                assert widgets[target.attr] in _SIGNAL_CLASSES[signal], f"{target.attr} ({widgets[target.attr]}) has no {signal}"
    # every button in the .ui is wired (no dead buttons)
    used = {name for name, _ in refs}
    dead = [n for n, cls in widgets.items() if cls == "QPushButton" and n not in used]
    assert not dead, f"buttons in the .ui that the code never connects: {dead}"


def test_parameter_node_fields_are_bound_to_ui_widgets():
    tree = _tree(MODULE)
    fields = {n.target.id: ast.unparse(n.annotation) for n in _classes(tree)["SpineLabelParameterNode"].body
              if isinstance(n, ast.AnnAssign)}
    bound = {}
    for w in ET.parse(UI).getroot().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = w.get("class")
    assert set(bound) == set(fields)
    expected = {"vtkMRMLScalarVolumeNode": "qMRMLNodeComboBox", "vtkMRMLSegmentationNode": "qMRMLNodeComboBox",
                "vtkMRMLMarkupsFiducialNode": "qMRMLNodeComboBox", "str": "QLineEdit", "bool": "QCheckBox"}
    for name, annotation in fields.items():
        assert bound[name] == expected[annotation], name
    # node selectors offer the node class of their parameter
    root = ET.parse(UI).getroot()
    for w in root.iter("widget"):
        names = [p.find("string").text for p in w.findall("property") if p.get("name") == "SlicerParameterName"]
        if names and w.get("class") == "qMRMLNodeComboBox":
            types = [s.text for s in w.find("property[@name='nodeTypes']").iter("string")]
            assert types == [fields[names[0]]]


def test_ui_is_a_valid_designer_file():
    root = ET.parse(UI).getroot()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names"
    custom = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if c.startswith(("qMRML", "ctk"))} <= custom


def test_effect_implements_what_the_segment_editor_calls():
    tree = _tree(EFFECT)
    classes = _classes(tree)
    assert "SegmentEditorEffect" in classes
    effect = classes["SegmentEditorEffect"]
    assert [ast.unparse(b) for b in effect.bases] == ["AbstractScriptedSegmentEditorEffect"]
    required = {"__init__", "clone", "icon", "helpText", "setupOptionsFrame", "activate", "deactivate",
                "processInteractionEvents", "updateGUIFromMRML"}
    assert required <= _methods(effect)
    source = EFFECT.read_text()
    # Slicer's undo and the segment modification API, and the library's refine
    for needed in ("saveStateForUndo()", "modifySelectedSegmentByLabelmap(", "ModificationModeSet", ".refine(",
                   "world_to_ijk(", "GetShiftKey()", "LeftButtonPressEvent"):
        assert needed in source, needed
    init = next(n for n in effect.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert "scriptedEffect.name" in ast.unparse(init)
    # the name the module uses to find the effect is the name the effect registers
    module_name = re.search(r'CLICK_EFFECT_NAME = "([^"]+)"', MODULE.read_text()).group(1)
    assert re.search(r'EFFECT_NAME = "([^"]+)"', source).group(1) == module_name
    # the settings keys agree between panel and effect
    for key in ("SETTING_CLICK_ENGINE", "SETTING_SAM_CHECKPOINT"):
        assert re.search(rf'{key} = "([^"]+)"', source).group(1) == re.search(rf'{key} = "([^"]+)"', MODULE.read_text()).group(1)


def test_effect_registration_path_matches_the_installed_file():
    source = MODULE.read_text()
    assert 'os.path.join(MODULE_DIR, "SegmentEditorSpineLabelClickLib", "SegmentEditorEffect.py")' in source
    assert EFFECT.is_file()


def _cmake_list(text, variable):
    return re.search(rf"set\({variable}(.*?)\)", text, re.S).group(1).split()


def test_cmake_installs_every_file_the_module_needs():
    top = (ROOT / "CMakeLists.txt").read_text()
    assert 'EXTENSION_DEPENDS "PyTorch"' in top
    for sub in re.findall(r"add_subdirectory\((\w+)\)", top):
        assert (ROOT / sub / "CMakeLists.txt").is_file()
    module = (ROOT / "SpineLabel" / "CMakeLists.txt").read_text()
    scripts = [s.replace("${MODULE_NAME}", "SpineLabel") for s in _cmake_list(module, "MODULE_PYTHON_SCRIPTS")]
    shipped_py = sorted(str(p.relative_to(ROOT / "SpineLabel")) for p in (ROOT / "SpineLabel").rglob("*.py")
                        if "__pycache__" not in p.parts)
    assert sorted(scripts) == shipped_py, "MODULE_PYTHON_SCRIPTS must list every .py of SpineLabel/"
    resources = _cmake_list(module, "SPINELABEL_RESOURCES")
    for res in resources:
        assert (ROOT / "Resources" / res).is_file(), res
    # every resource file the code opens is installed
    opened = set(re.findall(r'resourcePath\("([^"]+)", "([^"]+)"\)', (ROOT / "SpineLabel" / "SpineLabel.py").read_text()))
    assert {f"{a}/{b}" for a, b in opened} <= set(resources)
    shipped_res = sorted(str(p.relative_to(ROOT / "Resources")) for p in (ROOT / "Resources").rglob("*") if p.is_file())
    assert sorted(resources) == shipped_res, "every file of Resources/ must be installed"
    # the library is installed whole (all .py files, recursively), test with ctest
    assert "GLOB_RECURSE SPINELABELLIB_FILES" in module and "${_lib_src}/*.py" in module
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module


def test_extension_description_agrees_with_cmake():
    top = (ROOT / "CMakeLists.txt").read_text()
    s4ext = dict(line.split(" ", 1) for line in (ROOT / "SpineLabel.s4ext").read_text().splitlines()
                 if line and not line.startswith("#") and " " in line)
    cmake = dict(re.findall(r'set\(EXTENSION_(\w+) "([^"]*)"\)', top))
    assert s4ext["depends"] == cmake["DEPENDS"]
    assert s4ext["category"] == cmake["CATEGORY"]
    assert s4ext["homepage"] == cmake["HOMEPAGE"]
    assert s4ext["iconurl"] == cmake["ICONURL"]
    assert s4ext["description"] == cmake["DESCRIPTION"]
    assert s4ext["scm"] == "git" and s4ext["scmurl"].endswith(".git")


def test_qt_and_slicer_files_never_imported_by_the_library():
    """The library must stay importable without Slicer: nothing in SpineLabelLib imports
    the module, the effect or Qt."""
    for py in (ROOT / "SpineLabelLib").rglob("*.py"):
        text = py.read_text()
        assert not re.search(r"^\s*(import|from)\s+(qt|ctk|SpineLabel\b|SegmentEditorEffects)", text, re.M), py


#: the panel's sections and the widgets each must hold (name -> class)
_SECTIONS = {
    "datasetCollapsibleButton": {
        "datasetPathLineEdit": "ctkPathLineEdit", "casesTableWidget": "QTableWidget", "storeUrlLineEdit": "QLineEdit",
        "userLineEdit": "QLineEdit", "roleComboBox": "QComboBox", "openQueueButton": "QPushButton",
        "initQueueButton": "QPushButton", "queueTableWidget": "QTableWidget", "nextCaseButton": "QPushButton",
        "openQueueCaseButton": "QPushButton", "refreshQueueButton": "QPushButton", "renewClaimButton": "QPushButton",
        "releaseClaimButton": "QPushButton"},
    "autoCollapsibleButton": {
        "autoEngineComboBox": "QComboBox", "autoPathLineEdit": "ctkPathLineEdit", "runAutoButton": "QPushButton",
        "queueAutoButton": "QPushButton"},
    "vertebraeCollapsibleButton": {"vertebraeTableWidget": "QTableWidget"},
    "reviewCollapsibleButton": {
        "fractureGradeComboBox": "QComboBox", "implantCheckBox": "QCheckBox", "transitionalCheckBox": "QCheckBox",
        "inFovCheckBox": "QCheckBox", "saveAttributesButton": "QPushButton", "keepClaimCheckBox": "QCheckBox",
        "submitButton": "QPushButton", "approveButton": "QPushButton", "flagCommentLineEdit": "QLineEdit",
        "flagButton": "QPushButton"},
}


def _headers(table):
    return [c.find("property/string").text for c in table.findall("column")]


def test_panel_sections_hold_their_widgets_and_table_columns():
    from SpineLabelLib.slicer.review import CASE_COLUMNS

    root = ET.parse(UI).getroot()
    sections = {w.get("name"): w for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"}
    for section, expected in _SECTIONS.items():
        assert section in sections, section
        inside = {w.get("name"): w.get("class") for w in sections[section].iter("widget")}
        for name, cls in expected.items():
            assert inside.get(name) == cls, f"{section} must hold {name} ({cls}), has {inside.get(name)}"
    tables = {w.get("name"): w for w in root.iter("widget") if w.get("class") == "QTableWidget"}
    assert tuple(_headers(tables["queueTableWidget"])) == CASE_COLUMNS
    assert _headers(tables["vertebraeTableWidget"]) == ["Label", "Status", "Confidence", "QA flags"]
    for name, table in tables.items():
        count = int(table.find("property[@name='columnCount']/number").text)
        assert count == len(_headers(table)), name
    # the vertebrae rows are written in the header's order
    source = MODULE.read_text()
    assert 'texts = (info["name"], info["status"], info["confidence_text"], "; ".join(info["flags"]) or "-")' in source
    # the cancel button sits beside the progress bar
    assert _ui_widgets()["cancelButton"] == "QPushButton"


def _logic_calls(node):
    return {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Attribute) and n.func.value.attr == "logic"}


def test_widget_calls_only_logic_methods_that_exist():
    classes = _classes(_tree(MODULE))
    logic = _methods(classes["SpineLabelLogic"])
    called = _logic_calls(classes["SpineLabelWidget"])
    assert called and not called - logic, f"the widget calls missing Logic methods: {called - logic}"


#: Logic methods the widget may run in a background thread: files and stores only, no MRML
_BACKGROUND_SAFE = {"validateDataset", "evaluateReport", "writeCase", "initQueue", "readQueueCase", "submitCase",
                    "approveCase", "runEngine", "runQueueAuto"}


def test_background_jobs_never_touch_mrml_or_qt():
    """Work handed to _runInBackground is a ``lambda job: self.logic.<method>(...)`` whose
    method reads and writes files and stores only; scene changes happen in the callbacks
    on the main thread."""
    classes = _classes(_tree(MODULE))
    widget, logic = classes["SpineLabelWidget"], classes["SpineLabelLogic"]
    methods = {n.name: n for n in logic.body if isinstance(n, ast.FunctionDef)}
    calls = [n for n in ast.walk(widget) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "_runInBackground"]
    assert len(calls) >= 8
    used = set()
    for call in calls:
        work = call.args[1]
        assert isinstance(work, ast.Lambda) and [a.arg for a in work.args.args] == ["job"], ast.unparse(call)
        names = _logic_calls(work)
        assert len(names) == 1 and names <= _BACKGROUND_SAFE, ast.unparse(work)
        used |= names
        assert not {n.id for n in ast.walk(work) if isinstance(n, ast.Name)} & {"slicer", "qt"}, ast.unparse(work)
    assert used == _BACKGROUND_SAFE
    for name in _BACKGROUND_SAFE:
        body = ast.unparse(methods[name])
        assert not re.search(r"\bslicer\.(?!review|jobs)|\bqt\.|mrml\.|Node\b|GetScene", body.split('"""')[-1]), name
    # long work reports progress and can be cancelled
    cancellable = {_logic_calls(c.args[1]).pop() for c in calls
                   if any(k.arg == "cancellable" and ast.unparse(k.value) == "True" for k in c.keywords)}
    assert cancellable == {"initQueue", "runEngine", "runQueueAuto"}


def test_settings_remember_engine_checkpoint_store_and_user():
    source = MODULE.read_text()
    for key in ("SETTING_AUTO_ENGINE", "SETTING_AUTO_PATH", "SETTING_STORE", "SETTING_USER"):
        assert re.search(rf'^{key} = "SpineLabel/\w+"$', source, re.M), key
        assert source.count(key) >= 3, f"{key} is not both read and written"
