"""Officers' fingerprints at the dock: enrolled at the workstation, matched at
export, through libfprint (Debian's libfprint-2-2, reached by GObject
introspection: gir1.2-fprint-2.0 and PyGObject).

A `Reader` gives an opaque template at enrolment (libfprint's serialized
print: bytes to keep with the officer) and a yes/no at verification; its
`identity` ("libfprint <driver>/<device id>") is recorded beside each
result. gi and FPrint are imported here only, and only when a reader is
opened, so the rest of the dock works on a machine without them.

Every wait is bounded: each scan has its timeout, and opening, closing and
cancelling theirs. Whatever goes wrong becomes one `FingerprintError` line
naming what failed and why.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from .texts import Msg, msg

# A template is "FP3" + a GVariant (issbymsmsia{sv}v). An image reader's
# (NBIS minutiae) holds its 5 enrolment scans of at most 200 minutiae of 3
# int32 each: ~12 KB at most with its header; 64 KiB refuses junk early.
MAX_TEMPLATE_BYTES = 64 * 1024
_MAGIC = b"FP3"
_PRINT_TYPE = "(issbymsmsia{sv}v)"
# libfprint's print types and what each holds: 1 raw (a match-on-chip
# reader's own data, boxed), 2 NBIS (per scan: x, y, theta of each minutia).
_PAYLOAD = {1: "v", 2: "(a(aiaiai))"}
_NBIS = 2
_MAX_MINUTIAE = 200  # NBIS's (bozorth3) per scan
_MAX_FINGER = 10  # FpFinger: 0 unknown, 1 left thumb .. 10 right little
_NO_DATE, _MAX_JULIAN = -(2**31), 23936166  # undated; GDate's last day

# progress(scans accepted, scans needed, retry): retry is None, or why the
# last scan was refused (too short, not centred...) so it can be said.
Progress = Callable[[int, int, "str | None"], None]


class FingerprintError(Exception):
    """One line: what failed and why (shown as is, never a traceback)."""


class Reader(Protocol):
    """A fingerprint reader as the dock uses it."""

    @property
    def identity(self) -> str:
        """Which reader: recorded with every enrolment and every match."""
        ...

    def enroll(self, progress: Progress | None = None) -> bytes:
        """Scan one finger (as often as the reader needs): its template."""
        ...

    def verify(self, template: bytes) -> bool:
        """Scan a finger once: whether it is the template's finger."""
        ...


def _gi() -> tuple[Any, Any, Any]:
    """FPrint, GLib, Gio, imported on first use (the dock runs without them)."""
    try:
        import gi

        gi.require_version("FPrint", "2.0")
        from gi.repository import FPrint, Gio, GLib
    except (ImportError, ValueError) as exc:
        raise FingerprintError(
            msg(
                "libfprint is not available (%(error)s): install Debian's gir1.2-fprint-2.0 and "
                "PyGObject",
                error=str(exc),
            )
        ) from None
    return FPrint, GLib, Gio


def check_template(template: bytes) -> None:
    """Refuse what libfprint could not take, before it parses it: Debian
    12's libfprint (1.94.5) aborts the whole process on a template of 3
    bytes or fewer, a truncated one, or one whose data is not of its type."""
    if not isinstance(template, bytes | bytearray):
        raise FingerprintError(
            msg("fingerprint template: expected bytes, got %(kind)s", kind=type(template).__name__)
        )
    if len(template) > MAX_TEMPLATE_BYTES:
        raise FingerprintError(
            msg(
                "fingerprint template: %(n)s bytes, more than a template can be (%(most)s)",
                n=len(template),
                most=MAX_TEMPLATE_BYTES,
            )
        )
    if len(template) <= len(_MAGIC) or not template.startswith(_MAGIC):
        raise FingerprintError(msg("fingerprint template: not a libfprint print (no FP3 header)"))
    _, GLib, _ = _gi()
    value = GLib.Variant.new_from_bytes(
        GLib.VariantType.new(_PRINT_TYPE), GLib.Bytes.new(bytes(template[len(_MAGIC) :])), False
    )
    # Untrusted bytes: anything but the normal form is damage (truncation...).
    if not value.is_normal_form():
        raise FingerprintError(
            msg("fingerprint template: damaged (not a well-formed libfprint print)")
        )
    kind = value.get_child_value(0).get_int32()
    finger = value.get_child_value(4).get_byte()
    julian = value.get_child_value(7).get_int32()
    payload = value.get_child_value(9).get_variant()
    if kind not in _PAYLOAD or payload.get_type_string() != _PAYLOAD[kind]:
        raise FingerprintError(
            msg(
                "fingerprint template: damaged (print type %(kind)s with %(data)s)",
                kind=kind,
                data=payload.get_type_string(),
            )
        )
    if finger > _MAX_FINGER or not (julian == _NO_DATE or 0 < julian <= _MAX_JULIAN):
        raise FingerprintError(msg("fingerprint template: damaged (no such finger or date)"))
    if kind == _NBIS:
        scans = payload.unpack()[0]
        if not scans or any(
            not 0 < len(x) <= _MAX_MINUTIAE or len(x) != len(y) or len(x) != len(t)
            for x, y, t in scans
        ):
            raise FingerprintError(
                msg("fingerprint template: damaged (its minutiae do not add up)")
            )


