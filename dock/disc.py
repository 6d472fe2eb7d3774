"""Long-term records burned to disc, in two copies (S0 art. 27, S1 art. 16):
each disc labelled with the making unit, the maker, the date, and the case
or activity's name and number.

    bodycam-dock disc --dock-dir D --serial S --recording SEQ [--recording SEQ ...] \
        --examiner NAME --request ID --out DIR \
        (--agency A | --identity F --c2pa-cert F --c2pa-key F --ca F) \
        [--name UNIT] [--case-number N] [--case-name NAME] [--media dvd|bd25] \
        [--burn DEVICE]
    bodycam-dock disc ... --case NUMBER ...   (every recording filed in the case)

writes `DIR/copy-1.iso`, `DIR/copy-2.iso` (byte for byte the same) and
`DIR/label.pdf` (the two labels). Each image is ISO 9660 level 3 with Rock
Ridge and Joliet, made by xorriso (no UDF: xorriso does not write it), and
holds:

    README.txt                   for the court: what is here, how to check it (the
                                 dock's language first, then English)
    <serial>_rec<seq>/           the court copy of each recording, exactly as
                                 `export-case` makes it (dock/courtcopy): MP4, report,
                                 manifest, SHA256SUMS, agency-ca.pem, chain/, stills/
    SHA256SUMS, SM3SUMS          every other file's SHA-256 and SM3 (`<hex>  <path>`)

The request: a `disc` request for those recordings, filed by `--examiner`
and approved (dock/permits.py, as export-case), checked before anything is
decrypted; a refusal is one line and a line of the audit log.

The two images are made one after the other from the same folder and must be
equal byte for byte: every file and folder dated SOURCE_DATE_EPOCH (from the
environment, else the moment the disc is made), owned by 0:0, modes 0644 and
0755, xorriso run without start-up files (`-no_rc`), the volume id from the
SHA-256 of SHA256SUMS. Each image is then read back (`xorriso -osirrox on
-extract`) into a temporary folder and every file checked against both
lists before the command says done. `--burn DEVICE` burns each image in
turn (`xorriso -as cdrecord dev=DEVICE`), asking for the second disc at the
terminal, and reads each disc back the same way. Burning to a real writer
has NOT been run: the tests burn to xorriso's `stdio:` pseudo-drive (a file).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from link.locale import Locale
from sealing.age import Identity
from sealing.files import fsync_dir
from sealing.recordings import Recording

from .audit import AuditError, AuditLog
from .cases import Case
from .dock_locale import add_locale_arguments
from .texts import Msg, Texts, load_texts, msg

if TYPE_CHECKING:  # court copies load PyAV and c2pa: only when a disc is made
    from .courtcopy import Signing
    from .index import Index

SECTOR = 2048
# what a single-layer DVD±R and a single-layer BD-R hold (the smaller of
# DVD-R's 2,298,496 and DVD+R's 2,295,104 sectors)
MEDIA: dict[str, int] = {"dvd": 2_295_104 * SECTOR, "bd25": 12_219_392 * SECTOR}
MEDIA_NAMES: dict[str, Msg] = {
    "dvd": msg("a 4.7 GB DVD"),
    "bd25": msg("a 25 GB Blu-ray disc (BD-R)"),
}
COPIES = 2
README = "README.txt"
SHA256SUMS = "SHA256SUMS"
SM3SUMS = "SM3SUMS"
LISTS = (SHA256SUMS, SM3SUMS)
VOLUME_PREFIX = "BODYCAM_"
WORK = ".disc.partial"  # in --out, until the images and the label are complete
BLOCK = 1 << 20
XORRISO_TIMEOUT = 4 * 3600  # a 25 GB image made, read back or burned


class DiscError(Exception):
    """No disc: `code` 2 for unusable input, 1 for a refusal or evidence
    that fails. Its message is a Msg (or text from elsewhere). A court
    copy's own refusal (courtcopy.CaseError) passes through as it is."""

    def __init__(self, message: Msg | str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def case_of(index: Index, number: str) -> tuple[Case, list[tuple[str, int]]]:
    """The case `number` and the (serial, recording) pairs filed in it: for
    `disc --case` (dock/cases.py)."""
    case = next((Case.from_row(r) for r in index.cases() if r["number"] == number), None)
    if case is None:
        raise DiscError(msg("no case %(number)s at this dock", number=number[:64]))
    filed = [(r["serial"], r["recording"]) for r in index.case_recordings()
             if r["number"] == number]  # fmt: skip
    if not filed:
        raise DiscError(msg("case %(number)s has no recording filed in it", number=number))
    return case, filed


@dataclass(frozen=True)
class Label:
    """What each disc's label says (S0 art. 27, S1 art. 16)."""

    unit: str  # the making unit (制作单位)
    maker: str  # the examiner who filed the request (制作人)
    made_us: int
    case_name: str = ""
    case_number: str = ""


@dataclass(frozen=True)
class OnDisc:
    """One recording on the disc, in its own court copy folder."""

    serial: str
    seq: int
    start_us: int
    folder: str


@dataclass(frozen=True)
class Lists:
    """The disc's root lists, as written; their hashes are on the label."""

    sha256sums: bytes
    sm3sums: bytes
    files: int  # files each covers

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sha256sums).hexdigest()

    @property
    def sm3(self) -> str:
        return hashlib.new("sm3", self.sm3sums).hexdigest()

    @property
    def volume_id(self) -> str:
        return VOLUME_PREFIX + self.sha256[:16].upper()


