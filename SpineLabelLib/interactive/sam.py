"""The SAM click-to-correct engine (Segment Anything, ``segment-anything`` package).

* **Checkpoint**: a user's ``.pth`` of vit_b, vit_l or vit_h, or a MedSAM-style checkpoint
  of the same architectures (a plain state dict, or one wrapped as ``{"model": ...}`` /
  ``{"state_dict": ...}``, keys possibly prefixed ``module.`` or ``sam.``). The
  architecture is read from the state dict's keys and shapes (embedding width, depth,
  head size, global-attention blocks, patch size, decoder depth) and the model built from
  segment_anything's own classes; a checkpoint that is missing, corrupt, not a SAM state
  dict, or of another architecture than the one asked for is refused with one clear line.
* **Slices**: the CT is shown to SAM one 2D slice at a time on a bone window
  (``base.bone_window``, 0..255, grey to RGB). Slices are taken along ``axis`` (default:
  the CT axis closest to the patient's head-feet direction, i.e. axial slices).
* **Prompts**: clicks on a slice are SAM points on that slice (positive/negative);
  voxels of locked neighbours on the slice add negative points; an optional 3D box gives
  a 2D box on every slice it spans. The result is **propagated** slice by slice away
  from the clicked slices: each next slice is prompted with the box of the previous
  slice's mask (enlarged a little), a positive point at its interior and SAM's own
  low-resolution logits of the previous slice, until the mask vanishes, shrinks below
  ``min_area_fraction`` of the clicked slice's, or the image ends.
* **Embeddings** are cached in a bounded LRU keyed by (case, axis, slice) and precomputed
  for ``prefetch`` nearby slices by a background thread after every refinement; the
  model runs on CUDA when available (``device="auto"``) or on the CPU.

torch and segment_anything are imported only inside the functions that need them.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import SpineLabelInputError
from .base import Engine, Proposal, RefineRequest, bone_window, register_engine

#: segment_anything registry architectures: encoder width, depth, heads, global blocks.
ARCHITECTURES = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
_PREFIXES = ("module.", "sam.", "model.")


# ----------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------
def _unwrap_state_dict(obj, path) -> dict:
    """A SAM state dict from a plain or wrapped checkpoint object (MedSAM-style too)."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(str(k).startswith("image_encoder.") for k in obj):
            for key in ("model", "state_dict", "model_state_dict", "sam"):
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict):
        raise SpineLabelInputError(path, f"is not a SAM checkpoint (it holds a {type(obj).__name__}, not a state dict)")
    sd = {}
    for k, v in obj.items():
        k = str(k)
        for prefix in _PREFIXES:
            if k.startswith(prefix) and not k.startswith("image_encoder."):
                k = k[len(prefix):]
        sd[k] = v
    if not any(k.startswith("image_encoder.") for k in sd) or not any(k.startswith("mask_decoder.") for k in sd):
        raise SpineLabelInputError(path, "is not a SAM checkpoint (no image_encoder./mask_decoder. weights in its state dict)")
    return sd


