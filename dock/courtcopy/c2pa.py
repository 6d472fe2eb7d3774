"""C2PA content credentials on a court copy (c2pa-python, docs/EXPORT.md).

The agency's court-copy certificate (issued by the agency CA, `flash.py
c2pa-signer`) signs a manifest embedded in the MP4. The media bytes are not
changed: the manifest store goes into the room the MP4's index left
(`_embed`, in place) or, where there is none, c2pa-rs adds one `uuid` box
to a copy and moves the chunk offsets; so the packets an examiner hashes
with `ffmpeg -f streamhash` are the same before and after. Validation
trusts the agency CA only when it is given as an anchor; "Valid" means
intact but signed by someone not trusted, so only "Trusted" passes here.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from capture.mediaread import Damaged, mp4_boxes

from ..texts import msg
from .media import MOOV_ROOM_MAX

MIME = "video/mp4"
# c2pa-rs signs a copy this large in memory (its default), a larger one in an
# unnamed file it spools into the system's temp folder (TMPDIR): see `sign`
SPOOL_OVER_MB = 512
# the signing process: its start, then the copy read and written at a slow disk's pace
SIGN_TIMEOUT_S = 120
SIGN_BYTES_PER_S = 20 << 20
ANSWER_MAX = 1 << 20  # the signer's answer: a manifest of a few kB
STDERR_KEPT = 1 << 16  # of the signer's stderr: its last line says why it failed
# the signer's word that the room is laid out (`_embed`): one line before its answer
LAID_OUT = b'{"laid_out": true}\n'
# c2pa-rs reads the file it hashes (signing, validation) 256 MiB at a time,
# each into a buffer it allocates afresh; glibc maps each such buffer anew and
# the kernel zeroes its 65,536 pages as they are touched: 1.8 M page faults
# and about 5 CPU-s an hour, each. Its processes (`c2pa_signer`) are started
# with glibc's malloc taking such buffers from the heap and keeping it, so
# each read reuses the last one's pages. (Tunables: glibc >= 2.26; another
# libc ignores them, and is only slower.)
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"
# the codes every bmff validation reports and that say nothing is wrong
INFORMATIONAL = ("assertion.bmffHash.additionalExclusionsPresent", "signingCredential.ocsp.skipped")


@dataclass(frozen=True)
class Room:
    """The bytes between `ftyp` and the first `mdat`: the MP4's index (`moov`)
    and the room the join kept for it (`free`, media.py). The C2PA manifest
    store goes first in them, as the specification asks (C2PA 2.x, 11.3.3.2:
    after `ftyp`, before `moov` and `mdat`); the index follows; a `free` box
    keeps what is left. The media do not move, so the index's offsets into
    them stay true."""

    at: int
    size: int


def room_in(path: Path) -> Room | None:
    """The Room of an MP4 that starts with `ftyp` and has an `mdat`, if any."""
    fd = os.open(path, os.O_RDONLY)
    try:
        first = None
        for box in mp4_boxes(fd, 0, os.fstat(fd).st_size):
            if first is None and box.type != b"ftyp":
                return None
            first = first or box
            if box.type == b"mdat":
                return Room(first.end, box.at - first.end) if box.at > first.end else None
    except Damaged:
        return None
    finally:
        os.close(fd)
    return None


def _index_alone(path: str, room: Room) -> bytes | None:
    """The room's index (`moov`), if the room holds it and `free` boxes only."""
    fd = os.open(path, os.O_RDONLY)
    try:
        boxes = list(mp4_boxes(fd, room.at, room.at + room.size))
        index = [box for box in boxes if box.type != b"free"]
        if (
            not boxes
            or boxes[-1].end != room.at + room.size
            or [x.type for x in index] != [b"moov"]
        ):
            return None
        size = index[0].end - index[0].at
        return os.pread(fd, size, index[0].at) if size <= MOOV_ROOM_MAX else None
    except Damaged:
        return None
    finally:
        os.close(fd)


class C2paFailure(Exception):
    """Signing or validation could not be done (bad certificate, bad file)."""


@dataclass(frozen=True)
class Validation:
    state: str  # Trusted, Valid (intact, signer not trusted) or Invalid
    failures: tuple[str, ...]  # validation codes that count against the file
    manifest: dict[str, Any]  # the active manifest as c2pa-python reads it

    @property
    def trusted(self) -> bool:
        return self.state == "Trusted" and not self.failures


