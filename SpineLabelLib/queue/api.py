"""The review queue of one dataset: the Python API behind ``spinelabel queue ...``.

Typical use (also from Slicer's Python console)::

    from SpineLabelLib.queue import Queue
    q = Queue.init("dataset")                  # or Queue("dataset", store="postgresql://...")
    q.auto("reference", folder="labels")       # machine proposals for every new case
    case = q.next("alice")                     # claim the most doubtful case
    q.submit(case.case_id, "alice", mask="corrected.nii.gz")
    q.approve(case.case_id, "bob")             # writes the VerSe derivative

Every label save is a new immutable version file (:mod:`.versions`), recorded in the store
only after it is completely on disk; approval writes the VerSe derivative files (mask,
centroid JSON, snapshot) atomically *before* the store records it. So a crash loses at
most the edit in progress, never a saved version or an approval.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import SpineLabelError, SpineLabelInputError
from ..fileio import atomic_output
from ..image import Image, load_image, save_nifti
from ..qa import check_labels, flags_by_label
from ..verse.layout import VerseCase, mask_value_problems, scan_dataset
from . import model as M
from .model import CaseRecord, ClaimError, Event, QueueError, VersionRecord, VertebraRecord
from .priorities import get_strategy
from .store import WORK_DIR, Store, default_store_url, open_store
from .versions import read_version_files, write_version_files


@dataclass
class InitReport:
    added: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)  # cases whose existing mask became version 1
    problems: dict[str, str] = field(default_factory=dict)  # case id -> why it was flagged
    already: int = 0


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def export_stem(case: VerseCase) -> str:
    """The BIDS stem a case is exported under (``sub-<subject>[entities]``)."""
    return case.stem if case.stem.startswith("sub-") else f"sub-{case.subject}"


def derivative_targets(case: VerseCase) -> tuple[Path, Path, Path]:
    """Where approval writes the case's mask, centroid JSON and snapshot (existing files
    keep their names; otherwise the naming of the case's CT: BIDS derivatives/ or beside it)."""
    ct = Path(case.ct)
    if case.stem.startswith("sub-") and ct.parent.parent.name == "rawdata":
        der = ct.parent.parent.parent / "derivatives" / ct.parent.name
        defaults = (der / f"{case.stem}_seg-vert_msk.nii.gz", der / f"{case.stem}_seg-subreg_ctd.json",
                    der / f"{case.stem}_seg-vert_snp.png")
    else:
        defaults = (ct.parent / f"{case.stem}_seg.nii.gz", ct.parent / f"{case.stem}_ctd.json",
                    ct.parent / f"{case.stem}_snapshot.png")
    return (Path(case.mask or defaults[0]), Path(case.centroids or defaults[1]), Path(case.snapshot or defaults[2]))


def vertebra_records(case_id: str, ct: Image, mask: Image, centroids_ijk: dict, confidence: dict | None,
                     status: str, previous: Image | None = None, previous_records=None) -> list[VertebraRecord]:
    """Records of the labels of ``mask`` with their QA flags. With ``previous`` (the last
    version's mask), labels whose voxels did not change keep their status and confidence."""
    flags = flags_by_label(check_labels(mask, centroids_ijk, ct))
    old = {r.label: r for r in (previous_records or [])}
    out = []
    for v in labels.sort_anatomical(x for x in np.unique(mask.array).tolist() if labels.is_vertebra(x)):
        rec = VertebraRecord(case_id, int(v), status, (confidence or {}).get(v))
        if previous is not None and v in old and np.array_equal(previous.array == v, mask.array == v):
            rec.status, rec.confidence = old[v].status, old[v].confidence
        rec.qa = [f.as_dict() for f in flags.get(v, [])]
        rec.in_fov = not any(f["kind"] == "edge" for f in rec.qa)
        out.append(rec)
    return out


