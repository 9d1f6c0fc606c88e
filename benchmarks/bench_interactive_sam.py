"""SAM engine latency at vit_b size (issue target: prompt-to-mask on one slice with a cached
embedding <= 200 ms; the encoder's time reported separately).

No weights are available here: the model is segment_anything's vit_b built by its own
registry with random weights, which has exactly the real model's architecture and cost.
The slices are those of ../shared/data/lidc0001_chest (512x512x133), bone-windowed as the
engine does.

    .venv/bin/python benchmarks/bench_interactive_sam.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import DATA, machine, peak_rss_mb
from SpineLabelLib.image import load_image
from SpineLabelLib.interactive.sam import SamEngine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--encoder-repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    model = sam_model_registry["vit_b"](checkpoint=None)
    eng = SamEngine(model=model, device=args.device, prefetch=0)
    ct = load_image(DATA / "lidc0001_chest" / "ct.nii.gz")
    axis = eng.slice_axis(ct)
    s = ct.shape[axis] // 2
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads, device {eng.device}; "
          f"date {time.strftime('%Y-%m-%d %H:%M')}")
    enc = []
    for _ in range(args.encoder_repeats):
        eng.cache = type(eng.cache)(4, eng._embed_key)
        t0 = time.perf_counter()
        emb = eng.embedding("lidc", ct, axis, s)
        enc.append(time.perf_counter() - t0)
    hw = tuple(n for a, n in enumerate(ct.shape) if a != axis)
    rng = np.random.default_rng(0)
    dec = []
    mask, low, _ = eng.predict_slice(emb, hw, [(256, 300)], [1])  # warm-up
    for r in range(args.repeats):
        t0 = time.perf_counter()
        cached = eng.embedding("lidc", ct, axis, s)  # cache hit
        p = rng.integers(100, 400, size=2)
        if r % 2:
            eng.predict_slice(cached, hw, [tuple(p), (p[0] + 20, p[1])], [1, 0], box=(p[0] - 30, p[1] - 30, p[0] + 30, p[1] + 30),
                              mask_logits=low)
        else:
            eng.predict_slice(cached, hw, [tuple(p)], [1])
        dec.append(time.perf_counter() - t0)
    enc_ms, dec_ms = 1000 * np.asarray(enc), 1000 * np.asarray(dec)
    print("| step (vit_b size, one 512x512 slice) | runs | p50 (ms) | p95 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    print(f"| image encoder (bone window, resize to 1024, ViT-B) | {enc_ms.size} | {np.percentile(enc_ms, 50):.0f} | "
          f"{np.percentile(enc_ms, 95):.0f} | {enc_ms.max():.0f} |")
    print(f"| prompt-to-mask with cached embedding (prompt encoder + mask decoder + upsampling) | {dec_ms.size} | "
          f"{np.percentile(dec_ms, 50):.0f} | {np.percentile(dec_ms, 95):.0f} | {dec_ms.max():.0f} |")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    eng.close()


if __name__ == "__main__":
    main()
