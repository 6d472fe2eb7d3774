"""The examiner's court copy of one recording (steps.py; docs/EXPORT.md).

Its names are loaded from steps.py when first used: steps loads PyAV, c2pa
and WeasyPrint, which the court copy's own child processes (the C2PA
signer) do not need at their start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .steps import (
        CaseError,
        Signing,
        describe,
        export_case,
        recordings,
        verified_chain,
        verified_copy,
    )

__all__ = [
    "CaseError",
    "Signing",
    "describe",
    "export_case",
    "recordings",
    "verified_chain",
    "verified_copy",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import steps

        return getattr(steps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