class Queue:
    """The queue of ``dataset`` kept in ``store`` (a URL; default: the SQLite file in it)."""

    def __init__(self, dataset: str | os.PathLike, store: str | Store | None = None):
        self.dataset = Path(dataset).resolve()
        if not self.dataset.is_dir():
            raise SpineLabelInputError(self.dataset, "dataset folder does not exist")
        self.store = store if isinstance(store, Store) else open_store(store or default_store_url(self.dataset))
        meta = self.store.meta()
        if Path(meta["dataset"]).resolve() != self.dataset:
            warnings.warn(f"{self.store.url}: store was made for {meta['dataset']}, used with {self.dataset}")
        self.versions_dir = Path(meta["versions_dir"])

    # -- setup ---------------------------------------------------------------------------
    @classmethod
    def init(cls, dataset: str | os.PathLike, store: str | None = None, versions_dir: str | os.PathLike | None = None,
             user: str = "init", progress=None) -> tuple["Queue", InitReport]:
        """Create (or extend) the queue of a dataset: every case found is added; an
        existing mask on the CT grid becomes version 1 (status corrected); cases with
        problems (no CT, unreadable files, a mask on another grid, duplicate subject ids)
        are added as flagged with the problem as comment, and the rest keeps working."""
        root = Path(dataset).resolve()
        if not root.is_dir():
            raise SpineLabelInputError(root, "dataset folder does not exist")
        url = store or default_store_url(root)
        versions = Path(versions_dir).resolve() if versions_dir else root / WORK_DIR / "versions"
        try:
            versions.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"{versions}: cannot create the label versions folder ({exc.strerror}); the dataset "
                             "folder may be read-only: give --store and --versions in a writable place") from None
        st = open_store(url, create=True)
        st.create(str(root), str(versions))
        queue = cls(root, st)
        return queue, queue.add_new_cases(user, progress)

    def add_new_cases(self, user: str = "init", progress=None) -> InitReport:
        report = InitReport()
        scan = scan_dataset(self.dataset)
        known = {c.case_id for c in self.store.list_cases()}
        by_stem: dict[str, list[VerseCase]] = {}
        for case in scan.cases:
            by_stem.setdefault(export_stem(case), []).append(case)
        todo = [c for c in scan.cases if c.name not in known]
        report.already = len(scan.cases) - len(todo)
        for n, case in enumerate(todo):
            record = CaseRecord(case.name, case.subject, _rel(case.ct, self.dataset))
            imported = None
            try:
                same = [c.name for c in by_stem[export_stem(case)] if c is not case]
                if same:
                    raise QueueError(f"subject id {case.subject!r} ({export_stem(case)}) is also used by "
                                     f"{', '.join(same)}; rename one so the release does not collide")
                if case.ct is None:
                    raise QueueError(f"no CT image for this case (found only {', '.join(p.name for p in case.files())})")
                record.mask_path, record.centroids_path, record.snapshot_path = (
                    _rel(p, self.dataset) for p in derivative_targets(case))
                ct = load_image(case.ct)
                if case.mask is not None:
                    imported = self._import_mask(case, ct)
            except SpineLabelError as exc:
                record.status, record.comment = M.FLAGGED, str(exc)
                report.problems[case.name] = str(exc)
            self.store.add_cases([record], user)
            report.added.append(case.name)
            if imported is not None:
                mask_file, ctd_file, records = imported
                self.store.add_version(case.name, user, mask_file=mask_file, centroids_file=ctd_file, source="import",
                                       vertebrae=records, status=M.CORRECTED,
                                       event=Event(case.name, 0.0, user, "import", {"from": _rel(case.mask, self.dataset)}))
                report.imported.append(case.name)
            if callable(progress):
                progress(n + 1, len(todo), case.name)
        return report

    def _import_mask(self, case: VerseCase, ct: Image):
        from ..verse.body import body_centroids
        from ..verse.centroids_json import read_centroids

        mask = load_image(case.mask)
        ct.require_same_grid(mask)
        errors, _ = mask_value_problems(mask)
        if errors:
            raise SpineLabelInputError(case.mask, "; ".join(errors))
        values = [v for v in np.unique(mask.array).tolist() if labels.is_vertebra(v)]
        centroids = read_centroids(case.centroids, ct) if case.centroids else body_centroids(mask, labels=values, ct=ct)
        mask_file, ctd_file = write_version_files(self.versions_dir, case.name, "import", mask, centroids)
        return mask_file, ctd_file, vertebra_records(case.name, ct, mask, centroids, None, M.V_EDITED)

    # -- reading -------------------------------------------------------------------------
    def case(self, case_id: str) -> CaseRecord:
        return self.store.get_case(case_id)

    def ct(self, case_id: str) -> Image:
        case = self.case(case_id)
        if case.ct_path is None:
            raise QueueError(f"case {case_id}: has no CT image")
        return load_image(self.dataset / case.ct_path)

    def labels(self, case_id: str, version: int | None = None, ct: Image | None = None):
        """(mask Image, centroids_ijk) of a version (default: the current one)."""
        case = self.case(case_id)
        n = version if version is not None else case.current_version
        if n is None:
            raise QueueError(f"case {case_id}: has no label version yet")
        rec = self._version(case_id, n)
        return read_version_files(self.versions_dir, rec.mask_file, rec.centroids_file, ct)

    def _version(self, case_id: str, n: int) -> VersionRecord:
        for rec in self.store.versions(case_id):
            if rec.n == n:
                return rec
        raise QueueError(f"case {case_id}: has no version {n} (versions: "
                         f"{', '.join(str(r.n) for r in self.store.versions(case_id)) or 'none'})")

    # -- claims --------------------------------------------------------------------------
    def next(self, user: str, role: str = "annotate", strategy: str | None = None,
             lease_s: float = M.DEFAULT_LEASE_S) -> CaseRecord | None:
        if role not in M.CLAIMABLE:
            raise QueueError(f"role must be one of {', '.join(M.CLAIMABLE)}, not {role!r}")
        return self.store.claim_next(user, M.CLAIMABLE[role], get_strategy(strategy).order_by, lease_s)

    def claim(self, case_id: str, user: str, take_over: bool = False, lease_s: float = M.DEFAULT_LEASE_S):
        return self.store.claim(case_id, user, lease_s, take_over)

    def renew(self, case_id: str, user: str, lease_s: float = M.DEFAULT_LEASE_S):
        return self.store.renew(case_id, user, lease_s)

    def release(self, case_id: str, user: str) -> None:
        self.store.release(case_id, user)

    # -- saving --------------------------------------------------------------------------
    def _check_not_claimed(self, case: CaseRecord, user: str) -> None:
        if case.claimed_by_other(user, self.store.now()):
            raise ClaimError(f"case {case.case_id}: claimed by {case.assignee}; {user} cannot change it now")

    def submit(self, case_id: str, user: str, mask: Image | str | os.PathLike, centroids=None,
               seconds: float | None = None, clicks: int | None = None, final: bool = True,
               source: str = "submit", detail: dict | None = None) -> int:
        """Save corrected labels as a new version; ``final`` hands the case to review
        (status corrected), otherwise it stays in progress and claimed. ``mask``: an Image
        or file on the CT grid; ``centroids``: dict (voxel i, j, k) or a VerSe JSON path
        (default: body centroids from the mask). Returns the version number."""
        from ..verse.body import body_centroids
        from ..verse.centroids_json import read_centroids

        case = self.case(case_id)
        self._check_not_claimed(case, user)
        if case.status == M.APPROVED:
            raise QueueError(f"case {case_id}: is approved; revert or flag it before changing its labels")
        ct = self.ct(case_id)
        if not isinstance(mask, Image):
            mask = load_image(mask)
        ct.require_same_grid(mask)
        errors, _ = mask_value_problems(mask)
        if errors:
            raise SpineLabelInputError(mask.source, "; ".join(errors))
        values = [v for v in np.unique(mask.array).tolist() if labels.is_vertebra(v)]
        if centroids is None:
            centroids = body_centroids(mask, labels=values, ct=ct)
        elif not isinstance(centroids, dict):
            centroids = read_centroids(centroids, ct)
        previous = prev_records = None
        if case.current_version is not None:
            previous, _ = self.labels(case_id)
            prev_records = self.store.vertebrae(case_id)
        records = vertebra_records(case_id, ct, mask, centroids, None, M.V_EDITED, previous, prev_records)
        if seconds is None and case.assignee == user and case.claimed_at:
            seconds = max(0.0, self.store.now() - case.claimed_at)
        mask_file, ctd_file = write_version_files(self.versions_dir, case_id, user, mask, centroids)
        event = Event(case_id, 0.0, user, source, {"final": final, **(detail or {}),
                                                   "edited": [r.label for r in records if r.status == M.V_EDITED]},
                      seconds=seconds, clicks=clicks)
        return self.store.add_version(case_id, user, mask_file=mask_file, centroids_file=ctd_file, source=source,
                                      vertebrae=records, status=M.CORRECTED if final else M.IN_PROGRESS, event=event)

    def record_automatic(self, case_id: str, user: str, mask_file: str, centroids_file: str | None,
                         records: list[VertebraRecord], engine: str, model_version: str,
                         seconds: float | None = None) -> int:
        """Record an engine's proposal (files already written) for a case that is still new."""
        event = Event(case_id, 0.0, user, "auto", {"labels": [r.label for r in records]}, seconds=seconds,
                      engine=engine, model_version=model_version)
        return self.store.add_version(case_id, user, mask_file=mask_file, centroids_file=centroids_file,
                                      source="auto", vertebrae=records, status=M.AUTOMATIC, event=event,
                                      engine=engine, model_version=model_version, expect_status=(M.NEW,))

    def revert(self, case_id: str, version: int, user: str) -> int:
        """Make ``version`` current again, as a new version pointing at its files (history stays linear)."""
        case = self.case(case_id)
        self._check_not_claimed(case, user)
        rec = self._version(case_id, version)
        ct = self.ct(case_id)
        mask, centroids = read_version_files(self.versions_dir, rec.mask_file, rec.centroids_file, ct)
        previous, _ = self.labels(case_id)
        records = vertebra_records(case_id, ct, mask, centroids or {}, None, M.V_EDITED, previous,
                                   self.store.vertebrae(case_id))
        status = M.AUTOMATIC if rec.source == "auto" else M.CORRECTED
        if case.assignee == user and case.claim_expires and case.claim_expires > self.store.now():
            status = M.IN_PROGRESS
        return self.store.add_version(case_id, user, mask_file=rec.mask_file, centroids_file=rec.centroids_file,
                                      source="revert", vertebrae=records, status=status,
                                      event=Event(case_id, 0.0, user, "revert", {"to_version": version}),
                                      engine=rec.engine, model_version=rec.model_version)

    # -- review --------------------------------------------------------------------------
    def approve(self, case_id: str, user: str, seconds: float | None = None, snapshot: bool = True) -> int:
        """Approve the current version: write the VerSe derivative (mask, centroid JSON,
        snapshot; replacing the previous derivative, whose content stays in the version
        history), then record the approval. Returns the approved version number."""
        from ..verse.centroids_json import centroids_to_json
        from ..verse.snapshot import save_snapshot
        import json

        case = self.case(case_id)
        self._check_not_claimed(case, user)
        if case.current_version is None:
            raise QueueError(f"case {case_id}: has no labels to approve")
        if case.status not in (M.AUTOMATIC, M.IN_PROGRESS, M.CORRECTED):
            raise QueueError(f"case {case_id}: is {case.status!r}; only automatic, in-progress or corrected cases "
                             "can be approved")
        n = case.current_version
        ct = self.ct(case_id)
        mask, centroids = self.labels(case_id, n, ct)
        targets = [self.dataset / p for p in (case.mask_path, case.centroids_path, case.snapshot_path)]
        try:
            with contextlib.ExitStack() as stack:
                # all three are renamed into place only once all are complete
                tmp = [stack.enter_context(atomic_output(p, overwrite=True)) for p in targets[: 3 if snapshot else 2]]
                save_nifti(mask, tmp[0], overwrite=True)
                tmp[1].write_text(json.dumps(centroids_to_json(centroids or {}, ct)) + "\n", encoding="utf-8")
                if snapshot:
                    save_snapshot(tmp[2], ct, mask, centroids or {}, overwrite=True)
        except OSError as exc:
            raise QueueError(f"case {case_id}: cannot write the VerSe derivative {exc.filename or targets[0]} "
                             f"({exc.strerror}); the case was not approved") from None
        self.store.approve(case_id, user, n, Event(case_id, 0.0, user, "approve",
                                                   {"files": [str(p.relative_to(self.dataset)) for p in targets]},
                                                   seconds=seconds))
        return n

    def flag(self, case_id: str, user: str, comment: str) -> None:
        if not comment or not comment.strip():
            raise QueueError("a flag needs a comment saying what is wrong")
        self.store.set_status(case_id, user, M.FLAGGED, comment.strip(),
                              Event(case_id, 0.0, user, "flag", {"comment": comment.strip()}))

    def unflag(self, case_id: str, user: str) -> None:
        case = self.case(case_id)
        status = M.NEW if case.current_version is None else M.CORRECTED
        self.store.set_status(case_id, user, status, None, Event(case_id, 0.0, user, "unflag", {}),
                              allowed_from=(M.FLAGGED,))

    def set_attributes(self, case_id: str, label: int | str, user: str, **attributes) -> None:
        for key, value in attributes.items():
            if key not in M.ATTRIBUTES or value not in M.ATTRIBUTES[key]:
                raise QueueError(f"attribute {key}={value!r} is not allowed ({M.ATTRIBUTES})")
        value = labels.value_of(label) if isinstance(label, str) else int(label)
        self.store.set_attributes(case_id, value, user, attributes)

    # -- editing -------------------------------------------------------------------------
    def edit_session(self, case_id: str, user: str):
        """An :class:`~SpineLabelLib.edit.EditSession` on the current labels whose every
        edit, undo and redo is logged as an event at once; ``save_session`` stores the result."""
        from ..edit import EditSession, LabelState

        case = self.case(case_id)
        self._check_not_claimed(case, user)
        mask, centroids = self.labels(case_id)

        def listener(record):
            self.store.log(Event(case_id, None, user, "edit" if record.op not in ("undo", "redo") else record.op,
                                 {"op": record.op, **record.params}, clicks=1))

        return EditSession(LabelState(mask, dict(centroids or {})), listener)

    def save_session(self, case_id: str, user: str, session, final: bool = True, seconds: float | None = None) -> int:
        ops = [r.op for r in session.history]
        return self.submit(case_id, user, session.state.mask, session.state.centroids_ijk, seconds=seconds,
                           clicks=len(ops), final=final, source="edit", detail={"ops": ops})

    # -- reports -------------------------------------------------------------------------
    def history(self, case_id: str) -> tuple[list[VersionRecord], list[Event]]:
        self.case(case_id)
        return self.store.versions(case_id), self.store.events(case_id)

    def status(self, days: float = 7.0) -> dict:
        """Counts per state, throughput (approvals and submissions per day over the last
        ``days``) and effort per annotator (seconds, clicks, submissions, approvals)."""
        from .events import summarise

        return summarise(self.store.list_cases(), self.store.events(), self.store.now(), days)

    def close(self) -> None:
        self.store.close()
