"""The SAM engine with a tiny SAM built from segment_anything's own classes (random
weights): checkpoint loading (plain, wrapped, prefixed, wrong, corrupt), prompt mapping,
propagation, embedding cache and prefetch, locking. These run in CI: a missing torch or
segment_anything is a failure, not a skip."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch  # noqa: F401  (required: fails loudly when missing)
import segment_anything  # noqa: F401

from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.interactive import open_session
from SpineLabelLib.interactive.annotator import corrupt
from SpineLabelLib.interactive.sam import ARCHITECTURES, EmbeddingCache, SamEngine, infer_config, load_sam
from SpineLabelLib.synthetic import make_phantom


def tiny_sam(seed: int = 0, img_size: int = 64, patch: int = 8, embed_dim: int = 32, depth: int = 2,
             heads: int = 2, out_chans: int = 32, window: int = 4, global_blocks=(1,)):
    """A tiny SAM from segment_anything's own classes, random weights: the real code
    paths (checkpoint loading, prompting, propagation), none of the weights."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    grid = img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=patch, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=tuple(global_blocks), window_size=window, out_chans=out_chans),
        prompt_encoder=PromptEncoder(embed_dim=out_chans, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=out_chans, mlp_dim=64, num_heads=8),
                                 transformer_dim=out_chans, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam") / "tiny.pth"
    torch.save(tiny_sam(seed=1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(first="L1", last="L3", spacing=(2.0, 2.0, 2.0), seed=4)


def test_checkpoint_loads_through_the_user_path_plain_wrapped_and_prefixed(tmp_path, checkpoint):
    ref = tiny_sam(seed=1).state_dict()
    model, name = load_sam(checkpoint)
    assert name.startswith("custom(embed_dim=32, depth=2")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    wrapped = tmp_path / "medsam_style.pth"
    torch.save({"model": {"module." + k: v for k, v in ref.items()}, "epoch": 3}, wrapped)
    model2, _ = load_sam(wrapped)
    assert torch.equal(model2.mask_decoder.iou_token.weight, ref["mask_decoder.iou_token.weight"])
    wrapped2 = tmp_path / "state_dict.pth"
    torch.save({"state_dict": ref}, wrapped2)
    assert load_sam(wrapped2)[1] == name


def test_registry_architectures_are_recognised_by_shape():
    from segment_anything import sam_model_registry

    # vit_b is built for real (random weights) and recognised from its state dict alone
    sd = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    cfg = infer_config(sd)
    assert cfg["embed_dim"] == 768 and cfg["depth"] == 12 and cfg["num_heads"] == 12
    assert tuple(cfg["global_attn_indexes"]) == ARCHITECTURES["vit_b"]["global_attn_indexes"]
    assert cfg["img_size"] == 1024 and cfg["window_size"] == 14


def test_wrong_missing_and_corrupt_checkpoints_are_refused(tmp_path, checkpoint, phantom):
    with pytest.raises(SpineLabelInputError, match="does not exist"):
        load_sam(tmp_path / "nope.pth")
    with pytest.raises(SpineLabelInputError, match="needs checkpoint"):
        load_sam(None)
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(checkpoint.read_bytes()[:2000])
    with pytest.raises(SpineLabelInputError, match="cannot be read as a PyTorch checkpoint"):
        load_sam(bad)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(SpineLabelInputError, match="not a SAM checkpoint"):
        load_sam(other)
    with pytest.raises(SpineLabelInputError, match="wrong architecture"):
        load_sam(checkpoint, model_type="vit_b")
    sd = tiny_sam().state_dict()
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 16)  # shape no SAM of this kind has
    mangled = tmp_path / "mangled.pth"
    torch.save(sd, mangled)
    with pytest.raises(SpineLabelInputError, match="does not match"):
        load_sam(mangled)
    gt = phantom.mask.array
    with pytest.raises(SpineLabelInputError, match="corrupt.pth"):
        open_session(phantom.ct, gt, engine="sam", checkpoint=bad)


def test_refine_prompts_the_clicked_slice_propagates_and_locks(phantom, checkpoint):
    gt = phantom.mask.array
    start = corrupt(gt, phantom.ct, 21, "missing")
    s = open_session(phantom.ct, start, engine="sam", checkpoint=checkpoint, device="cpu", prefetch=0, max_slices=4)
    eng = s.engine
    axis = eng.slice_axis(phantom.ct)
    assert axis == int(np.argmax(np.abs(phantom.ct.direction[2])))
    c = tuple(int(round(v)) for v in phantom.centroids_ijk[21])
    calls = []
    real = eng.predict_slice

    def spy(emb, hw, points, labels, box=None, mask_logits=None):
        calls.append((points, labels, box, mask_logits is not None))
        return real(emb, hw, points, labels, box, mask_logits)

    eng.predict_slice = spy
    new = s.refine(label=21, clicks=[(c, True)])
    others = [a for a in range(3) if a != axis]
    first_points, first_labels, first_box, _ = calls[0]
    assert (c[others[0]], c[others[1]]) in [tuple(p) for p in first_points]
    assert first_labels[first_points.index((c[others[0]], c[others[1]]))] == 1
    assert 0 in first_labels  # locked neighbours on the slice are negative prompts
    # propagation: later slices are prompted from the previous mask (box + logits)
    assert len(calls) == 1 + 2 * 4  # the clicked slice, then at most max_slices=4 each way
    assert all(box is not None and logits for _, _, box, logits in calls[1:])
    assert s.last_result.info["slices"] == len(calls)
    assert new[c] == 21
    changed = new != start
    assert set(np.unique(start[changed])) <= {0} and set(np.unique(new[changed])) <= {21}
    keep = (start != 0) & (start != 21)
    assert np.array_equal(new[keep], start[keep])
    assert s.undo() is not None and np.array_equal(s.labelmap, start)


def test_point_mapping_to_sam_coordinates(phantom, checkpoint):
    eng = SamEngine(model=tiny_sam(), device="cpu", prefetch=0)
    seen = {}
    orig = eng.model.prompt_encoder.forward

    def capture(points, boxes, masks):
        seen["points"] = points
        seen["boxes"] = boxes
        return orig(points, boxes, masks)

    eng.model.prompt_encoder.forward = capture
    emb = eng.model.image_encoder(eng.preprocess(np.zeros((100, 50), np.float32)))
    mask, low, iou = eng.predict_slice(emb, (100, 50), [(10, 20)], [1], box=(0, 0, 99, 49))
    coords = seen["points"][0][0, 0].tolist()
    scale = 64 / 100
    assert coords == pytest.approx([(20 + 0.5) * scale, (10 + 0.5) * scale], abs=1e-4)  # (x=col, y=row)
    assert seen["boxes"][0].tolist() == pytest.approx([0, 0, 50 * scale, 100 * scale], abs=1e-4)
    assert mask.shape == (100, 50) and mask.dtype == bool
    # one direct upsampling of the logits agrees with segment_anything's postprocess_masks
    ref = eng.model.postprocess_masks(low, (64, 32), (100, 50))[0, 0] > 0
    assert np.mean(ref.numpy() == mask) > 0.97
    eng.close()


def test_embedding_cache_is_a_bounded_lru_with_background_prefetch(phantom, checkpoint):
    calls = []

    def compute(key):
        calls.append(key)
        time.sleep(0.01)
        return key[2] * 10

    cache = EmbeddingCache(3, compute)
    assert cache.get(("c", 2, 1)) == 10 and cache.get(("c", 2, 1)) == 10
    assert calls == [("c", 2, 1)] and cache.hits == 1
    futures = cache.prefetch([("c", 2, k) for k in (2, 3, 4)])
    for f in futures:
        f.result()
    assert len(cache) == 3 and ("c", 2, 1) not in cache  # least recently used went first
    assert cache.get(("c", 2, 4)) == 40 and calls.count(("c", 2, 4)) == 1
    cache.close()

    gt = phantom.mask.array
    s = open_session(phantom.ct, gt, engine="sam", checkpoint=checkpoint, device="cpu", cache_size=64, prefetch=3,
                     case="ph", max_slices=4)
    eng = s.engine
    c = tuple(int(round(v)) for v in phantom.centroids_ijk[21])
    s.refine(label=21, clicks=[(c, True)])
    axis = eng.slice_axis(phantom.ct)
    for f in list(eng.cache._pending.values()):
        f.result()
    keys = eng.cache.keys()
    assert all(k[0] == "ph" and k[1] == axis for k in keys)
    assert {("ph", axis, c[axis] + d) for d in (-3, 3)} <= set(keys)  # nearby slices precomputed
    n_enc = len(eng.encoder_seconds)
    s.refine(label=21, clicks=[(c, False)])  # same slices again: all from the cache
    assert len(eng.encoder_seconds) == n_enc and eng.cache.hits > 0
    small = open_session(phantom.ct, gt, engine="sam", checkpoint=checkpoint, device="cpu", cache_size=4, prefetch=0, max_slices=4)
    small.refine(label=21, clicks=[(c, True)])
    assert len(small.engine.cache) <= 4
    s.close()
    small.close()


def test_sam_bad_clicks_leave_the_labelmap_unchanged(phantom, checkpoint):
    gt = phantom.mask.array
    s = open_session(phantom.ct, gt, engine="sam", model=tiny_sam(), device="cpu", prefetch=0)
    before = s.labelmap
    c20 = tuple(int(round(v)) for v in phantom.centroids_ijk[20])
    for clicks, msg in [([((0, 0, 10_000), True)], "outside"), ([(c20, True)], "another vertebra")]:
        with pytest.raises(SpineLabelInputError, match=msg):
            s.refine(label=21, clicks=clicks)
        assert np.array_equal(s.labelmap, before)
    with pytest.raises(SpineLabelInputError, match="device"):
        open_session(phantom.ct, gt, engine="sam", model=tiny_sam(), device="nonsense")


def test_a_direct_request_goes_before_queued_prefetches():
    """On CPU an encoder call takes 25-45 s: a click on a slice nobody is computing must
    not wait behind the queued guesses. It waits only for the one already running."""
    import threading

    started, release = threading.Event(), threading.Event()
    calls = []

    def compute(key):
        calls.append(key)
        if key[2] == 1:  # the first prefetch holds the model until released
            started.set()
            release.wait(5)
        return key[2]

    cache = EmbeddingCache(8, compute)
    futures = cache.prefetch([("c", 2, k) for k in (1, 2, 3, 4)])
    assert started.wait(5)
    threading.Timer(0.2, release.set).start()
    assert cache.get(("c", 2, 9)) == 9
    # slice 1 was running and finished; slices 2-4 were dropped, never computed
    assert calls == [("c", 2, 1), ("c", 2, 9)]
    assert cache.dropped == 3 and all(f.cancelled() for f in futures[1:])
    assert ("c", 2, 1) in cache and ("c", 2, 9) in cache
    # a request for a queued key waits for it instead (nothing dropped)
    futures = cache.prefetch([("c", 2, k) for k in (5, 6)])
    assert cache.get(("c", 2, 6)) == 6 and cache.dropped == 3
    for f in futures:
        f.result()
    cache.close()
