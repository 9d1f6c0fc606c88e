"""SpineLabel scripted module (thin): everything it does is a call into SpineLabelLib.

The full annotation panel (queue, automatic engines, click-to-correct, review) arrives
with the Slicer-module issue; this file already gives Slicer users the library's VerSe
tools from the Python console through :class:`SpineLabelLogic`, and a self-test.
"""
import os

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class SpineLabel(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineLabel"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineLabel developers"]
        self.parent.helpText = (
            "Vertebra segmentation, labelling and VerSe dataset building: "
            "automatic proposal, click-to-correct, review queue, VerSe import/export."
        )
        self.parent.acknowledgementText = "Label conventions follow the VerSe benchmark (Sekuboyina et al.)."


class SpineLabelWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = SpineLabelLogic()


class SpineLabelLogic(ScriptedLoadableModuleLogic):
    """Usable without the widget, e.g. ``SpineLabelLogic().convert(...)`` in the console."""

    def convert(self, ct, out, subject, mask=None, centroids=None, mask_labels="verse", overwrite=False):
        """Write a VerSe-layout case; see ``SpineLabelLib.convert.convert_case``."""
        from SpineLabelLib.convert import convert_case

        return convert_case(ct, out, subject, mask=mask, centroids=centroids,
                            mask_labels=mask_labels, overwrite=overwrite)

    def evaluate(self, gt, pred):
        """VerSe metrics; see ``SpineLabelLib.verse.evaluate.evaluate_paths``."""
        from SpineLabelLib.verse.evaluate import evaluate_paths

        return evaluate_paths(gt, pred)

    def demo(self, out, overwrite=True):
        from SpineLabelLib.demo import run_demo

        return run_demo(out, overwrite=overwrite)


class SpineLabelTest(ScriptedLoadableModuleTest):
    """Slicer self-test: runs inside Slicer, needs no model weights."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_round_trip()

    def test_demo_round_trip(self):
        self.delayDisplay("SpineLabel demo round trip")
        out = os.path.join(slicer.app.temporaryPath, "SpineLabelSelfTest")
        result = SpineLabelLogic().demo(out, overwrite=True)
        metrics = result["metrics"]
        self.assertEqual(metrics.id_rate, 1.0)
        self.assertGreater(metrics.dice_mean, 0.99)
        volume = slicer.util.loadVolume(str(result["case"].ct))
        self.assertIsNotNone(volume)
        self.delayDisplay("Test passed")
