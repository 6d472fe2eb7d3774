"""Where a verifier finds the segment files a chain names, and what else it
finds there (docs/FORMAT.md sections 6, 8.4 and 9).

A store keeps them in `segments/`; a dock's copy under
`<dock>/YYYY/MM/DD/<serial>/`. Both places may hold only what the format
allows: every other name is reported, and nothing that is not a regular
file is opened (sealing/safeio.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from . import layout
from .report import Report
from .safeio import NotRegular, entries, lstat_kind, open_dir, open_regular

# A dock's own work files beside a segment: a download not finished yet, and
# a copy set aside after it failed its re-read (dock/pull.py). Never read.
_DOCK_WORK = re.compile(r"^(?P<name>.+\.age)(?P<what>\.part|\.rejected-\d+)$")
_YEAR, _TWO = re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$")


class SegmentSource(Protocol):
    blocked: str | None  # why no file here is read at all (reported once), or None

    def where(self, name: str) -> str: ...

    def open(self, name: str) -> BinaryIO | None:
        """The named file, open for reading; None when absent; NotRegular
        when it is there but not a regular file."""
        ...

    def survey(self, serial: str, named: set[str], report: Report) -> None:
        """Report every entry the format does not allow beside the segments."""
        ...


class StoreSegments:
    """`<store>/segments/`, a real folder (a link to one is reported, not followed)."""

    def __init__(self, root: Path, report: Report) -> None:
        self.root = root
        self.blocked: str | None = None
        self._fd: int | None = None
        try:
            self._fd = open_dir(root / layout.SEGMENTS)
        except FileNotFoundError:
            pass  # no folder: every file is missing unless released
        except NotRegular as exc:
            self.blocked = f"{layout.SEGMENTS}/ is {exc}"
            report.fail(f"{layout.SEGMENTS}/", f"{exc}; no segment in it is read")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def where(self, name: str) -> str:
        return f"{layout.SEGMENTS}/{name}"

    def open(self, name: str) -> BinaryIO | None:
        if self._fd is None:
            return None
        try:
            return open_regular(name, dir_fd=self._fd)
        except FileNotFoundError:
            return None

    def survey(self, serial: str, named: set[str], report: Report) -> None:
        if self._fd is None:
            return
        for entry in entries(self._fd):
            if entry.name in named:
                continue  # checked (or refused) as the file its record names
            msg = (
                "partial segment not yet recovered"
                if entry.name.endswith(layout.PARTIAL)
                else "file not named by any record (inserted)"
            )
            report.fail(self.where(entry.name), msg)


class DockSegments:
    """A dock's date folders, `<dock>/YYYY/MM/DD/<serial>/<file>`.

    Such a folder may hold exactly: the segment files of that unit whose
    records the chain has and whose names carry that date, and the dock's
    own work files beside them (`<segment>.part`, `<segment>.rejected-<us>`),
    which are noted and never read. Anything else is reported: a unit's
    `.partial`, a file no record names, one filed under another date, any
    other name, and anything that is not a regular file. Links anywhere in
    the date folders are reported and not followed.

    Also a plain `name -> Path | None` lookup, for callers that open files
    themselves."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blocked: str | None = None

    def __call__(self, name: str) -> Path | None:
        parsed = layout.parse_name(name)
        if parsed is None:
            return None
        path = self.root / parsed.day_dir / parsed.serial / name
        return path if path.exists() or path.is_symlink() else None

    def where(self, name: str) -> str:
        parsed = layout.parse_name(name)
        return f"{parsed.day_dir}/{parsed.serial}/{name}" if parsed else name

    def open(self, name: str) -> BinaryIO | None:
        parsed = layout.parse_name(name)
        if parsed is None:
            return None
        fds: list[int] = []
        try:
            fd: int | None = None
            for part in [*parsed.day_dir.split("/"), parsed.serial]:
                fd = open_dir(part if fd is not None else self.root / part, dir_fd=fd)
                fds.append(fd)
            return open_regular(name, dir_fd=fd)
        except FileNotFoundError:
            return None
        finally:
            for fd in fds:
                os.close(fd)

    def survey(self, serial: str, named: set[str], report: Report) -> None:
        for day, fd in self._serial_folders(serial, report):
            try:
                for entry in entries(fd):
                    self._judge(day, serial, entry.name, fd, named, report)
            finally:
                os.close(fd)

    def _serial_folders(self, serial: str, report: Report) -> Iterator[tuple[str, int]]:
        """(YYYY/MM/DD, descriptor of its <serial>/ folder) for every date."""
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for y in _sub(root, _YEAR, "", report):
                for m in _sub(y[1], _TWO, y[0], report):
                    for d in _sub(m[1], _TWO, m[0], report):
                        day, dfd = d
                        try:
                            fd = open_dir(serial, dir_fd=dfd)
                        except FileNotFoundError:
                            continue
                        except NotRegular as exc:
                            report.fail(f"{day}/{serial}", f"{exc}; no segment in it is read")
                            continue
                        finally:
                            os.close(dfd)
                        yield day, fd
                    os.close(m[1])
                os.close(y[1])
        finally:
            os.close(root)

    def _judge(
        self, day: str, serial: str, name: str, fd: int, named: set[str], report: Report
    ) -> None:
        where = f"{day}/{serial}/{name}"
        what = lstat_kind(name, dir_fd=fd)
        parsed = layout.parse_name(name)
        if parsed is not None and not name.endswith(layout.PARTIAL):
            if parsed.serial != serial or parsed.day_dir != day:
                report.fail(where, f"misfiled: its name belongs under {parsed.day_dir}/")
            elif name not in named:
                report.fail(where, "file not named by any record (inserted)")
            return  # a named file is checked, or refused, where its record is
        if parsed is not None:
            report.fail(where, "a unit's partial segment: a dock never holds one")
            return
        work = _DOCK_WORK.match(name)
        base = layout.parse_name(work["name"]) if work else None
        if work is None or base is None or base.serial != serial or base.day_dir != day:
            report.fail(where, "not a segment file: nothing else belongs in a dock's date folder")
        elif what != "a regular file":
            report.fail(where, f"{what}, not a regular file: not read")
        else:
            why = "a download not finished" if work["what"] == ".part" else "a copy set aside"
            report.note(f"{where}: the dock's work file ({why}), not evidence: not read")


def _sub(fd: int, pattern: re.Pattern[str], at: str, report: Report) -> Iterator[tuple[str, int]]:
    """Sub-folders of `fd` named like `pattern`, in order; links reported."""
    names = sorted(e.name for e in entries(fd) if pattern.match(e.name))
    for name in names:
        rel = f"{at}/{name}" if at else name
        try:
            yield rel, open_dir(name, dir_fd=fd)
        except NotRegular as exc:
            if (lstat_kind(name, dir_fd=fd) or "") != "a regular file":
                report.fail(f"{rel}/", f"{exc} (in the dock's date folders)")
        except FileNotFoundError:
            continue


class CallableSource:
    """A caller's own `name -> Path | None` (a dock's index of what it holds);
    the store's own `segments/` is still surveyed when it exists."""

    def __init__(self, find: Callable[[str], Path | None], store: StoreSegments) -> None:
        self.find = find
        self.store = store
        self.blocked: str | None = None

    def where(self, name: str) -> str:
        return self.store.where(name)

    def open(self, name: str) -> BinaryIO | None:
        path = self.find(name)
        if path is None:
            return None
        try:
            return open_regular(path)
        except FileNotFoundError:
            return None

    def survey(self, serial: str, named: set[str], report: Report) -> None:
        self.store.survey(serial, named, report)
