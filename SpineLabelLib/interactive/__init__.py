"""Click-to-correct one vertebra in 3D: engines behind one interface, sessions with undo.

    from SpineLabelLib.interactive import open_session
    s = open_session(ct, labelmap, engine="classical")   # ct: path, nibabel image or Image;
                                                        # labelmap: int array (i, j, k) on ct's grid
    new = s.refine(label=20, clicks=[((i, j, k), True), ((i2, j2, k2), False)])
    s.undo(); s.redo()

Engines (registry ``ENGINES``; one module and one ``register_engine`` line each):

* ``"classical"`` (default, weight-free): seeded 3D segmentation in a crop around the
  target (``classical.py``).
* ``"sam"``: Segment Anything (vit_b / vit_l / vit_h and MedSAM-style checkpoints) on
  bone-window slices, propagated slice by slice, with a cached, prefetched embedding per
  (case, axis, slice) (``sam.py``; needs torch and segment-anything).

Other vertebrae are locked: they are background evidence and never change unless the
caller names them in ``overwrite=``. Heavy imports (torch, segment_anything) happen only
inside the SAM engine's functions.
"""
from .base import ENGINES, Click, Engine, Proposal, RefineRequest, RefineResult, bone_window, make_engine, register_engine
from .session import Session, open_session
from . import classical  # noqa: F401  (registers "classical")
from . import sam  # noqa: F401  (registers "sam"; imports torch only when used)

__all__ = [
    "open_session", "Session", "Click", "RefineResult", "Engine", "Proposal", "RefineRequest",
    "ENGINES", "register_engine", "make_engine", "bone_window",
]
