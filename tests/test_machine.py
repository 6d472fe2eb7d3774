"""The pure state machine, driven by events: the table of docs/STATES.md,
and properties that must hold for any sequence of events (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import machine as m

S = 1_000_000


def records(actions: list[m.Action]) -> list[str]:
    return [a.type for a in actions if isinstance(a, m.Record)]


def prompts(actions: list[m.Action]) -> list[str]:
    return [a.name for a in actions if isinstance(a, m.Prompt)]


def synced() -> m.Machine:
    mc = m.Machine()
    mc.handle(m.ClockStatus("synced", "gps", 0))
    return mc


def test_press_starts_hold_stops_tap_never_stops() -> None:
    mc = synced()
    acts = mc.handle(m.Press("record", 1 * S))
    assert any(isinstance(a, m.StartCapture) and a.prerecord for a in acts)
    assert records(acts) == ["record_start"] and "tone_start" in prompts(acts)
    assert mc.handle(m.Press("record", 2 * S)) == []  # a tap while recording does nothing
    acts = mc.handle(m.Hold("record", 3 * S))
    assert any(isinstance(a, m.StopCapture) for a in acts)
    assert records(acts) == ["record_stop"] and mc.state.mode == "idle"


def test_the_regulations_words_open_and_close_and_a_pause_hushes_the_speaker() -> None:
    mc = synced()
    acts = mc.handle(m.Press("record", 1 * S))
    assert prompts(acts) == ["tone_start", "start_notice", "state_purpose"]
    acts = mc.handle(m.Press("function", 2 * S))  # paused while the notice is read
    kinds = [type(a).__name__ for a in acts]
    assert "Hush" in kinds and kinds.index("Hush") < kinds.index("Prompt")
    mc.handle(m.Press("record", 3 * S))
    acts = mc.handle(m.Hold("record", 9 * S))
    assert any(isinstance(a, m.Hush) for a in acts)
    assert prompts(acts)[-1] == "end_phrase"  # said after the hush, never cut by it
    assert [type(a).__name__ for a in acts].index("Hush") < [type(a).__name__ for a in acts].index(
        "Prompt"
    )


def test_resume_needs_a_spoken_note() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    acts = mc.handle(m.Press("function", 5 * S))
    assert records(acts) == ["pause"] and mc.state.mode == "paused"
    acts = mc.handle(m.Press("record", 10 * S))
    assert records(acts) == ["resume"] and "state_reason" in prompts(acts)
    assert all(not a.prerecord for a in acts if isinstance(a, m.StartCapture))
    assert mc.handle(m.Tick(11 * S, speech_s=1.0)) == []
    acts = mc.handle(m.Tick(14 * S, speech_s=3.2))
    assert records(acts) == ["resume_note"]
    note = next(a for a in acts if isinstance(a, m.Record))
    assert note.body["given"] is True and note.body["speech_ms"] == 3200
    assert note.body["window_from_us"] == 10 * S


def test_missing_note_reprompts_then_records_missing_and_warns() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    mc.handle(m.Press("function", 1 * S))
    mc.handle(m.Press("record", 2 * S))
    acts = mc.handle(m.Tick(22 * S, speech_s=0.5))
    assert prompts(acts) == ["state_reason"] and not records(acts)
    acts = mc.handle(m.Tick(42 * S, speech_s=1.0))
    assert records(acts) == ["resume_note"]
    assert next(a for a in acts if isinstance(a, m.Record)).body["given"] is False
    ind = [a for a in acts if isinstance(a, m.Indicate)][-1]
    assert ind.warning == "note_missing" and ind.video
    # the warning stays until the next note is given
    mc.handle(m.Press("function", 50 * S))
    mc.handle(m.Press("record", 51 * S))
    acts = mc.handle(m.Tick(55 * S, speech_s=4.0))
    assert [a for a in acts if isinstance(a, m.Indicate)][-1].warning is None


def test_unverified_clock_flag_policy_records_and_warns() -> None:
    mc = m.Machine()
    acts = mc.handle(m.Press("record", 0))
    assert mc.state.mode == "recording"
    assert [a for a in acts if isinstance(a, m.Indicate)][-1].warning == "clock"
    assert "beep5" in prompts(mc.handle(m.Tick(1 * S)))
    assert "beep5" not in prompts(mc.handle(m.Tick(5 * S)))
    assert "beep5" in prompts(mc.handle(m.Tick(22 * S)))  # five beeps every 20 s


def test_unverified_clock_refuse_policy_does_not_record() -> None:
    mc = m.Machine(m.Policy(clock_policy="refuse"))
    acts = mc.handle(m.Press("record", 0))
    assert mc.state.mode == "idle" and not any(isinstance(a, m.StartCapture) for a in acts)
    assert records(acts) == ["fault"] and "clock_unverified" in prompts(acts)


def test_critical_battery_stops_with_reason_and_resume_needs_note() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    acts = mc.handle(m.Battery(10, 5, 1 * S))
    assert records(acts) == ["battery_low"] and mc.state.mode == "recording"
    acts = mc.handle(m.Battery(2, 1, 2 * S))
    assert records(acts) == ["record_stop"] and mc.state.mode == "idle"
    assert next(a for a in acts if isinstance(a, m.Record)).body["cause"] == "battery"
    acts = mc.handle(m.Press("record", 3 * S))
    assert records(acts) == ["resume"] and "state_reason" in prompts(acts)


def test_storage_floor_seals_and_stops() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    total = 32 << 30
    acts = mc.handle(m.Storage(total // 20, total, 1 * S))
    assert records(acts) == ["storage_low"]
    acts = mc.handle(m.Storage(10 << 20, total, 2 * S))
    assert any(isinstance(a, m.StopCapture) for a in acts)
    assert (
        next(a for a in acts if isinstance(a, m.Record) and a.type == "record_stop").body["cause"]
        == "storage"
    )


def test_camera_fault_keeps_recording_audio_both_faults_stop() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    acts = mc.handle(m.Fault("camera", "no frames", 1 * S))
    assert records(acts) == ["fault"] and mc.state.mode == "recording"
    ind = [a for a in acts if isinstance(a, m.Indicate)][-1]
    assert not ind.video and ind.audio
    acts = mc.handle(m.Fault("microphone", "gone", 2 * S))
    assert "record_stop" in records(acts) and mc.state.mode == "idle"


def test_devices_gone_silent_never_stop_the_recording_by_themselves() -> None:
    """Silence may end (a starved machine, a driver that wakes): a recording
    with a note awaited goes on through it, and the note is still judged
    on what is heard (found on the emulated unit: both devices quiet for a
    second after a resume stopped the recording and judged the note
    missing after 2 s)."""
    mc = synced()
    mc.handle(m.Press("record", 0))
    mc.handle(m.Press("function", 1 * S))  # pause
    mc.handle(m.Press("record", 2 * S))  # resume: a note is awaited
    for device, at in (("camera", 3), ("microphone", 3)):
        acts = mc.handle(m.Fault(device, "no frame for 1.1 s", at * S, silent=True))
        assert "record_stop" not in records(acts) and mc.state.mode == "recording"
    assert mc.state.note is not None  # still listening for the spoken reason
    mc.handle(m.Restored("microphone", 4 * S))
    acts = mc.handle(m.Tick(5 * S, speech_s=3.0))
    note = next(a for a in acts if isinstance(a, m.Record) and a.type == "resume_note")
    assert note.body["given"] is True


def test_trigger_only_when_configured_and_names_its_cause() -> None:
    assert synced().handle(m.Trigger("holster", 0)) == []
    mc = m.Machine(m.Policy(trigger_starts=True))
    acts = mc.handle(m.Trigger("holster", 0))
    start = next(a for a in acts if isinstance(a, m.Record))
    assert start.type == "record_start" and start.body["cause"] == "trigger:holster"


def test_double_press_marks_evidence_and_photo_takes_a_still() -> None:
    mc = synced()
    mc.handle(m.Press("record", 0))
    assert records(mc.handle(m.DoublePress("function", 1))) == ["mark"]
    assert any(isinstance(a, m.TakeStill) for a in mc.handle(m.Press("photo", 2)))
    assert mc.handle(m.Press("photo", 3)) != [] and synced().handle(m.Press("photo", 0)) == []


def test_unexported_warning_at_most_hourly() -> None:
    mc = synced()
    day = 24 * 3600
    assert "export_overdue" in prompts(mc.handle(m.Unexported(day + 1, 0)))
    assert mc.handle(m.Unexported(day + 60, 60 * S)) == []
    assert "export_overdue" in prompts(mc.handle(m.Unexported(day + 3600, 3601 * S)))


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="clock_policy"):
        m.Policy(clock_policy="maybe")
    with pytest.raises(ValueError, match="window"):
        m.Policy(note_min_speech_s=30, note_window_s=20)


events = st.one_of(
    st.builds(m.Press, st.sampled_from(["record", "function", "photo"]), st.just(0)),
    st.builds(m.Hold, st.sampled_from(["record", "function"]), st.just(0)),
    st.builds(m.DoublePress, st.just("function"), st.just(0)),
    st.builds(m.Tick, st.just(0), st.floats(0, 10)),
    st.builds(m.Battery, st.integers(0, 100), st.integers(0, 600), st.just(0)),
    st.builds(m.Storage, st.integers(0, 1 << 35), st.just(1 << 35), st.just(0)),
    st.builds(
        m.ClockStatus,
        st.sampled_from(["synced", "holdover", "unverified"]),
        st.just("gps"),
        st.just(0),
    ),
    st.builds(
        m.Fault, st.sampled_from(["camera", "microphone", "tamper"]), st.just("x"), st.just(0)
    ),
    st.builds(m.Trigger, st.just("holster"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=60), st.sampled_from(["flag", "refuse"]))
def test_any_event_sequence_keeps_the_invariants(seq: list[m.Event], clock_policy: str) -> None:
    mc = m.Machine(m.Policy(clock_policy=clock_policy, trigger_starts=True))
    capturing = False
    awaiting = False
    for i, e in enumerate(seq):
        e = type(e)(**{**vars(e), "at_us": i * S})  # time runs forward
        acts = mc.handle(e)
        for a in acts:
            if isinstance(a, m.StartCapture):
                assert not capturing, "started twice"
                capturing = True
            elif isinstance(a, m.StopCapture):
                assert capturing, "stopped while not capturing"
                capturing = False
            elif isinstance(a, m.Record) and a.type == "resume":
                assert not awaiting
                awaiting = True
            elif isinstance(a, m.Record) and a.type == "resume_note":
                assert awaiting, "a note record without a resume"
                awaiting = False
            elif isinstance(a, m.Record) and a.type in ("pause", "record_stop"):
                assert not awaiting, "interrupted before the note was judged"
        assert capturing == (mc.state.mode == "recording")
        assert (mc.state.note is not None) == awaiting
        if isinstance(e, m.Press) and e.button != "record" and mc.state.mode == "idle":
            assert not capturing