class LibfprintReader:
    """A libfprint reader held open until `close()`: the first one found, or
    the one named `device` (its driver, or "driver/device id").

    `prompt()` is called each time the reader waits for a finger (for the
    screen: "place your finger"); each scan then has `scan_timeout` seconds.
    GLib work runs on the caller's thread through the default main context:
    use a reader from one thread at a time.
    """

    def __init__(
        self,
        device: str | None = None,
        *,
        scan_timeout: float = 30.0,
        io_timeout: float = 10.0,
        prompt: Callable[[], None] | None = None,
    ) -> None:
        self._FPrint, self._GLib, self._Gio = _gi()
        self.scan_timeout = scan_timeout
        self.io_timeout = io_timeout
        self.prompt = prompt
        self._deadline = 0.0
        # The context reads the FP_VIRTUAL_* variables when it is made (tests).
        self._context = self._FPrint.Context.new()
        found = list(self._context.get_devices())
        chosen = [d for d in found if device is None or device in (d.get_driver(), _name(d))]
        if not chosen:
            names = ", ".join(_name(d) for d in found) or "none"
            wanted = f" {device!r}" if device else ""
            raise FingerprintError(
                msg(
                    "no fingerprint reader%(wanted)s found (readers found: %(names)s)",
                    wanted=wanted,
                    names=names,
                )
            )
        self._dev = chosen[0]
        self.identity = f"libfprint {_name(self._dev)}"
        self.stages = int(self._dev.get_nr_enroll_stages())
        self._dev.connect("notify::finger-status", self._on_finger_status)
        self._needed = False
        self._run(
            msg("opening"),
            self.io_timeout,
            lambda c, cb: self._dev.open(c, callback=cb),
            self._dev.open_finish,
        )

    # -- the Reader protocol ---------------------------------------------
    def enroll(self, progress: Progress | None = None) -> bytes:
        FPrint, GLib = self._FPrint, self._GLib
        template = FPrint.Print.new(self._dev)
        # The template carries the day it was enrolled (kept by libfprint).
        now = GLib.DateTime.new_now_utc()
        template.set_enroll_date(
            GLib.Date.new_dmy(now.get_day_of_month(), now.get_month(), now.get_year())
        )

        def on_progress(_dev: Any, done: int, _print: Any, *rest: Any) -> None:
            error = rest[-1] if rest else None  # a refused scan's retry error
            if progress is not None:
                progress(done, self.stages, error.message if error is not None else None)

        printed = self._run(
            msg("enrolment"),
            self.scan_timeout,
            lambda c, cb: self._dev.enroll(template, c, progress_cb=on_progress, callback=cb),
            self._dev.enroll_finish,
            scans=True,
        )
        try:
            return bytes(printed.serialize())
        except GLib.Error as exc:
            raise FingerprintError(
                msg(
                    "fingerprint reader %(reader)s: enrolled print not saved: %(error)s",
                    reader=self.identity,
                    error=exc.message,
                )
            ) from None

    def verify(self, template: bytes) -> bool:
        enrolled = self._load(template)
        match, _scanned = self._run(
            msg("verification"),
            self.scan_timeout,
            lambda c, cb: self._dev.verify(enrolled, c, callback=cb),
            self._dev.verify_finish,
            scans=True,
        )
        return bool(match)

    # -- life -------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_dev", None) is not None and self._dev.is_open():
            self._run(
                msg("closing"),
                self.io_timeout,
                lambda c, cb: self._dev.close(c, callback=cb),
                self._dev.close_finish,
            )

    def __enter__(self) -> LibfprintReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside -----------------------------------------------------------
    def _load(self, template: bytes) -> Any:
        check_template(template)
        try:
            enrolled = self._FPrint.Print.deserialize(bytes(template))
        except self._GLib.Error as exc:
            raise FingerprintError(
                msg("fingerprint template: %(error)s", error=exc.message)
            ) from None
        driver, device_id = enrolled.props.driver, enrolled.props.device_id
        # Minutiae from another driver's sensor (another resolution, another
        # image) would merely not match: say why instead of "no match".
        if driver != self._dev.get_driver():
            raise FingerprintError(
                msg(
                    "fingerprint template: enrolled on a %(driver)s reader, not on %(reader)s",
                    driver=driver,
                    reader=self.identity,
                )
            )
        # A print kept on a sensor's own chip exists on that sensor only.
        if enrolled.props.device_stored and device_id != self._dev.get_device_id():
            raise FingerprintError(
                msg(
                    "fingerprint template: kept on reader %(driver)s/%(device)s, not %(reader)s",
                    driver=driver,
                    device=device_id,
                    reader=self.identity,
                )
            )
        return enrolled

    def _on_finger_status(self, dev: Any, _pspec: Any) -> None:
        needed = bool(dev.get_finger_status() & self._FPrint.FingerStatusFlags.NEEDED)
        present = bool(dev.get_finger_status() & self._FPrint.FingerStatusFlags.PRESENT)
        if needed and not present and not self._needed:
            # A new scan is wanted: its own timeout starts now.
            self._deadline = time.monotonic() + self.scan_timeout
            if self.prompt is not None:
                self.prompt()
        self._needed = needed and not present

    def _run(
        self,
        what: Msg,
        timeout: float,
        start: Callable[[Any, Callable[..., None]], None],
        finish: Callable[[Any], Any],
        scans: bool = False,
    ) -> Any:
        """Start one asynchronous libfprint call and iterate GLib until it
        ends or its deadline passes; then cancel it and wait (bounded) for
        libfprint to confirm, so the reader is usable again."""
        GLib = self._GLib
        who = msg("fingerprint reader %(reader)s", reader=self.identity)
        results: list[Any] = []
        cancellable = self._Gio.Cancellable.new()
        self._needed = False
        self._deadline = time.monotonic() + timeout
        start(cancellable, lambda _src, res, *_: results.append(res))
        if not self._iterate(lambda: bool(results), lambda: self._deadline):
            cancellable.cancel()
            grace = time.monotonic() + self.io_timeout
            if not self._iterate(lambda: bool(results), lambda: grace):
                raise FingerprintError(
                    msg(
                        "%(who)s: %(what)s timed out, and did not stop when cancelled",
                        who=who,
                        what=what,
                    )
                )
            with contextlib.suppress(GLib.Error):  # the cancellation asked for
                finish(results[0])
            if scans:
                raise FingerprintError(
                    msg(
                        "%(who)s: %(what)s: no finger scanned within %(s)s s",
                        who=who,
                        what=what,
                        s=format(timeout, "g"),
                    )
                )
            raise FingerprintError(
                msg(
                    "%(who)s: %(what)s took longer than %(s)s s",
                    who=who,
                    what=what,
                    s=format(timeout, "g"),
                )
            )
        try:
            return finish(results[0])
        except GLib.Error as exc:
            if exc.domain == GLib.quark_to_string(self._FPrint.device_retry_quark()):
                raise FingerprintError(
                    msg(
                        "%(who)s: %(what)s: scan not usable (%(error)s); scan again",
                        who=who,
                        what=what,
                        error=exc.message,
                    )
                ) from None
            raise FingerprintError(
                msg("%(who)s: %(what)s failed: %(error)s", who=who, what=what, error=exc.message)
            ) from None

    def _iterate(self, done: Callable[[], bool], deadline: Callable[[], float]) -> bool:
        """Iterate the default main context until done() or the deadline,
        re-read each turn (a new scan moves it)."""
        GLib = self._GLib
        ctx = GLib.MainContext.default()
        while not done():
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                return False
            # A timer source wakes the blocking iteration at the deadline.
            wake = GLib.timeout_source_new(max(1, int(remaining * 1000) + 1))
            wake.set_callback(lambda *_: False)
            wake.attach(ctx)
            try:
                ctx.iteration(True)
            finally:
                wake.destroy()
        return True


def _name(device: Any) -> str:
    return f"{device.get_driver()}/{device.get_device_id()}"
