"""SpineLabelLib: all SpineLabel logic, importable without Slicer or Qt.

Heavy or optional dependencies (torch, monai, segment_anything, slicer) are imported inside
the functions that need them, never at package import.
"""
__version__ = "0.1.0"
