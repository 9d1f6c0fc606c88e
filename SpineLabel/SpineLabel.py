"""SpineLabel: vertebra labelling and VerSe dataset building in 3D Slicer.

Thin by design. The widget wires Resources/UI/SpineLabel.ui to :class:`SpineLabelLogic`;
the logic turns MRML nodes into SpineLabelLib objects and back (through
``SpineLabelLib.slicer.mrml``) and calls the library. Nothing here computes anything the
library does not already offer. ``SpineLabelLogic`` works without the widget, e.g. from
Slicer's Python console or ``scripts/slicer_batch.py``.
"""
import logging
import os
import sys
import threading

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
CLICK_EFFECT_NAME = "SpineLabel click"
#: QSettings keys (remembered between Slicer sessions)
SETTING_CLICK_ENGINE = "SpineLabel/ClickEngine"
SETTING_SAM_CHECKPOINT = "SpineLabel/SamCheckpoint"
SETTING_DATASET = "SpineLabel/DatasetFolder"
SETTING_OUTPUT = "SpineLabel/OutputFolder"


def _libraryOnPath():
    """Make ``import SpineLabelLib`` work: installed extensions have it beside this file;
    a source checkout (module path = <repo>/SpineLabel) has it one folder up."""
    for folder in (MODULE_DIR, os.path.dirname(MODULE_DIR)):
        if os.path.isdir(os.path.join(folder, "SpineLabelLib")) and folder not in sys.path:
            sys.path.insert(0, folder)
            return


def resourcePath(*parts):
    """A file of the top-level Resources/ folder (installed beside the module, or in the
    source checkout one folder up)."""
    for folder in (MODULE_DIR, os.path.dirname(MODULE_DIR)):
        path = os.path.join(folder, "Resources", *parts)
        if os.path.exists(path):
            return path
    return os.path.join(MODULE_DIR, "Resources", *parts)


_libraryOnPath()


