"""Call records → `call` envelopes: numbers, direction, times, dispositions, agents, ids."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from connectors.phone.errors import BadCall
from connectors.phone.inbound import Reader
from router.envelope import decode, encode, envelope_id
from tests.connectors.phone.helpers import CHANNEL, NOW, cdr_line, reader


def from_line(line: str, r: Reader | None = None):
    r = r or reader()
    return r.cdr(r.split(line), NOW)


def test_an_answered_inbound_asterisk_call():
    env = from_line(cdr_line())
    call = env.call
    assert call is not None
    assert (env.kind, env.channel_type, env.thread_key) == ("call", "phone", "+34600112233")
    assert (env.sender.address, env.sender.name, env.sender.role) == (
        "+34600112233",
        "Ana Perez",
        "customer",
    )
    assert env.id == envelope_id(CHANNEL, "1741597200.1")
    assert (call.id, call.direction, call.disposition) == ("1741597200.1", "inbound", "answered")
    # 10:00 in Madrid in March is 09:00 UTC.
    assert call.started_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert call.answered_at == datetime(2026, 3, 10, 9, 0, 12, tzinfo=UTC)
    assert call.ended_at == datetime(2026, 3, 10, 9, 3, 12, tzinfo=UTC)
    assert (call.duration, call.talk, call.wait) == (192, 180, 12)
    assert call.agent == "ana"  # extension 201 from PJSIP/201-00000002
    assert env.meta["extension"] == "201"
    assert env.meta["cdr"]["dcontext"] == "from-trunk"
    assert decode(encode(env)) == env


@pytest.mark.parametrize(
    ("disposition", "lastapp", "expected"),
    [
        ("ANSWERED", "Dial", "answered"),
        ("ANSWERED", "VoiceMail", "voicemail"),
        ("NO ANSWER", "Dial", "missed"),
        ("NO ANSWER", "Queue", "abandoned"),
        ("BUSY", "Dial", "busy"),
        ("FAILED", "Dial", "failed"),
        ("CONGESTION", "Dial", "failed"),
    ],
)
def test_dispositions(disposition, lastapp, expected):
    env = from_line(cdr_line(disposition=disposition, lastapp=lastapp))
    assert env.call is not None and env.call.disposition == expected


def test_an_abandoned_call_waited_its_whole_duration_and_has_no_answer_time():
    env = from_line(
        cdr_line(
            disposition="NO ANSWER", lastapp="Queue", duration="47", billsec="0", dstchannel=""
        )
    )
    call = env.call
    assert call is not None
    assert (call.disposition, call.wait, call.talk, call.answered_at) == ("abandoned", 47, 0, None)
    assert env.text == "abandoned inbound call, waited 47 s"


def test_an_outbound_call_from_an_agent_extension_is_the_callee_s():
    line = cdr_line(
        src="202",
        dst="0034 611 223 344",
        clid='"Ben" <202>',
        channel="PJSIP/202-00000009",
        dstchannel="PJSIP/trunk-0000000a",
    )
    env = from_line(line)
    assert env.call is not None
    assert (env.call.direction, env.call.agent, env.thread_key) == (
        "outbound",
        "ben",
        "+34611223344",
    )
    assert env.sender.name is None  # the clid is the agent's


def test_a_row_without_uniqueid_has_a_stable_id_of_its_own():
    line = cdr_line(uniqueid=None)
    assert from_line(line).id == from_line(line).id
    other = cdr_line(uniqueid=None, start="2026-03-10 10:05:00")
    assert from_line(line).id != from_line(other).id


def test_another_layout_by_column_names():
    r = reader(
        cdr={
            "path": "/tmp/x.csv",
            "columns": ["uniqueid", "start", "src", "disposition"],
            "time_format": "%d/%m/%Y %H:%M",
        }
    )
    env = from_line("abc-1,10/03/2026 10:00,+44 20 7946 0958,NO ANSWER", r)
    assert env.call is not None
    assert (env.call.id, env.thread_key, env.call.disposition) == (
        "abc-1",
        "+442079460958",
        "missed",
    )
    assert env.call.started_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (cdr_line(src="anonymous", clid='"" <anonymous>'), "from: not a customer's number"),
        (cdr_line(disposition="WHATEVER"), "disposition: unknown 'WHATEVER'"),
        (cdr_line(start="yesterday"), "start: 'yesterday' is not a time"),
        (cdr_line(start=""), "start: missing"),
        (cdr_line(duration="-3"), "duration: '-3' is not whole seconds"),
        (cdr_line() + ',"extra"' * 3, "columns; the layout has 21"),
        ('"unterminated', "not a CSV row"),
    ],
)
def test_bad_rows_say_why(line, reason):
    with pytest.raises(BadCall, match=reason.replace("(", r"\(")):
        from_line(line)


# --- the JSON call event ------------------------------------------------------------------

EVENT = {
    "call_id": "pbx-778",
    "from": "600112233",
    "to": "+34910000000",
    "direction": "inbound",
    "caller_name": "Ana",
    "started_at": "2026-03-10T10:00:00",
    "ended_at": "2026-03-10T10:00:35",
    "disposition": "abandoned",
    "queue_wait": 35,
    "agent_extension": None,
}


def test_a_json_call_event():
    env = reader().event(orjson.dumps(EVENT), NOW)
    call = env.call
    assert call is not None
    assert env.id == envelope_id(CHANNEL, "pbx-778")
    assert (env.thread_key, call.disposition, call.wait, call.duration) == (
        "+34600112233",
        "abandoned",
        35,
        35,
    )
    assert call.started_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # no offset: the PBX's zone


def test_a_call_s_moments_are_in_utc_on_the_bus():
    """docs/phone.md: the times are in UTC on the bus, whatever offset or zone the PBX
    wrote (the instant alone compares equal across zones: the encoded text is checked)."""
    given = {**EVENT, "started_at": "2026-03-10T10:00:00+01:00", "ended_at": "2026-03-10T10:00:35"}
    env = reader().event(orjson.dumps(given), NOW)
    call = orjson.loads(encode(env))["call"]
    assert (call["started_at"], call["ended_at"]) == (
        "2026-03-10T09:00:00+00:00",
        "2026-03-10T09:00:35+00:00",
    )
    assert orjson.loads(encode(env))["sent_at"] == "2026-03-10T09:00:35+00:00"


def test_the_same_call_from_the_file_and_the_webhook_is_one_envelope():
    by_file = from_line(cdr_line(uniqueid="1741597200.7", disposition="NO ANSWER"))
    by_hook = reader().event(orjson.dumps({**EVENT, "call_id": "1741597200.7"}), NOW)
    assert by_file.id == by_hook.id


def test_a_transcript_for_a_call_is_its_own_record_naming_the_call():
    body = {
        "call_id": "pbx-778",
        "from": "600112233",
        "direction": "inbound",
        "transcript": "Hi, call me back about order 1234",
    }
    env = reader().event(orjson.dumps(body), NOW)
    assert env.call is not None
    assert env.id not in {envelope_id(CHANNEL, "pbx-778")}
    assert (env.call.id, env.call.disposition) == ("pbx-778", None)
    assert env.text == "Hi, call me back about order 1234"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"call_id": None}, "call_id: missing"),
        ({"direction": "sideways"}, "direction: expected inbound or outbound"),
        ({"disposition": "lost"}, "disposition: unknown 'lost'"),
        ({"started_at": "10 o'clock"}, "started_at: not an ISO 8601 time"),
        ({"queue_wait": -1}, "queue_wait: expected whole seconds"),
        ({"queue_wait": True}, "queue_wait: expected whole seconds"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"from": 600112233}, "from: expected a string"),
        ({"disposition": None}, "disposition: missing"),
    ],
)
def test_bad_events_name_the_field(change, reason):
    with pytest.raises(BadCall, match=reason):
        reader().event(orjson.dumps({**EVENT, **change}), NOW)


def test_not_json_is_refused():
    with pytest.raises(BadCall, match="body: not JSON"):
        reader().event(b"{", NOW)


# --- Twilio -------------------------------------------------------------------------------

STATUS = {
    "CallSid": "CA0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+34600112233",
    "To": "+34910000000",
    "Direction": "inbound",
    "CallStatus": "no-answer",
    "CallDuration": "0",
    "Timestamp": "Tue, 10 Mar 2026 09:00:30 +0000",
}


@pytest.mark.parametrize(
    ("status", "disposition"),
    [
        ("completed", "answered"),
        ("no-answer", "missed"),
        ("busy", "busy"),
        ("failed", "failed"),
        ("canceled", "abandoned"),
    ],
)
def test_twilio_call_status(status, disposition):
    env = reader().twilio({**STATUS, "CallStatus": status}, NOW)
    assert env.call is not None and env.call.disposition == disposition
    assert env.id == envelope_id(CHANNEL, STATUS["CallSid"])
    assert env.call.ended_at == datetime(2026, 3, 10, 9, 0, 30, tzinfo=UTC)


def test_twilio_outbound_call_is_the_callee_s_and_a_client_is_an_agent():
    env = reader(agents={"ana": "ana"}).twilio(
        {
            **STATUS,
            "Direction": "outbound-api",
            "From": "client:ana",
            "To": "+34611223344",
            "CallStatus": "completed",
            "CallDuration": "61",
        },
        NOW,
    )
    assert env.call is not None
    assert (env.thread_key, env.call.direction, env.call.agent, env.call.talk) == (
        "+34611223344",
        "outbound",
        "ana",
        61,
    )


def test_twilio_non_final_status_is_refused():
    with pytest.raises(BadCall, match="'ringing' is not a call's end"):
        reader().twilio({**STATUS, "CallStatus": "ringing"}, NOW)


def test_twilio_recording_and_transcription_attach_to_their_call():
    rec = reader().twilio(
        {
            **STATUS,
            "RecordingSid": "RE1",
            "RecordingUrl": "https://api.twilio.com/r/RE1",
            "RecordingDuration": "14",
        },
        NOW,
    )
    tr = reader().twilio(
        {
            **STATUS,
            "RecordingSid": "RE1",
            "TranscriptionSid": "TR1",
            "TranscriptionText": "call me back please",
        },
        NOW,
    )
    ids = {envelope_id(CHANNEL, STATUS["CallSid"]), rec.id, tr.id}
    assert len(ids) == 3
    assert rec.call is not None and tr.call is not None
    assert (rec.call.id, rec.call.disposition, rec.call.recording) == (
        STATUS["CallSid"],
        None,
        "https://api.twilio.com/r/RE1",
    )
    assert (tr.call.id, tr.call.disposition, tr.text) == (
        STATUS["CallSid"],
        "voicemail",
        "call me back please",
    )


def test_a_layout_with_only_linkedid_takes_its_id_from_it():
    r = reader(cdr={"path": "/tmp/x.csv", "columns": ["linkedid", "start", "src", "disposition"]})
    env = from_line("1741597200.9,2026-03-10 10:00:00,600112233,BUSY", r)
    assert env.id == envelope_id(CHANNEL, "1741597200.9")
