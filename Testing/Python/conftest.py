"""Shared test fixtures: where the real data lives, and geometry helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: Real CTs with reference labels (../shared/data beside the checkout); never copied in.
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

if not DATA.is_dir():  # the real-data tests are part of the contract: fail loudly, never skip
    raise RuntimeError(f"real test data not found at {DATA} (expected ../shared/data beside the repository)")


def rotation_matrix(axis, degrees: float) -> np.ndarray:
    """3x3 rotation about a unit ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def oblique_affine(spacing, origin=(0.0, 0.0, 0.0), degrees: float = 17.0) -> np.ndarray:
    """An oblique voxel->RAS affine: rotated about a skew axis, with the given spacing."""
    affine = np.eye(4)
    affine[:3, :3] = rotation_matrix((1.0, 2.0, 0.5), degrees) * np.asarray(spacing, dtype=float)
    affine[:3, 3] = origin
    return affine