@dataclass
class Disc:
    out: Path
    images: tuple[Path, ...]
    label_pdf: Path
    image_sha256: str
    image_bytes: int
    lists: Lists
    recordings: list[OnDisc]
    test_certificate: bool
    burned: str = ""  # the device both discs were burned in and read back from
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Burn:
    """Burning to a writer: `ask` shows a question at the terminal and is
    False when nobody answered it (end of input)."""

    device: str
    ask: Callable[[str], bool]


# -- the tools it needs --------------------------------------------------------


def xorriso() -> str:
    path = shutil.which("xorriso")
    if path is None:
        raise DiscError(msg("xorriso is not installed: apt-get install xorriso"))
    return path


def check_sm3() -> None:
    """SM3 (GB/T 32905) comes from the OpenSSL Python was built with."""
    try:
        hashlib.new("sm3", b"")
    except ValueError:
        raise DiscError(
            msg("this Python's OpenSSL has no SM3 (hashlib.new('sm3')): SM3SUMS cannot be made")
        ) from None


def fits(size: int, media: str, estimate: bool = False) -> None:
    """Refuse a disc larger than `media` holds, with both sizes."""
    capacity = MEDIA[media]
    if size <= capacity:
        return
    why = msg(
        "the disc would hold %(size)s bytes (%(gb).2f GB); %(media)s holds %(capacity)s bytes "
        "(%(cgb).2f GB)",
        size=size,
        gb=size / 1e9,
        media=MEDIA_NAMES[media],
        capacity=capacity,
        cgb=capacity / 1e9,
    )
    if estimate:
        why = msg("%(why)s, from the recordings' sizes before they are copied", why=why)
    if media == "dvd":
        why = msg("%(why)s: --media bd25 for a 25 GB Blu-ray disc", why=why)
    raise DiscError(why)


def ready_out(out: Path) -> None:
    """`out` is a folder this process may write, or may be made in one, and
    holds no disc yet: a disc is never overwritten."""
    where = out if out.exists() else out.parent
    if not where.is_dir():
        raise DiscError(msg("%(folder)s is not a folder", folder=str(where)))
    if not os.access(where, os.W_OK | os.X_OK):
        raise DiscError(msg("%(folder)s is not writable", folder=str(where)))
    there = sorted(p.name for p in out.glob("copy-*.iso")) + [
        p.name for p in (out / "label.pdf",) if p.exists()
    ]
    if there:
        raise DiscError(
            msg(
                "%(folder)s holds %(file)s already: a disc is never overwritten",
                folder=str(out),
                file=there[0],
            )
        )


# -- the disc ------------------------------------------------------------------


