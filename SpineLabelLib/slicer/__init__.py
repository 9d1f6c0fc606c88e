"""Bridges between SpineLabelLib and 3D Slicer.

* :mod:`SpineLabelLib.slicer.mrml` converts MRML nodes (volume, segmentation, markups)
  to and from library types (:class:`~SpineLabelLib.image.Image`, VerSe labelmaps,
  centroid dicts) with exact geometry. It needs Slicer's MRML libraries (inside Slicer,
  or the ``slicer-core`` wheel) but no Qt.
* :mod:`SpineLabelLib.slicer.dependencies` installs missing Python packages into Slicer's
  Python after asking the user.

Importing this package needs neither: each submodule imports ``slicer``/``vtk`` itself.
"""
