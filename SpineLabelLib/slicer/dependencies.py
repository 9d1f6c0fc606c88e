"""Python dependencies inside 3D Slicer: check, ask, install, explain when offline.

SpineLabelLib's requirements are not part of Slicer's Python. They are installed on first
use, after asking, through Slicer's own installer:

* Slicer >= 5.11: ``slicer.pydeps.pip_ensure`` (checks, asks, installs, offers a restart
  when an already-imported package changed);
* older Slicer: a confirmation dialog, then ``slicer.util.pip_install``.

PyTorch is never pip-installed here: the PyTorch extension (``PyTorchUtils``) installs the
build that matches the GPU and CUDA driver. Everything heavy is imported lazily, by the
feature that needs it.

The checks (:func:`missing`) use only the standard library and ``packaging``; they run
anywhere. The installers need a running Slicer.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
from typing import Callable, Iterable, Sequence

from ..errors import SpineLabelError

REQUESTER = "SpineLabel"

#: pip requirements per feature; they mirror pyproject.toml (a test keeps them equal),
#: minus torch/torchvision, which come from the PyTorch extension.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "core": ("numpy>=1.24", "nibabel>=5.0", "SimpleITK>=2.2", "scipy>=1.10", "scikit-image>=0.21",
             "pillow>=9.0", "tqdm>=4.60"),
    "dicom": ("pydicom>=2.3",),
    "monai": ("monai>=1.3",),
    "sam": ("segment-anything>=1.0",),
    "team": ("psycopg[binary]>=3.1", "dask[distributed]>=2024.1"),
}
#: features that also need PyTorch (installed through the PyTorch extension).
NEEDS_TORCH = frozenset({"monai", "sam"})
#: packages Slicer bundles: never reinstall them with pip (a second copy breaks Slicer).
PROVIDED_BY_SLICER = ("SimpleITK", "numpy", "torch", "torchvision")


class DependencyError(SpineLabelError):
    """A dependency is missing and could not (or may not) be installed."""


def requirements_for(features: Iterable[str]) -> list[str]:
    """pip requirement strings of ``features`` (``"core"`` is always included)."""
    out: list[str] = []
    for feature in ("core", *features):
        if feature not in REQUIREMENTS:
            raise ValueError(f"unknown feature {feature!r}; choose from {sorted(REQUIREMENTS)}")
        out.extend(r for r in REQUIREMENTS[feature] if r not in out)
    return out


def missing(requirements: Sequence[str]) -> list[str]:
    """The requirements of ``requirements`` that are not satisfied in this Python
    (not installed, or installed at a version outside the specifier)."""
    from packaging.requirements import Requirement

    out = []
    for text in requirements:
        req = Requirement(text)
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            out.append(text)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            out.append(text)
    return out


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def index_reachable(host: str = "pypi.org", port: int = 443, timeout_s: float = 3.0) -> bool:
    """True when the package index answers a TCP connection (a quick offline check)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_message(requirements: Sequence[str]) -> str:
    reqs = " ".join(f'"{r}"' for r in requirements)
    return (
        f"SpineLabel needs {', '.join(requirements)}, which are not installed, and the package index "
        "(pypi.org) cannot be reached from this computer. Connect to the internet and try again, or, "
        "on an offline computer, download the wheels elsewhere (pip download " + reqs + ") and install "
        "them from Slicer's Python console with slicer.util.pip_install('--no-index --find-links=FOLDER "
        + " ".join(requirements) + "')."
    )


def ensure(features: Iterable[str] = (), ask: bool = True, confirm: Callable[[str], bool] | None = None) -> list[str]:
    """Make the requirements of ``features`` importable inside Slicer; returns what was installed.

    Asks first (``ask=True``) through Slicer's dialog or ``confirm(message) -> bool``.
    Raises :class:`DependencyError` when the user declines, when offline (with
    instructions), or when pip fails. Features that need PyTorch also check for it via
    :func:`ensure_torch`.
    """
    features = list(features)
    needed = missing(requirements_for(features))
    if any(f in NEEDS_TORCH for f in features):
        ensure_torch(ask=ask, confirm=confirm)
    if not needed:
        return []
    if not index_reachable():
        raise DependencyError(offline_message(needed))
    import slicer

    pydeps = _pip_ensure_module(slicer)
    if pydeps is not None:
        from packaging.requirements import Requirement

        try:
            pydeps.pip_ensure([Requirement(r) for r in needed], prompt_install=ask, requester=REQUESTER,
                              skip_packages=list(PROVIDED_BY_SLICER))
        except RuntimeError as exc:  # raised when the user declines
            raise DependencyError(f"not installed: {', '.join(needed)} ({exc})") from exc
    else:
        question = (f"SpineLabel needs these Python packages: {', '.join(needed)}.\n\n"
                    "Install them now into Slicer's Python? (This can take a few minutes.)")
        if ask and not (confirm or slicer.util.confirmOkCancelDisplay)(question):
            raise DependencyError(f"not installed (declined): {', '.join(needed)}")
        try:
            slicer.util.pip_install(" ".join(f'"{r}"' for r in needed))
        except Exception as exc:  # pip's CalledProcessError and friends
            raise DependencyError(f"pip could not install {', '.join(needed)}: {exc}") from exc
    still = missing(needed)
    if still:
        raise DependencyError(f"installed, but still not importable: {', '.join(still)}; restart Slicer and try again")
    return needed


def _pip_ensure_module(slicer_module):
    """``slicer.pydeps`` (Slicer >= 5.11) or None on older Slicer."""
    for name in ("pydeps", "packaging"):
        try:
            module = importlib.import_module(f"slicer.{name}")
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def ensure_torch(ask: bool = True, confirm: Callable[[str], bool] | None = None):
    """Import torch, installing it through the PyTorch extension when missing.

    Returns the torch module. Raises :class:`DependencyError` naming the PyTorch extension
    when it is not installed, or when the user declines.
    """
    if torch_available():
        import torch

        return torch
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        raise DependencyError(
            "PyTorch is needed for this engine. Install the 'PyTorch' extension from the Extensions "
            "Manager, restart Slicer, and try again."
        ) from None
    if not index_reachable("download.pytorch.org"):
        raise DependencyError("PyTorch is not installed and download.pytorch.org cannot be reached (offline?).")
    if ask and confirm is not None and not confirm("SpineLabel needs PyTorch. Install it now (a large download)?"):
        raise DependencyError("PyTorch not installed (declined)")
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask and confirm is None,
                                                          torchVersionRequirement=">=2.1")
    if torch is None:
        raise DependencyError("PyTorch was not installed")
    return torch
