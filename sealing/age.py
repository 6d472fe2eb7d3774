"""age v1 (C2SP age spec) for one X25519 recipient: a streaming writer that
never holds a whole segment and never writes plaintext, and a reader. And
the scrypt (passphrase) recipient, for small files held in memory: the
agency's evidence key kept passphrase-protected, as `age -p` writes it
(`encrypt_passphrase`, `decrypt_passphrase`).

Written over `cryptography` rather than pyrage because pyrage's writer buffers
whole payloads in memory and gives no control over when bytes reach the disk;
here every 64 KiB chunk is written as it fills, and `checkpoint()` makes the
data that is still short of a chunk durable too (see "Provisional last chunk"
in docs/FORMAT.md). Files written here decrypt with the standard `age` tool.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import bech32

INTRO = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
TAG = 16
X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
SCRYPT_LOG2N = 18  # what `age -p` writes: about a second, 256 MiB
MAX_LOG2N = 22  # the most a file may ask for (age's own bound): 4 GiB, some seconds
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"


class AgeError(ValueError):
    """Malformed key or file, or a failed authentication (with where it failed)."""


class WrongPassphrase(AgeError):
    """A scrypt stanza that does not open with the passphrase given."""


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    # age uses unpadded standard base64 and forbids padding.
    if b"=" in text:
        raise AgeError("padded base64 in header")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise AgeError("bad base64 in header") from None
    if _b64(data) != text:
        raise AgeError("non-canonical base64 in header")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Recipient:
    """An X25519 recipient, `age1...`."""

    public: bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        try:
            hrp, data = bech32.decode(text.strip())
        except ValueError as exc:
            raise AgeError(f"not an age recipient: {exc}") from None
        if hrp != "age" or len(data) != 32:
            raise AgeError("not an age X25519 recipient (want age1...)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode("age", self.public)


@dataclass(frozen=True)
class Identity:
    """An X25519 identity, `AGE-SECRET-KEY-1...`."""

    secret: bytes

    @classmethod
    def generate(cls) -> Identity:
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(raw)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Accept an identity file as age-keygen writes it (comments allowed)."""
        lines = [ln.strip() for ln in text.splitlines()]
        keys = [ln for ln in lines if ln and not ln.startswith("#")]
        if len(keys) != 1:
            raise AgeError("identity file must hold exactly one AGE-SECRET-KEY-1 line")
        try:
            hrp, data = bech32.decode(keys[0])
        except ValueError as exc:
            raise AgeError(f"not an age identity: {exc}") from None
        if hrp != "age-secret-key-" or len(data) != 32:
            raise AgeError("not an age X25519 identity")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode("age-secret-key-", self.secret).upper()

    @property
    def recipient(self) -> Recipient:
        return Recipient(_raw(X25519PrivateKey.from_private_bytes(self.secret).public_key()))


def _wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    return _hkdf(shared, share + recipient, X25519_LABEL)