def infer_config(sd: dict, path=None) -> dict:
    """The Sam constructor parameters implied by a state dict's keys and shapes."""
    try:
        pos = sd["image_encoder.pos_embed"]
        embed_dim = int(pos.shape[-1])
        grid = int(pos.shape[1])
        patch = int(sd["image_encoder.patch_embed.proj.weight"].shape[-1])
        depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("image_encoder.blocks."))
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        global_idx = tuple(
            i for i in range(depth) if int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) == 2 * grid - 1
        )
        window = 0
        for i in range(depth):
            if i not in global_idx:
                window = (int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2
                break
        out_chans = int(sd["image_encoder.neck.0.weight"].shape[0])
        mlp_ratio = float(sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]) / embed_dim
        dec_depth = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("mask_decoder.transformer.layers."))
        dec_mlp = int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
        iou_hidden = int(sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
        num_tokens = int(sd["mask_decoder.mask_tokens.weight"].shape[0])
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise SpineLabelInputError(path, f"is not a complete SAM state dict (cannot read {exc})") from None
    return dict(embed_dim=embed_dim, depth=depth, num_heads=embed_dim // head_dim, global_attn_indexes=global_idx,
                img_size=grid * patch, patch_size=patch, window_size=window, out_chans=out_chans, mlp_ratio=mlp_ratio,
                decoder_depth=dec_depth, decoder_mlp_dim=dec_mlp, iou_head_hidden_dim=iou_hidden,
                num_multimask_outputs=num_tokens - 1)


def architecture_name(cfg: dict) -> str:
    for name, arch in ARCHITECTURES.items():
        if (cfg["embed_dim"], cfg["depth"], cfg["num_heads"], tuple(cfg["global_attn_indexes"])) == (
                arch["embed_dim"], arch["depth"], arch["num_heads"], arch["global_attn_indexes"]) and cfg["img_size"] == 1024:
            return name
    return f"custom(embed_dim={cfg['embed_dim']}, depth={cfg['depth']}, img_size={cfg['img_size']})"


def build_sam(cfg: dict):
    """A segment_anything ``Sam`` with the given configuration (random weights)."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = cfg["img_size"] // cfg["patch_size"]
    out = cfg["out_chans"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg["depth"], embed_dim=cfg["embed_dim"], img_size=cfg["img_size"], mlp_ratio=cfg["mlp_ratio"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg["num_heads"], patch_size=cfg["patch_size"],
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=tuple(cfg["global_attn_indexes"]),
            window_size=cfg["window_size"], out_chans=out),
        prompt_encoder=PromptEncoder(embed_dim=out, image_embedding_size=(grid, grid),
                                     input_image_size=(cfg["img_size"], cfg["img_size"]), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=cfg.get("num_multimask_outputs", 3),
            transformer=TwoWayTransformer(depth=cfg["decoder_depth"], embedding_dim=out, mlp_dim=cfg["decoder_mlp_dim"], num_heads=8),
            transformer_dim=out, iou_head_depth=3, iou_head_hidden_dim=cfg["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(checkpoint, model_type: str | None = None):
    """Load a SAM (or MedSAM-style) checkpoint; returns (model, architecture name).

    model_type: "vit_b", "vit_l", "vit_h" to insist on one (a checkpoint of another
    architecture is refused), or None to accept what the checkpoint holds."""
    import torch

    if checkpoint is None:
        raise SpineLabelInputError(None, "the SAM engine needs checkpoint=PATH (a vit_b/vit_l/vit_h SAM or MedSAM .pth)")
    path = Path(checkpoint)
    if not path.exists():
        raise SpineLabelInputError(path, "does not exist (SAM checkpoint)")
    if path.is_dir():
        raise SpineLabelInputError(path, "is a folder; the SAM engine needs the checkpoint file (.pth)")
    if model_type is not None and model_type not in ARCHITECTURES:
        raise SpineLabelInputError(None, f"unknown SAM model type {model_type!r}; choose vit_b, vit_l or vit_h")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of corrupt or truncated files
        raise SpineLabelInputError(path, f"cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    sd = _unwrap_state_dict(obj, path)
    cfg = infer_config(sd, path)
    name = architecture_name(cfg)
    if model_type is not None and name != model_type:
        raise SpineLabelInputError(path, f"holds a {name} SAM, not the {model_type} that was asked for (wrong architecture)")
    model = build_sam(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise SpineLabelInputError(path, f"does not match the {name} SAM architecture ({' '.join(first[:2])[:200]})") from None
    model.eval()
    return model, name


# ----------------------------------------------------------------------------------
# embedding cache
# ----------------------------------------------------------------------------------
class EmbeddingCache:
    """Bounded LRU of image embeddings keyed by (case, axis, slice), with background
    precomputation on one worker thread. Thread-safe; a request for an embedding that the
    worker is computing waits for it instead of computing it twice, and a request for one
    that nobody computes yet goes before the queued precomputations (they are dropped; the
    engine queues its nearby slices again after the refinement): on CPU an encoder call
    takes 25-45 s, so a click must not wait for a queue of guesses."""

    def __init__(self, size: int, compute):
        self.size = max(1, int(size))
        self._compute = compute  # key -> embedding
        self._data: OrderedDict = OrderedDict()
        self._pending: dict = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam-prefetch")
        self.hits = self.misses = self.prefetched = self.dropped = 0

    def _run(self, key):
        with self._model_lock:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            value = self._compute(key)
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
            self._pending.pop(key, None)
        return value

    def get(self, key):
        with self._lock:
            if key in self._data:
                self.hits += 1
                self._data.move_to_end(key)
                return self._data[key]
            fut = self._pending.get(key)
            self.misses += 1
            if fut is None:
                for other, queued in list(self._pending.items()):
                    if queued.cancel():  # not started yet
                        del self._pending[other]
                        self.dropped += 1
        if fut is not None:
            return fut.result()
        return self._run(key)

    def prefetch(self, keys) -> list[Future]:
        futures = []
        with self._lock:
            for key in keys:
                if key in self._data or key in self._pending:
                    continue
                fut = self._pool.submit(self._run, key)
                self._pending[key] = fut
                self.prefetched += 1
                futures.append(fut)
        return futures

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def keys(self) -> list:
        with self._lock:
            return list(self._data)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------
class SamEngine(Engine):
    """SAM slice prompting + slice-by-slice propagation (see the module docstring)."""

    name = "sam"

    def __init__(self, checkpoint=None, model=None, model_type: str | None = None, device: str = "auto",
                 axis: int | None = None, cache_size: int = 48, prefetch: int = 4, min_area_fraction: float = 0.05,
                 max_slices: int = 200, neighbour_points: int = 1):
        import torch

        if model is None:
            model, self.architecture = load_sam(checkpoint, model_type)
        else:
            self.architecture = "given model"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
            model = model.to(self.device)
        except (RuntimeError, AssertionError) as exc:
            raise SpineLabelInputError(None, f"cannot use device {device!r} for SAM ({exc})") from None
        self.model = model.eval()
        self.axis = axis
        self.prefetch_n = int(prefetch)
        self.min_area_fraction = float(min_area_fraction)
        self.max_slices = int(max_slices)
        self.neighbour_points = int(neighbour_points)
        self.img_size = int(model.image_encoder.img_size)
        self._ct = {}  # case -> Image (the CT whose slices the cache keys name)
        self.cache = EmbeddingCache(cache_size, self._embed_key)
        self.encoder_seconds: list[float] = []
        self.decoder_seconds: list[float] = []

    # -- slices and embeddings ---------------------------------------------------------
    def slice_axis(self, ct) -> int:
        if self.axis is not None:
            return int(self.axis)
        return int(np.argmax(np.abs(ct.direction[2, :])))  # index axis closest to head-feet

    @staticmethod
    def slice_of(array: np.ndarray, axis: int, index: int) -> np.ndarray:
        """2D slice (rows, cols) = the two remaining axes in increasing order."""
        return np.take(array, index, axis=axis)

    def _input_size(self, hw) -> tuple[int, int]:
        scale = self.img_size / max(hw)
        return int(hw[0] * scale + 0.5), int(hw[1] * scale + 0.5)

    def preprocess(self, slice_hu: np.ndarray):
        """Bone-window slice (H, W) in HU -> normalised, padded (1, 3, S, S) tensor."""
        import torch
        import torch.nn.functional as F

        img = torch.from_numpy(bone_window(slice_hu) * 255.0)[None, None].to(self.device)
        h, w = self._input_size(slice_hu.shape)
        img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return self.model.preprocess(img.expand(1, 3, h, w))

    def _embed_key(self, key):
        import torch

        case, axis, index = key
        ct = self._ct[case]
        t0 = time.perf_counter()
        with torch.inference_mode():
            emb = self.model.image_encoder(self.preprocess(self.slice_of(ct.array, axis, index)))
        self.encoder_seconds.append(time.perf_counter() - t0)
        return emb

    def embedding(self, case: str, ct, axis: int, index: int):
        self._ct[case] = ct
        return self.cache.get((case, axis, int(index)))

    # -- prompting one slice ------------------------------------------------------------
    def predict_slice(self, emb, hw, points, labels, box=None, mask_logits=None):
        """SAM on one slice: points (N, 2) as (row, col) on the slice, labels 1/0, box
        (r0, c0, r1, c1) or None, previous low-res logits or None -> (mask (H, W) bool,
        low-res logits, predicted IoU)."""
        import torch

        t0 = time.perf_counter()
        h, w = self._input_size(hw)
        sy, sx = h / hw[0], w / hw[1]
        dev = self.device
        pts = None
        if points is not None and len(points):
            p = np.asarray(points, dtype=np.float32)
            coords = np.stack([(p[:, 1] + 0.5) * sx, (p[:, 0] + 0.5) * sy], axis=1)  # SAM wants (x, y)
            pts = (torch.as_tensor(coords, device=dev)[None], torch.as_tensor(np.asarray(labels, np.int64), device=dev)[None])
        boxes = None
        if box is not None:
            r0, c0, r1, c1 = box
            boxes = torch.as_tensor([[c0 * sx, r0 * sy, (c1 + 1) * sx, (r1 + 1) * sy]], dtype=torch.float32, device=dev)
        with torch.inference_mode():
            sparse, dense = self.model.prompt_encoder(points=pts, boxes=boxes, masks=mask_logits)
            low, iou = self.model.mask_decoder(
                image_embeddings=emb, image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=mask_logits is None and box is None and (pts is None or pts[0].shape[1] == 1),
            )
            best = int(torch.argmax(iou[0]))
            low = low[:, best:best + 1]
            # the low-res logits cover the padded square input; crop the part that holds the
            # slice and upsample once, straight to the slice size (segment_anything's
            # postprocess_masks goes through the full 1024x1024 input first: same result up
            # to interpolation, several times the work on a CPU)
            side = low.shape[-1]
            crop = low[..., : max(1, round(h * side / self.img_size)), : max(1, round(w * side / self.img_size))]
            full = torch.nn.functional.interpolate(crop, size=tuple(int(v) for v in hw), mode="bilinear", align_corners=False)
        mask = (full[0, 0] > self.model.mask_threshold).cpu().numpy()
        self.decoder_seconds.append(time.perf_counter() - t0)
        return mask, low, float(iou[0, best])

    # -- the engine ---------------------------------------------------------------------
    def propose(self, req: RefineRequest) -> Proposal:
        t0 = time.perf_counter()
        ct = req.ct
        case = req.case_key
        self._ct[case] = ct
        axis = self.slice_axis(ct)
        n_slices = ct.shape[axis]
        others = [a for a in range(3) if a != axis]
        hw = (ct.shape[others[0]], ct.shape[others[1]])
        by_slice: dict[int, list] = {}
        for c in req.clicks:
            by_slice.setdefault(int(c.ijk[axis]), []).append(c)
        box2d = None
        box_range = None
        if req.box is not None:
            lo, hi = req.box
            box2d = (lo[others[0]], lo[others[1]], hi[others[0]] - 1, hi[others[1]] - 1)
            box_range = (max(lo[axis], 0), min(hi[axis], n_slices))
        seeds = sorted(s for s, cs in by_slice.items() if any(c.positive for c in cs))
        if not seeds and box_range is not None:
            seeds = [(box_range[0] + box_range[1] - 1) // 2]
        results: dict[int, np.ndarray] = {}
        locked = list(req.locked_values)

        def slice_prompt(s, prev_mask=None, prev_low=None):
            lab2d = self.slice_of(req.base, axis, s)
            pts, lbl = [], []
            for c in by_slice.get(s, []):
                pts.append((c.ijk[others[0]], c.ijk[others[1]]))
                lbl.append(1 if c.positive else 0)
            box = box2d if (box_range is not None and box_range[0] <= s < box_range[1]) else None
            if prev_mask is not None and prev_mask.any():
                rr, cc = np.nonzero(prev_mask)
                pad = 3
                box = (max(rr.min() - pad, 0), max(cc.min() - pad, 0), min(rr.max() + pad, hw[0] - 1), min(cc.max() + pad, hw[1] - 1))
                pts.append(_interior_point(prev_mask))
                lbl.append(1)
            if locked and self.neighbour_points:
                near = np.isin(lab2d, locked)
                if near.any():
                    for p in _component_points(near, self.neighbour_points):
                        pts.append(p)
                        lbl.append(0)
            return pts, lbl, box

        def run(s, prev_mask=None, prev_low=None):
            emb = self.embedding(case, ct, axis, s)
            pts, lbl, box = slice_prompt(s, prev_mask, prev_low)
            mask, low, _ = self.predict_slice(emb, hw, pts, lbl, box, prev_low)
            lab2d = self.slice_of(req.base, axis, s)
            if locked:
                mask &= ~np.isin(lab2d, locked)
            for c in by_slice.get(s, []):
                mask[c.ijk[others[0]], c.ijk[others[1]]] = c.positive
            return mask, low

        for seed in seeds:
            if seed in results:
                continue
            mask, low = run(seed)
            results[seed] = mask
            ref_area = max(int(mask.sum()), 1)
            for step in (1, -1):  # propagate towards both ends until the vertebra ends
                prev, prev_low, s = mask, low, seed + step
                count = 0
                while 0 <= s < n_slices and prev.any() and count < self.max_slices:
                    if s in results and s in by_slice:
                        break
                    m, lw = run(s, prev, prev_low)
                    if m.sum() < self.min_area_fraction * ref_area:
                        results.setdefault(s, np.zeros(hw, bool))
                        break
                    results[s] = m if s not in results else (results[s] | m)
                    prev, prev_low, s = m, lw, s + step
                    count += 1
        # negative clicks on slices the propagation did not reach remove their component
        for s, cs in by_slice.items():
            if s not in results and any(not c.positive for c in cs):
                mask, _ = run(s)
                cur = self.slice_of(req.base, axis, s) == req.label
                for c in cs:
                    if not c.positive:
                        cur &= ~_component_at(cur, (c.ijk[others[0]], c.ijk[others[1]]))
                results[s] = cur
        self._prefetch(case, ct, axis, seeds or list(by_slice), n_slices)
        if not results:
            box = (slice(0, 1),) * 3
            return Proposal(box, (req.base[box] == req.label), {"engine": "sam", "slices": 0})
        s_lo, s_hi = min(results), max(results) + 1
        sl = [slice(0, n) for n in ct.shape]
        sl[axis] = slice(s_lo, s_hi)
        box = tuple(sl)
        target = req.base[box] == req.label
        for s, m in results.items():
            idx = [slice(None)] * 3
            idx[axis] = s - s_lo
            target[tuple(idx)] = m
        return Proposal(box, target, {"engine": "sam", "architecture": self.architecture, "axis": axis,
                                      "slices": len(results), "seconds": time.perf_counter() - t0})

    def _prefetch(self, case, ct, axis, seeds, n_slices) -> None:
        if self.prefetch_n <= 0 or not seeds:
            return
        keys = []
        for d in range(1, self.prefetch_n + 1):
            for s0 in seeds:
                for s in (s0 + d, s0 - d):
                    if 0 <= s < n_slices:
                        keys.append((case, axis, int(s)))
        self.cache.prefetch(keys)

    def close(self) -> None:
        self.cache.close()


def _interior_point(mask: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage

    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r), int(c)


def _component_points(mask: np.ndarray, per_component: int) -> list[tuple[int, int]]:
    from scipy import ndimage

    comp, n = ndimage.label(mask)
    if n == 0:
        return []
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    out = []
    for k in np.argsort(sizes)[::-1][: max(1, 2 * per_component)]:
        if sizes[k] == 0:
            break
        out.append(_interior_point(comp == k))
    return out


def _component_at(mask: np.ndarray, rc) -> np.ndarray:
    from scipy import ndimage

    comp, _ = ndimage.label(mask)
    k = comp[rc]
    return comp == k if k else np.zeros(mask.shape, bool)


register_engine("sam", SamEngine)
