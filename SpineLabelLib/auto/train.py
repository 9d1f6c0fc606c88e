"""Train a MONAI vertebra segmentation network from a VerSe-layout dataset.

``train(dataset, out_dir, ...)`` loads every case with a mask (verse.layout), resamples CT
and mask onto the RAS-aligned working grid of ``spacing_mm`` (mask by nearest neighbour),
samples patches (half centred on vertebra voxels), augments (left-right flip, intensity
scale/shift), optimises Dice + cross-entropy with Adam, validates with the VerSe metrics
(id.rate, Dice) on held-out cases every ``val_every`` iterations, and writes into
``out_dir``: ``model.json`` + ``model.pt`` (state dict) + ``model.ts`` (TorchScript),
``train_state.pt`` (optimizer and iteration, for ``resume``) and ``log.jsonl`` (one JSON
line per logged iteration: loss, and validation metrics when computed).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import SpineLabelInputError
from ..image import Image, resample_to_grid
from ..labels import is_vertebra

DEFAULT_NET = {"network": "UNet", "args": {"spatial_dims": 3, "in_channels": 1, "channels": [16, 32, 64, 128],
                                           "strides": [2, 2, 2], "num_res_units": 1}}


def _load_cases(dataset, spacing: float):
    from ..verse.layout import discover_cases, load_case
    from .classical.grid import to_working

    cases = [c for c in discover_cases(dataset) if c.ct is not None and c.mask is not None]
    if not cases:
        raise SpineLabelInputError(dataset, "holds no case with a CT and a vertebra mask to train from")
    out = []
    for c in cases:
        data = load_case(c, require_mask=True)
        work = to_working(data.ct, spacing)
        m = resample_to_grid(data.mask, work.shape, work.affine, order=0).array
        m = np.where(np.isin(m, [v for v in range(1, 29)]), m, 0).astype(np.uint8)
        out.append((c.subject, work, m, data))
    return out


def train(dataset, out_dir, iterations: int = 2000, spacing_mm: float = 2.0, patch: int = 64, batch_size: int = 2,
          lr: float = 1e-3, network: dict | None = None, val_fraction: float = 0.2, val_every: int = 200,
          resume: bool = False, device: str | None = None, seed: int = 0, progress=None) -> dict:
    """Train; return a summary dict (iterations done, last loss, best validation metrics, paths)."""
    from .monai_engine import require_monai

    require_monai()
    import torch
    from monai.losses import DiceCELoss

    from .monai_engine import CONFIG_NAME, SCRIPT_NAME, STATE_NAME, build_network, normalise

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cases = _load_cases(dataset, spacing_mm)
    labels = sorted({int(v) for _, _, m, _ in cases for v in np.unique(m) if is_vertebra(int(v))})
    cfg_path = out / CONFIG_NAME
    if resume and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        missing = set(labels) - set(cfg["labels"])
        if missing:
            raise SpineLabelInputError(cfg_path, f"cannot resume: the dataset has labels {sorted(missing)} the model lacks")
    else:
        net = dict(network or DEFAULT_NET)
        args = dict(net.get("args", {}))
        args["out_channels"] = len(labels) + 1
        cfg = {"network": net["network"], "args": args, "spacing_mm": spacing_mm, "roi_size": [patch] * 3,
               "intensity": {"a_min": -1000.0, "a_max": 2000.0}, "labels": [0] + labels}
    lut = np.zeros(256, dtype=np.int64)
    for ch, v in enumerate(cfg["labels"]):
        lut[v] = ch
    n_val = int(round(len(cases) * val_fraction)) if len(cases) > 1 else 0
    order = rng.permutation(len(cases))
    val = [cases[i] for i in order[:n_val]] or [cases[order[0]]]
    trn = [cases[i] for i in order[n_val:]] or val
    vols = [(normalise(w.array, cfg), lut[m]) for _, w, m, _ in trn]

    model = build_network(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    state_path = out / "train_state.pt"
    if resume and state_path.is_file():
        st = torch.load(str(state_path), map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        start = int(st["iteration"])
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    log = open(out / "log.jsonl", "a", encoding="utf-8")
    best = None
    loss_val = float("nan")
    t0 = time.perf_counter()
    try:
        for it in range(start, iterations):
            model.train()
            xb, yb = zip(*(_sample(vols[rng.integers(len(vols))], patch, rng) for _ in range(batch_size)))
            x = torch.from_numpy(np.stack(xb)[:, None]).to(dev)
            y = torch.from_numpy(np.stack(yb)[:, None]).to(dev)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            loss_val = float(loss.detach())
            row = {"iteration": it + 1, "loss": round(loss_val, 5), "elapsed_s": round(time.perf_counter() - t0, 1)}
            if (it + 1) % val_every == 0 or it + 1 == iterations:
                _save(model, opt, cfg, out, it + 1, patch, dev)
                metrics = validate(out, val, dev)
                row.update(metrics)
                if best is None or (metrics.get("dice_mean") or 0) >= (best.get("dice_mean") or 0):
                    best = dict(metrics, iteration=it + 1)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if progress:
                progress((it + 1 - start) / max(1, iterations - start), f"iteration {it + 1}/{iterations} loss {loss_val:.4f}")
    finally:
        log.close()
    if start >= iterations:
        _save(model, opt, cfg, out, start, patch, dev)
    return {"iterations": max(start, iterations), "last_loss": loss_val, "best_validation": best,
            "model_dir": str(out), "labels": cfg["labels"], "n_train": len(trn), "n_val": len(val)}


def _sample(vol, patch: int, rng):
    """A random patch (half the time centred on a vertebra voxel), flipped left-right at random,
    with random intensity scale/shift; padded where the volume is smaller than the patch."""
    x, y = vol
    pad = [(0, max(0, patch - n)) for n in x.shape]
    if any(p[1] for p in pad):
        x = np.pad(x, pad, constant_values=0.0)
        y = np.pad(y, pad, constant_values=0)
    if rng.random() < 0.5 and y.any():
        fg = np.argwhere(y > 0)
        c = fg[rng.integers(len(fg))]
    else:
        c = np.array([rng.integers(n) for n in x.shape])
    lo = np.clip(c - patch // 2, 0, np.asarray(x.shape) - patch)
    sl = tuple(slice(int(a), int(a) + patch) for a in lo)
    xp, yp = x[sl].copy(), y[sl].copy()
    if rng.random() < 0.5:  # left-right (axis 0 is R on the working grid): labels keep their meaning
        xp, yp = xp[::-1].copy(), yp[::-1].copy()
    xp = xp * rng.uniform(0.9, 1.1) + rng.uniform(-0.03, 0.03)
    return xp.astype(np.float32), yp.astype(np.int64)


def _save(model, opt, cfg, out: Path, iteration: int, patch: int, dev: str) -> None:
    import torch

    from ..fileio import write_json_atomic
    from .monai_engine import CONFIG_NAME, SCRIPT_NAME, STATE_NAME

    write_json_atomic(out / CONFIG_NAME, cfg, overwrite=True)
    torch.save(model.state_dict(), str(out / (STATE_NAME + ".tmp")))
    (out / (STATE_NAME + ".tmp")).replace(out / STATE_NAME)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": iteration},
               str(out / "train_state.tmp"))
    (out / "train_state.tmp").replace(out / "train_state.pt")
    model.eval()
    example = torch.zeros((1, 1, patch, patch, patch), device=dev)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(out / (SCRIPT_NAME + ".tmp")))
    (out / (SCRIPT_NAME + ".tmp")).replace(out / SCRIPT_NAME)


def validate(model_dir, cases, device: str = "cpu") -> dict:
    """Mean VerSe id.rate and Dice of the saved model on ``cases`` (from _load_cases)."""
    from ..verse.metrics import evaluate_case
    from .monai_engine import MonaiEngine

    engine = MonaiEngine(model_dir, device=device)
    ids, dices = [], []
    for subject, _work, _m, data in cases:
        res = engine.segment(data.ct)
        m = evaluate_case(data.mask, res.mask, data.centroids_ijk, res.centroids_ijk, subject=subject)
        if m.id_rate is not None:
            ids.append(m.id_rate)
        if m.dice_mean is not None:
            dices.append(m.dice_mean)
    return {"val_id_rate": float(np.mean(ids)) if ids else None, "dice_mean": float(np.mean(dices)) if dices else None}


__all__ = ["train", "validate", "DEFAULT_NET", "Image"]
