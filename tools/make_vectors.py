"""Regenerate tests/vectors/: a small sealed store made with published TEST keys.

    python tools/make_vectors.py tests/vectors

The keys written there are public test keys: never use them for evidence.
Times come from a fixed clock so records are reproducible; age ciphertext is
not (fresh file keys and nonces each run), so regenerating changes the files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing import keys
from sealing.age import Identity
from sealing.receipts import apply_receipt, make_receipt, media_entries
from sealing.records import Stamp
from sealing.store import SegmentMeta
from sealing.unit import open_unit, provision_unit

T0 = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z


class FixedClock:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> Stamp:
        self.n += 1
        return Stamp(1_000_000 + self.n * 500_000, T0 + self.n * 500_000, "synced", "dock")


def main(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    agency = Identity.generate()
    dock = Ed25519PrivateKey.generate()
    clock = FixedClock()
    unit = out / "unit"
    key0 = provision_unit(
        unit,
        serial="BC-VECTOR-01",
        officer="TEST-OFFICER",
        recipient=agency.recipient,
        docks=[dock.public_key()],
        clock=clock,
    )
    with open_unit(unit, clock=clock, boot_body={"firmware": "vectors"}) as store:
        for i, (ext, text) in enumerate(
            [
                ("ts", b"segment one " * 1000),
                ("jpg", b"\xff\xd8 still \xff\xd9"),
                ("ts", b"segment two " * 7000),
            ]
        ):
            start = clock()
            w = store.open_segment(ext, stamp=start)
            w.write(text)
            end = clock()
            w.close(
                SegmentMeta(
                    start=start,
                    end=end,
                    duration_us=end.mono_us - start.mono_us,
                    codecs=["mjpeg"] if ext == "jpg" else ["h264", "aac"],
                    container="jpeg" if ext == "jpg" else "mpegts",
                )
            )
            if i == 0:
                store.append("pause", {"reason": "to_be_stated"})
                store.append("resume", {})
                store.append("resume_note", {"given": True, "speech_s": 4})
        recs = store.records()
        receipt = make_receipt(
            dock,
            serial=store.serial,
            from_seq=0,
            to_seq=recs[-1].seq,
            head=recs[-1].hash,
            segments=media_entries(recs)[:1],
            dock_time_us=T0 + 60_000_000,
        )
        apply_receipt(store, receipt.to_bytes())
    (out / "agency-identity.TEST-ONLY.txt").write_text(
        f"# PUBLISHED TEST KEY - decrypts tests/vectors only\n{agency}\n"
    )
    (out / "escrow.TEST-ONLY.txt").write_text(keys.escrow_text(key0))
    (out / "dock.TEST-ONLY.pem").write_bytes(
        dock.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (unit / "store" / "LOCK").unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