def _settings(anchor_pem: str, spool_over_mb: int) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "trust": {"user_anchors": anchor_pem},
        # an examiner's machine may be offline: nothing is fetched
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "builder": {"thumbnail": {"enabled": False}},
    }
    if spool_over_mb:
        settings["core"] = {"backing_store_memory_threshold_in_mb": spool_over_mb}
    return settings


def _context(anchor_pem: str, spool_over_mb: int = SPOOL_OVER_MB) -> c2pa.Context:
    return c2pa.Context.from_dict(_settings(anchor_pem, spool_over_mb))


def _algorithm(key_pem: bytes) -> bytes:
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:
        raise C2paFailure(
            msg("the C2PA signing key is not a PEM private key: %(error)s", error=str(exc))
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return b"ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return b"es256" if key.curve.name == "secp256r1" else b"es384"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return b"ps256"
    raise C2paFailure(msg("the C2PA signing key must be Ed25519, EC P-256/P-384 or RSA >= 2048"))


def sign(
    src: Path,
    dst: Path,
    *,
    cert_pem: bytes,
    key_pem: bytes,
    anchor_pem: bytes,
    title: str,
    assertions: list[dict[str, Any]],
    actions: list[dict[str, Any]],
    generator: dict[str, str],
    spool: Path,
    room: Room | None = None,
    laid_out: Callable[[], None] | None = None,
) -> bytes:
    """Write `dst`: `src` with a C2PA manifest signed by `cert_pem`; the
    manifest's bytes. With `room` (Room: the index and its free room, before
    the media), the manifest is written into it and `src` is renamed `dst`:
    no byte of the media is moved or copied, and c2pa-rs only reads the file
    to hash it. Without, c2pa-rs spools a copy over SPOOL_OVER_MB (an hour is
    7 GB) into the system's temp folder, which may be a tmpfs in RAM
    (Debian 13's /tmp) and too small, and it has no setting for where: so
    it signs in a process of its own whose TMPDIR is `spool` (a folder on
    the copy's own file system, which has room), and this process's
    environment is not touched. A signer that dies is a failure, not ours.
    `laid_out` is called once the room is laid out, before the file is
    hashed: from then on only the manifest store's bytes change (in place),
    so the file's packets can be read beside the signing."""
    request = {
        "src": str(src),
        "dst": str(dst),
        "cert_pem": cert_pem.decode("ascii", "replace"),
        "key_pem": key_pem.decode("ascii", "replace"),
        "anchor_pem": anchor_pem.decode("ascii", "replace"),
        "title": title,
        "assertions": assertions,
        "actions": actions,
        "generator": generator,
        "spool_over_mb": SPOOL_OVER_MB,
        "room": [room.at, room.size] if room else None,
    }
    timeout = SIGN_TIMEOUT_S + src.stat().st_size // SIGN_BYTES_PER_S
    try:
        returncode, lines, stderr = _converse(
            json.dumps(request).encode(), _env(TMPDIR=str(spool)), timeout, laid_out
        )
    except _Expired as exc:
        raise C2paFailure(msg("C2PA signing failed: %(error)s", error=str(exc))) from None
    manifest, in_place = _answer(returncode, lines, stderr)
    if in_place:
        src.rename(dst)
    return manifest


def _env(**more: str) -> dict[str, str]:
    """The signer's environment: this one's, MALLOC_TUNABLES added, and `more`."""
    tunables = ":".join(t for t in (os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES) if t)
    return {**os.environ, "GLIBC_TUNABLES": tunables, **more}


def _converse(
    request: bytes,
    env: dict[str, str],
    timeout: float,
    laid_out: Callable[[], None] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run the signer's process on `request`: its return code, its answer
    line and its stderr's end. When it says the room is laid out (LAID_OUT,
    before it hashes), `laid_out` is called at once; a signer still running
    at `timeout` is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dock.courtcopy.c2pa_signer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    killer = threading.Timer(timeout, expire)
    killer.start()
    errors = _Tail(proc.stderr)
    try:
        try:
            proc.stdin.write(request)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended before reading: its code and stderr say why
        line = proc.stdout.readline(ANSWER_MAX + 1)
        if line == LAID_OUT:
            if laid_out is not None:
                laid_out()
            line = proc.stdout.readline(ANSWER_MAX + 1)
        if proc.stdout.read(1):
            line = b""  # more than one answer: none is taken
        returncode = proc.wait()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if expired.is_set():
        raise _Expired(f"no answer within {timeout} s")
    return returncode, line, errors.text()


class _Expired(Exception):
    """The signer's process was killed at its timeout (args[0]: that, in English)."""


class _Tail:
    """The last STDERR_KEPT bytes a pipe gives, read on a thread until it closes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe, self._kept = pipe, b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            while chunk := os.read(self._pipe.fileno(), 1 << 16):
                self._kept = (self._kept + chunk)[-STDERR_KEPT:]

    def text(self) -> bytes:
        self._thread.join(5)
        return self._kept


def _answer(returncode: int, stdout: bytes, stderr: bytes) -> tuple[bytes, bool]:
    """The manifest the signer wrote back and whether it went into `src`'s
    room; or its failure, or why it gave neither."""
    try:
        if returncode != 0 or len(stdout) > ANSWER_MAX:
            raise ValueError
        answer = json.loads(stdout)
        if "failure" in answer:
            failure = answer["failure"]
            raise C2paFailure(msg(str(failure["msgid"]), **dict(failure["args"])))
        in_place = answer.get("in_place", False)
        if not isinstance(in_place, bool):
            raise ValueError
        return base64.b64decode(answer["manifest"], validate=True), in_place
    except (ValueError, KeyError, TypeError):
        error = _ended("the signer", returncode, stderr)
        raise C2paFailure(msg("C2PA signing failed: %(error)s", error=error)) from None


def _ended(who: str, returncode: int, stderr: bytes) -> str:
    """How a signer's process that gave no usable answer ended: its code and
    its stderr's last line (where Python puts why it stopped)."""
    last = (stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
    return f"{who} ended with code {returncode}: {last[:300]}"


def sign_here(
    request: dict[str, Any], laid_out: Callable[[], None] = lambda: None
) -> tuple[bytes, bool]:
    """The signing itself, in the signer's process (dock/courtcopy/c2pa_signer.py):
    the manifest, and whether it was written into `src`'s room (else `dst`
    was written: no room was given, or the manifest did not fit it).
    `laid_out` is called when the room is laid out, before it is hashed."""
    cert_pem, key_pem = request["cert_pem"].encode(), request["key_pem"].encode()
    try:
        x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise C2paFailure(
            msg("the C2PA signing certificate is not PEM: %(error)s", error=str(exc))
        ) from None
    definition = {
        "claim_generator_info": [request["generator"]],
        "title": request["title"],
        "format": MIME,
        "assertions": request["assertions"],
    }
    algorithm = _algorithm(key_pem)

    def signer() -> c2pa.Signer:
        # the chain, leaf first, must lead to the anchor; c2pa checks it after signing
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm, cert_pem, key_pem, None))

    try:
        if request.get("room"):
            embedded = _embed(request, definition, signer(), laid_out)
            if embedded is not None:
                return embedded, True
        with (
            _context(request["anchor_pem"], int(request["spool_over_mb"])) as ctx,
            c2pa.Builder(definition, context=ctx) as b,
        ):
            b.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE)
            for action in request["actions"]:
                b.add_action(action)
            with open(request["src"], "rb") as f, open(request["dst"], "w+b") as o:
                return bytes(b.sign(signer(), MIME, f, o)), False
    except c2pa.C2paError as exc:
        raise C2paFailure(msg("C2PA signing failed: %(error)s", error=str(exc))) from None


