"""The examiner's court copy of one recording (steps.py; docs/EXPORT.md).

Importing this package loads PyAV and c2pa: only court copies need them."""

from .steps import (
    CaseError,
    Signing,
    describe,
    export_case,
    recordings,
    verified_copy,
)

__all__ = [
    "CaseError",
    "Signing",
    "describe",
    "export_case",
    "recordings",
    "verified_copy",
]
