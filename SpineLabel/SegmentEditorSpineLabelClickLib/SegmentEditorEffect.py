"""Segment Editor effect "SpineLabel click": click-to-correct one vertebra.

A left click in a slice view is a positive click ("this is the vertebra"); Shift+click,
or any click while "Negative clicks" is on, is a negative click ("this is not"). The click
position is mapped to voxel (i, j, k) of the source volume, parent transforms included
(``SpineLabelLib.slicer.mrml.world_to_ijk``), and handed to the library's click-to-correct
session (``SpineLabelLib.interactive``) for the selected segment's vertebra. The result
replaces the selected segment after ``saveStateForUndo()``, so Slicer's undo/redo works.
Other vertebrae are locked by the library and never change.

The engine and the SAM checkpoint come from the SpineLabel module's settings.
"""
import logging
import os

import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

EFFECT_NAME = "SpineLabel click"
SETTING_CLICK_ENGINE = "SpineLabel/ClickEngine"
SETTING_SAM_CHECKPOINT = "SpineLabel/SamCheckpoint"


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = EFFECT_NAME
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self._session = None
        self._sessionKey = None
        self._stale = True
        self._writing = False
        self._observed = None
        self._observerTags = []
        self.negative = False

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        here = os.path.dirname(os.path.abspath(__file__))
        for folder in (os.path.dirname(here), os.path.dirname(os.path.dirname(here))):
            path = os.path.join(folder, "Resources", "Icons", "SpineLabel.png")
            if os.path.exists(path):
                return qt.QIcon(path)
        return qt.QIcon()

    def helpText(self):
        return (
            "<html>Click-to-correct the selected vertebra segment.<p>"
            "<b>Left click</b> in a slice view: part of the vertebra. <b>Shift+click</b> (or "
            "'Negative clicks'): not part of it. Each click recomputes the vertebra; other vertebrae "
            "stay as they are. Undo/redo with the Segment Editor's buttons (Ctrl+Z / Ctrl+Y). "
            "The segment must carry a VerSe name (C1...L6, T13, sacrum). Engine and SAM checkpoint "
            "are chosen in the SpineLabel module.</html>"
        )

    # -- options -------------------------------------------------------------------------------
    def setupOptionsFrame(self):
        self.engineLabel = qt.QLabel()
        self.scriptedEffect.addLabeledOptionsWidget("Engine:", self.engineLabel)
        self.negativeCheckBox = qt.QCheckBox("Negative clicks")
        self.negativeCheckBox.toolTip = "Clicks mark 'not this vertebra' (Shift+click does the same)"
        self.negativeCheckBox.connect("toggled(bool)", self.setNegative)
        self.scriptedEffect.addOptionsWidget(self.negativeCheckBox)
        self.acceptButton = qt.QPushButton("New click list")
        self.acceptButton.toolTip = "Keep the current result; the next clicks start a new refinement"
        self.acceptButton.connect("clicked()", self.onAccept)
        self.scriptedEffect.addOptionsWidget(self.acceptButton)

    def setNegative(self, negative):
        self.negative = bool(negative)
        if hasattr(self, "negativeCheckBox") and self.negativeCheckBox.checked != self.negative:
            self.negativeCheckBox.checked = self.negative

    def updateGUIFromMRML(self):
        engine, checkpoint = self._engineSettings()
        self.engineLabel.text = engine + (f" ({os.path.basename(checkpoint)})" if engine == "sam" and checkpoint else "")

    def onAccept(self):
        if self._session is not None:
            self._session.accept()

    # -- activation ------------------------------------------------------------------------------
    def activate(self):
        self._stale = True
        self._observeSegmentation()

    def deactivate(self):
        self._unobserveSegmentation()
        self._closeSession()

    def _observeSegmentation(self):
        self._unobserveSegmentation()
        segmentationNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        if segmentationNode is None:
            return
        segmentation = segmentationNode.GetSegmentation()
        for event in (slicer.vtkSegmentation.RepresentationModified, slicer.vtkSegmentation.SegmentAdded,
                      slicer.vtkSegmentation.SegmentRemoved, slicer.vtkSegmentation.SegmentModified):
            self._observerTags.append(segmentation.AddObserver(event, self._onSegmentationChanged))
        self._observed = segmentation

    def _unobserveSegmentation(self):
        if self._observed is not None:
            for tag in self._observerTags:
                self._observed.RemoveObserver(tag)
        self._observed = None
        self._observerTags = []

    def _onSegmentationChanged(self, caller, event):
        if not self._writing:  # edited elsewhere (other effect, undo): the session must restart
            self._stale = True

    # -- clicks ------------------------------------------------------------------------------------
    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if eventId != vtk.vtkCommand.LeftButtonPressEvent:
            return False
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        xy = callerInteractor.GetEventPosition()
        ras = self.xyToRas(xy, viewWidget)
        negative = self.negative or bool(callerInteractor.GetShiftKey())
        with slicer.util.tryWithErrorDisplay("SpineLabel click-to-correct failed.", waitCursor=True):
            self.click(ras, positive=not negative)
        return True  # the click is consumed: no other effect or view action

    def click(self, ras, positive=True):
        """Apply one click at world position ``ras`` (mm) to the selected vertebra segment.

        Also usable from the Python console: ``effect.self().click([x, y, z], positive=False)``.
        """
        import numpy as np
        from SpineLabelLib.slicer import mrml

        params = self.scriptedEffect.parameterSetNode()
        segmentationNode = params.GetSegmentationNode()
        volumeNode = params.GetSourceVolumeNode() if hasattr(params, "GetSourceVolumeNode") else params.GetMasterVolumeNode()
        segmentId = params.GetSelectedSegmentID()
        if segmentationNode is None or volumeNode is None or not segmentId:
            raise ValueError("select a segmentation, a source volume and a vertebra segment first")
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        label = mrml.segment_value(segment)
        ijk = np.rint(mrml.world_to_ijk(volumeNode, np.asarray(ras, dtype=float))).astype(int)
        session = self._sessionFor(volumeNode, segmentationNode)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(session.ct.shape)):
            raise ValueError(f"the click at RAS {tuple(round(float(x), 1) for x in ras)} is outside the source volume")
        labelmap = session.refine(label, [(tuple(int(x) for x in ijk), bool(positive))])
        self._writeSegment(session, labelmap == label, segmentationNode)

    def _engineSettings(self):
        settings = qt.QSettings()
        return settings.value(SETTING_CLICK_ENGINE, "classical"), settings.value(SETTING_SAM_CHECKPOINT, "")

    def _sessionFor(self, volumeNode, segmentationNode):
        from SpineLabelLib.interactive import open_session
        from SpineLabelLib.slicer import mrml

        engine, checkpoint = self._engineSettings()
        key = (volumeNode.GetID(), segmentationNode.GetID(), engine, checkpoint)
        if self._session is None or self._stale or key != self._sessionKey:
            self._closeSession()
            ct = mrml.volume_node_to_image(volumeNode)
            labelmap = mrml.segmentation_node_to_labelmap(segmentationNode, volumeNode)
            options = {"checkpoint": checkpoint} if engine == "sam" else {}
            if engine == "sam":
                from SpineLabelLib.slicer.dependencies import ensure

                ensure(["sam"])
            self._session = open_session(ct, labelmap.array, engine=engine, **options)
            self._sessionKey = key
            self._stale = False
            if segmentationNode.GetSegmentation() is not self._observed:
                self._observeSegmentation()
        return self._session

    def _writeSegment(self, session, binary, segmentationNode):
        from SpineLabelLib.slicer import mrml

        oriented = mrml.image_to_oriented_image_data(session.ct.with_array(binary.astype("uint8")), segmentationNode)
        self.scriptedEffect.saveStateForUndo()
        self._writing = True
        try:
            self.scriptedEffect.modifySelectedSegmentByLabelmap(
                oriented, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet
            )
        finally:
            self._writing = False

    def _closeSession(self):
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # closing only frees caches
                logging.exception("SpineLabel: closing the click session failed")
        self._session = None
        self._sessionKey = None