def _embed(
    request: dict[str, Any],
    definition: dict[str, Any],
    signer: c2pa.Signer,
    laid_out: Callable[[], None],
) -> bytes | None:
    """Sign `src` in place: c2pa-rs's placeholder goes first in the room,
    the index after it, the file is hashed around the placeholder, and the
    signed manifest, of the same size, replaces it. None (nothing written) if
    the room is not an index and free boxes, or they and the placeholder do
    not fit it. c2pa-python 0.38 does not wrap these calls of its library, so
    they are made here (`_native`)."""
    at, size = (int(x) for x in request["room"])
    index = _index_alone(request["src"], Room(at, size))
    if index is None:
        return None
    native = _native()
    context = c2pa.Context.from_dict(_settings(request["anchor_pem"], 0), signer=signer)
    with context as ctx, c2pa.Builder(definition, context=ctx) as b:
        b.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE)
        for action in request["actions"]:
            b.add_action(action)
        placeholder = native.bytes_of(native.placeholder, b)
        spare = size - len(placeholder) - len(index)
        if spare < 0 or 0 < spare < 8:  # a free box needs 8 bytes
            return None
        with open(request["src"], "r+b") as f:
            f.seek(at)
            f.write(placeholder + index)
            if spare:  # what is left: a free box of zeros
                f.write(spare.to_bytes(4, "big") + b"free" + bytes(spare - 8))
            f.flush()
            laid_out()  # the index is where it stays: only the placeholder changes now
            f.seek(0)
            stream = c2pa.Stream(f)  # held: its native side lives as long as it does
            if native.update_hash(b._handle, MIME.encode(), stream._stream) < 0:
                raise c2pa.C2paError(native.error())
            manifest = native.bytes_of(native.sign_embeddable, b)
            if len(manifest) != len(placeholder):
                raise c2pa.C2paError("the signed manifest is not the placeholder's size")
            f.seek(at)
            f.write(manifest)
            os.fsync(f.fileno())
        return manifest