def make_header(recipient: Recipient, file_key: bytes) -> bytes:
    """The header bytes for one X25519 stanza, ending with the MAC line."""
    eph = X25519PrivateKey.generate()
    share = _raw(eph.public_key())
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient.public))
    body = ChaCha20Poly1305(_wrap_key(shared, share, recipient.public)).encrypt(
        b"\x00" * 12, file_key, None
    )
    head = INTRO + b"-> X25519 " + _b64(share) + b"\n" + _b64(body) + b"\n---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    return head + b" " + _b64(mac) + b"\n"


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class StreamWriter:
    """Encrypts a stream to an open file descriptor as age v1, in bounded steps.

    `write()` buffers at most one chunk of plaintext; full chunks go to the
    file as they fill. `checkpoint()` also writes what is buffered as a
    *provisional last chunk* at its final position, so a file cut off at that
    instant is a complete, valid age file; the next full chunk overwrites it.
    Hashes of the plaintext and of the final ciphertext are kept incrementally.
    """

    def __init__(self, fd: int, recipient: Recipient) -> None:
        self._fd = fd
        file_key = os.urandom(16)
        header = make_header(recipient, file_key)
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        prefix = header + nonce
        os.write(fd, prefix)
        self._pos = len(prefix)  # where the next chunk starts
        self._counter = 0
        # one chunk of plaintext and one of ciphertext, reused: a fresh
        # 64 KiB buffer per chunk is a mapping and its page faults each time
        # in the recorder (firmware/heap.py), a third of sealing's CPU
        self._buf = bytearray(CHUNK)
        self._fill = 0  # bytes of _buf in use
        self._out = memoryview(bytearray(CHUNK + TAG))
        self.ct_hash = hashlib.sha256(prefix)
        self.pt_hash = hashlib.sha256()
        self.pt_len = 0
        self.ct_len = len(prefix)
        self._closed = False

    def write(self, data: bytes | memoryview) -> None:
        if self._closed:
            raise ValueError("write to a closed segment")
        view = memoryview(data).cast("B")
        self.pt_hash.update(view)
        self.pt_len += len(view)
        # A full chunk may only go out as non-final once a byte after it
        # exists: the spec makes a full-size last chunk carry the last flag.
        if self._fill:
            take = min(CHUNK - self._fill, len(view))
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if not view:
                return
            self._emit(memoryview(self._buf), last=False)
            self._fill = 0
        while len(view) > CHUNK:  # encrypt straight from the caller's buffer
            self._emit(view[:CHUNK], last=False)
            view = view[CHUNK:]
        self._buf[: len(view)] = view
        self._fill = len(view)

    def _seal(self, chunk: memoryview, last: bool) -> memoryview:
        """The chunk's ciphertext, in the writer's one output buffer."""
        ct = self._out[: len(chunk) + TAG]
        self._aead.encrypt_into(_nonce(self._counter, last), chunk, None, ct)
        return ct

    def _emit(self, chunk: memoryview, last: bool) -> None:
        ct = self._seal(chunk, last)
        os.pwrite(self._fd, ct, self._pos)
        self.ct_hash.update(ct)
        self.ct_len += len(ct)
        self._pos += len(ct)
        self._counter += 1

    def checkpoint(self) -> None:
        """Write the buffered tail as a provisional last chunk (caller fsyncs)."""
        if self._fill and not self._closed:
            os.pwrite(self._fd, self._seal(memoryview(self._buf)[: self._fill], True), self._pos)

    def close(self) -> None:
        """Write the real last chunk (caller fsyncs). Idempotent."""
        if self._closed:
            return
        self._emit(memoryview(self._buf)[: self._fill], last=True)
        self._fill = 0
        os.ftruncate(self._fd, self._pos)
        self._closed = True


@dataclass
class Decrypted:
    """What a reader got out of a file."""

    plaintext_len: int
    plaintext_sha256: str
    complete: bool  # ended with an authentic last chunk and nothing after it
    error: str | None  # why reading stopped early, with the byte offset


