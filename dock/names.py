"""People's names at the dock (officers from chains, supervisors, the
examiner who makes a court copy): sealing.people's one rule, its refusal
told in the reader's language."""

from __future__ import annotations

from sealing.people import MAX_NAME, NameRefused, person_name

from .texts import Msg, msg

# sealing.people's rule -> what a reader is told (the character's code point added)
CATEGORY_WORDS: dict[str, Msg] = {
    "Cc": msg("a control character"),
    "Cf": msg("an invisible formatting character"),
    "Cs": msg("a surrogate"),
    "Co": msg("a private-use character"),
    "Cn": msg("an unassigned code point"),
    "Zl": msg("a line separator"),
    "Zp": msg("a paragraph separator"),
}


class NameNotAccepted(ValueError):
    """A refused name; its one argument is the Msg saying what and why."""


def checked_name(text: str, what: Msg | str) -> str:
    """`text` as a person's name (NFC); NameNotAccepted names `what` and why not."""
    try:
        return person_name(text)
    except NameRefused as exc:
        raise NameNotAccepted(refusal(exc, what, text)) from None


def refusal(exc: NameRefused, what: Msg | str, text: str) -> Msg:
    if exc.rule == "length":
        return msg(
            "%(what)s is %(length)s characters long; at most %(max)s",
            what=what,
            length=len(text),
            max=MAX_NAME,
        )
    if exc.rule == "empty":
        return msg("%(what)s is empty", what=what)
    if exc.rule == "space":
        return msg("%(what)s %(name)r begins or ends with a space", what=what, name=text)
    if exc.rule in CATEGORY_WORDS:
        return msg(
            "%(what)s %(name)r holds %(kind)s (U+%(code)04X)",
            what=what,
            name=text,
            kind=CATEGORY_WORDS[exc.rule],
            code=ord(exc.char),
        )
    return msg("%(what)s is refused: %(why)s", what=what, why=str(exc))
