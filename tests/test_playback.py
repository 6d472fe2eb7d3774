"""Playback in the page never written decrypted to disk, and traceable to its
viewer (S0 art. 23, 28; dock/courtcopy/stream.py): a real recording played
in a real browser, the viewer's name and the time burned into the picture,
no plaintext file left anywhere, at most two encoders at once, an encoder
ended with its viewer's connection, and a page started with a
passphrase-protected evidence key."""

from __future__ import annotations

import http.client
import io
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
import pytest
from PIL import Image

from dock import audit
from dock.courtcopy.stream import out_size, watermark
from sealing.age import Identity, decrypt, encrypt_passphrase

from .browsing import follow
from .conftest import BODYCAM_DOCK, DemoRun
from .test_page_security import Client, cli_page, in_process
from .test_requests import EN, _demo_dock, _signed_in
from .test_roles import PASSWORD

UNIT = "BC-DEMO-0001"


def _recording_path(c: Client) -> str:
    found = re.search(rf'href="(/unit/{UNIT}/recording/\d+)"', c.get(f"/unit/{UNIT}").text)
    assert found
    return found.group(1)


def _encoders() -> list[int]:
    """This process's ffmpeg children (the page runs in it here)."""
    me, found = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm == "ffmpeg":
            found.append(int(d.name))
    return found