class _Lines(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def _parse_header(f: _Lines) -> tuple[bytes, bytes, bytes, int]:
    """Return (share, body, mac_input, header_len) for a one-X25519-stanza header."""
    lines: list[bytes] = []
    consumed = 0
    while True:
        line = f.readline(4096)
        if not line.endswith(b"\n"):
            raise AgeError(f"header cut off at byte {consumed + len(line)}")
        consumed += len(line)
        lines.append(line)
        if line.startswith(b"---"):
            break
        if len(lines) > 8:
            raise AgeError("header too long for one X25519 stanza")
    if lines[0] != INTRO:
        raise AgeError("not an age v1 file (bad intro line)")
    if len(lines) != 4 or not lines[1].startswith(b"-> X25519 "):
        raise AgeError("expected exactly one X25519 stanza")
    args = lines[1][len(b"-> X25519 ") :].rstrip(b"\n")
    share = _unb64(args)
    body = _unb64(lines[2].rstrip(b"\n"))
    if len(share) != 32 or len(body) != 32:
        raise AgeError("malformed X25519 stanza")
    mac_line = lines[3].rstrip(b"\n")
    mac_input = b"".join(lines[:3]) + b"---"
    return share, body, mac_input + b"|" + mac_line[4:], consumed


def open_header(f: _Lines, identity: Identity) -> tuple[bytes, int]:
    """Read an age header from `f` and open it: (the file key, the header's
    length). AgeError when it is malformed, not for `identity`, or altered."""
    share, body, mac_data, offset = _parse_header(f)
    mac_input, mac_b64 = mac_data.split(b"|", 1)
    key = X25519PrivateKey.from_private_bytes(identity.secret)
    shared = key.exchange(X25519PublicKey.from_public_bytes(share))
    try:
        file_key = ChaCha20Poly1305(_wrap_key(shared, share, identity.recipient.public)).decrypt(
            b"\x00" * 12, body, None
        )
    except InvalidTag:
        raise AgeError("this identity cannot open the file (stanza did not unwrap)") from None
    want = hmac.new(_hkdf(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()
    if not hmac.compare_digest(want, _unb64(mac_b64)):
        raise AgeError("header MAC does not match (header altered)")
    return file_key, offset


class Sink(Protocol):
    """Where plaintext goes, a chunk at a time (a file, a buffer)."""

    def write(self, data: memoryview, /) -> object: ...


def decrypt(f: BinaryIO, identity: Identity, sink: Sink | None = None) -> Decrypted:
    """Decrypt an age stream; tolerate a cut-off tail and say where it stopped.

    A file whose data ends in a partial chunk is reported as not complete,
    with the authenticated plaintext before the cut counted and hashed.
    """
    file_key, offset = open_header(f, identity)
    return payload(f.read, file_key, offset, sink)


Take = Callable[[int], "bytes | memoryview"]
"""`take(n)`: the next n bytes of a stream, fewer only at its end. What it
returns is used before the next call, so it may be a view of a reused buffer."""


def payload(take: Take, file_key: bytes, offset: int, sink: Sink | None) -> Decrypted:
    """The payload after a header (`offset` bytes) whose file key is known.
    Each chunk is decrypted into one reused buffer, which `sink` is given a
    view of (it writes it out before the next chunk)."""
    nonce = take(16)
    if len(nonce) != 16:
        return Decrypted(0, hashlib.sha256().hexdigest(), False, f"cut in nonce at {offset}")
    offset += 16
    aead = ChaCha20Poly1305(_hkdf(file_key, bytes(nonce), b"payload"))
    pt_hash = hashlib.sha256()
    out = memoryview(bytearray(CHUNK))
    total = 0
    counter = 0
    while chunk := take(CHUNK + TAG):
        pt = _open_chunk(aead, counter, chunk, out)
        if pt is None:
            return Decrypted(
                total,
                pt_hash.hexdigest(),
                False,
                f"chunk {counter} at byte {offset} fails authentication",
            )
        data, last = pt
        pt_hash.update(data)
        total += len(data)
        if sink is not None:
            sink.write(data)
        offset += len(chunk)
        if last:
            if take(1):
                return Decrypted(
                    total, pt_hash.hexdigest(), False, f"data after the last chunk at byte {offset}"
                )
            if not data and counter > 0:
                return Decrypted(total, pt_hash.hexdigest(), False, "empty last chunk")
            return Decrypted(total, pt_hash.hexdigest(), True, None)
        counter += 1
    return Decrypted(
        total, pt_hash.hexdigest(), False, f"file ends at byte {offset} without a last chunk"
    )


def _open_chunk(
    aead: ChaCha20Poly1305, counter: int, chunk: bytes | memoryview, out: memoryview
) -> tuple[memoryview, bool] | None:
    """The chunk's plaintext (a view of `out`) and whether it is the last, or
    None when it fails authentication either way."""
    # A full-size chunk is normally non-final, but a payload that is an exact
    # multiple of 64 KiB ends in a full chunk with the last flag; short ones
    # can only be last. One shorter than a tag cannot be authentic.
    if len(chunk) < TAG:
        return None
    plain = out[: len(chunk) - TAG]
    if len(chunk) == CHUNK + TAG:
        try:
            aead.decrypt_into(_nonce(counter, False), chunk, None, plain)
            return plain, False
        except InvalidTag:
            pass
    try:
        aead.decrypt_into(_nonce(counter, True), chunk, None, plain)
        return plain, True
    except InvalidTag:
        return None


# -- the scrypt recipient: a passphrase ------------------------------------------


def _scrypt_key(passphrase: bytes, salt: bytes, log2n: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << log2n, r=8, p=1)
    return kdf.derive(passphrase)


def encrypt_passphrase(plaintext: bytes, passphrase: bytes, log2n: int = SCRYPT_LOG2N) -> bytes:
    """`plaintext` as an age file with one scrypt stanza (`age -p`), in
    memory: for a key file, never for media."""
    if not passphrase:
        raise AgeError("the passphrase is empty")
    if not 1 <= log2n <= MAX_LOG2N:
        raise AgeError(f"scrypt work factor {log2n} out of 1..{MAX_LOG2N}")
    file_key, salt = os.urandom(16), os.urandom(16)
    body = ChaCha20Poly1305(_scrypt_key(passphrase, salt, log2n)).encrypt(
        b"\x00" * 12, file_key, None
    )
    head = INTRO + b"-> scrypt " + _b64(salt) + b" %d\n" % log2n + _b64(body) + b"\n---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    out = [head, b" ", _b64(mac), b"\n", nonce]
    chunks = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    for counter, chunk in enumerate(chunks):
        out.append(aead.encrypt(_nonce(counter, counter == len(chunks) - 1), chunk, None))
    return b"".join(out)


def is_age(data: bytes) -> bool:
    """Whether `data` is an age file (binary or armored), by its first line."""
    return data.startswith(INTRO) or data.lstrip().startswith(ARMOR_BEGIN)


def _dearmor(data: bytes) -> bytes:
    text = data.strip()
    if not text.startswith(ARMOR_BEGIN):
        return data
    lines = text.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] != ARMOR_END:
        raise AgeError("armored age file without its END line")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except ValueError:
        raise AgeError("bad base64 in armored age file") from None


def decrypt_passphrase(data: bytes, passphrase: bytes, max_log2n: int = MAX_LOG2N) -> bytes:
    """The plaintext of an age file with one scrypt stanza (`age -p`), in
    memory. AgeError for anything else, a work factor above `max_log2n`, a
    wrong passphrase or a file that fails authentication."""
    data = _dearmor(data)
    lines: list[bytes] = []
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0 or end - pos > 4096 or len(lines) > 8:
            raise AgeError("not an age file with a readable header")
        line = data[pos:end]
        pos = end + 1
        lines.append(line)
        if line.startswith(b"---"):
            break
    if lines[0] + b"\n" != INTRO:
        raise AgeError("not an age v1 file (bad intro line)")
    stanza = lines[1].split(b" ")
    if stanza[:2] != [b"->", b"scrypt"]:
        raise AgeError("not a passphrase-protected age file (no scrypt stanza)")
    if len(lines) != 4 or len(stanza) != 4:
        raise AgeError("a scrypt stanza must be the file's only one")
    salt = _unb64(stanza[2])
    digits = stanza[3]
    if not digits.isdigit() or digits.startswith(b"0") or len(digits) > 2 or len(salt) != 16:
        raise AgeError("malformed scrypt stanza")
    log2n = int(digits)
    if log2n > max_log2n:
        raise AgeError(f"scrypt work factor 2^{log2n} is above the bound 2^{max_log2n}")
    body = _unb64(lines[2])
    if len(body) != 32:
        raise AgeError("malformed scrypt stanza body")
    try:
        file_key = ChaCha20Poly1305(_scrypt_key(passphrase, salt, log2n)).decrypt(
            b"\x00" * 12, body, None
        )
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase") from None
    mac_line = lines[3]
    if not mac_line.startswith(b"--- "):
        raise AgeError("malformed header MAC line")
    head = b"\n".join(lines[:3]) + b"\n---"
    want = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    if not hmac.compare_digest(want, _unb64(mac_line[4:])):
        raise AgeError("header MAC does not match (header altered)")
    sink = io.BytesIO()
    got = payload(io.BytesIO(data[pos:]).read, file_key, pos, sink)
    if not got.complete:
        raise AgeError(f"the file is damaged: {got.error}")
    return sink.getvalue()
