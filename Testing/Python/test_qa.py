"""QA checks: every injected error kind is found, clean phantoms stay (almost) unflagged."""
from __future__ import annotations

import numpy as np

from qa_injection import KINDS, coarse, inject, score
from SpineLabelLib import labels
from SpineLabelLib.qa import check_labels
from SpineLabelLib.synthetic import PhantomSpec, make_phantom, phantom_suite

SUBSET = ("default-T10-sacrum", "chest-0.7x2.5-LAS", "t13", "scoliosis-25", "screws-T11-L1-ASL")


def test_injected_errors_found_and_clean_cases_quiet():
    phantoms = [make_phantom(coarse(s, 3.0)) for s in phantom_suite() if s.name in SUBSET]
    result = score(phantoms)
    for kind in KINDS:
        assert result["injected"][kind] >= 3, kind
        assert result["recall"][kind] >= 0.95, (kind, result["missed"])
    assert result["clean_flag_rate"] <= 0.05


def test_messages_name_the_vertebra_and_the_problem():
    p = make_phantom(PhantomSpec(first="T11", last="L4", spacing=(3.0, 3.0, 3.0), seed=3))
    ct, broken, expected = inject("ribs", p)
    flags = [f for f in check_labels(broken, None, ct) if f.kind == "ribs"]
    assert flags and flags[0].label == 20 and "L1 carries ribs" in flags[0].message and "T13" in flags[0].message
    ct, broken, expected = inject("gap", p)
    gap = [f for f in check_labels(broken) if f.kind == "gap"]
    missing = labels.name_of((expected - {0}).pop())
    assert gap and all("missing" in f.message for f in gap)
    assert check_labels(p.mask.with_array(np.zeros_like(p.mask.array))) == []
    del missing
