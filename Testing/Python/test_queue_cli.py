"""spinelabel queue ... / export end to end through the real CLI entry point."""
from __future__ import annotations

import json

from queue_fixtures import make_dataset
from SpineLabelLib.cli import main


def test_cli_workflow(tmp_path, capsys):
    dataset, reference, _ = make_dataset(tmp_path, 2)
    ds = str(dataset)
    assert main(["queue", "init", ds]) == 0
    assert main(["queue", "auto", ds, "--engine", "reference", "--engine-option", f"folder={reference}"]) == 0
    capsys.readouterr()
    assert main(["queue", "next", ds, "--user", "alice"]) == 0
    case = capsys.readouterr().out.strip()
    assert case.startswith("sub-case")
    # bob cannot touch alice's case: one clear line, exit 2
    assert main(["queue", "submit", ds, case, "--mask", str(reference / "derivatives" / case / f"{case}_seg-vert_msk.nii.gz"),
                 "--user", "bob"]) == 2
    assert "claimed by alice" in capsys.readouterr().err
    assert main(["queue", "edit", ds, case, "relabel", "L5", "--to", "L6", "--user", "alice"]) == 0
    assert main(["queue", "approve", ds, case, "--user", "carol"]) == 0
    assert main(["queue", "flag", ds, "sub-case0" if case != "sub-case0" else "sub-case1", "--user", "carol",
                 "--comment", "motion"]) == 0
    assert main(["queue", "revert", ds, case, "--version", "1", "--user", "carol"]) == 0
    assert main(["queue", "approve", ds, case, "--user", "carol"]) == 0
    capsys.readouterr()
    assert main(["queue", "history", ds, case]) == 0
    history = capsys.readouterr().out
    assert "edit" in history and "approve" in history and "revert" in history
    assert main(["queue", "status", ds, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["states"]["approved"] == 1 and status["states"]["flagged"] == 1
    assert status["effort"]["carol"]["approve"] == 2
    out = tmp_path / "release"
    assert main(["export", ds, "--out", str(out), "--approved-only"]) == 0
    assert (out / "derivatives" / case / f"{case}_seg-vert_msk.nii.gz").exists()
    assert len(list(out.glob("rawdata/*"))) == 1
    assert main(["export", ds, "--out", str(out), "--approved-only"]) == 2  # never overwrites silently
    assert main(["queue", "next", ds, "--user", "x", "--store", "sqlite:////nonexistent/q.sqlite"]) == 2
