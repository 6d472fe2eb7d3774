"""Names in any script, checked in one place (sealing/people.py)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from sealing.people import MAX_NAME, NameRefused, person_name


@pytest.mark.parametrize(
    "name",
    ["张三", "李科长", "O\"Neil", "Smith\\Jones", "Ñúñez", "Αλέξης", "محمد", "김민준", "$alpha$",
     "a/b", "<b>x</b>", "=SUM(A1)", "[devices]", "阿卜杜·热合曼", "𠈌"],
)  # fmt: skip
def test_names_in_any_script_are_kept_exactly(name: str) -> None:
    assert person_name(name) == name


def test_a_name_is_normalised_to_nfc() -> None:
    decomposed = "Ñu\u0301n\u0303ez"
    assert person_name(decomposed) == unicodedata.normalize("NFC", decomposed)
    assert person_name(decomposed) != decomposed


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (" 张三", "begins or ends with a space"),
        ("张\n三", "a control character (U+000A)"),
        ('x"\n[devices]\ncamera = "none"', "a control character"),
        ("abc\u202edcba", "an invisible formatting character (U+202E)"),
        ("a\u200bb", "an invisible formatting character"),
        ("a\ue000", "a private-use character"),
        ("a\u2028b", "a line separator"),
        ("x" * (MAX_NAME + 1), f"at most {MAX_NAME}"),
        (7, "must be text"),
    ],
)
def test_what_no_name_needs_is_refused_with_the_reason(name: object, says: str) -> None:
    with pytest.raises(NameRefused, match=re.escape(says)):
        person_name(name, "officer")