#
# Module
#
class SpineLabel(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineLabel"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["SpineLabel developers"]
        self.parent.helpText = (
            "Vertebra labelling and VerSe dataset building: open a VerSe dataset, review the "
            "vertebrae (body centroids, QA flags), correct with clicks in the Segment Editor "
            "('SpineLabel click' effect), export cases in the VerSe layout and evaluate them "
            "with the VerSe metrics."
        )
        self.parent.acknowledgementText = "Label conventions follow the VerSe benchmark (Sekuboyina et al.)."
        iconPath = resourcePath("Icons", "SpineLabel.png")
        if os.path.exists(iconPath):
            self.parent.icon = qt.QIcon(iconPath)
        slicer.app.connect("startupCompleted()", registerClickEffect)


def registerClickEffect():
    """Register the click-to-correct Segment Editor effect (once per application)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    source = os.path.join(MODULE_DIR, "SegmentEditorSpineLabelClickLib", "SegmentEditorEffect.py")
    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(source.replace("\\", "/"))
    instance.self().register()


#
# Parameter node
#
@parameterNodeWrapper
class SpineLabelParameterNode:
    """What the panel works on; saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    centroids: vtkMRMLMarkupsFiducialNode
    subject: str = ""
    writeSnapshot: bool = True
    overwrite: bool = False


#
# Widget
#
class SpineLabelWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cases = []
        self._rows = []
        self._jobs = []

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI", "SpineLabel.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineLabelLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        settings = qt.QSettings()
        self.ui.datasetPathLineEdit.currentPath = settings.value(SETTING_DATASET, "")
        self.ui.outputPathLineEdit.currentPath = settings.value(SETTING_OUTPUT, "")
        from SpineLabelLib.interactive import ENGINES

        for name in sorted(ENGINES):
            self.ui.clickEngineComboBox.addItem(name)
        self.ui.clickEngineComboBox.currentText = settings.value(SETTING_CLICK_ENGINE, "classical")
        self.ui.samCheckpointPathLineEdit.currentPath = settings.value(SETTING_SAM_CHECKPOINT, "")

        self.ui.openDatasetButton.connect("clicked(bool)", self.onOpenDataset)
        self.ui.validateDatasetButton.connect("clicked(bool)", self.onValidateDataset)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.casesTableWidget.connect("cellDoubleClicked(int,int)", lambda row, col: self.onLoadCase())
        self.ui.vertebraeTableWidget.connect("itemSelectionChanged()", self.onVertebraSelected)
        self.ui.computeCentroidsButton.connect("clicked(bool)", self.onComputeCentroids)
        self.ui.runQAButton.connect("clicked(bool)", self.onRunQA)
        from SpineLabelLib import labels

        for lab in labels.LABELS:
            self.ui.editTargetComboBox.addItem(lab.name, lab.value)
        self.ui.relabelButton.connect("clicked(bool)", lambda: self.onEdit("relabel", new=self._editTarget()))
        self.ui.shiftDownButton.connect("clicked(bool)", lambda: self.onEdit("shift", direction="down"))
        self.ui.shiftUpButton.connect("clicked(bool)", lambda: self.onEdit("shift", direction="up"))
        self.ui.deleteButton.connect("clicked(bool)", lambda: self.onEdit("delete"))
        self.ui.insertT13Button.connect("clicked(bool)", lambda: self.onEdit("insert", selected=False, extra=labels.T13, side="below"))
        self.ui.insertL6Button.connect("clicked(bool)", lambda: self.onEdit("insert", selected=False, extra=labels.L6, side="above"))
        self.ui.removeT13Button.connect("clicked(bool)", lambda: self.onEdit("remove", selected=False, extra=labels.T13, side="below"))
        self.ui.removeL6Button.connect("clicked(bool)", lambda: self.onEdit("remove", selected=False, extra=labels.L6, side="above"))
        self.ui.mergeButton.connect("clicked(bool)", lambda: self.onEdit("merge", other=self._editTarget()))
        self.ui.splitButton.connect("clicked(bool)", self.onSplit)
        self.ui.clickEngineComboBox.connect("currentIndexChanged(int)", self.onClickSettingsChanged)
        self.ui.samCheckpointPathLineEdit.connect("currentPathChanged(QString)", self.onClickSettingsChanged)
        self.ui.negativeClickCheckBox.connect("toggled(bool)", self.onNegativeToggled)
        self.ui.startClickEffectButton.connect("clicked(bool)", self.onStartClickEffect)
        self.ui.clickUndoButton.connect("clicked(bool)", lambda: self._segmentEditor().undo())
        self.ui.clickRedoButton.connect("clicked(bool)", lambda: self._segmentEditor().redo())
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluate)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self._disconnectGui()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._disconnectGui()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ---------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode):
        self._disconnectGui()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _disconnectGui(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def _updateButtons(self, caller=None, event=None):
        p = self._parameterNode
        haveInputs = bool(p and p.inputVolume and p.segmentation)
        for button in (self.ui.computeCentroidsButton, self.ui.runQAButton, self.ui.startClickEffectButton,
                       self.ui.relabelButton, self.ui.shiftDownButton, self.ui.shiftUpButton, self.ui.deleteButton,
                       self.ui.insertT13Button, self.ui.insertL6Button, self.ui.removeT13Button, self.ui.removeL6Button,
                       self.ui.mergeButton, self.ui.splitButton):
            button.enabled = haveInputs
        self.ui.exportButton.enabled = bool(haveInputs and p.subject and self.ui.outputPathLineEdit.currentPath)
        self.ui.loadCaseButton.enabled = bool(self._cases)

    # -- messages and background work --------------------------------------------------
    def _show(self, text):
        self.ui.statusTextBrowser.setPlainText(text)

    def _runInBackground(self, what, function, onDone):
        """Run ``function()`` (library work only: no MRML or Qt access) in a thread while the
        GUI stays responsive; ``onDone(result)`` runs on the main thread; errors are shown."""
        job = {"result": None, "error": None}

        def work():
            try:
                job["result"] = function()
            except Exception as exc:  # shown to the user below
                job["error"] = exc

        thread = threading.Thread(target=work, name=f"SpineLabel {what}", daemon=True)
        timer = qt.QTimer()
        timer.setInterval(100)

        def poll():
            if thread.is_alive():
                return
            timer.stop()
            self._jobs.remove((thread, timer))
            self.ui.progressBar.visible = bool(self._jobs)
            if job["error"] is not None:
                logging.error("SpineLabel: %s failed", what, exc_info=job["error"])
                slicer.util.errorDisplay(f"{what} failed: {job['error']}")
                self._show(f"{what} failed: {job['error']}")
                return
            with slicer.util.tryWithErrorDisplay(f"{what}: could not show the result", waitCursor=True):
                onDone(job["result"])

        timer.connect("timeout()", poll)
        self._jobs.append((thread, timer))
        self.ui.progressBar.visible = True
        self._show(f"{what}...")
        thread.start()
        timer.start()

    # -- dataset ---------------------------------------------------------------------------
    def onOpenDataset(self):
        folder = self.ui.datasetPathLineEdit.currentPath
        qt.QSettings().setValue(SETTING_DATASET, folder)
        with slicer.util.tryWithErrorDisplay("Could not open the dataset.", waitCursor=True):
            self._cases = self.logic.discoverCases(folder)
            table = self.ui.casesTableWidget
            table.setRowCount(len(self._cases))
            for row, case in enumerate(self._cases):
                for col, text in enumerate((case.name, "yes" if case.mask else "-", "yes" if case.centroids else "-")):
                    table.setItem(row, col, qt.QTableWidgetItem(text))
            table.resizeColumnsToContents()
            self._show(f"{len(self._cases)} case(s) in {folder}")
            self._updateButtons()

    def onValidateDataset(self):
        folder = self.ui.datasetPathLineEdit.currentPath
        self._runInBackground("Validation", lambda: self.logic.validateDataset(folder), self._show)

    def onLoadCase(self):
        row = self.ui.casesTableWidget.currentRow()
        if row < 0 or row >= len(self._cases):
            slicer.util.errorDisplay("Select a case in the table first.")
            return
        with slicer.util.tryWithErrorDisplay("Could not load the case.", waitCursor=True):
            case = self._cases[row]
            volume, segmentation, centroids = self.logic.loadCase(case)
            self._parameterNode.inputVolume = volume
            self._parameterNode.segmentation = segmentation
            self._parameterNode.centroids = centroids
            self._parameterNode.subject = case.subject
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            self.onRunQA()

    # -- vertebrae ---------------------------------------------------------------------------
    def onRunQA(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not list the vertebrae.", waitCursor=True):
            self._rows = self.logic.vertebrae(p.inputVolume, p.segmentation, p.centroids)
            table = self.ui.vertebraeTableWidget
            table.setRowCount(len(self._rows))
            for row, info in enumerate(self._rows):
                texts = (info["name"], "; ".join(info["flags"]) or "-")
                for col, text in enumerate(texts):
                    item = qt.QTableWidgetItem(text)
                    if col == 1 and info["flags"]:
                        item.setToolTip("\n".join(info["flags"]))
                    table.setItem(row, col, item)
            table.resizeColumnsToContents()
            flagged = sum(1 for info in self._rows if info["flags"])
            self._show(f"{len(self._rows)} vertebrae, {flagged} with QA flags")

    def onVertebraSelected(self):
        row = self.ui.vertebraeTableWidget.currentRow()
        if 0 <= row < len(self._rows):
            x, y, z = self._rows[row]["centroid_ras"]
            slicer.modules.markups.logic().JumpSlicesToLocation(x, y, z, True)

    def onComputeCentroids(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not compute the centroids.", waitCursor=True):
            p.centroids = self.logic.computeCentroids(p.inputVolume, p.segmentation, p.centroids)
            self.onRunQA()

    # -- edits ---------------------------------------------------------------------------------
    def _editTarget(self):
        return int(self.ui.editTargetComboBox.currentData)

    def _selectedValue(self):
        row = self.ui.vertebraeTableWidget.currentRow()
        if not 0 <= row < len(self._rows):
            raise ValueError("select a vertebra in the Vertebrae table first")
        return self._rows[row]["value"]

    def onEdit(self, name, selected=True, **params):
        """One label-sequence edit (``SpineLabelLib.edit``) on the selected vertebra."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(f"The {name} edit was not applied.", waitCursor=True):
            if selected:
                key = {"relabel": "old", "shift": "start", "merge": "keep", "delete": "value", "split": "value"}[name]
                params[key] = self._selectedValue()
            p.centroids = self.logic.applyEdit(p.inputVolume, p.segmentation, p.centroids, name, **params)
            self.onRunQA()

    def onSplit(self):
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        sliceToRas = red.GetSliceToRAS()
        point = [sliceToRas.GetElement(r, 3) for r in range(3)]
        normal = [sliceToRas.GetElement(r, 2) for r in range(3)]
        self.onEdit("split", new=self._editTarget(), point_ras=point, normal_ras=normal)

    # -- click-to-correct -------------------------------------------------------------------
    def onClickSettingsChanged(self, *args):
        settings = qt.QSettings()
        settings.setValue(SETTING_CLICK_ENGINE, self.ui.clickEngineComboBox.currentText)
        settings.setValue(SETTING_SAM_CHECKPOINT, self.ui.samCheckpointPathLineEdit.currentPath)

    def _segmentEditor(self):
        return slicer.modules.segmenteditor.widgetRepresentation().self().editor

    def onNegativeToggled(self, negative):
        effect = self._segmentEditor().effectByName(CLICK_EFFECT_NAME)
        if effect:
            effect.self().setNegative(negative)

    def onStartClickEffect(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start click-to-correct.", waitCursor=True):
            self.onClickSettingsChanged()
            selected = self.ui.vertebraeTableWidget.currentRow()
            slicer.util.selectModule("SegmentEditor")
            editor = self._segmentEditor()
            editor.setSegmentationNode(p.segmentation)
            if hasattr(editor, "setSourceVolumeNode"):
                editor.setSourceVolumeNode(p.inputVolume)
            else:  # Slicer < 5.4
                editor.setMasterVolumeNode(p.inputVolume)
            if 0 <= selected < len(self._rows):
                from SpineLabelLib.slicer.mrml import segment_ids_by_value

                segmentId = segment_ids_by_value(p.segmentation).get(self._rows[selected]["value"])
                if segmentId:
                    editor.setCurrentSegmentID(segmentId)
            editor.setActiveEffectByName(CLICK_EFFECT_NAME)
            effect = editor.effectByName(CLICK_EFFECT_NAME)
            if effect:
                effect.self().setNegative(self.ui.negativeClickCheckBox.checked)

    # -- export and evaluation ----------------------------------------------------------------
    def onExport(self):
        p = self._parameterNode
        out = self.ui.outputPathLineEdit.currentPath
        qt.QSettings().setValue(SETTING_OUTPUT, out)
        with slicer.util.tryWithErrorDisplay("Could not read the case from the scene.", waitCursor=True):
            ct, mask, centroids = self.logic.caseFromScene(p.inputVolume, p.segmentation, p.centroids)
            subject, snapshot, overwrite = p.subject, p.writeSnapshot, p.overwrite
            self._runInBackground(
                "Export",
                lambda: self.logic.writeCase(out, subject, ct, mask, centroids, snapshot=snapshot, overwrite=overwrite),
                lambda case: self._show("Written:\n" + "\n".join(str(f) for f in case.files())),
            )

    def onEvaluate(self):
        gt = self.ui.evaluateGtPathLineEdit.currentPath
        pred = self.ui.evaluatePredPathLineEdit.currentPath
        self._runInBackground("Evaluation", lambda: self.logic.evaluateReport(gt, pred), self._show)


#
# Logic
#
class SpineLabelLogic(ScriptedLoadableModuleLogic):
    """Thin glue between MRML and SpineLabelLib; usable without the widget, e.g.
    ``SpineLabelLogic().loadCase(case)`` or ``SpineLabelLogic().exportCase(...)``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SpineLabelParameterNode(super().getParameterNode())

    # -- datasets (files) ----------------------------------------------------------------------
    def discoverCases(self, folder):
        """VerSe cases below ``folder`` (``SpineLabelLib.verse.layout.discover_cases``)."""
        from SpineLabelLib.verse.layout import discover_cases

        return discover_cases(folder)

    def validateDataset(self, folder):
        """Every problem of a dataset as text (``SpineLabelLib.verse.validate``)."""
        from SpineLabelLib.verse.validate import validate_dataset

        problems = validate_dataset(folder)
        errors = sum(1 for p in problems if p.severity == "error")
        lines = [str(p) for p in problems]
        lines.append(f"{errors} error(s), {len(problems) - errors} warning(s) in {folder}")
        return "\n".join(lines)

    def convert(self, ct, out, subject, mask=None, centroids=None, mask_labels="verse", overwrite=False):
        """Write a VerSe-layout case from files; see ``SpineLabelLib.convert.convert_case``."""
        from SpineLabelLib.convert import convert_case

        return convert_case(ct, out, subject, mask=mask, centroids=centroids, mask_labels=mask_labels, overwrite=overwrite)

    def evaluate(self, gt, pred):
        """VerSe metrics; see ``SpineLabelLib.verse.evaluate.evaluate_paths``."""
        from SpineLabelLib.verse.evaluate import evaluate_paths

        return evaluate_paths(gt, pred)

    def evaluateReport(self, gt, pred):
        """The metrics of :meth:`evaluate` as the tables ``spinelabel evaluate`` prints."""
        from SpineLabelLib.verse.metrics import format_case_table

        results, summary, unmatchedGt, unmatchedPred = self.evaluate(gt, pred)
        parts = [format_case_table(case) for case in results]
        parts.append("mean / median over cases: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
        if unmatchedGt or unmatchedPred:
            parts.append(f"unmatched ground truth: {list(unmatchedGt)}; unmatched predictions: {list(unmatchedPred)}")
        return "\n\n".join(parts)

    def demo(self, out, overwrite=True):
        from SpineLabelLib.demo import run_demo

        return run_demo(out, overwrite=overwrite)

    # -- files <-> scene --------------------------------------------------------------------------
    def loadCase(self, case, scene=None):
        """Load a VerSe case (``VerseCase``) into the scene: CT volume, vertebra segmentation
        (when the case has a mask), centroid point list (when it has centroids).
        Returns ``(volumeNode, segmentationNode or None, markupsNode or None)``."""
        from SpineLabelLib.verse.layout import load_case

        data = load_case(case)
        return self.addCase(data.ct, data.mask, data.centroids_ijk, case.subject, scene)

    def addCase(self, ct, mask=None, centroidsIjk=None, name="case", scene=None):
        """Put library objects into the scene (see ``SpineLabelLib.slicer.mrml``)."""
        from SpineLabelLib.slicer import mrml

        scene = scene or slicer.mrmlScene
        volume = mrml.image_to_volume_node(ct, scene, f"{name} CT")
        volume.CreateDefaultDisplayNodes()
        segmentation = markups = None
        if mask is not None:
            segmentation = mrml.labelmap_to_segmentation_node(mask, scene, name=f"{name} vertebrae", reference_volume_node=volume)
            segmentation.CreateDefaultDisplayNodes()
        if centroidsIjk:
            markups = mrml.centroids_to_markups(centroidsIjk, ct, scene, name=f"{name} centroids")
            markups.CreateDefaultDisplayNodes()
        return volume, segmentation, markups

    def caseFromScene(self, volumeNode, segmentationNode, centroidsNode=None):
        """``(ct Image, VerSe mask Image on the CT grid, centroids {value: ijk} or None)``
        from the scene, through Slicer's labelmap export (exact on the CT grid)."""
        from SpineLabelLib.slicer import mrml

        if volumeNode is None or segmentationNode is None:
            raise ValueError("select a CT volume and a vertebra segmentation first")
        ct = mrml.volume_node_to_image(volumeNode)
        mask = mrml.segmentation_node_to_labelmap(segmentationNode, volumeNode)
        centroids = None
        if centroidsNode is not None and centroidsNode.GetNumberOfControlPoints():
            centroids = mrml.markups_to_centroids(centroidsNode, ct)
        return ct, mask, centroids

    def writeCase(self, out, subject, ct, mask, centroids=None, snapshot=True, overwrite=False):
        """Write a VerSe case (``SpineLabelLib.verse.layout.write_case``); centroids are the
        vertebral-body centres computed from the mask when none are given."""
        from SpineLabelLib.verse.layout import write_case

        return write_case(out, subject, ct, mask, centroids, snapshot=snapshot, overwrite=overwrite)

    def exportCase(self, volumeNode, segmentationNode, centroidsNode, out, subject, snapshot=True, overwrite=False):
        """The scene's case written in the VerSe layout; returns the ``VerseCase``."""
        ct, mask, centroids = self.caseFromScene(volumeNode, segmentationNode, centroidsNode)
        return self.writeCase(out, subject, ct, mask, centroids, snapshot=snapshot, overwrite=overwrite)

    # -- label-sequence edits -------------------------------------------------------------------------
    def applyEdit(self, volumeNode, segmentationNode, centroidsNode, name, **params):
        """Apply one edit of ``SpineLabelLib.edit.EDITS`` (relabel, shift, insert, remove,
        merge, split, delete) to the scene's vertebrae: segments and centroid points are
        rewritten from the edited state. Returns the centroid point list node."""
        from SpineLabelLib.edit import EDITS, LabelState
        from SpineLabelLib.slicer import mrml
        from SpineLabelLib.verse.body import body_centroids

        ct, mask, centroids = self.caseFromScene(volumeNode, segmentationNode, centroidsNode)
        state = LabelState(mask, dict(centroids) if centroids else body_centroids(mask, ct=ct))
        edited = EDITS[name](state, **params)
        mrml.labelmap_to_segmentation_node(edited.mask, segmentationNode.GetScene(), node=segmentationNode,
                                           reference_volume_node=volumeNode)
        node = mrml.centroids_to_markups(edited.centroids_ijk, edited.mask, segmentationNode.GetScene(), node=centroidsNode,
                                         name=f"{segmentationNode.GetName()} centroids")
        if centroidsNode is None:
            node.CreateDefaultDisplayNodes()
        return node

    # -- vertebrae ------------------------------------------------------------------------------------
    def computeCentroids(self, volumeNode, segmentationNode, markupsNode=None):
        """Vertebral-BODY centroids of the segments (``SpineLabelLib.verse.body``) into a
        point list (``markupsNode`` or a new one); returns the node."""
        from SpineLabelLib.slicer import mrml
        from SpineLabelLib.verse.body import body_centroids

        ct, mask, _ = self.caseFromScene(volumeNode, segmentationNode)
        centroids = body_centroids(mask, ct=ct)
        scene = segmentationNode.GetScene()
        node = mrml.centroids_to_markups(centroids, mask, scene, node=markupsNode, name=f"{segmentationNode.GetName()} centroids")
        if markupsNode is None:
            node.CreateDefaultDisplayNodes()
        return node

    def vertebrae(self, volumeNode, segmentationNode, centroidsNode=None):
        """One row per vertebra, head to feet: ``value``, ``name``,
        ``flags`` (QA messages, ``SpineLabelLib.qa``) and ``centroid_ras`` (the point of
        ``centroidsNode``, else the body centroid)."""
        import numpy as np
        from SpineLabelLib import labels, qa
        from SpineLabelLib.verse.body import body_centroids

        ct, mask, centroids = self.caseFromScene(volumeNode, segmentationNode, centroidsNode)
        values = labels.sort_anatomical(v for v in np.unique(mask.array) if labels.is_vertebra(v))
        centroids = dict(centroids or {})
        missing = [v for v in values if v not in centroids]
        if missing:
            centroids.update(body_centroids(mask, labels=missing, ct=ct))
        flags = qa.flags_by_label(qa.check_labels(mask, {v: centroids[v] for v in values if v in centroids}, ct))
        return [
            {
                "value": v,
                "name": labels.name_of(v),
                "flags": [f.message for f in flags.get(v, [])],
                "centroid_ras": tuple(float(x) for x in mask.index_to_world(centroids[v])),
            }
            for v in values
        ]


#
# Self-test (runs inside Slicer; needs no model weights)
#
class SpineLabelTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_round_trip()
        self.setUp()
        self.test_scene_round_trip_and_export()
        self.setUp()
        self.test_click_effect_registered()

    def test_demo_round_trip(self):
        self.delayDisplay("SpineLabel demo round trip")
        out = os.path.join(slicer.app.temporaryPath, "SpineLabelSelfTest")
        result = SpineLabelLogic().demo(out, overwrite=True)
        self.assertEqual(result["metrics"].id_rate, 1.0)
        self.assertGreater(result["metrics"].dice_mean, 0.99)
        volume = slicer.util.loadVolume(str(result["case"].ct))
        self.assertIsNotNone(volume)

    def test_scene_round_trip_and_export(self):
        """A synthetic case into the scene and back out through Slicer's export: the
        written mask equals the phantom voxel for voxel; QA rows and centroids work."""
        import numpy as np
        from SpineLabelLib.image import load_image
        from SpineLabelLib.synthetic import make_phantom

        self.delayDisplay("Scene round trip (oblique PIR grid, T13 and L6)")
        phantom = make_phantom(first="T11", last="sacrum", t13=True, l6=True, spacing=(2, 2, 2), axcodes="PIR", oblique_deg=12)
        logic = SpineLabelLogic()
        volume, segmentation, markups = logic.addCase(phantom.ct, phantom.mask, phantom.centroids_ijk, "selftest")
        rows = logic.vertebrae(volume, segmentation, markups)
        self.assertEqual([r["name"] for r in rows][-3:], ["L5", "L6", "sacrum"])
        self.assertIn("T13", [r["name"] for r in rows])
        out = os.path.join(slicer.app.temporaryPath, "SpineLabelSelfTestExport")
        case = logic.exportCase(volume, segmentation, markups, out, "selftest", snapshot=False, overwrite=True)
        written = load_image(case.mask)
        self.assertTrue(np.array_equal(written.array, phantom.mask.array))
        self.assertTrue(np.allclose(written.affine, phantom.mask.affine, atol=1e-4))
        logic.applyEdit(volume, segmentation, markups, "delete", value=28)  # T13
        ct, mask, _ = logic.caseFromScene(volume, segmentation)
        self.assertNotIn(28, np.unique(mask.array))
        self.assertIs(logic.computeCentroids(volume, segmentation, markups), markups)
        self.assertEqual(markups.GetNumberOfControlPoints(), len(rows) - 1)

    def test_click_effect_registered(self):
        self.delayDisplay("Click-to-correct effect is registered")
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        self.assertIsNotNone(editor.effectByName(CLICK_EFFECT_NAME))
        self.delayDisplay("Test passed")
