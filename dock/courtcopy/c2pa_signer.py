"""The C2PA signer's own process (`python -m dock.courtcopy.c2pa_signer`),
started by `c2pa.sign` with TMPDIR set to the folder c2pa-rs may spool into.

Reads one request (JSON) on stdin; writes one answer (JSON) on stdout.
To sign: after LAID_OUT (one line) when it signs in place and the room is
laid out, `{"manifest": base64, "in_place": bool}` or `{"failure":
{"msgid": ..., "args": {...}}}`, the failure untranslated so the caller
says it in its reader's language. To validate (a request with
"validate"): `{"validation": {"state", "failures", "manifest"}}`.
"""

from __future__ import annotations

import base64
import json
import sys

from .c2pa import LAID_OUT, C2paFailure, sign_here, validate_here

REQUEST_MAX = 16 << 20  # PEMs, the assertions and the actions: a few kB


def _laid_out() -> None:
    sys.stdout.buffer.write(LAID_OUT)
    sys.stdout.buffer.flush()


def main() -> int:
    request = json.loads(sys.stdin.buffer.read(REQUEST_MAX + 1)[:REQUEST_MAX])
    if "validate" in request:
        v = validate_here(str(request["validate"]), str(request["anchor_pem"]))
        found = {"state": v.state, "failures": list(v.failures), "manifest": v.manifest}
        sys.stdout.write(json.dumps({"validation": found}))
        return 0
    try:
        manifest, in_place = sign_here(request, _laid_out)
        answer: dict[str, object] = {
            "manifest": base64.b64encode(manifest).decode(),
            "in_place": in_place,
        }
    except C2paFailure as exc:
        failure = exc.args[0]
        answer = {"failure": {"msgid": failure.msgid, "args": dict(failure.args)}}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