@dataclass(frozen=True)
class _Native:
    placeholder: Any
    update_hash: Any
    sign_embeddable: Any
    free: Any
    error: Any

    def bytes_of(self, call: Any, builder: c2pa.Builder) -> bytes:
        out = ctypes.POINTER(ctypes.c_ubyte)()
        n = call(builder._handle, MIME.encode(), ctypes.byref(out))
        if n < 0:
            raise c2pa.C2paError(self.error())
        try:
            return ctypes.string_at(out, n)
        finally:
            self.free(ctypes.cast(out, ctypes.c_void_p))


def _native() -> _Native:
    """c2pa-python's own library, through a handle of our own so that its
    declarations of these functions (if any) are not changed."""
    lib = ctypes.CDLL(c2pa.c2pa._lib._name)
    out = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))]
    for name in ("c2pa_builder_placeholder", "c2pa_builder_sign_embeddable"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = out, ctypes.c_int64
    update = lib.c2pa_builder_update_hash_from_stream
    update.argtypes, update.restype = (
        [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p],
        ctypes.c_int,
    )
    lib.c2pa_free.argtypes, lib.c2pa_free.restype = [ctypes.c_void_p], ctypes.c_int
    lib.c2pa_error.argtypes, lib.c2pa_error.restype = [], ctypes.c_void_p

    def error() -> str:
        p = lib.c2pa_error()
        text = ctypes.string_at(p).decode("utf-8", "replace") if p else "unknown error"
        if p:
            lib.c2pa_free(p)
        return text

    return _Native(
        lib.c2pa_builder_placeholder, update, lib.c2pa_builder_sign_embeddable, lib.c2pa_free, error
    )


def validate(path: Path, anchor_pem: bytes) -> Validation:
    """What an examiner's C2PA validator says, with the agency CA as anchor;
    asked of the signer's process (validate_here), which reads the file
    without a page fault per 4 KiB (MALLOC_TUNABLES)."""
    request = {"validate": str(path), "anchor_pem": anchor_pem.decode("ascii", "replace")}
    timeout = SIGN_TIMEOUT_S + path.stat().st_size // SIGN_BYTES_PER_S
    try:
        returncode, line, stderr = _converse(json.dumps(request).encode(), _env(), timeout)
    except _Expired as exc:
        return Validation("Invalid", (f"the validator gave {exc}",), {})
    try:
        if returncode != 0 or len(line) > ANSWER_MAX:
            raise ValueError
        got = json.loads(line)["validation"]
        state, failures, manifest = got["state"], got["failures"], got["manifest"]
        if not (
            isinstance(state, str)
            and isinstance(failures, list)
            and all(isinstance(f, str) for f in failures)
            and isinstance(manifest, dict)
        ):
            raise ValueError
        return Validation(state, tuple(failures), manifest)
    except (
        ValueError,
        KeyError,
        TypeError,
    ):  # not an answer: how the validator ended is the failure
        return Validation("Invalid", (_ended("the validator", returncode, stderr),), {})


def validate_here(path: str, anchor_pem: str) -> Validation:
    """The validation itself, in the signer's process (c2pa_signer.py)."""
    try:
        with (
            _context(anchor_pem) as ctx,
            open(path, "rb") as f,
            c2pa.Reader(MIME, f, context=ctx) as r,
        ):
            state = str(r.get_validation_state())
            store = json.loads(r.json())
    except (c2pa.C2paError, OSError) as exc:
        return Validation("Invalid", (f"unreadable manifest: {exc}",), {})
    active = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(active, {}) if active else {}
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = tuple(
        str(x.get("code"))
        for x in results.get("failure", [])
        if str(x.get("code")) not in INFORMATIONAL
    )
    return Validation(state, failures, manifest)


def assertion(manifest: dict[str, Any], label: str) -> Any:
    """The data of one of the manifest's assertions, by label."""
    for a in manifest.get("assertions", []):
        if a.get("label") == label:
            return a.get("data")
    return None
