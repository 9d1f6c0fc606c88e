"""SpineLabel: vertebra labelling and VerSe dataset building in 3D Slicer.

Thin by design. The widget wires Resources/UI/SpineLabel.ui to :class:`SpineLabelLogic`;
the logic turns MRML nodes into SpineLabelLib objects and back (through
``SpineLabelLib.slicer.mrml``) and calls the library. Nothing here computes anything the
library does not already offer. ``SpineLabelLogic`` works without the widget, e.g. from
Slicer's Python console or ``scripts/slicer_batch.py``.
"""
import getpass
import logging
import os
import sys
import time

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
SETTING_STORE = "SpineLabel/StoreUrl"
SETTING_USER = "SpineLabel/User"
SETTING_AUTO_ENGINE = "SpineLabel/AutoEngine"
SETTING_AUTO_PATH = "SpineLabel/AutoModelPath"


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
        self._records = {}
        #: the open review queue (main-thread connection; background jobs open their own)
        self._queue = None
        self._queueRows = []
        #: segmentation node ID -> what its vertebrae are compared with (saved version / engine result)
        self._references = {}
        self._job = None
        self._jobTimer = None

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
        self.ui.storeUrlLineEdit.text = settings.value(SETTING_STORE, "")
        self.ui.userLineEdit.text = settings.value(SETTING_USER, "") or getpass.getuser()
        from SpineLabelLib.interactive import ENGINES

        for name in sorted(ENGINES):
            self.ui.clickEngineComboBox.addItem(name)
        self.ui.clickEngineComboBox.currentText = settings.value(SETTING_CLICK_ENGINE, "classical")
        self.ui.samCheckpointPathLineEdit.currentPath = settings.value(SETTING_SAM_CHECKPOINT, "")
        for name in self.logic.engineNames():
            self.ui.autoEngineComboBox.addItem(name)
        self.ui.autoEngineComboBox.currentText = settings.value(SETTING_AUTO_ENGINE, "classical")
        self.ui.autoPathLineEdit.currentPath = settings.value(SETTING_AUTO_PATH, "")
        for role in ("annotate", "review"):
            self.ui.roleComboBox.addItem(role)
        from SpineLabelLib.slicer.review import GENANT_GRADES

        for value, text in GENANT_GRADES:
            self.ui.fractureGradeComboBox.addItem(text, -1 if value is None else value)

        self.ui.openDatasetButton.connect("clicked(bool)", self.onOpenDataset)
        self.ui.validateDatasetButton.connect("clicked(bool)", self.onValidateDataset)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.casesTableWidget.connect("cellDoubleClicked(int,int)", lambda row, col: self.onLoadCase())
        self.ui.openQueueButton.connect("clicked(bool)", self.onOpenQueue)
        self.ui.initQueueButton.connect("clicked(bool)", self.onInitQueue)
        self.ui.storeUrlLineEdit.connect("editingFinished()", self.onQueueSettingsChanged)
        self.ui.userLineEdit.connect("editingFinished()", self.onQueueSettingsChanged)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.ui.openQueueCaseButton.connect("clicked(bool)", self.onOpenQueueCase)
        self.ui.queueTableWidget.connect("cellDoubleClicked(int,int)", lambda row, col: self.onOpenQueueCase())
        self.ui.renewClaimButton.connect("clicked(bool)", self.onRenewClaim)
        self.ui.releaseClaimButton.connect("clicked(bool)", self.onReleaseClaim)
        self.ui.refreshQueueButton.connect("clicked(bool)", self.onRefreshQueue)
        self.ui.autoEngineComboBox.connect("currentIndexChanged(int)", self.onAutoSettingsChanged)
        self.ui.autoPathLineEdit.connect("currentPathChanged(QString)", self.onAutoSettingsChanged)
        self.ui.runAutoButton.connect("clicked(bool)", self.onRunAuto)
        self.ui.queueAutoButton.connect("clicked(bool)", self.onQueueAuto)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
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
        self.ui.saveAttributesButton.connect("clicked(bool)", self.onSaveAttributes)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.approveButton.connect("clicked(bool)", self.onApprove)
        self.ui.flagButton.connect("clicked(bool)", self.onFlag)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluate)
        self.onAutoSettingsChanged()
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self._disconnectGui()
        if self._job is not None:
            self._job.cancel()
        if self._jobTimer is not None:
            self._jobTimer.stop()
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._disconnectGui()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self._references = {}

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
        haveQueue = self._queue is not None
        for button in (self.ui.nextCaseButton, self.ui.openQueueCaseButton, self.ui.refreshQueueButton,
                       self.ui.queueAutoButton):
            button.enabled = haveQueue
        self.ui.runAutoButton.enabled = bool(p and p.inputVolume)
        queueCase = bool(haveQueue and p and p.inputVolume and self.logic.queueCaseOf(p.inputVolume))
        for button in (self.ui.renewClaimButton, self.ui.releaseClaimButton, self.ui.approveButton, self.ui.flagButton,
                       self.ui.saveAttributesButton):
            button.enabled = queueCase
        self.ui.submitButton.enabled = bool(queueCase and p.segmentation)
        self.ui.cancelButton.enabled = bool(self._job is not None and self._job.cancellable and not self._job.finished)

    # -- messages and background work --------------------------------------------------
    def _show(self, text):
        self.ui.statusTextBrowser.setPlainText(text)

    def _runInBackground(self, what, function, onDone, cancellable=False):
        """Run ``function(job)`` (library work only: no MRML or Qt access) in a thread while
        the GUI stays responsive; the progress bar follows ``job.progress``/``job.step``,
        Cancel asks a ``cancellable`` job to stop at its next progress report, and
        ``onDone(result)`` runs on the main thread (a QTimer polls the job). One job at a time."""
        from SpineLabelLib.slicer.jobs import Job

        if self._job is not None and not self._job.finished:
            raise RuntimeError(f"{self._job.name} is still running: wait for it or cancel it first")
        job = Job(what, function, cancellable=cancellable)
        timer = qt.QTimer()
        timer.setInterval(100)

        def poll():
            fraction, message = job.state()
            if fraction is None:
                self.ui.progressBar.setRange(0, 0)
            else:
                self.ui.progressBar.setRange(0, 100)
                self.ui.progressBar.setValue(int(round(100 * fraction)))
            self.ui.progressBar.setFormat(f"{what}: {message} %p%" if message else f"{what} %p%")
            if not job.finished:
                return
            timer.stop()
            self._jobTimer = None
            self.ui.progressBar.visible = False
            self._updateButtons()
            if job.cancelled:
                self._show(f"{what}: cancelled")
                return
            if job.error is not None:
                logging.error("SpineLabel: %s failed", what, exc_info=job.error)
                slicer.util.errorDisplay(f"{what} failed:\n\n{job.error}")
                self._show(f"{what} failed: {job.error}")
                return
            with slicer.util.tryWithErrorDisplay(f"{what}: could not show the result", waitCursor=True):
                onDone(job.result)

        timer.connect("timeout()", poll)
        self._job, self._jobTimer = job, timer
        self.ui.progressBar.setRange(0, 0)
        self.ui.progressBar.visible = True
        self._show(f"{what}...")
        job.start()
        timer.start()
        self._updateButtons()

    def onCancel(self):
        if self._job is not None and self._job.cancel():
            self._show(f"{self._job.name}: cancelling (at its next step)...")

    # -- dataset (files) ------------------------------------------------------------------
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
        with slicer.util.tryWithErrorDisplay("Could not start the validation."):
            self._runInBackground("Validation", lambda job: self.logic.validateDataset(folder), self._show)

    def onLoadCase(self):
        row = self.ui.casesTableWidget.currentRow()
        if row < 0 or row >= len(self._cases):
            slicer.util.errorDisplay("Select a case in the table first.")
            return
        with slicer.util.tryWithErrorDisplay("Could not load the case.", waitCursor=True):
            case = self._cases[row]
            volume, segmentation, centroids = self.logic.loadCase(case)
            self._setCase(volume, segmentation, centroids, case.subject)

    def _setCase(self, volume, segmentation, centroids, subject):
        self._parameterNode.inputVolume = volume
        self._parameterNode.segmentation = segmentation
        self._parameterNode.centroids = centroids
        self._parameterNode.subject = subject
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        if segmentation is not None:
            self.onRunQA()
        else:
            self.ui.vertebraeTableWidget.setRowCount(0)
            self._rows = []
        self._updateButtons()

    # -- review queue ------------------------------------------------------------------------
    def _queueLocation(self):
        """(dataset folder, store URL or None) of the open queue, for background jobs."""
        return str(self._queue.dataset), self._queue.store.url

    def _user(self):
        user = self.ui.userLineEdit.text.strip()
        if not user:
            raise ValueError("enter your user name first (it is recorded with every claim and save)")
        return user

    def onQueueSettingsChanged(self):
        settings = qt.QSettings()
        settings.setValue(SETTING_STORE, self.ui.storeUrlLineEdit.text.strip())
        settings.setValue(SETTING_USER, self.ui.userLineEdit.text.strip())

    def onOpenQueue(self):
        self.onQueueSettingsChanged()
        folder = self.ui.datasetPathLineEdit.currentPath
        qt.QSettings().setValue(SETTING_DATASET, folder)
        with slicer.util.tryWithErrorDisplay("Could not open the queue (Init queue creates one).", waitCursor=True):
            queue = self.logic.openQueue(folder, self.ui.storeUrlLineEdit.text)
            if self._queue is not None:
                self._queue.close()
            self._queue = queue
            self.onRefreshQueue()

    def onInitQueue(self):
        self.onQueueSettingsChanged()
        folder = self.ui.datasetPathLineEdit.currentPath
        store = self.ui.storeUrlLineEdit.text
        with slicer.util.tryWithErrorDisplay("Could not initialise the queue.", waitCursor=True):
            user = self._user()
            self.logic.ensureStoreDependencies(store)

            def done(report):
                self.onOpenQueue()
                self._show(report + "\n" + self.ui.statusTextBrowser.toPlainText())

            self._runInBackground("Queue init", lambda job: self.logic.initQueue(folder, store, user, job.step), done,
                                  cancellable=True)

    def onRefreshQueue(self):
        if self._queue is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not read the queue.", waitCursor=True):
            self._queueRows, summary = self.logic.queueRows(self._queue)
            table = self.ui.queueTableWidget
            table.setRowCount(len(self._queueRows))
            for row, info in enumerate(self._queueRows):
                for col, text in enumerate(info["cells"]):
                    item = qt.QTableWidgetItem(text)
                    item.setToolTip(text)
                    table.setItem(row, col, item)
            table.resizeColumnsToContents()
            self._show(f"{self._queue.store.url}\n{summary}")
            self._updateButtons()

    def onNextCase(self):
        with slicer.util.tryWithErrorDisplay("Could not claim the next case.", waitCursor=True):
            user, role = self._user(), self.ui.roleComboBox.currentText
            case = self.logic.nextCase(self._queue, user, role)
            if case is None:
                self.onRefreshQueue()
                self._show(f"No case to {role} for {user}.")
                return
            self._loadQueueCase(case.case_id)

    def onOpenQueueCase(self):
        row = self.ui.queueTableWidget.currentRow()
        if not 0 <= row < len(self._queueRows):
            slicer.util.errorDisplay("Select a case in the queue table first.")
            return
        with slicer.util.tryWithErrorDisplay("Could not claim the case.", waitCursor=True):
            caseId = self._queueRows[row]["case_id"]
            self.logic.claimCase(self._queue, caseId, self._user())
            self._loadQueueCase(caseId)

    def _loadQueueCase(self, caseId):
        dataset, store = self._queueLocation()

        def done(data):
            volume, segmentation, centroids = self.logic.addQueueCase(data)
            if segmentation is not None:
                self._references[segmentation.GetID()] = {"saved": data.mask, "queueCase": caseId}
            self._setCase(volume, segmentation, centroids, data.case.subject)
            self.onRefreshQueue()
            self._show(f"{caseId}: {data.case.status}, version {data.case.current_version or '-'}"
                       + ("" if segmentation is not None else " (no labels yet: run the Automatic section)"))

        self._runInBackground(f"Loading {caseId}", lambda job: self.logic.readQueueCase(dataset, store, caseId), done)

    def _currentCaseId(self):
        caseId = self.logic.queueCaseOf(self._parameterNode.inputVolume)
        if not caseId or self._queue is None:
            raise ValueError("load a case from the queue first (Next case or Open selected)")
        return caseId

    def onRenewClaim(self):
        with slicer.util.tryWithErrorDisplay("Could not renew the claim.", waitCursor=True):
            case = self.logic.renewClaim(self._queue, self._currentCaseId(), self._user())
            self.onRefreshQueue()
            self._show(f"{case.case_id}: claimed by {case.assignee} until "
                       f"{time.strftime('%H:%M', time.localtime(case.claim_expires))}")

    def onReleaseClaim(self):
        with slicer.util.tryWithErrorDisplay("Could not release the claim.", waitCursor=True):
            caseId = self._currentCaseId()
            self.logic.releaseClaim(self._queue, caseId, self._user())
            self.onRefreshQueue()
            self._show(f"{caseId}: released")

    # -- automatic -------------------------------------------------------------------------------
    def onAutoSettingsChanged(self, *args):
        name = self.ui.autoEngineComboBox.currentText
        settings = qt.QSettings()
        settings.setValue(SETTING_AUTO_ENGINE, name)
        settings.setValue(SETTING_AUTO_PATH, self.ui.autoPathLineEdit.currentPath)
        with slicer.util.tryWithErrorDisplay("Unknown engine."):
            needsPath = self.logic.enginePathOption(name) is not None if name else False
            self.ui.autoPathLineEdit.enabled = needsPath
            self.ui.autoPathLabel.enabled = needsPath

    def _engineChoice(self):
        """(name, options) of the Automatic section, dependencies installed; an engine that
        cannot run here raises EngineUnavailableError with what to install."""
        name = self.ui.autoEngineComboBox.currentText
        options = self.logic.engineOptions(name, self.ui.autoPathLineEdit.currentPath)
        self.onAutoSettingsChanged()
        self.logic.checkEngine(name, options)
        return name, options

    def _engineError(self, exc):
        slicer.util.errorDisplay(f"The automatic engine cannot run here:\n\n{exc}")
        self._show(f"Engine unavailable: {exc}")

    def onRunAuto(self):
        from SpineLabelLib.auto.base import EngineUnavailableError

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start the automatic run.", waitCursor=True):
            try:
                name, options = self._engineChoice()
            except EngineUnavailableError as exc:
                self._engineError(exc)
                return
            ct = self.logic.imageOf(p.inputVolume)
            volume = p.inputVolume

            def done(result):
                segmentation, centroids = self.logic.addEngineResult(result, volume)
                self._references[segmentation.GetID()] = {"saved": result.mask, "confidence": result.confidence,
                                                          "default_status": "automatic"}
                p.segmentation, p.centroids = segmentation, centroids
                self.onRunQA()
                self._show(self.logic.engineResultText(result))

            self._runInBackground(f"Automatic ({name})", lambda job: self.logic.runEngine(ct, name, options, job.progress),
                                  done, cancellable=True)

    def onQueueAuto(self):
        from SpineLabelLib.auto.base import EngineUnavailableError

        with slicer.util.tryWithErrorDisplay("Could not start the automatic run on the queue.", waitCursor=True):
            try:
                name, options = self._engineChoice()
            except EngineUnavailableError as exc:
                self._engineError(exc)
                return
            dataset, store = self._queueLocation()

            def done(report):
                self.onRefreshQueue()
                self._show(self.logic.autoReportText(report, name))

            self._runInBackground(f"Queue auto ({name})",
                                  lambda job: self.logic.runQueueAuto(dataset, store, name, options, job.step),
                                  done, cancellable=True)

    # -- vertebrae ---------------------------------------------------------------------------
    def onRunQA(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not list the vertebrae.", waitCursor=True):
            reference = dict(self._references.get(p.segmentation.GetID(), {}))
            caseId = reference.pop("queueCase", None)  # labels of the queue's saved version
            if caseId and self._queue is not None:
                reference["records"] = self.logic.vertebraRecords(self._queue, caseId)
            self._records = {r.label: r for r in reference.get("records") or []}
            self._rows = self.logic.vertebrae(p.inputVolume, p.segmentation, p.centroids, **reference)
            table = self.ui.vertebraeTableWidget
            table.setRowCount(len(self._rows))
            for row, info in enumerate(self._rows):
                texts = (info["name"], info["status"], info["confidence_text"], "; ".join(info["flags"]) or "-")
                for col, text in enumerate(texts):
                    item = qt.QTableWidgetItem(text)
                    if col == 3 and info["flags"]:
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
            values = self.logic.attributeValues(self._records.get(self._rows[row]["value"]))
            grade = values["fracture_grade"]
            self.ui.fractureGradeComboBox.setCurrentIndex(self.ui.fractureGradeComboBox.findData(-1 if grade is None else grade))
            self.ui.implantCheckBox.checked = values["implant"]
            self.ui.transitionalCheckBox.checked = values["transitional"]
            self.ui.inFovCheckBox.checked = values["in_fov"]

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

    # -- review --------------------------------------------------------------------------------
    def onSaveAttributes(self):
        with slicer.util.tryWithErrorDisplay("The attributes were not saved.", waitCursor=True):
            value = self._selectedValue()
            grade = int(self.ui.fractureGradeComboBox.currentData)
            self.logic.setVertebraAttributes(
                self._queue, self._currentCaseId(), value, self._user(), fractureGrade=None if grade < 0 else grade,
                implant=self.ui.implantCheckBox.checked, transitional=self.ui.transitionalCheckBox.checked,
                inFov=self.ui.inFovCheckBox.checked)
            self.onRunQA()
            self._show(f"{self._rows[self.ui.vertebraeTableWidget.currentRow()]['name']}: attributes saved")

    def onSubmit(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not submit the labels.", waitCursor=True):
            caseId, user = self._currentCaseId(), self._user()
            final = not self.ui.keepClaimCheckBox.checked
            ct, mask, centroids = self.logic.caseFromScene(p.inputVolume, p.segmentation, p.centroids)
            dataset, store = self._queueLocation()
            segmentationId = p.segmentation.GetID()

            def done(version):
                self._references[segmentationId] = {"saved": mask, "queueCase": caseId}
                self.onRefreshQueue()
                self.onRunQA()
                self._show(f"{caseId}: saved as version {version}" + ("" if final else " (still claimed by you)"))

            self._runInBackground(
                f"Submit {caseId}",
                lambda job: self.logic.submitCase(dataset, store, caseId, user, mask, centroids, final=final), done)

    def onApprove(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not approve the case.", waitCursor=True):
            caseId, user = self._currentCaseId(), self._user()
            reference = self._references.get(p.segmentation.GetID(), {}) if p.segmentation else {}
            saved = reference.get("saved") if reference.get("queueCase") == caseId else None
            self.logic.checkSaved(p.inputVolume, p.segmentation, saved)
            dataset, store = self._queueLocation()

            def done(version):
                self.onRefreshQueue()
                self.onRunQA()
                self._show(f"{caseId}: version {version} approved; VerSe derivative written")

            self._runInBackground(f"Approve {caseId}", lambda job: self.logic.approveCase(dataset, store, caseId, user),
                                  done)

    def onFlag(self):
        with slicer.util.tryWithErrorDisplay("Could not flag the case.", waitCursor=True):
            caseId = self._currentCaseId()
            self.logic.flagCase(self._queue, caseId, self._user(), self.ui.flagCommentLineEdit.text)
            self.ui.flagCommentLineEdit.text = ""
            self.onRefreshQueue()
            self._show(f"{caseId}: flagged")

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
                lambda job: self.logic.writeCase(out, subject, ct, mask, centroids, snapshot=snapshot, overwrite=overwrite),
                lambda case: self._show("Written:\n" + "\n".join(str(f) for f in case.files())),
            )

    def onEvaluate(self):
        gt = self.ui.evaluateGtPathLineEdit.currentPath
        pred = self.ui.evaluatePredPathLineEdit.currentPath
        with slicer.util.tryWithErrorDisplay("Could not start the evaluation."):
            self._runInBackground("Evaluation", lambda job: self.logic.evaluateReport(gt, pred), self._show)


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

    # -- review queue (SpineLabelLib.queue) -------------------------------------------------------
    #: volume-node attribute naming the queue case a CT was loaded from
    QUEUE_CASE_ATTRIBUTE = "SpineLabel.QueueCase"

    def ensureStoreDependencies(self, store=None):
        """A PostgreSQL store needs psycopg (the ``team`` packages): installed after asking."""
        from SpineLabelLib.slicer import dependencies, review

        features = review.store_features(review.store_url(store))
        if features:
            dependencies.ensure(features)

    def openQueue(self, dataset, store=None):
        """The review queue of a VerSe dataset (``SpineLabelLib.queue.Queue``). ``store``: a
        store URL (blank or None: the SQLite file inside the dataset; a team:
        ``postgresql://user@host/db``). Raises QueueError when there is none yet."""
        from SpineLabelLib.queue import Queue
        from SpineLabelLib.slicer.review import store_url

        self.ensureStoreDependencies(store)
        return Queue(dataset, store_url(store))

    def initQueue(self, dataset, store=None, user="init", progress=None):
        """Create or extend the queue of a dataset (``Queue.init``); returns the report as
        text. ``progress(done, total, case_id)``."""
        from SpineLabelLib.queue import Queue
        from SpineLabelLib.slicer.review import init_report_text, store_url

        queue, report = Queue.init(dataset, store=store_url(store), user=user, progress=progress)
        try:
            return init_report_text(report, queue.store.url)
        finally:
            queue.close()

    def queueRows(self, queue):
        """(rows of the queue table, one-line summary): ``SpineLabelLib.slicer.review.case_rows``."""
        from SpineLabelLib.slicer.review import case_rows, queue_summary

        cases, now = queue.store.list_cases(), queue.store.now()
        return case_rows(cases, now), queue_summary(cases, now)

    def nextCase(self, queue, user, role="annotate"):
        """Claim the next case for ``user`` (``Queue.next``); None when there is none."""
        return queue.next(user, role=role)

    def claimCase(self, queue, caseId, user):
        return queue.claim(caseId, user)

    def renewClaim(self, queue, caseId, user):
        return queue.renew(caseId, user)

    def releaseClaim(self, queue, caseId, user):
        queue.release(caseId, user)

    def readQueueCase(self, dataset, store, caseId):
        """CT, current labels and vertebra records of a queue case (files and store only: safe
        in a background thread, with its own store connection)."""
        from SpineLabelLib.slicer.review import open_queue, read_queue_case

        with open_queue(dataset, store) as queue:
            return read_queue_case(queue, caseId)

    def addQueueCase(self, data, scene=None):
        """A case read by :meth:`readQueueCase` into the scene; the CT node remembers its case id."""
        volume, segmentation, markups = self.addCase(data.ct, data.mask, data.centroids_ijk, data.case.subject, scene)
        volume.SetAttribute(self.QUEUE_CASE_ATTRIBUTE, data.case.case_id)
        return volume, segmentation, markups

    def queueCaseOf(self, volumeNode):
        """The queue case id a CT volume node was loaded from, or None."""
        return volumeNode.GetAttribute(self.QUEUE_CASE_ATTRIBUTE) if volumeNode is not None else None

    def vertebraRecords(self, queue, caseId):
        return queue.store.vertebrae(caseId)

    def submitCase(self, dataset, store, caseId, user, mask, centroids=None, final=True):
        """Save labels (a mask Image on the CT grid, e.g. from :meth:`caseFromScene`) as a new
        version of a queue case (``Queue.submit``); returns the version number. ``final``
        hands the case to review, otherwise it stays claimed and in progress."""
        from SpineLabelLib.slicer.review import open_queue

        with open_queue(dataset, store) as queue:
            return queue.submit(caseId, user, mask, centroids, final=final, detail={"client": "slicer"})

    def checkSaved(self, volumeNode, segmentationNode, saved):
        """Refuse (SpineLabelError) when the scene's labels are not the saved version ``saved``."""
        from SpineLabelLib import labels
        from SpineLabelLib.errors import SpineLabelError
        from SpineLabelLib.slicer.review import changed_labels

        if saved is None or segmentationNode is None:
            raise SpineLabelError("the segmentation shown is not the case's saved version: Submit it first, or "
                                  "open the case from the queue again")
        _, mask, _ = self.caseFromScene(volumeNode, segmentationNode)
        changed = changed_labels(mask, saved)
        if changed:
            raise SpineLabelError(f"unsaved changes to {', '.join(labels.name_of(v) for v in changed)}: Submit them "
                                  "first (approval writes the saved version)")

    def approveCase(self, dataset, store, caseId, user):
        """Approve the current version and write the VerSe derivative (``Queue.approve``)."""
        from SpineLabelLib.slicer.review import open_queue

        with open_queue(dataset, store) as queue:
            return queue.approve(caseId, user)

    def flagCase(self, queue, caseId, user, comment):
        queue.flag(caseId, user, comment)

    def attributeValues(self, record):
        from SpineLabelLib.slicer.review import attribute_values

        return attribute_values(record)

    def setVertebraAttributes(self, queue, caseId, label, user, fractureGrade=None, implant=False, transitional=False,
                              inFov=True):
        """Reviewer attributes of one vertebra of the saved version (``Queue.set_attributes``):
        Genant grade 0-3 (None: not graded), implant, transitional, fully in the FOV."""
        from SpineLabelLib.slicer.review import attributes_to_save

        queue.set_attributes(caseId, label, user, **attributes_to_save(fractureGrade, implant, transitional, inFov))

    def runQueueAuto(self, dataset, store, engine, options=None, progress=None, workers=1, scheduler=None, limit=None):
        """``queue auto``: engine proposals for every new case (``SpineLabelLib.queue.batch.run_auto``);
        returns its report. Resumable: an interrupted run leaves the finished cases recorded."""
        from SpineLabelLib.queue.batch import run_auto
        from SpineLabelLib.slicer.review import open_queue

        with open_queue(dataset, store) as queue:
            return run_auto(queue, engine, options or {}, workers=workers, scheduler=scheduler, progress=progress,
                            limit=limit)

    def autoReportText(self, report, engine):
        from SpineLabelLib.slicer.review import auto_report_text

        return auto_report_text(report, engine)

    def exportQueue(self, dataset, store, out, approvedOnly=False, overwrite=False, progress=None):
        """A clean VerSe release of the queue's labels (``SpineLabelLib.queue.export.export_dataset``)."""
        from SpineLabelLib.queue.export import export_dataset
        from SpineLabelLib.slicer.review import open_queue

        with open_queue(dataset, store) as queue:
            return export_dataset(queue, out, approved_only=approvedOnly, overwrite=overwrite, progress=progress)

    # -- automatic engines (SpineLabelLib.auto) -------------------------------------------------------
    def engineNames(self):
        from SpineLabelLib.auto.base import engine_names

        return engine_names()

    def enginePathOption(self, name):
        from SpineLabelLib.slicer.review import engine_path_option

        return engine_path_option(name)

    def engineOptions(self, name, path=None):
        from SpineLabelLib.slicer.review import engine_options

        return engine_options(name, path)

    def checkEngine(self, name, options=None, install=True):
        """Install what the engine needs (``install``: after asking; main thread), then raise
        EngineUnavailableError, with what to do, when it still cannot run."""
        from SpineLabelLib.auto.base import get_engine
        from SpineLabelLib.slicer.dependencies import ensure
        from SpineLabelLib.slicer.review import engine_features

        features = engine_features(name)
        if features and install:
            ensure(features)
        get_engine(name, **(options or {})).check_available()

    def imageOf(self, volumeNode):
        """The CT of a volume node as a library Image (exact geometry)."""
        from SpineLabelLib.slicer import mrml

        if volumeNode is None:
            raise ValueError("select a CT volume first")
        return mrml.volume_node_to_image(volumeNode)

    def runEngine(self, ct, engine, options=None, progress=None):
        """An automatic engine on a CT Image (``get_engine(engine, **options).run``): the
        ``EngineResult`` on the CT's grid. No MRML: safe in a background thread."""
        from SpineLabelLib.auto.base import get_engine

        result = get_engine(engine, **(options or {})).run(ct, progress)
        ct.require_same_grid(result.mask, what=f"{engine} engine mask")
        return result

    def addEngineResult(self, result, volumeNode, scene=None):
        """An ``EngineResult`` into the scene as a new segmentation and centroid point list."""
        from SpineLabelLib.slicer import mrml

        scene = scene or volumeNode.GetScene()
        name = f"{volumeNode.GetName()} {result.engine}"
        segmentation = mrml.labelmap_to_segmentation_node(result.mask, scene, name=f"{name} vertebrae",
                                                          reference_volume_node=volumeNode)
        segmentation.CreateDefaultDisplayNodes()
        markups = mrml.centroids_to_markups(result.centroids_ijk, result.mask, scene, name=f"{name} centroids")
        markups.CreateDefaultDisplayNodes()
        return segmentation, markups

    def engineResultText(self, result):
        from SpineLabelLib.slicer.review import engine_result_text

        return engine_result_text(result)

    def segmentFolder(self, inputPath, out, engine="classical", options=None, overwrite=False, snapshot=True):
        """Segment every CT of a file or folder into VerSe cases (``SpineLabelLib.auto.segment.segment``)."""
        from SpineLabelLib.auto.segment import segment

        return segment(inputPath, out, engine=engine, engine_options=options or {}, overwrite=overwrite,
                       snapshot=snapshot, progress=True)

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

    def vertebrae(self, volumeNode, segmentationNode, centroidsNode=None, saved=None, records=None, confidence=None,
                  default_status="-"):
        """One row per vertebra, head to feet: ``value``, ``name``,
        ``flags`` (QA messages, ``SpineLabelLib.qa``), ``centroid_ras`` (the point of
        ``centroidsNode``, else the body centroid), ``status`` and ``confidence`` (+ its
        text): from the queue's vertebra ``records`` or an engine's ``confidence``, compared
        with the ``saved`` mask they describe (``SpineLabelLib.slicer.review.vertebra_status``)."""
        import numpy as np
        from SpineLabelLib import labels, qa
        from SpineLabelLib.slicer.review import format_confidence, vertebra_status
        from SpineLabelLib.verse.body import body_centroids

        ct, mask, centroids = self.caseFromScene(volumeNode, segmentationNode, centroidsNode)
        values = labels.sort_anatomical(v for v in np.unique(mask.array) if labels.is_vertebra(v))
        centroids = dict(centroids or {})
        missing = [v for v in values if v not in centroids]
        if missing:
            centroids.update(body_centroids(mask, labels=missing, ct=ct))
        flags = qa.flags_by_label(qa.check_labels(mask, {v: centroids[v] for v in values if v in centroids}, ct))
        status = vertebra_status(mask, saved, records, confidence, default_status)
        return [
            {
                "value": v,
                "name": labels.name_of(v),
                "flags": [f.message for f in flags.get(v, [])],
                "centroid_ras": tuple(float(x) for x in mask.index_to_world(centroids[v])),
                "status": status[v][0],
                "confidence": status[v][1],
                "confidence_text": format_confidence(status[v][1]),
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
        self.test_queue_workflow()
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

    def test_queue_workflow(self):
        """Review queue through the Logic, as the panel runs it: a phantom dataset -> init
        queue -> next case -> automatic (classical engine, in a background job) ->
        segmentation in the scene -> submit -> approve -> attributes."""
        import shutil
        from SpineLabelLib.slicer.jobs import Cancelled, Job
        from SpineLabelLib.synthetic import make_phantom
        from SpineLabelLib.verse.layout import write_case

        self.delayDisplay("Review queue with the classical engine")
        root = os.path.join(slicer.app.temporaryPath, "SpineLabelSelfTestQueue")
        shutil.rmtree(root, ignore_errors=True)
        phantom = make_phantom(first="T11", last="L5", spacing=(2, 2, 2))
        write_case(root, "phantom", phantom.ct, snapshot=False)
        logic = SpineLabelLogic()
        self.assertIn("1 case(s) added", logic.initQueue(root, "", "selftest"))
        queue = logic.openQueue(root, "")
        try:
            rows, summary = logic.queueRows(queue)
            self.assertEqual([r["cells"][1] for r in rows], ["new"])
            case = logic.nextCase(queue, "selftest")
            self.assertEqual(case.assignee, "selftest")
            volume, segmentation, centroids = logic.addQueueCase(logic.readQueueCase(root, "", case.case_id))
            self.assertIsNone(segmentation)
            self.assertEqual(logic.queueCaseOf(volume), case.case_id)

            def finish(job):
                job.start()
                while not job.finished:
                    slicer.app.processEvents()
                    time.sleep(0.05)
                return job

            ct = logic.imageOf(volume)
            options = logic.engineOptions("classical", "")
            logic.checkEngine("classical", options)
            cancelled = Job("auto", lambda job: logic.runEngine(ct, "classical", options, job.progress))
            cancelled.cancel()
            self.assertIsInstance(finish(cancelled).error, Cancelled)
            job = finish(Job("auto", lambda job: logic.runEngine(ct, "classical", options, job.progress)))
            self.assertIsNone(job.error)
            result = job.result
            self.assertGreater(len(result.labels), 3)
            self.assertEqual(job.state()[0], 1.0)
            segmentation, centroids = logic.addEngineResult(result, volume)
            rows = logic.vertebrae(volume, segmentation, centroids, saved=result.mask, confidence=result.confidence,
                                   default_status="automatic")
            self.assertEqual({r["status"] for r in rows}, {"automatic"})
            self.assertTrue(any(r["confidence"] is not None for r in rows))
            _, mask, points = logic.caseFromScene(volume, segmentation, centroids)
            self.assertEqual(logic.submitCase(root, "", case.case_id, "selftest", mask, points), 1)
            logic.checkSaved(volume, segmentation, mask)
            self.assertEqual(logic.approveCase(root, "", case.case_id, "selftest"), 1)
            records = logic.vertebraRecords(queue, case.case_id)
            self.assertEqual({r.status for r in records}, {"verified"})
            logic.setVertebraAttributes(queue, case.case_id, records[0].label, "selftest", fractureGrade=1)
            self.assertEqual(logic.vertebraRecords(queue, case.case_id)[0].fracture_grade, 1)
            self.assertEqual(logic.queueRows(queue)[0][0]["cells"][1], "approved")
            report = logic.exportQueue(root, "", os.path.join(root, "release"), approvedOnly=True)
            self.assertEqual(list(report.written), [case.case_id])
        finally:
            queue.close()

    def test_click_effect_registered(self):
        self.delayDisplay("Click-to-correct effect is registered")
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        self.assertIsNotNone(editor.effectByName(CLICK_EFFECT_NAME))
        self.delayDisplay("Test passed")
