"""MONAI engine and training: a tiny network trained a few iterations on synthetic cases,
then segmentation with the saved state dict + JSON config and with TorchScript; resume."""
from __future__ import annotations

import json

import pytest

import conftest  # noqa: F401
from SpineLabelLib.auto.base import get_engine
from SpineLabelLib.errors import SpineLabelInputError

TINY = {"network": "UNet", "args": {"spatial_dims": 3, "in_channels": 1, "channels": [4, 8], "strides": [2],
                                    "num_res_units": 0}}


def test_monai_and_torch_are_installed():
    import monai  # noqa: F401  (no skip: a missing package must fail loudly)
    import torch  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from SpineLabelLib.auto.train import train
    from SpineLabelLib.synthetic import make_phantom
    from SpineLabelLib.verse.layout import write_case

    root = tmp_path_factory.mktemp("monai")
    phantoms = []
    for i in range(2):
        p = make_phantom(first="L2", last="L4", spacing=(3.0, 3.0, 3.0), seed=i, fov_margin_mm=5.0)
        write_case(root / "ds", f"ph{i}", p.ct, p.mask, p.centroids_ijk, snapshot=False)
        phantoms.append(p)
    summary = train(root / "ds", root / "model", iterations=4, spacing_mm=4.0, patch=32, batch_size=1,
                    val_every=2, network=TINY)
    return root, summary, phantoms


def test_train_writes_checkpoint_log_and_validates(trained):
    root, summary, _ = trained
    model = root / "model"
    for name in ("model.json", "model.pt", "model.ts", "train_state.pt", "log.jsonl"):
        assert (model / name).is_file(), name
    cfg = json.loads((model / "model.json").read_text())
    assert cfg["network"] == "UNet" and cfg["labels"][0] == 0 and 22 in cfg["labels"]
    rows = [json.loads(line) for line in (model / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert "dice_mean" in rows[1] and "val_id_rate" in rows[3]
    assert summary["best_validation"] is not None


def test_segment_with_state_dict_and_torchscript(trained):
    root, _, phantoms = trained
    ct = phantoms[1].ct
    for ckpt in (root / "model", root / "model" / "model.ts"):
        res = get_engine("monai", checkpoint=ckpt, device="cpu").segment(ct)
        assert res.mask.same_grid(ct)
        assert res.engine == "monai"
        assert all(0.0 <= c <= 1.0 for c in res.confidence.values())
        assert set(res.labels) <= set(json.loads((root / "model" / "model.json").read_text())["labels"])


def test_resume_continues_iterations(trained):
    from SpineLabelLib.auto.train import train

    root, _, _ = trained
    s = train(root / "ds", root / "model", iterations=5, spacing_mm=4.0, patch=32, batch_size=1, val_every=5,
              network=TINY, resume=True)
    rows = (root / "model" / "log.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["iteration"] == 5 and s["iterations"] == 5


def test_monai_engine_needs_checkpoint(tmp_path):
    with pytest.raises(SpineLabelInputError, match="checkpoint"):
        get_engine("monai")
    with pytest.raises(SpineLabelInputError, match="model.json"):
        get_engine("monai", checkpoint=tmp_path).check_available()
