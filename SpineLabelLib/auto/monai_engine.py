"""MONAI engine: a user's trained network (state dict + JSON config, or TorchScript) run by
sliding-window inference on CPU or CUDA, post-processed into an :class:`EngineResult`.

Checkpoint folder (what ``spinelabel train`` writes)::

    model.json   {"network": "UNet", "args": {...}, "spacing_mm": 2.0,
                  "intensity": {"a_min": -1000, "a_max": 2000}, "labels": [0, 20, 21, ...],
                  "roi_size": [64, 64, 64]}
    model.pt     the network's state dict (torch.save)
    model.ts     the same network as TorchScript (optional; used when model.pt is absent
                 or ``torchscript=True``)

``labels`` maps output channels to VerSe values (channel 0 = background). A TorchScript
file alone can be given as ``checkpoint`` when a ``model.json`` sits beside it.
Confidence per vertebra = mean soft-max probability of its label over its voxels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SpineLabelInputError
from ..image import Image, check_ct_intensities
from .base import Engine, EngineResult, EngineUnavailableError, empty_result

CONFIG_NAME, STATE_NAME, SCRIPT_NAME = "model.json", "model.pt", "model.ts"
INSTALL_HINT = "the MONAI engine needs torch and monai: `pip install torch monai` (see the README)"


def require_monai():
    try:
        import monai  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(f"{INSTALL_HINT} ({exc})") from None


def read_config(checkpoint: str | Path) -> tuple[dict, Path]:
    """(config, folder) of a checkpoint folder or of a model file with model.json beside it."""
    p = Path(checkpoint)
    folder = p if p.is_dir() else p.parent
    cfg_path = folder / CONFIG_NAME
    if not p.exists():
        raise SpineLabelInputError(p, "checkpoint does not exist")
    if not cfg_path.is_file():
        raise SpineLabelInputError(p, f"no {CONFIG_NAME} beside the checkpoint (it names the network, its "
                                      "arguments, the spacing, intensity window and label list)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpineLabelInputError(cfg_path, f"unreadable model config: {exc}") from None
    for key in ("labels", "spacing_mm", "roi_size"):
        if key not in cfg:
            raise SpineLabelInputError(cfg_path, f"model config lacks {key!r}")
    return cfg, folder


def build_network(cfg: dict):
    """Instantiate ``monai.networks.nets.<cfg['network']>(**cfg['args'])``."""
    import monai.networks.nets as nets

    name = cfg.get("network", "UNet")
    if not hasattr(nets, name):
        raise SpineLabelInputError(None, f"unknown MONAI network {name!r} in the model config")
    return getattr(nets, name)(**cfg.get("args", {}))


def load_model(checkpoint: str | Path, torchscript: bool | None = None, device: str = "cpu"):
    """(model in eval mode, config). Prefers the state dict unless ``torchscript`` or only TorchScript exists."""
    require_monai()
    import torch

    cfg, folder = read_config(checkpoint)
    p = Path(checkpoint)
    script = p if p.is_file() and p.suffix in (".ts", ".torchscript") else folder / SCRIPT_NAME
    state = p if p.is_file() and p.suffix in (".pt", ".pth") else folder / STATE_NAME
    use_script = torchscript if torchscript is not None else (not state.is_file() and script.is_file())
    try:
        if use_script:
            model = torch.jit.load(str(script), map_location=device)
        else:
            if not state.is_file():
                raise SpineLabelInputError(state, "state dict not found")
            model = build_network(cfg)
            sd = torch.load(str(state), map_location=device, weights_only=True)
            model.load_state_dict(sd.get("model", sd) if isinstance(sd, dict) and "model" in sd else sd)
            model.to(device)
    except (RuntimeError, OSError, KeyError) as exc:
        raise SpineLabelInputError(checkpoint, f"cannot load the model: {exc}") from None
    model.eval()
    return model, cfg


def normalise(hu: np.ndarray, cfg: dict) -> np.ndarray:
    win = cfg.get("intensity", {"a_min": -1000.0, "a_max": 2000.0})
    a, b = float(win["a_min"]), float(win["a_max"])
    return ((np.clip(hu, a, b) - a) / (b - a)).astype(np.float32)


class MonaiEngine(Engine):
    """Options: ``checkpoint`` (folder or model file; required), ``device`` ("cpu", "cuda";
    default CUDA when available), ``torchscript`` (force TorchScript), ``overlap`` (0.25),
    ``sw_batch_size`` (1)."""

    name = "monai"

    def __init__(self, checkpoint: str | Path | None = None, device: str | None = None,
                 torchscript: bool | None = None, overlap: float = 0.25, sw_batch_size: int = 1):
        if checkpoint is None:
            raise SpineLabelInputError(None, "the MONAI engine needs a checkpoint (--checkpoint MODEL_DIR; "
                                             "`spinelabel train` writes one)")
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.torchscript = torchscript
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self._model = None
        self._cfg = None

    def check_available(self) -> None:
        require_monai()
        read_config(self.checkpoint)

    def _load(self):
        if self._model is None:
            import torch

            dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model, self._cfg = load_model(self.checkpoint, self.torchscript, dev)
            self._dev = dev
        return self._model, self._cfg

    def segment(self, ct: Image, progress=None) -> EngineResult:
        problems = check_ct_intensities(ct)
        if problems:
            return empty_result(ct, "not segmented: " + "; ".join(problems), self.name)
        model, cfg = self._load()
        probs, labels, work = predict(model, cfg, ct, self._dev, self.overlap, self.sw_batch_size, progress)
        return result_from_prediction(probs, labels, work, ct, cfg, self.name)


def predict(model, cfg: dict, ct: Image, device: str = "cpu", overlap: float = 0.25, sw_batch_size: int = 1,
            progress=None):
    """(max probability array, channel-index array, working CT Image) on the model's working grid."""
    import torch
    from monai.inferers import sliding_window_inference

    from .classical.grid import to_working

    work = to_working(ct, float(cfg["spacing_mm"]))
    x = torch.from_numpy(normalise(work.array, cfg))[None, None].to(device)
    roi = tuple(int(r) for r in cfg["roi_size"])
    if progress:
        progress(0.1, "sliding-window inference")
    with torch.no_grad():
        logits = sliding_window_inference(x, roi, sw_batch_size, model, overlap=overlap, mode="gaussian")
        prob = torch.softmax(logits.float(), dim=1)[0]
        pmax, idx = prob.max(dim=0)
    return pmax.cpu().numpy(), idx.cpu().numpy().astype(np.int32), work