def make_disc(
    dock: Path,
    items: Sequence[tuple[str, int]],
    identity: Identity,
    signing: Signing,
    out: Path,
    label: Label,
    *,
    texts: Texts,
    media: str = "dvd",
    permit: Callable[[str, str, int, int], None] | None = None,
    started: Callable[[], None] | None = None,
    burn: Burn | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> Disc:
    """`items`: (serial, recording) pairs, each its own court copy on the
    disc. `permit(serial, officer, start_us, end_us)` is asked for each once
    all are found, before anything is decrypted, and raises when the disc may
    not be made; `started()` is called after it (the audit log's line).
    `say`: progress lines for the operator."""
    from . import courtcopy
    from .courtcopy.r20 import end_of

    tool = xorriso()
    check_sm3()
    if media not in MEDIA:
        raise DiscError(msg("no such media: %(media)r", media=media[:20]))
    if not items:
        raise DiscError(msg("no recording named for the disc"))
    twice = next((i for n, i in enumerate(items) if i in items[:n]), None)
    if twice is not None:
        raise DiscError(
            msg("recording %(seq)s of %(serial)s is named twice", seq=twice[1], serial=twice[0])
        )
    ready_out(out)
    found = _find(dock, items)
    fits(sum(int(r.body.get("pt_len") or 0) for _, rec in found for r in rec.media()), media,
         estimate=True)  # fmt: skip
    for serial, rec in found:
        if permit is not None:
            permit(serial, rec.start.officer or "", rec.start.stamp.wall_us, end_of(rec))
    if started is not None:
        started()
    clock = _Stages()
    work = out / WORK
    out.mkdir(exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    moved: list[Path] = []
    try:
        tree = work / "disc"
        tree.mkdir()
        on_disc, test_cert = [], False
        for serial, rec in found:
            folder = f"{serial}_rec{rec.start.seq}"
            case = courtcopy.export_case(dock, serial, rec.start.seq, identity, signing,
                                         tree / folder, label.unit, examiner=label.maker,
                                         texts=texts)  # fmt: skip
            test_cert = test_cert or case.test_certificate
            on_disc.append(OnDisc(serial, rec.start.seq, rec.start.stamp.wall_us, folder))
            say(texts.tr("court copy of %(serial)s recording %(seq)s made (%(folder)s)",
                         serial=serial, seq=rec.start.seq, folder=folder))  # fmt: skip
        clock.lap("court copies")
        (tree / README).write_text(readme(label, on_disc, test_cert, texts), encoding="utf-8")
        epoch = source_date_epoch(label.made_us)
        lists = seal(tree, epoch)
        clock.lap("hash lists")
        images = tuple(work / f"copy-{n}.iso" for n in range(1, COPIES + 1))
        for image in images:
            make_image(tool, tree, image, lists.volume_id, epoch)
        digests = {_sha256_file(i) for i in images}
        if len(digests) != 1:
            raise DiscError(msg("the two images made from the same files differ"), 1)
        size = images[0].stat().st_size
        fits(size, media)
        clock.lap("images")
        for n, image in enumerate(images, 1):
            checked = read_back(tool, f"stdio:{image.resolve()}", work / f"check-{n}", lists)
            say(texts.tr("copy-%(n)s.iso read back: %(files)s files match SHA256SUMS and SM3SUMS",
                         n=n, files=checked))  # fmt: skip
        clock.lap("read back")
        label_pdf = work / "label.pdf"
        write_label(label_pdf, label, on_disc, lists, size, test_cert, texts)
        clock.lap("label")
        for p in (*images, label_pdf):
            os.chmod(p, 0o600)  # decrypted evidence: its maker's alone until burned
            with p.open("rb") as f:
                os.fsync(f.fileno())
            os.rename(p, out / p.name)
            moved.append(out / p.name)
        fsync_dir(out)
    except BaseException:
        # never half a disc, not even after Ctrl-C
        for p in moved:
            p.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    disc = Disc(out, tuple(out / i.name for i in images), out / "label.pdf", digests.pop(), size,
                lists, on_disc, test_cert, seconds=clock.seconds)  # fmt: skip
    if burn is not None:
        burn_discs(tool, burn, disc, texts, say)
        disc.burned = burn.device
        clock.lap("burn")
    return disc


def _find(dock: Path, items: Sequence[tuple[str, int]]) -> list[tuple[str, Recording]]:
    """Each recording in its unit's verified chain (verified once per unit;
    each court copy made of it then verifies the recording's files)."""
    from . import courtcopy
    from .courtcopy.steps import recording_of

    chains: dict[str, list[Recording]] = {}
    out = []
    for serial, seq in items:
        if serial not in chains:
            chains[serial] = courtcopy.recordings(courtcopy.verified_chain(dock, serial).chain)
        out.append((serial, recording_of(chains[serial], dock, serial, seq)))
    return out


def source_date_epoch(made_us: int) -> int:
    """The one date every file and the volume carry: SOURCE_DATE_EPOCH
    (reproducible-builds.org) when set, else the moment the disc is made."""
    given = os.environ.get("SOURCE_DATE_EPOCH", "")
    if given.isdigit() and 0 < int(given) < 32503680000:  # before the year 3000
        return int(given)
    return made_us // 1_000_000


def seal(tree: Path, epoch: int) -> Lists:
    """SHA256SUMS and SM3SUMS at the root, each over every other file; then
    every file and folder given the same modes and date, for equal images."""
    sha_lines, sm3_lines = [], []
    files = sorted(
        (p for p in tree.rglob("*") if p.is_file() and p.relative_to(tree).as_posix() not in LISTS),
        key=lambda p: p.relative_to(tree).as_posix(),
    )
    for p in files:
        name = p.relative_to(tree).as_posix()
        sha, sm3 = hashes(p)
        sha_lines.append(f"{sha}  {name}\n")
        sm3_lines.append(f"{sm3}  {name}\n")
    lists = Lists("".join(sha_lines).encode(), "".join(sm3_lines).encode(), len(files))
    (tree / SHA256SUMS).write_bytes(lists.sha256sums)
    (tree / SM3SUMS).write_bytes(lists.sm3sums)
    paths = sorted(tree.rglob("*"), key=lambda p: -len(p.parts))  # a folder after what it holds
    for p in [*paths, tree]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.utime(p, (epoch, epoch), follow_symlinks=False)
    return lists


def hashes(path: Path) -> tuple[str, str]:
    """SHA-256 and SM3 of a file, read once."""
    sha, sm3 = hashlib.sha256(), hashlib.new("sm3")
    with path.open("rb") as f:
        while chunk := f.read(BLOCK):
            sha.update(chunk)
            sm3.update(chunk)
    return sha.hexdigest(), sm3.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def _xorriso(cmd: list[str], what: Msg) -> str:
    """Run xorriso; its output, or DiscError with its first failure line."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env.update({"LC_ALL": "C"})
    return _run(cmd, what, env)


def _run(cmd: list[str], what: Msg, env: dict[str, str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                           timeout=XORRISO_TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiscError(msg("xorriso (%(what)s): %(error)s", what=what, error=str(exc))) from None
    if r.returncode != 0:
        lines = [x.strip() for x in (r.stderr + r.stdout).splitlines() if x.strip()]
        bad = next((x for x in lines if "FAILURE" in x or "SORRY" in x), lines[-1] if lines else "")
        raise DiscError(msg("xorriso (%(what)s) failed: %(error)s", what=what, error=bad[:300]))
    return r.stdout + r.stderr


def make_image(tool: str, tree: Path, image: Path, volume_id: str, epoch: int) -> None:
    """ISO 9660 (level 3: files over 4 GiB) with Rock Ridge and Joliet, of
    `tree` at its root; equal bytes for equal trees and `epoch`."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env.update({"LC_ALL": "C", "SOURCE_DATE_EPOCH": str(epoch)})
    cmd = [
        tool, "-no_rc", "-abort_on", "FAILURE", "-report_about", "SORRY",
        "-outdev", f"stdio:{image.resolve()}",
        "-volid", volume_id, "-application_id", "BODYCAM DOCK DISC",
        "-joliet", "on", "-rockridge", "on",
        "-compliance", "iso_9660_level=3:joliet_long_names",
        "-uid", "0", "-gid", "0",
        "-volume_date", "all_file_dates", "set_to_mtime",
        "-map", str(tree), "/",
        "-commit",
    ]  # fmt: skip
    _run(cmd, msg("making %(image)s", image=image.name), env)


def read_back(tool: str, source: str, into: Path, lists: Lists) -> int:
    """Extract everything on `source` (an image as `stdio:PATH`, or a drive)
    into `into`, check it against the lists this disc was made with, and
    remove it; the number of files checked."""
    shutil.rmtree(into, ignore_errors=True)
    _xorriso(
        [tool, "-no_rc", "-abort_on", "FAILURE", "-report_about", "SORRY", "-osirrox", "on",
         "-indev", source, "-extract", "/", str(into)],
        msg("reading %(source)s back", source=source),
    )  # fmt: skip
    try:
        return check_tree(into, lists, source)
    finally:
        shutil.rmtree(into, ignore_errors=True)


def check_tree(root: Path, lists: Lists, source: str) -> int:
    """Every file under `root` is in both lists, with its hashes there, and
    the lists are this disc's; DiscError (1) naming the first that is not."""
    for name, want in ((SHA256SUMS, lists.sha256sums), (SM3SUMS, lists.sm3sums)):
        path = root / name
        if not path.is_file() or path.read_bytes() != want:
            raise DiscError(
                msg("%(source)s: its %(list)s is not the one made for this disc",
                    source=source, list=name),
                1,
            )  # fmt: skip
    sha = _parse(lists.sha256sums)
    sm3 = _parse(lists.sm3sums)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - set(LISTS)
    extra, missing = sorted(present - set(sha)), sorted(set(sha) - present)
    if missing:
        raise DiscError(msg("%(source)s: %(file)s is missing", source=source, file=missing[0]), 1)
    if extra:
        raise DiscError(
            msg("%(source)s: %(file)s is in no hash list", source=source, file=extra[0]), 1
        )
    for name in sorted(sha):
        got = hashes(root / name)
        for listed, have, which in ((sha[name], got[0], SHA256SUMS), (sm3[name], got[1], SM3SUMS)):
            if listed != have:
                raise DiscError(
                    msg("%(source)s: %(file)s does not match %(list)s", source=source,
                        file=name, list=which),
                    1,
                )  # fmt: skip
    return len(sha)


def _parse(listing: bytes) -> dict[str, str]:
    out = {}
    for line in listing.decode().splitlines():
        digest, name = line.split("  ", 1)
        out[name] = digest
    return out


# -- burning ---------------------------------------------------------------------


def burn_discs(tool: str, burn: Burn, disc: Disc, texts: Texts, say: Callable[[str], None]) -> None:
    """Each image burned in turn to `burn.device`, read back from the disc and
    checked, the tray opened; the second disc (and a blank one, whenever the
    drive holds a disc that is not) asked for at the terminal. Written
    against xorriso's documentation and run only against its `stdio:`
    pseudo-drive (a file): never on a real writer."""
    dev = burn.device
    for n, image in enumerate(disc.images, 1):
        later = f"xorriso -as cdrecord -v dev={dev} {image}"
        if n > 1:
            _ask(burn, texts.tr(
                "copy %(done)s of %(count)s is burned and checked: put a blank disc for copy "
                "%(n)s of %(count)s in %(device)s and press Enter",
                done=n - 1, n=n, count=COPIES, device=dev,
            ), n, later)  # fmt: skip
        while (status := _media_status(tool, dev)) is not None:
            _ask(burn, texts.tr(
                "the disc in %(device)s is not blank (%(status)s): put in a blank disc for copy "
                "%(n)s of %(count)s and press Enter (a rewritable one is blanked with xorriso "
                "-outdev %(device)s -blank as_needed)",
                device=dev, status=status, n=n, count=COPIES,
            ), n, later)  # fmt: skip
        say(texts.tr("burning copy %(n)s of %(count)s to %(device)s", n=n, count=COPIES,
                     device=dev))  # fmt: skip
        _xorriso([tool, "-no_rc", "-as", "cdrecord", "-v", f"dev={dev}", str(image)],
                 msg("burning %(image)s", image=image.name))  # fmt: skip
        files = read_back(tool, dev, disc.out / f".disc-check-{n}", disc.lists)
        say(texts.tr("copy %(n)s of %(count)s read back from %(device)s: %(files)s files match "
                     "SHA256SUMS and SM3SUMS", n=n, count=COPIES, device=dev,
                     files=files))  # fmt: skip
        _xorriso([tool, "-no_rc", "-outdev", dev, "-eject", "all"],
                 msg("opening %(device)s", device=dev))  # fmt: skip


def _media_status(tool: str, dev: str) -> str | None:
    """None when the drive holds a blank disc; else what xorriso says of it."""
    toc = _xorriso([tool, "-no_rc", "-outdev", dev, "-toc"],
                   msg("looking at the disc in %(device)s", device=dev))  # fmt: skip
    line = next((x for x in toc.splitlines() if x.startswith("Media status")), "")
    status = line.partition(":")[2].strip()
    return None if status.startswith("is blank") else status or "?"


def _ask(burn: Burn, question: str, n: int, later: str) -> None:
    if not burn.ask(question):
        raise DiscError(
            msg("no answer at the terminal: copy %(n)s of %(count)s was not burned "
                "(%(command)s burns it)", n=n, count=COPIES, command=later),
            1,
        )  # fmt: skip


# -- what people read ------------------------------------------------------------


def readme(label: Label, on_disc: list[OnDisc], test_cert: bool, texts: Texts) -> str:
    """README.txt: in the dock's language first, then in English (UTF-8
    with a byte-order mark, so that Windows' Notepad shows the Chinese)."""
    parts = [_readme(label, on_disc, test_cert, texts)]
    if texts.language != "en":
        parts.append(_readme(label, on_disc, test_cert, load_texts(Locale("en", texts.zone_name))))
    return "\ufeff" + "\n\n----------------------------------------\n\n".join(parts)


def _readme(label: Label, on_disc: list[OnDisc], test_cert: bool, t: Texts) -> str:
    lines = [t.tr("Body-worn camera recordings: long-term records on disc"), ""]
    if test_cert:
        lines += [t.tr("TEST CERTIFICATE: made under a QA (test) agency CA; not evidence."), ""]
    lines += [
        t.tr("Making unit: %(unit)s", unit=label.unit),
        t.tr("Made by: %(maker)s", maker=label.maker),
        t.tr("Date made: %(time)s", time=t.time(label.made_us)),
        t.tr("Case or activity: %(name)s", name=label.case_name or "-"),
        t.tr("Case number: %(number)s", number=label.case_number or "-"),
        t.tr(
            "This disc is one of %(count)s copies made together, byte for byte the same; "
            "each one's label says which copy it is and gives the SHA-256 of SHA256SUMS and "
            "the SM3 of SM3SUMS, which match this disc's.",
            count=COPIES,
        ),
        "",
        t.tr("What is on this disc:"),
    ]
    for r in on_disc:
        lines.append(
            "  "
            + t.tr(
                "%(folder)s/: unit %(serial)s, recording %(seq)s, started %(start)s",
                folder=r.folder,
                serial=r.serial,
                seq=r.seq,
                start=t.time(r.start_us),
            )  # fmt: skip
        )
    lines += [
        "    "
        + t.tr(
            "each such folder is the court copy of one recording: the MP4 (signed by the "
            "agency with C2PA), report.pdf and report.html (what was checked and how to "
            "repeat each check), manifest.json, its own SHA256SUMS, agency-ca.pem (the "
            "trust anchor of the signature), chain/ (the unit's signed records the copy rests "
            "on) and stills/"
        ),
        "  " + t.tr("README.txt: this file"),
        "  " + t.tr("SHA256SUMS, SM3SUMS: the SHA-256 and the SM3 of every other file"),
        "",
        t.tr("How to check this disc (in its top folder):"),
        "  " + t.tr("1. SHA-256: sha256sum -c SHA256SUMS (every line must end in OK)"),
        "  "
        + t.tr(
            "2. SM3 (GB/T 32905): each file's SM3 must equal its line of SM3SUMS; one file: "
            "openssl dgst -sm3 FILE (OpenSSL 1.1.1 or later) or GmSSL's sm3 command; all:"
        ),
        '     while read h f; do [ "$(openssl dgst -sm3 -r "$f" | cut -d" " -f1)" = "$h" ] '
        '&& echo "$f: OK" || echo "$f: FAILED"; done < SM3SUMS',
        "  "
        + t.tr(
            "3. The disc and its label: sha256sum SHA256SUMS and openssl dgst -sm3 SM3SUMS "
            "print the two hashes on the label."
        ),
        "  "
        + t.tr(
            "4. Each court copy: its report.pdf says how to check it (its own SHA256SUMS, "
            "the C2PA signature with agency-ca.pem as trust anchor, the signatures inside "
            "the video with bodycam verify-media). Compare agency-ca.pem with the fingerprint "
            "the agency publishes: openssl x509 -in agency-ca.pem -noout -fingerprint -sha256"
        ),
    ]
    return "\n".join(lines) + "\n"


def write_label(
    path: Path,
    label: Label,
    on_disc: list[OnDisc],
    lists: Lists,
    size: int,
    test_cert: bool,
    texts: Texts,
) -> None:
    """label.pdf: one label per copy, in the dock's language and fonts."""
    import weasyprint

    from . import fonts
    from .courtcopy.report import environment

    html = (
        environment(texts)
        .get_template("disc_label.html.j2")
        .render(
            label=label,
            made=texts.time(label.made_us),
            recordings=on_disc,
            copies=list(range(1, COPIES + 1)),
            volume=lists.volume_id,
            size=size,
            sha256=lists.sha256,
            sm3=lists.sm3,
            test_certificate=test_cert,
            lang=texts.language,
            font_css=fonts.css_stack(),
        )
    )
    weasyprint.HTML(string=html).write_pdf(path)


class _Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._t, 3)
        self._t = now


# -- the command -----------------------------------------------------------------


def add_parser(sub: Any, t: Texts) -> None:
    dc = sub.add_parser(
        "disc",
        help=t.tr("court copies on disc, two copies and their labels (S0 art. 27; docs/EXPORT.md)"),
    )
    dc.add_argument("--dock-dir", type=Path, required=True)
    dc.add_argument("--serial", help=t.tr("the unit"))
    dc.add_argument(
        "--recording",
        type=int,
        action="append",
        default=[],
        metavar="SEQ",
        help=t.tr("the record_start record's number (see `recordings`); repeat for several"),
    )
    dc.add_argument(
        "--case", metavar="NUMBER", help=t.tr("every recording of a case, instead of --serial")
    )
    dc.add_argument(
        "--examiner",
        required=True,
        metavar="NAME",
        help=t.tr("who makes the disc: the request's filer, named on the label"),
    )
    dc.add_argument(
        "--request",
        default="",
        metavar="ID",
        help=t.tr("the approved disc request, filed by the examiner (the page's Requests)"),
    )
    dc.add_argument(
        "--out",
        type=Path,
        required=True,
        help=t.tr("the folder for copy-1.iso, copy-2.iso, label.pdf"),
    )
    dc.add_argument(
        "--name",
        default="",
        metavar="UNIT",
        help=t.tr("the making unit on the label (default: dock.toml [agency] name)"),
    )
    dc.add_argument("--case-number", default="", metavar="N", help=t.tr("on the label"))
    dc.add_argument("--case-name", default="", metavar="NAME", help=t.tr("on the label"))
    dc.add_argument(
        "--media",
        choices=sorted(MEDIA),
        default="dvd",
        help=t.tr("the discs' size: dvd (4.7 GB, the default) or bd25 (25 GB)"),
    )
    dc.add_argument(
        "--burn",
        metavar="DEVICE",
        help=t.tr("burn both copies in this writer (e.g. /dev/sr0) and read them back"),
    )
    from .cli import case_credential_arguments

    case_credential_arguments(dc, t)
    add_locale_arguments(dc, t)


class _Logged(Exception):
    """A refusal already in the audit log."""

    def __init__(self, message: Msg) -> None:
        super().__init__(message)


def disc_command(args: argparse.Namespace, texts: Texts) -> int:
    from .audit import operator
    from .cli import case_credentials
    from .courtcopy import CaseError
    from .index import INDEX_ERRORS, describe_error
    from .names import NameNotAccepted, checked_name
    from .permits import PermitRefused, approved_request
    from .requests import Request

    log = AuditLog(args.dock_dir)
    who = args.examiner[:64]
    chosen: dict[str, Request] = {}
    began = False

    def refuse(why: Msg, request: str) -> NoReturn:
        with contextlib.suppress(AuditError, OSError):
            log.append(who, "", "disc", target, "refused",
                       {"why": str(why)[:300], "request": request})  # fmt: skip
        raise _Logged(msg("no disc: %(why)s", why=why))

    def permit(serial: str, officer: str, start_us: int, end_us: int) -> None:
        try:
            chosen["request"] = approved_request(args.dock_dir, args.request, who, "disc",
                                                 serial, officer, start_us, end_us)  # fmt: skip
        except PermitRefused as exc:
            refuse(exc.why, exc.request)
        except INDEX_ERRORS as exc:
            raise DiscError(describe_error(exc)) from None

    def started() -> None:
        nonlocal began
        req = chosen["request"]
        log.append(who, "", "disc", target, "started",
                   {"out": str(args.out), "request": req.id, "approver": req.approver})  # fmt: skip
        began = True

    def say(line: str) -> None:
        print(line, flush=True)

    def ask(question: str) -> bool:
        print(question, file=sys.stderr, flush=True)
        return sys.stdin.readline() != ""

    target = "-"
    try:
        if not (args.dock_dir / "dock.sqlite").is_file():
            raise DiscError(msg("%(folder)s is not a dock folder", folder=str(args.dock_dir)))
        try:
            who = checked_name(args.examiner, "--examiner")
            unit = making_unit(args.dock_dir, args.name)
            case_name = checked_name(args.case_name, "--case-name") if args.case_name else ""
            number = checked_name(args.case_number, "--case-number") if args.case_number else ""
        except NameNotAccepted as exc:
            raise DiscError(exc.args[0]) from None
        items, case = _items(args)
        if case is not None:  # the case's own number and name, as filed
            number, case_name = case.number, case.name
        target = "; ".join(f"{s} recording {n}" for s, n in items)
        signing, identity = case_credentials(args, texts)
        label = Label(unit, who, int(time.time() * 1e6), case_name, number)
        burn = Burn(args.burn, ask) if args.burn else None
        disc = make_disc(args.dock_dir, items, identity, signing, args.out, label, texts=texts,
                         media=args.media, permit=permit, started=started, burn=burn,
                         say=say)  # fmt: skip
    except _Logged as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return 1
    except (DiscError, CaseError) as exc:
        _failed(log, who, target, began, str(exc))
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return exc.code
    except INDEX_ERRORS as exc:
        _failed(log, who, target, began, str(exc))
        print(f"dock: {texts.say(describe_error(exc))}", file=sys.stderr)
        return 2
    except (AuditError, OSError) as exc:
        _failed(log, who, target, began, str(exc))
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    req = chosen["request"]
    try:
        log.append(who, "", "disc", target, "ok", {
            "out": str(disc.out), "request": req.id, "approver": req.approver,
            "iso_sha256": disc.image_sha256, "iso_bytes": disc.image_bytes,
            "sha256sums_sha256": disc.lists.sha256, "sm3sums_sm3": disc.lists.sm3,
            "media": args.media, "burned": disc.burned, "by": operator(),
        })  # fmt: skip
    except (AuditError, OSError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
        return 2
    print(texts.tr(
        "%(folder)s: copy-1.iso and copy-2.iso (the same %(bytes)s bytes, SHA-256 %(sha)s) and "
        "label.pdf; SHA-256 of SHA256SUMS %(sums)s, SM3 of SM3SUMS %(sm3)s",
        folder=str(disc.out), bytes=disc.image_bytes, sha=disc.image_sha256,
        sums=disc.lists.sha256, sm3=disc.lists.sm3,
    ))  # fmt: skip
    if disc.test_certificate:
        print(texts.tr("TEST CERTIFICATE: made under a QA (test) agency CA; not evidence."))
    print(texts.tr("done"))
    return 0


def _items(args: argparse.Namespace) -> tuple[list[tuple[str, int]], Case | None]:
    """--serial and --recording, or --case: the recordings, and the case."""
    if args.case:
        if args.serial or args.recording or args.case_number or args.case_name:
            raise DiscError(msg("give --case NUMBER, or --serial S --recording SEQ, not both"))
        from .index import Index

        index = Index.open(args.dock_dir / "dock.sqlite", dock=None)
        try:
            case, filed = case_of(index, args.case)
        finally:
            index.close()
        return filed, case
    if not args.serial or not args.recording:
        raise DiscError(msg("give --serial S --recording SEQ (or --case NUMBER)"))
    return [(args.serial, n) for n in args.recording], None


def making_unit(dock_dir: Path, given: str) -> str:
    """The making unit on the label: --name, else dock.toml [agency] name."""
    from .names import checked_name

    if given:
        return checked_name(given, "--name")
    path = dock_dir / "dock.toml"
    try:
        table = tomllib.loads(path.read_text()).get("agency", {}) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DiscError(msg("%(file)s: %(error)s", file=str(path), error=str(exc))) from None
    name = table.get("name") if isinstance(table, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise DiscError(
            msg(
                "the label names the making unit: give --name UNIT, or [agency] name in %(file)s",
                file=str(path),
            )  # fmt: skip
        )
    return checked_name(name, f"{path} [agency] name")


def _failed(log: AuditLog, who: str, target: str, began: bool, why: str) -> None:
    """A disc that was started and did not finish, in the audit log."""
    if began:
        with contextlib.suppress(AuditError, OSError):
            log.append(who, "", "disc", target, "failed", {"why": why[:300]})
