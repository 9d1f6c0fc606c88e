"""The weight-free ("classical") engine: vertebra segmentation and labelling by classical
image analysis, with no model file. The default engine.

Pipeline (each step in its own module):

1. :mod:`.grid` — resample the CT onto a RAS-aligned isotropic working grid (1.5 mm by
   default; coarser for huge inputs so memory stays bounded), slab by slab.
2. :mod:`.spine` — bone threshold, spinal-canal tracking (holes of the bone's slab
   projection, scored and tracked through the slices; continued beyond the track's ends
   where bone above 140 HU encloses the canal, since a thin arch on thick slices falls below
   the bone threshold near the view's ends), marrow filling, and the vertebral-body centre
   curve anterior of the canal.
3. :mod:`.discs` — the endplate-edge profile along the body curve (mean |dHU/dt| over
   the whole body cross-section); body centres = calm minima chained by dynamic
   programming with a pitch-regularity prior; one disc between consecutive centres.
   Caudal centres below edges much weaker than the discs above them are dropped: the
   remnants of the sacrum's fused discs, which show where its marrow is dark (osteoporosis).
4. :mod:`.separate` — marker-controlled watershed: each body core floods its own bone
   (posterior elements through the pedicles); ribs, pelvis and sternum go to a
   competing marker; thin dark gaps between bright plates (joints) flood last; thick
   objects flooded through a narrow contact in front of the canal (a contrast-filled
   aorta) are dropped. The output mask is flooded a second time with each vertebra's
   pedicles and laminae also seeded, in the plane through its body's mid-level
   perpendicular to the body curve, so the caudally slanting posterior elements go to
   their own vertebra (the anchors below are measured on the first flood). On inputs with
   voxels 2.5 mm thick or more, that second flood also counts thin posterior elements
   fainter than bone (down to 100 HU, higher in noisy images) behind the canal as bone
   (``separate.faint_arch_bone``): partial volume dims a lamina there. When the view
   ends at the top body's upper endplate, the midline bone behind the canal there is the
   laminae and spinous process of the vertebra above (body out of view): it gets its own
   marker and is labelled one level up, at half its neighbour's confidence.
5. :mod:`.anchors` — ribs *attached* to each separated vertebra (unlabelled bone pieces
   reaching 40 mm lateral, assigned to the vertebra they touch most), iliac wings,
   sacrum, skull base, and each segment's pitch.
   A huge top piece without a disc above (> 3000 mm² of midline bone per slice) is the
   skull base: dropped, and it anchors C1; a caudal piece cut off the sacrum (short, or
   below the iliac wings under a piece flanked by them) is merged back into it.
6. :mod:`.labelling` — hypotheses over the anatomical sequence (T13, L6, missing 12th
   rib included; the sacrum spanning one to three caudal pieces, judged by how weak the
   edges between them are; a top piece cut by the view taken for a fragment of the skull
   base, judged by its midline bone against the next piece's) scored by the anchors; the posterior gives each label's
   confidence, held below 0.5 where the chosen labels contradict the image. Pieces the
   labelling gives the sacrum are joined before the mask's separation; a top piece it
   takes for skull is dropped like one found by its size.
7. The sacrum is extended over its height and below the tracked curve (bone connected
   to it in a midline band, marrow filled per slice); its centroid is the S1 body's,
   cut from the final sacrum's cranial slab on the input grid like any sacrum's
   (``verse.body``). Each label's enclosed marrow is added (closing, cavities filled;
   then, per axial slice, marrow-dense holes a body's cortex ring encloses in front of the canal).
   The label map goes back to the input grid by nearest neighbour, and its outermost
   layer is corrected against the input's own HU (``postprocess.refine_boundary``); the
   border between consecutive bodies is re-placed at their disc on the input grid
   (:mod:`.disc_planes`: thick slices blur a disc that the working grid then misses);
   a sliver of the next vertebra's body that the view cuts off beyond the end vertebra's
   disc gets that vertebra's label, at half its neighbour's confidence
   (:mod:`.edge_slivers`: the chain of disc planes extrapolated one pitch further);
   centroids are the vertebral-body centres (``verse.body.body_centroids``) mapped to
   input indices.

Bad input gives an empty result with the reason (MR-like intensities, a slab thinner than
a vertebra, no spinal canal found), never an exception for a valid image.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ...image import Image, check_ct_intensities
from ...labels import SACRUM, name_of
from ..base import Engine, EngineResult, empty_result
from . import anchors, disc_planes, discs, edge_slivers, facets, grid, labelling, separate, spine

#: Thinner than this along any world axis, an image cannot show a vertebra with its discs.
MIN_EXTENT_MM = 30.0


#: A caudal-end piece shorter than this (mm) below a segment flanked by the iliac wings is
#: part of the sacrum (an intra-sacral edge, S1/S2 remnant), not a vertebra of its own.
SACRAL_SLIVER_MM = 15.0
#: Median midline bone area (mm² per slice) above which the top piece of the curve is skull.
SKULL_PIECE_MM2 = 3000.0
#: A vertebra cut by the view below it shows its transverse processes when at least this
#: much of it (mm from its upper disc) is in view.
TP_CUT_MIN_MM = 15.0


def _merge_sacral_sliver(bone, curves, prof, segs, disc_idx, s):
    """Drop the last "disc" when it only cuts the sacrum's caudal end off: the last piece
    (no disc below) is short, or lies below the iliac wings while the piece above it is
    flanked by them (lower sacrum and coccyx below S1-S2)."""
    if len(segs) < 2 or segs[-1].caudal_disc or not disc_idx or disc_idx[-1] != segs[-1].start:
        return segs, disc_idx
    f = anchors.segment_features(bone, curves, prof, segs[-2:], s)
    if f[0].ilium < 0.3:
        return segs, disc_idx
    short = (segs[-1].end - segs[-1].start) * discs.STEP_MM < SACRAL_SLIVER_MM
    if not short and f[1].ilium >= 0.3:
        return segs, disc_idx  # L5 (or L6) beside the iliac crest above the sacrum
    disc_idx = list(disc_idx[:-1])
    return separate.segments_from_discs(len(prof.hu), disc_idx), disc_idx


def _merge_sacrum_pieces(segs, all_segs, disc_idx, result):
    """The segments, all segments (a skull piece included), discs and labelling with the
    caudal pieces the labelling gave the sacrum joined into one segment."""
    k = 1
    while k < len(result.values) and result.values[-k - 1] == SACRUM:
        k += 1
    cut = segs[-k].start  # the disc above the sacrum's first piece
    fused = {sg.start for sg in segs[-k + 1:]}
    disc_idx = [d for d in disc_idx if d not in fused]
    merged = separate.Segment(segs[-k].start, segs[-1].end, segs[-k].cranial_disc, segs[-1].caudal_disc)
    segs = segs[:-k] + [merged]
    all_segs = [sg for sg in all_segs if sg.start < cut] + [merged]
    keep = len(result.values) - k + 1
    # the joined piece is the sacrum only if every part of it is
    confidence = result.confidence[:keep - 1] + [min(result.confidence[keep - 1:])]
    result = dataclasses.replace(result, values=result.values[:keep], confidence=confidence,
                                 reasons=result.reasons[:keep])
    return segs, all_segs, disc_idx, result


#: Half-width (mm, right-left) and antero-posterior half-depth of the band around the canal
#: in which bone below the tracked curve is flooded into the sacrum.
SACRUM_BAND_MM = (50.0, 60.0)


#: Closing radius (mm) that bridges the sacrum's thin cortex over its wide marrow spaces.
SACRUM_CLOSE_MM = 10.5
#: Inputs with voxels this thick (mm) along some axis get the faint-arch rule
#: (``separate.faint_arch_bone``): their partial volume dims a thin lamina below bone HU.
FAINT_ARCH_SLICE_MM = 2.5
#: ...which counts posterior-element voxels above this HU as bone, or above the soft tissue
#: (SOFT_TISSUE_HU) by this many noise standard deviations where that is higher (a noisy
#: low-dose scan's soft tissue reaches 100 HU).
FAINT_ARCH_HU = 100.0
SOFT_TISSUE_HU = 50.0
FAINT_ARCH_NOISE_SIGMAS = 4.0
#: The adult sacrum's marrow is mostly yellow (fatty): its alae and lateral masses can read
#: below water. Enclosed marrow spaces count down to this HU (smoothed), in coherent pieces
#: (``separate.FATTY_OPEN_MM``), so fat itself (foramina, around the nerve roots) and noise
#: speckles in the soft tissue stay out. totalseg_example (3 mm): sacrum Dice 0.644 -> 0.705;
#: without the opening 0.727, but the noisy phantom's sacrum (80 HU noise) 0.807 -> 0.760.
SACRAL_FATTY_MARROW_HU = -50.0


def _extend_sacrum(lab, k, hu, curves, s):
    """The body curve stops near S1-S2; the lower sacrum and coccyx lie below it, the alae
    beside it. Flood bone (marrow included) over the sacrum's height and below it that is
    connected to the sacrum label within a midline band (the iliac wings and femoral heads
    lie outside it), in place."""
    from scipy import ndimage

    zs = np.nonzero((lab == k).any(axis=(0, 1)))[0]
    if zs.size == 0:
        return
    # the whole sacrum's height, not only below the tracked part: the alae's fatty marrow
    # beside S1-S2 lies outside the body zone of the separation and was left out
    ztop = int(zs.max()) + 1
    cx, cy = curves.canal[curves.z_lo]
    nx, ny, _ = lab.shape
    x0, x1 = int(max(0, cx - SACRUM_BAND_MM[0] / s)), int(min(nx, cx + SACRUM_BAND_MM[0] / s + 1))
    y0, y1 = int(max(0, cy - SACRUM_BAND_MM[1] / s)), int(min(ny, cy + SACRUM_BAND_MM[1] / s + 1))
    sub_lab = lab[x0:x1, y0:y1, :ztop]
    cand = (hu[x0:x1, y0:y1, :ztop] > spine.BODY_BONE_HU) & ((sub_lab == 0) | (sub_lab == k))
    cand = ndimage.binary_closing(cand, iterations=1)
    # fatty sacral marrow is below bone HU: fill each axial slice's cortical rings
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    cand = ndimage.binary_fill_holes(cand, structure=plane)
    cand &= (sub_lab == 0) | (sub_lab == k)
    comp, n = ndimage.label(cand)
    if n == 0:
        return
    ids = np.unique(comp[(sub_lab == k) & (comp > 0)])
    grow = np.isin(comp, ids[ids > 0]) & (sub_lab == 0)
    sub_lab[grow] = k


#: Confidence of the vertebra above the view (posterior elements only), relative to its neighbour's.
ABOVE_CONFIDENCE = 0.5


def _sacrum_centroid(mask: Image, ct: Image, work_mask: Image, lowest: list[int]) -> np.ndarray | None:
    """The S1 body centre (fractional (i, j, k) on ``ct``'s grid) of the sacrum in the
    output ``mask``, cut as :func:`verse.body.body_centroids` cuts it (its axis points to
    the lowest mobile vertebra, so that one comes too): in the input-grid box around
    ``lowest`` (the last mobile vertebra and the sacrum) found on the working grid, so a
    huge input is not copied whole. None if the output holds no sacrum body."""
    from ...verse.body import body_centroids

    ijk_work = np.argwhere(np.isin(work_mask.array, lowest))
    first, last = ijk_work.min(axis=0), ijk_work.max(axis=0)
    block_affine = work_mask.affine.copy()
    block_affine[:3, 3] = work_mask.index_to_world(first)
    lo, hi = grid.input_block(ct, block_affine, last - first + 1, pad=3)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    found = body_centroids(mask.crop(box), labels=[SACRUM], ct=ct.crop(box))
    return found[SACRUM] + lo if SACRUM in found else None


def _label_from_neighbour(confidence: dict, reasons: dict, value: int, neighbour: str, neighbour_confidence: float,
                          neighbour_reasons: list[str], why: str) -> None:
    """Confidence and reasons, in place, of a vertebra cut by the field of view whose label
    is its in-view neighbour's, one level on (posterior elements above the view's top body,
    a body sliver beyond an end disc): half the neighbour's confidence; its label stands or
    falls with the neighbour's, so the neighbour's guess reasons are repeated."""
    confidence[value] = ABOVE_CONFIDENCE * neighbour_confidence
    reasons[value] = [why, "field of view cut"] + [f"as {neighbour}: {r}" for r in neighbour_reasons if "a guess" in r]


def _label_above(value: int) -> int | None:
    """The standard VerSe label one level above ``value`` (None above C1 or below the lumbar spine)."""
    from ...labels import neighbours

    if value == SACRUM:
        return None
    return neighbours(int(value))[0]


class ClassicalEngine(Engine):
    """Weight-free engine. Options: ``spacing`` (working voxel size in mm, default 1.5),
    ``max_work_voxels`` (the working grid is coarsened beyond this, default 24 M),
    ``disc_planes`` (re-place the borders between bodies at their discs on the input grid,
    and label the next vertebra's sliver at the view's edge beyond the end discs; default
    on; off reproduces the working grid's borders, for comparison)."""

    name = "classical"

    def __init__(self, spacing: float = 1.5, max_work_voxels: int = grid.MAX_WORK_VOXELS, disc_planes: bool = True):
        self.spacing = float(spacing)
        self.disc_planes = bool(disc_planes)
        self.max_work_voxels = int(max_work_voxels)
        if not 0.3 <= self.spacing <= 5.0:
            from ...errors import SpineLabelInputError

            raise SpineLabelInputError(None, f"working spacing {self.spacing} mm is outside 0.3-5 mm")

    def segment(self, ct: Image, progress=None) -> EngineResult:
        t = {}
        t0 = time.perf_counter()

        def step(frac, msg, key=None):
            nonlocal t0
            if key:
                now = time.perf_counter()
                t[key] = now - t0
                t0 = now
            if progress:
                progress(frac, msg)

        problems = check_ct_intensities(ct)
        if problems:
            return empty_result(ct, "not segmented: " + "; ".join(problems) +
                                " (the weight-free engine needs CT in Hounsfield units)", self.name)
        extent = np.asarray(ct.shape) * ct.spacing
        if extent.min() < MIN_EXTENT_MM:
            return empty_result(ct, f"not segmented: the image is only {extent.min():.1f} mm thick along one axis "
                                    f"(shape {ct.shape}); a vertebra with its discs needs at least {MIN_EXTENT_MM:.0f} mm",
                                self.name)
        step(0.0, "resampling to the working grid")
        work = grid.to_working(ct, self.spacing, self.max_work_voxels)
        s = float(work.spacing[0])
        notes = []
        if s > self.spacing * 1.01:
            notes.append(f"large volume: worked at {s:.2f} mm instead of {self.spacing:.2f} mm to bound memory")
        step(0.15, "bone and spinal canal", "resample")
        hu = spine.smooth_hu(work.array, s)
        bone = hu > spine.BONE_HU
        curves = spine.track_canal(hu, bone, s)
        if not curves.found:
            return self._empty(ct, notes + ["no spine found: no spinal canal enclosed by bone in any slice"], t)
        filled = spine.fill_bone(bone, curves, s)
        curves.body = spine.body_curve(filled | (hu > spine.BODY_BONE_HU), curves, s)
        step(0.4, "discs", "canal")
        prof = discs.body_profile(hu, curves.body, curves.z_lo, curves.z_hi, s)
        edge, level = discs.edge_energy(hu, prof, s)
        centres = discs.detect_centres(edge, level)
        disc_idx = discs.discs_from_centres(edge, centres)
        segs = separate.segments_from_discs(len(prof.hu), disc_idx)
        segs, disc_idx = _merge_sacral_sliver(bone, curves, prof, segs, disc_idx, s)
        if not segs:
            return self._empty(ct, notes + ["no vertebra found along the spine curve (no disc-bounded segment)"], t)
        step(0.5, "separating vertebrae", "discs")
        lab = separate.separate(hu, filled, curves, prof, segs, s, disc_idx, spine.BONE_HU)
        all_segs = segs
        step(0.75, "anchors and labels", "separate")
        # the curve may run into the skull base: a huge top piece without a disc above is
        # the occiput, not a vertebra (then it anchors C1 below it)
        skull_piece = top_area = 0.0
        if len(segs) >= 3 and not segs[0].cranial_disc:
            top_area = anchors.top_segment_bone_mm2(bone, curves, prof, segs[0], s)
            if top_area >= SKULL_PIECE_MM2:
                skull_piece = top_area
                segs = segs[1:]
                lab = np.where(lab > 1, lab - 1, 0).astype(lab.dtype)
                notes.append(f"top piece of the curve is skull base ({top_area:.0f} mm² of bone per slice): not a vertebra")
        feats = anchors.segment_features(bone, curves, prof, segs, s)
        if top_area and not skull_piece:
            # a smaller fragment of the skull base at the view's top: the labelling weighs it
            next_area = anchors.top_segment_bone_mm2(bone, curves, prof, segs[1], s)
            feats[0].top_bone_ratio = top_area / next_area if next_area > 0 else None
        strengths = discs.disc_strengths(edge, disc_idx)
        for f, seg in zip(feats, segs):
            f.disc_above_strength = strengths.get(seg.start) if seg.cranial_disc else None
        ribs = anchors.attached_ribs(bone, lab, curves, s, len(segs))
        for f, (right, left) in zip(feats, ribs):
            f.rib_sides = (float(right), float(left))
            f.rib = 0.5 * (float(right) + float(left))
        # transverse processes: whole vertebrae, and those cut below their upper half (the
        # processes leave the upper half of the vertebra; a view cut above may miss them)
        for f, seg, reach in zip(feats, segs, anchors.transverse_reach(lab, curves, s, len(segs))):
            if np.isfinite(reach) and seg.cranial_disc and (seg.caudal_disc or f.length_mm >= TP_CUT_MIN_MM):
                f.tp_reach_mm = float(reach)
        # big lateral bone cranial of a rib-bearing vertebra is the scapula, not the ilium
        # (the caudal-most segment without a disc below may be the sacrum, whose "ribs" are the iliac wings)
        last = len(feats) - (0 if segs[-1].caudal_disc else 1)
        ribbed = [i for i, f in enumerate(feats[:last]) if f.rib >= 0.5]
        for f in feats[:max(ribbed) + 1] if ribbed else []:
            f.ilium = 0.0
        for f, p_sagittal in zip(feats, facets.joints_sagittal(ct, work.affine, curves, prof, segs, s)):
            f.facet_sagittal = p_sagittal
        skull = anchors.skull_above(bone, curves, prof, s)
        if skull_piece:
            skull = max(skull, skull_piece)
        try:
            result = labelling.label_segments(feats, segs[-1].caudal_disc, skull)
        except labelling.LabellingError as exc:
            return self._empty(ct, notes + [f"not labelled: {exc}"], t)
        notes += result.notes
        if result.values[0] == 0:
            # the labelling took the top piece for a fragment of the skull base: dropped as a
            # skull piece found by its size is (the mask's separation still floods it)
            skull_piece = float(feats[0].top_bone_ratio)
            segs, feats = segs[1:], feats[1:]
            result = dataclasses.replace(result, values=result.values[1:], confidence=result.confidence[1:],
                                         reasons=result.reasons[1:])
        if result.values[-2:] == [SACRUM, SACRUM]:
            # the sacrum spans several pieces: the edges between them are fused discs'
            # remnants; the mask's separation below gets one segment for it
            segs, all_segs, disc_idx, result = _merge_sacrum_pieces(segs, all_segs, disc_idx, result)
            notes.append("the sacrum was cut at the remnant of a fused disc (S1/S2): joined")
        # kept for inspection (debugging scripts, the benchmark's per-vertebra report)
        self.last_debug = {"features": feats, "values": result.values, "skull_mm2": skull,
                           "contradicted": result.contradicted}
        # the mask: separate again with each vertebra's posterior ring seeded (see separate())
        # thick slices dim a thin arch below the bone threshold: count it down to a lower
        # level, raised above the soft tissue by the noise of the (smoothed) working HU
        faint_arch_hu = None
        if float(np.max(ct.spacing)) >= FAINT_ARCH_SLICE_MM:
            faint_arch_hu = max(FAINT_ARCH_HU, SOFT_TISSUE_HU + FAINT_ARCH_NOISE_SIGMAS * spine.noise_sigma(hu))
        lab = separate.separate(hu, filled, curves, prof, all_segs, s, disc_idx, spine.BONE_HU, ring_seeds=True,
                                above_seed=not skull_piece, faint_arch_hu=faint_arch_hu)
        if skull_piece:
            lab = np.where(lab > 1, lab - 1, 0).astype(lab.dtype)
        sacrum_extended = bool(result.values) and result.values[-1] == SACRUM and not segs[-1].caudal_disc
        if sacrum_extended:
            _extend_sacrum(lab, len(segs), hu, curves, s)
            # the sacrum's marrow spaces (alae, lateral masses) are wider than a vertebra's
            separate.fill_marrow(lab, hu, [len(segs)], s, radius_mm=SACRUM_CLOSE_MM,
                                fatty_min_hu=SACRAL_FATTY_MARROW_HU)
        separate.fill_marrow(lab, hu, range(1, len(segs) + 1), s)
        separate.fill_body_holes(lab, hu, curves, range(1, len(segs) + 1), s)
        del bone, filled
        # working labels -> VerSe values
        above_idx = separate.above_label(len(segs))
        lut = np.zeros(above_idx + 1, dtype=np.uint8)
        for i, v in enumerate(result.values, start=1):
            lut[i] = v
        above = _label_above(result.values[0]) if (lab == above_idx).any() else None
        if above is not None:
            lut[above_idx] = above
        present = set(np.unique(lab).tolist()) - {0}
        work_mask = Image(lut[lab], work.affine, "classical working mask")
        del lab
        step(0.85, "centroids and mapping to the input grid", "labels")
        confidence, reasons = {}, {}
        for i, v in enumerate(result.values, start=1):
            if i not in present:
                notes.append(f"segment {i} ({name_of(v)}) had no bone after separation; dropped")
                continue
            confidence[v] = result.confidence[i - 1]
            reasons[v] = result.reasons[i - 1]
        if above is not None:
            # only its posterior elements are in view: its level is its neighbour's, one up
            top = name_of(result.values[0])
            _label_from_neighbour(confidence, reasons, above, top, result.confidence[0], result.reasons[0],
                                  f"posterior elements only (laminae, spinous process) above {top}: its body "
                                  "lies outside the field of view; labelled as the level above")
        from ..postprocess import mask_centroids

        cents_work = mask_centroids(work_mask, work.with_array(hu))
        if above is not None and above in cents_work:
            # no body in view: the body-centre cut would pick one articular process (an
            # arbitrary side); the centre of the visible arch lies on the midline
            cents_work[above] = np.argwhere(work_mask.array == above).mean(axis=0)
        centroids = {v: grid.working_to_input_ijk(p, work.affine, ct) for v, p in cents_work.items()}
        out = grid.labels_to_input(work_mask.array, work.affine, ct)
        # the bone surface at the input's own resolution (the working grid is coarser or finer)
        from ..postprocess import refine_boundary

        refine_boundary(out, ct.array)
        if self.disc_planes:
            placed = disc_planes.place_disc_borders(out, ct, without_body=[above] if above is not None else [])
            recentre = {v for p in placed if p.moved for v in (p.cranial, p.caudal)}
            for end, sliver, _ in edge_slivers.label_edge_slivers(out, ct, placed):
                recentre |= {end, sliver}
                _label_from_neighbour(confidence, reasons, sliver, name_of(end), confidence[end], reasons[end],
                                      f"a sliver of its body beyond the disc next to {name_of(end)}, cut by "
                                      "the field of view: labelled as the next level")
            # the centroid is the centre of the body as the output mask now has it
            centroids.update(disc_planes.body_centres(out, ct, recentre))
        mask = ct.with_array(out)
        mask.source = "classical engine mask"
        if sacrum_extended and SACRUM in centroids:
            # the S1 body as the reference's centroid is cut: from the final sacrum (extended,
            # marrow filled, surface refined) on the input grid. Measured on 9 phantoms and
            # totalseg_example: 7.3 mm from the reference on average, against 7.8 mm on the
            # working grid and 8.1 mm from the flood before the extension (osteoporosis's cut
            # sacrum, marrow as dark as muscle: 11.9 / 12.8 / 20.5 mm)
            s1 = _sacrum_centroid(mask, ct, work_mask, result.values[-2:])
            if s1 is not None:
                centroids[SACRUM] = s1
        # vertebrae cut by the input's field of view: centroid and label less certain
        from ..postprocess import touches_border

        for v in touches_border(mask):
            if v in confidence and v != SACRUM:
                confidence[v] *= 0.8
                reasons[v].append("touches the image edge: partly outside the field of view")
        step(1.0, "done", "output")
        return EngineResult(mask=mask, centroids_ijk=centroids, confidence=confidence, reasons=reasons,
                            notes=notes, engine=self.name, timings=t)

    def _empty(self, ct, notes, timings) -> EngineResult:
        res = empty_result(ct, notes[-1], self.name)
        res.notes = list(notes)
        res.timings = timings
        return res


__all__ = ["ClassicalEngine"]
