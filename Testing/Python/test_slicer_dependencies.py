"""Dependency installer for Slicer: requirement lists agree with pyproject.toml, checks are
right, and every branch (satisfied, offline, declined, pip failure, old Slicer) says
clearly what happened."""
from __future__ import annotations

import sys
import tomllib
import types

import pytest
import slicer  # slicer-core provides slicer.util (pip_install, confirmOkCancelDisplay)

from conftest import ROOT
from SpineLabelLib.slicer import dependencies as deps


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_mirror_pyproject():
    project = _pyproject()
    assert list(deps.REQUIREMENTS["core"]) == project["dependencies"]
    torch_names = ("torch", "torchvision")
    for feature in ("dicom", "monai", "sam", "team"):
        expected = [r for r in project["optional-dependencies"][feature] if not r.startswith(torch_names)]
        assert list(deps.REQUIREMENTS[feature]) == expected, feature
    assert deps.NEEDS_TORCH == {f for f, reqs in project["optional-dependencies"].items()
                                if f in deps.REQUIREMENTS and any(r.startswith("torch") for r in reqs)}


def test_requirements_for_and_missing():
    assert deps.requirements_for([])[: len(deps.REQUIREMENTS["core"])] == list(deps.REQUIREMENTS["core"])
    assert "segment-anything>=1.0" in deps.requirements_for(["sam"])
    with pytest.raises(ValueError, match="unknown feature 'gpu'"):
        deps.requirements_for(["gpu"])
    assert deps.missing(["numpy>=1.0", "nibabel"]) == []
    assert deps.missing(["numpy<1.0", "spinelabel-no-such-package>=1", "numpy>=1"]) == \
        ["numpy<1.0", "spinelabel-no-such-package>=1"]


def test_nothing_missing_installs_nothing(monkeypatch):
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: pytest.fail("no network check when nothing is missing"))
    assert deps.ensure([]) == []


def test_offline_message_names_packages_and_what_to_do(monkeypatch):
    monkeypatch.setattr(deps, "missing", lambda reqs: ["segment-anything>=1.0"])
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: False)
    with pytest.raises(deps.DependencyError, match=r"segment-anything>=1.0.*cannot be reached.*--no-index --find-links"):
        deps.ensure([])


@pytest.fixture
def old_slicer(monkeypatch):
    """Slicer before pydeps: confirm dialog + slicer.util.pip_install (recorded)."""
    calls = []
    monkeypatch.setattr(deps, "_pip_ensure_module", lambda module: None)
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: True)
    monkeypatch.setattr(slicer.util, "pip_install", lambda arg: calls.append(arg))
    return calls


def test_old_slicer_asks_then_installs(monkeypatch, old_slicer):
    state = {"installed": False}
    monkeypatch.setattr(deps, "missing", lambda reqs: [] if state["installed"] else ["pydicom>=2.3"])
    questions = []

    def yes(question):
        questions.append(question)
        state["installed"] = True
        return True

    assert deps.ensure(["dicom"], confirm=yes) == ["pydicom>=2.3"]
    assert old_slicer == ['"pydicom>=2.3"'] and "pydicom>=2.3" in questions[0]


def test_old_slicer_declined_or_still_missing(monkeypatch, old_slicer):
    monkeypatch.setattr(deps, "missing", lambda reqs: ["pydicom>=2.3"])
    with pytest.raises(deps.DependencyError, match="declined"):
        deps.ensure(["dicom"], confirm=lambda q: False)
    assert old_slicer == []
    with pytest.raises(deps.DependencyError, match="still not importable: pydicom>=2.3.*restart Slicer"):
        deps.ensure(["dicom"], confirm=lambda q: True)


def test_new_slicer_uses_pip_ensure(monkeypatch):
    seen = {}

    def pip_ensure(requirements, prompt_install, requester, skip_packages):
        seen.update(reqs=[str(r) for r in requirements], prompt=prompt_install, requester=requester, skip=skip_packages)
        raise RuntimeError("User declined")

    monkeypatch.setattr(deps, "_pip_ensure_module", lambda module: types.SimpleNamespace(pip_ensure=pip_ensure))
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: True)
    monkeypatch.setattr(deps, "missing", lambda reqs: ["monai>=1.3"])
    monkeypatch.setattr(deps, "torch_available", lambda: True)
    with pytest.raises(deps.DependencyError, match="not installed: monai>=1.3 \\(User declined\\)"):
        deps.ensure(["monai"])
    assert seen == {"reqs": ["monai>=1.3"], "prompt": True, "requester": "SpineLabel",
                    "skip": list(deps.PROVIDED_BY_SLICER)}


def test_torch_comes_from_the_pytorch_extension(monkeypatch):
    monkeypatch.setattr(deps, "torch_available", lambda: False)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # extension not installed
    with pytest.raises(deps.DependencyError, match="'PyTorch' extension from the Extensions Manager"):
        deps.ensure_torch()
    installs = []

    class Logic:
        def installTorch(self, askConfirmation, torchVersionRequirement):
            installs.append((askConfirmation, torchVersionRequirement))
            return "torch-module"

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: True)
    assert deps.ensure_torch() == "torch-module" and installs == [(True, ">=2.1")]
    with pytest.raises(deps.DependencyError, match="declined"):
        deps.ensure_torch(confirm=lambda q: False)
    monkeypatch.setattr(deps, "index_reachable", lambda *a, **k: False)
    with pytest.raises(deps.DependencyError, match="offline"):
        deps.ensure_torch()
