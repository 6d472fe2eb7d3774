"""People's names as records, unit.toml and the dock carry them: officers,
supervisors, examiners. Any script is a name (张三, O'Neil, Smith\\Jones);
what is refused is what no name needs and what would mislead a reader.

A name is normalised to NFC (the same name typed on two keyboards is the
same bytes in the chain), at most MAX_NAME characters, and holds no control,
format (bidirectional overrides, zero-width), private-use, surrogate or
unassigned characters and no line or paragraph separators.
"""

from __future__ import annotations

import unicodedata

MAX_NAME = 64
_REFUSED = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


class NameRefused(ValueError):
    """The name and why, in one line. `rule` names the rule broken (`text`,
    `length`, `empty`, `space`, or the Unicode category of `char`), so that
    a reader in another language can be told the same."""

    def __init__(self, message: str, rule: str = "", char: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.char = char


def person_name(text: object, what: str = "name") -> str:
    """`text` as a checked, NFC-normalised name; NameRefused says why not."""
    if not isinstance(text, str):
        raise NameRefused(f"{what} must be text, not {type(text).__name__}", "text")
    name = unicodedata.normalize("NFC", text)
    if len(name) > MAX_NAME:
        raise NameRefused(f"{what} is {len(name)} characters long; at most {MAX_NAME}", "length")
    for ch in name:
        category = unicodedata.category(ch)
        why = _REFUSED.get(category)
        if why is not None:
            raise NameRefused(f"{what} {name!r} holds {why} (U+{ord(ch):04X})", category, ch)
    if not name.strip():
        raise NameRefused(f"{what} is empty", "empty")
    if name != name.strip():
        raise NameRefused(f"{what} {name!r} begins or ends with a space", "space")
    return name