def result_from_prediction(pmax: np.ndarray, idx: np.ndarray, work: Image, ct: Image, cfg: dict,
                           engine: str = "monai") -> EngineResult:
    """Connected components, centroids and probability-based confidence on ``ct``'s grid."""
    from scipy import ndimage

    from .classical.grid import labels_to_input, working_to_input_ijk
    from .postprocess import keep_largest_components, mask_centroids, touches_border

    lut = np.asarray(cfg["labels"], dtype=np.int64)
    values = lut[idx].astype(np.uint8)
    wmask, frag = keep_largest_components(Image(values, work.affine))
    arr = wmask.array
    confidence, reasons = {}, {}
    present = [int(v) for v in np.unique(arr) if v]
    for v in present:
        sel = arr == v
        if sel.sum() * float(np.prod(work.spacing)) < 500.0:  # < 0.5 ml: a speck
            arr[sel] = 0
            continue
        p = float(pmax[sel].mean())
        confidence[v] = p
        reasons[v] = [f"mean network probability {p:.2f}"] + ([frag[v]] if v in frag else [])
    cents = mask_centroids(Image(arr, work.affine), work)
    centroids = {v: working_to_input_ijk(c, work.affine, ct) for v, c in cents.items() if v in confidence}
    mask = ct.with_array(labels_to_input(arr, work.affine, ct))
    for v in touches_border(mask):
        if v in confidence:
            confidence[v] *= 0.8
            reasons[v].append("touches the image edge: partly outside the field of view")
    notes = [] if confidence else ["the network found no vertebra"]
    del ndimage
    return EngineResult(mask=mask, centroids_ijk=centroids, confidence=confidence, reasons=reasons,
                        notes=notes, engine=engine)