def _until(what: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Poll `what` until it holds, at most `seconds` (a bound on a hang, not a speed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return what()


@contextmanager
def _live(c: Client, path: str) -> Iterator[http.client.HTTPResponse]:
    """A GET whose body is read as the test wants, with the client's cookies;
    leaving the block closes the connection (the viewer goes away)."""
    parts = urlsplit(c.base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    try:
        conn.request("GET", path, headers={"Cookie": cookie, "Range": "bytes=100-"})
        yield conn.getresponse()
    finally:
        conn.close()


def _first_frame(data: bytes) -> tuple[np.ndarray, str]:
    """The first picture of the (partial) streamed MP4, RGB, and its comment."""
    with av.open(io.BytesIO(data), format="mp4") as c:
        comment = str(c.metadata.get("comment", ""))
        for frame in c.decode(video=0):
            return frame.to_ndarray(format="rgb24").astype(np.int16), comment
    raise AssertionError("no picture in the stream's first bytes")


def _control_frame(dock: Path, identity: Identity, size: tuple[int, int]) -> np.ndarray:
    """The recording's first picture without any watermark: its first sealed
    segment decrypted in memory, decoded, scaled to the stream's size."""
    first = min(dock.rglob("*.ts.age"), key=lambda p: p.name)  # the demo records one recording
    sink = io.BytesIO()
    with first.open("rb") as f:
        assert decrypt(f, identity, sink).complete
    sink.seek(0)
    with av.open(sink, format="mpegts") as c:
        frame = next(iter(c.decode(video=0))).to_image()
    return np.asarray(frame.convert("RGB").resize(size, Image.BILINEAR)).astype(np.int16)


def _files_held(pid: int | None = None) -> set[str]:
    """The files a process has open (pipes, sockets and the like left out)."""
    held = set()
    for fd in Path(f"/proc/{pid or os.getpid()}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("/"):
            held.add(target)
    return held


def _snapshot(roots: list[Path]) -> dict[Path, tuple[int, int]]:
    seen: dict[Path, tuple[int, int]] = {}
    for root in roots:
        for top, _dirs, files in os.walk(root):
            for name in files:
                p = Path(top, name)
                try:
                    st = p.lstat()
                except OSError:
                    continue
                seen[p] = (st.st_ino, st.st_mtime_ns)
    return seen


MEDIA = (b"ftyp", b"moof", b"mdat", b"\x00\x00\x00\x01\x67", b"\x00\x00\x01\x65")


def _plaintext(p: Path) -> bool:
    """Whether a file holds media: an MP4 box, an H.264 parameter set or
    picture, or MPEG-TS packets."""
    try:
        data = p.read_bytes()
    except OSError:
        return False
    ts = len(data) >= 564 and all(data[i] == 0x47 for i in (0, 188, 376))
    return ts or any(m in data for m in MEDIA)


def test_a_playback_in_the_browser_is_watermarked_and_leaves_no_plaintext(
    browser: Any, demo_run: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dock, identity, _span = _demo_dock(demo_run, tmp_path)
    # the page's temporary folder (the system's is shared with whatever else
    # runs on the machine): whatever it or ffmpeg would spill goes here
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    roots = [tmp, dock]
    before = _snapshot(roots)
    held = _files_held()
    with in_process(dock, locale=EN, identity=identity) as base:
        officer = _signed_in(base, "OFFICER-DEMO")
        path = _recording_path(officer)
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = ctx.new_page()
        page.goto(base)
        page.fill("#name", "OFFICER-DEMO")
        page.fill("#password", PASSWORD)
        follow(page, "form.login button[type=submit]")
        assert page.goto(base.rstrip("/") + path).status == 200
        started = time.monotonic()
        said = page.evaluate(
            "() => { const v = document.querySelector('#player'); v.muted = true;"
            " return v.play().then(() => 'playing', e => String(e)); }"
        )
        assert said == "playing", said  # play() resolves once the first picture is there
        first_picture = time.monotonic() - started
        page.wait_for_function(
            "() => { const v = document.querySelector('#player');"
            " return v.videoWidth > 0 && v.currentTime > 2; }",
            timeout=60_000,
        )
        print(f"first picture after {first_picture:.2f} s, 2 s played after "
              f"{time.monotonic() - started:.2f} s")  # fmt: skip  # measured, shown with -s
        width, height = page.evaluate(
            "() => { const v = document.querySelector('#player');"
            " return [v.videoWidth, v.videoHeight]; }"
        )
        (encoder,) = _encoders()
        # the encoder holds pipes and sockets only, and the page no file it did not
        # hold before (a buffer spilled to a deleted temporary file would show here)
        assert not [t for t in _files_held(encoder) if not t.startswith("/dev/")]
        assert not [t for t in _files_held() - held if "(deleted)" in t or t.startswith(str(tmp))]
        shot = Image.open(io.BytesIO(page.locator("#player").screenshot())).convert("L")
        ctx.close()  # the viewer goes: their encoder ends
        assert _until(lambda: not _encoders()), _encoders()
        # the first picture of the stream, fetched with the viewer's cookies:
        # a Range asks for the middle, the stream answers from its start
        with _live(officer, path + "/video.mp4") as resp:
            assert resp.status == 200 and resp.getheader("Content-Type") == "video/mp4"
            assert resp.getheader("Accept-Ranges") == "none"
            head = resp.read(400_000)
        assert _until(lambda: not _encoders()), _encoders()
    streamed, comment = _first_frame(head)
    assert comment.startswith("OFFICER-DEMO 20") and comment.endswith(" CST/Asia/Shanghai"), comment
    h, w = streamed.shape[:2]
    assert (w, h) == (width, height) == out_size(640, 360)
    mark = watermark(comment, w, h)  # the same text, font and place the dock drew
    control = _control_frame(dock, identity, (w, h))
    expected = Image.fromarray(control.astype(np.uint8)).convert("RGBA")
    expected = np.asarray(Image.alpha_composite(expected, mark).convert("RGB")).astype(np.int16)
    drawn = np.asarray(mark)[:, :, 3] > 0
    # where the watermark is drawn, the streamed picture is the control with the
    # watermark laid over it, to within the encoder's loss; the control itself
    # (the same picture without the watermark) is far from it
    near = float(np.abs(streamed - expected)[drawn].mean())
    control_off = float(np.abs(control - expected)[drawn].mean())
    print(f"watermark: streamed {near:.1f}, control {control_off:.1f} off")  # shown with -s
    assert near < 12 and control_off > 3 * near, (near, control_off)
    # the screenshot of the playing video shows the corner text: in the corner's
    # box, the picture on screen follows the text's strokes; the unmarked
    # picture (scaled alike) does not
    rgba = np.asarray(mark).astype(np.float64)
    strokes = Image.fromarray((rgba[:, :, 0] * rgba[:, :, 3] / 255).astype(np.uint8))
    strokes = strokes.resize(shot.size, Image.BILINEAR)
    box = np.argwhere(np.asarray(mark)[: h // 3, :, 3] >= 150)
    scale = shot.size[0] / w
    y0, x0 = (box.min(axis=0) * scale).astype(int)
    y1, x1 = (box.max(axis=0) * scale).astype(int)

    def follows(picture: Image.Image) -> float:
        a = np.asarray(picture.convert("L"), np.float64)[y0:y1, x0:x1].ravel()
        b = np.asarray(strokes, np.float64)[y0:y1, x0:x1].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    on_screen = follows(shot)
    unmarked = follows(Image.fromarray(control.astype(np.uint8)).resize(shot.size, Image.BILINEAR))
    print(f"screenshot follows the text {on_screen:.2f}, unmarked {unmarked:.2f}")
    assert on_screen > 0.7 and unmarked < 0.3, (on_screen, unmarked)
    # the playbacks are in the audit log, naming the viewer
    entries, broken = audit.read(dock)
    assert broken is None
    plays = [e for e in entries if e.act == "play" and e.target.endswith("/video.mp4")]
    assert [(e.who, e.result) for e in plays] == [("OFFICER-DEMO", "ok")] * 2, plays
    # nothing decrypted was left anywhere: no new or changed file holds media
    assert not (dock / ".playback").exists()
    after = _snapshot(roots)
    changed = [p for p, v in after.items() if before.get(p) != v]
    assert not [p for p in changed if _plaintext(p)], changed


def test_two_streams_at_once_a_third_is_refused_and_a_gone_viewer_ends_its_encoder(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    dock, identity, _span = _demo_dock(demo_run, tmp_path)
    with in_process(dock, locale=EN, identity=identity) as base:
        officer = _signed_in(base, "OFFICER-DEMO")
        video = _recording_path(officer) + "/video.mp4"
        with _live(officer, video) as one:
            assert one.status == 200 and one.read(1000)[4:8] == b"ftyp"
            with _live(officer, video) as two:
                assert two.status == 200 and two.read(1000)[4:8] == b"ftyp"
                assert len(_encoders()) == 2
                third = officer.get(video)
                assert third.status == 503
                assert "2 recordings are playing from this dock already" in third.text
            assert _until(lambda: len(_encoders()) == 1), _encoders()
            assert one.read(1000)  # the first plays on
        assert _until(lambda: not _encoders()), _encoders()
        again = officer.get(video.replace("video.mp4", "download.mp4"))
        assert again.status == 403  # a download needs its own approved request
    entries, _broken = audit.read(dock)
    plays = [e.result for e in entries if e.act == "play" and e.target == video]
    assert plays == ["ok", "ok"], plays  # the refused third was not a playback


def test_the_page_starts_with_a_passphrase_protected_key_and_plays(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    dock, identity, _span = _demo_dock(demo_run, tmp_path)
    sealed = tmp_path / "evidence.key.age"
    sealed.write_bytes(encrypt_passphrase(f"{identity}\n".encode(), b"a long passphrase 1"))
    secret = tmp_path / "passphrase"
    secret.write_text("a long passphrase 1\n")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    refused = subprocess.run(
        [*BODYCAM_DOCK, "page", "--dock-dir", str(dock), "--port", "0", "--identity",
         str(sealed), "--passphrase-file", str(wrong), "--language", "en"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 1, refused
    assert refused.stderr.strip().splitlines() == [
        f"dock: --identity {sealed}: wrong passphrase"
    ], refused.stderr
    with cli_page(dock, "--identity", str(sealed), "--passphrase-file", str(secret),
                  "--language", "en") as base:  # fmt: skip
        officer = _signed_in(base, "OFFICER-DEMO")
        with _live(officer, _recording_path(officer) + "/video.mp4") as resp:
            assert resp.status == 200
            _frame, comment = _first_frame(resp.read(400_000))
    assert comment.startswith("OFFICER-DEMO "), comment
