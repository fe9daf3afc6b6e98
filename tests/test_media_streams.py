"""Media streams measured per stream and per second (issue 13): a synthetic call with known frame
rate, loss, duplicates, reordering and jitter, real Zoom/RTP captures, the stream cap, the API
frame and the Parquet files."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pandas as pd
import pytest

from analyzer.api import analyze
from analyzer.capture.writer import pcap_bytes
from analyzer.scan.media import MediaTap
from analyzer.scan.scanner import scan_capture
from tests.conftest import real_capture

T0 = 1_700_000_000 * 10**9  # ns
FPS, VIDEO_CLOCK, AUDIO_CLOCK = 25, 90_000, 8_000
JITTER_NS = 6_000_000  # every odd video frame arrives 6 ms late


def _udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst)
                 / UDP(sport=sport, dport=dport) / payload)


def _rtp(pt: int, seq: int, ts: int, ssrc: int, marker: bool, body: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body


def synthetic_call() -> tuple[bytes, dict]:
    """101 video frames at 25 fps (3 packets each, marker on the last, PT 96 at 90 kHz), odd frames
    6 ms late, the middle packet of frames 10/20/30 lost; PCMU audio (PT 0, 8 kHz, 20 ms) with 5
    packets lost, 2 duplicated and one pair swapped."""
    pkts: list[tuple[int, bytes]] = []
    video: list[tuple[int, int]] = []  # (arrival ns, rtp ts) of every video packet sent
    seq = 1000
    for k in range(101):
        late = JITTER_NS if k % 2 else 0
        for j in range(3):
            t = T0 + k * 40_000_000 + late + j * 1_000_000
            rts = 5000 + k * (VIDEO_CLOCK // FPS)
            if not (k in (10, 20, 30) and j == 1):
                body = bytes([k & 0xFF]) * 1000
                rtp = _rtp(96, seq, rts, 0xAAAA, j == 2, body)
                pkts.append((t, _udp_frame("10.0.0.1", 5004, "10.0.0.2", 6004, rtp)))
                video.append((t, rts))
            seq += 1
    audio = []
    for i in range(200):
        if i in (50, 51, 52, 120, 160):
            continue
        audio.append((T0 + 500_000 + i * 20_000_000, i))
    audio += [(T0 + 500_000 + 70 * 20_000_000 + 100_000, 70), (T0 + 500_000 + 90 * 20_000_000 + 100_000, 90)]
    audio.sort()
    # Swap the arrival of packets 100 and 101 (reordering).
    a100 = next(i for i, x in enumerate(audio) if x[1] == 100)
    audio[a100], audio[a100 + 1] = (audio[a100][0], 101), (audio[a100 + 1][0], 100)
    for t, i in audio:
        pkts.append((t, _udp_frame("10.0.0.1", 5006, "10.0.0.2", 6006, _rtp(0, 7000 + i, 160 * i, 0xBBBB, False,
                                                                               b"\xd5" * 160))))
    # RTCP on the video's 5-tuple (rtcp-mux): an SR from the sender at 1.0 s, and the receiver's
    # RR echoing it (LSR) 110 ms later with DLSR = 30 ms: an 80 ms round trip.
    ntp_msw, ntp_lsw = 3_900_000_100, 0x12340000
    sr = struct.pack("!BBHIIIII", 0x81, 200, 12, 0xAAAA, ntp_msw, ntp_lsw, 5000, 100) + struct.pack("!I", 10000)
    sr += struct.pack("!IIIIII", 0xCCCC, 0, 0, 0, 0, 0)  # a block about another source, no LSR
    lsr = ((ntp_msw & 0xFFFF) << 16) | (ntp_lsw >> 16)
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xDDDD) + struct.pack("!IIIIII", 0xAAAA, 0, 1000, 0, lsr, 1966)
    pkts.append((T0 + 1_000_000_000, _udp_frame("10.0.0.1", 5004, "10.0.0.2", 6004, sr)))
    pkts.append((T0 + 1_110_000_000, _udp_frame("10.0.0.2", 6004, "10.0.0.1", 5004, rr)))
    pkts.sort(key=lambda p: p[0])
    return pcap_bytes(pkts, nanosecond=True), {"video": video}


def rfc3550(arrivals: list[tuple[int, int]], clock: int) -> float:
    """Reference RFC 3550 6.4.1 jitter in ms, one packet (or frame) at a time."""
    j = 0.0
    for (r0, s0), (r1, s1) in itertools.pairwise(arrivals):
        d = (r1 - r0) / 1e9 * clock - (s1 - s0)
        j += (abs(d) - j) / 16
    return j / clock * 1000


@pytest.fixture(scope="module")
def call(tmp_path_factory):
    data, truth = synthetic_call()
    path = tmp_path_factory.mktemp("call") / "call.pcap"
    path.write_bytes(data)
    return path, truth


def _by_ssrc(streams: pd.DataFrame, ssrc: int) -> pd.Series:
    return streams[streams["ssrc"] == ssrc].iloc[0]


def test_synthetic_call_frames_loss_and_jitter(call) -> None:
    path, truth = call
    r = scan_capture(path, media=True, keep_samples=True)
    v, a = _by_ssrc(r.streams, 0xAAAA), _by_ssrc(r.streams, 0xBBBB)
    assert v["media_type"] == "unknown" and v["clock_rate"] == VIDEO_CLOCK  # dynamic PT: clock from timestamps
    assert v["frames"] == 101 and v["frames_marked"] == 101 - 0  # every frame ends with its marker
    assert v["frame_rate_fps"] == pytest.approx(25.0, abs=1e-6)
    assert v["lost"] == 3 and v["duplicates"] == 0
    assert v["frame_bytes_max"] == 3 * 1000 and v["frame_bytes_min"] == 2 * 1000
    assert v["packets"] == 303 - 3 and v["packets_per_frame"] == pytest.approx(300 / 101)
    # Frame jitter: frame ends alternate 6 ms early/late, so |D| = 6 ms at every frame.
    ends = {}
    for t, rts in truth["video"]:
        ends[rts] = max(ends.get(rts, 0), t)
    frames = sorted((t, rts) for rts, t in ends.items())
    assert v["frame_jitter_ms"] == pytest.approx(rfc3550(frames, VIDEO_CLOCK), rel=1e-9)
    assert 5.9 < v["frame_jitter_ms"] < 6.0
    assert v["jitter_ms"] == pytest.approx(rfc3550(sorted(truth["video"]), VIDEO_CLOCK), rel=1e-9)
    assert v["bitrate_bps"] == pytest.approx(v["wire_bytes"] * 8 / v["duration_s"])
    assert v["udp_bytes"] == v["wire_bytes"] - 42 * v["packets"]  # Ethernet + IPv4 + UDP headers
    assert v["payload_bytes"] == v["udp_bytes"] - 12 * v["packets"]
    assert a["media_type"] == "audio" and a["clock_rate"] == AUDIO_CLOCK and not a["jitter_clock_assumed"]
    assert (a["lost"], a["duplicates"], a["reordered"]) == (5, 2, 1)
    # One frame per in-order timestamp: 195 sent, minus packet 100 that came after 101 (a late
    # packet joins the open frame instead of starting one); duplicates add nothing.
    assert a["frames"] == 194
    # Frame rate counts the frames received: 193 intervals over the 3.98 s from the first to the last.
    assert a["frame_rate_fps"] == pytest.approx(193 / 3.98)


def test_rtcp_round_trip(call) -> None:
    path, _ = call
    st = scan_capture(path, media=True, keep_samples=True).streams
    v, a = _by_ssrc(st, 0xAAAA), _by_ssrc(st, 0xBBBB)
    assert v["rtcp_sender_reports"] == 1 and v["rtcp_rtt_samples"] == 1
    assert v["rtcp_rtt_ms"] == pytest.approx(110 - 1966 / 65536 * 1000, abs=1e-3)  # ~80 ms
    assert a["rtcp_rtt_samples"] == 0 and np.isnan(a["rtcp_rtt_ms"])


def test_synthetic_call_per_second_series(call) -> None:
    path, _ = call
    r = scan_capture(path, media=True, keep_samples=True)
    sec = r.stream_seconds
    v_row = int(np.flatnonzero(r.streams["ssrc"].to_numpy() == 0xAAAA)[0])
    vs = sec[sec["stream"] == v_row].set_index("second")
    base = T0 // 10**9
    assert list(vs.index) == [base, base + 1, base + 2, base + 3, base + 4]
    assert vs.loc[base + 1, "frames"] == FPS and vs.loc[base + 2, "frames"] == FPS
    assert vs["frames"].sum() == 101 and vs["packets"].sum() == 303 - 3
    assert vs["lost"].sum() == 3 and vs.loc[base, "lost"] == 2 and vs.loc[base + 1, "lost"] == 1  # frames 10, 20 | 30
    assert (vs["bitrate_bps"] == vs["wire_bytes"] * 8).all()
    assert vs["jitter_ms"].notna().all()
    a_row = int(np.flatnonzero(r.streams["ssrc"].to_numpy() == 0xBBBB)[0])
    aus = sec[sec["stream"] == a_row].set_index("second")
    assert aus.loc[base + 1, "lost"] == 3 and aus.loc[base + 2, "lost"] == 1 and aus.loc[base + 3, "lost"] == 1


def test_chunking_changes_nothing(call) -> None:
    path, _ = call
    a = scan_capture(path, media=True, keep_samples=True)
    b = scan_capture(path, media=True, keep_samples=True, chunk_bytes=4096)
    cols = ["packets", "frames", "frame_rate_fps", "frame_jitter_ms", "jitter_ms", "lost", "duplicates", "reordered"]
    pd.testing.assert_frame_equal(a.streams[cols], b.streams[cols])
    pd.testing.assert_frame_equal(a.stream_seconds, b.stream_seconds)


def test_short_streams_have_no_rates_and_say_why() -> None:
    r = scan_capture(real_capture("rtp.pcapng"), media=True, keep_samples=True)
    st = r.streams
    assert len(st) and (st["duration_s"] < 1).all()
    assert st["bitrate_bps"].isna().all() and st["frame_rate_fps"].isna().all()
    assert all("under 1 s" in n for n in st["rate_note"])


def test_zoom_p2p_streams() -> None:
    s = analyze(real_capture("zoom_p2p.pcapng"))
    st = s.streams.set_index(["ssrc", "media_type"])
    audio = st.loc[(0x01000802, "audio")]
    assert audio["clock_rate"] == 48_000  # 70,080 ticks in 1.454 s
    assert audio["frames"] == audio["packets"] == 44  # one timestamp per audio packet
    for key in ((0x01000801, "video"), (0x01000401, "video")):
        v = st.loc[key]
        assert v["clock_rate"] == 90_000 and v["frames"] > 10
        assert v["frames_marked"] == v["frames"]  # Zoom marks each frame's last packet
        assert v["frame_rate_fps"] > 5 and v["bitrate_bps"] > 0
    # Meetings and participants: one P2P pair; audio and video of a client share SSRC >> 8.
    assert s.streams["meeting"].nunique() == 1 and s.streams["meeting"].iloc[0].startswith("p2p ")
    assert set(s.streams["participant"]) == {"zoom 0x010008", "zoom 0x010004"}
    # API frame and its report series agree.
    sec = s.stream_seconds
    assert {"stream_id", "t_s", "bitrate_bps", "frame_rate_fps", "lost", "jitter_ms"} <= set(sec.columns)
    rec = next(x for m in s.report["media"] for x in m["streams"] if x["ssrc"] == 0x01000801)
    mine = sec[sec["stream_id"] == rec["stream_id"]]
    assert rec["series"]["frames"] == mine["frames"].tolist() and sum(rec["series"]["frames"]) == rec["frames"]


def test_parquet_files_written_with_the_report(tmp_path) -> None:
    s = analyze(real_capture("zoom_p2p.pcapng"))
    out = s.write(tmp_path, ["json", "parquet"])
    streams = pd.read_parquet(out["streams_parquet"])
    seconds = pd.read_parquet(out["stream_seconds_parquet"])
    assert len(streams) == len(s.streams) == 5
    assert seconds["frames"].sum() == streams["frames"].sum()
    assert seconds["stream_id"].isin(streams["stream_id"]).all()


def _many_streams_pcap(n: int) -> bytes:
    """n RTP streams (one SSRC each, one packet) in one UDP flow, built without scapy."""
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    out = []
    for i in range(n):
        rtp = _rtp(96, i, i * 3000, 0x10000 + i, False, b"\x00" * 20)
        udp = struct.pack("!HHHH", 40000, 40002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                         bytes([10, 0, 0, 2]))
        out.append((T0 + i * 1000, eth + ip + udp))
    return pcap_bytes(out, nanosecond=True)


def test_stream_cap_keeps_memory_bounded(tmp_path) -> None:
    path = tmp_path / "many.pcap"
    path.write_bytes(_many_streams_pcap(100_000))
    r = scan_capture(path, media=True, keep_samples=False, chunk_bytes=1 << 20)
    assert r.media.streams_over_cap == 100_000 - 20_000
    assert r.media.packets_over_cap == 80_000
    assert any("beyond the first 20000" in n for n in r.media.notes)
    # The report says so too.
    report = analyze(path).report
    rep = report["media_streams"]
    assert (rep["streams_over_cap"], rep["packets_over_cap"]) == (80_000, 80_000)
    assert any("counted but not measured" in n for n in rep["notes"])
    # ... and per flow: the flow's stream total includes the ones beyond the cap.
    (flow,) = report["media"]
    assert flow["streams_over_cap"] == 80_000 and flow["streams_total"] >= 80_000
    tap = MediaTap(max_streams=500)
    assert tap._max_streams == 500  # the cap is a parameter


def test_chart_marks_loss_and_jitter(call) -> None:
    from analyzer.report.svgcharts import stream_chart

    path, _ = call
    s = analyze(path)
    video = next(x for m in s.report["media"] for x in m["streams"] if x["ssrc"] == 0xAAAA)
    svg = stream_chart(video)
    assert svg.count('class="loss"') == 2  # seconds 0 and 1 lost packets
    assert 'class="br"' in svg and 'class="fr"' in svg
    marked = dict(video, series={**video["series"], "jitter_ms": [40.0, *video["series"]["jitter_ms"][1:]]})
    assert stream_chart(marked).count('class="jit"') == 1 + sum(j > 30 for j in video["series"]["jitter_ms"][1:])


def _sip_invite(sdp: str) -> bytes:
    body = sdp.replace("\n", "\r\n").encode()
    head = ("INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nFrom: <sip:alice@10.0.0.1>\r\n"
            "To: <sip:bob@10.0.0.2>\r\nCall-ID: 1@10.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return _udp_frame("10.0.0.1", 5060, "10.0.0.2", 5060, head + body)


def test_sdp_clock_rate_replaces_the_guess(tmp_path) -> None:
    """An SDP that maps the video's PT 96 to a 48 kHz clock: jitter is re-expressed at 48 kHz
    (deliberately not the 90 kHz the timestamps show, so the change is visible)."""

    data, truth = synthetic_call()
    sdp = ("v=0\no=- 1 1 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\n"
           "m=video 6004 RTP/AVP 96\na=rtpmap:96 VP8/48000\n")
    path = tmp_path / "sdp.pcap"
    # The INVITE first, then the call's records (its 24-byte file header dropped).
    path.write_bytes(pcap_bytes([(T0 - 1_000_000, _sip_invite(sdp))], nanosecond=True) + data[24:])
    s = analyze(path)
    v = s.streams[s.streams["ssrc"] == 0xAAAA].iloc[0]
    assert (v["clock_source"], v["clock_rate"], v["sdp_encoding"], v["media_type"]) == ("sdp", 48_000, "VP8", "video")
    assert not v["jitter_clock_assumed"]
    assert v["jitter_ms"] == pytest.approx(rfc3550(sorted(truth["video"]), 48_000), rel=1e-9)
    ends: dict[int, int] = {}
    for t, rts in truth["video"]:
        ends[rts] = max(ends.get(rts, 0), t)
    assert v["frame_jitter_ms"] == pytest.approx(rfc3550(sorted((t, r) for r, t in ends.items()), 48_000), rel=1e-9)
    last = s.stream_seconds[s.stream_seconds["stream_id"] == v["stream_id"]].iloc[-1]
    assert last["jitter_ms"] == pytest.approx(v["jitter_ms"], rel=1e-9)  # the series speaks the same clock
    a = s.streams[s.streams["ssrc"] == 0xBBBB].iloc[0]
    assert a["clock_source"] == "static_pt" and a["clock_rate"] == AUDIO_CLOCK


def test_sfu_streams_form_one_meeting(tmp_path) -> None:
    """The demo call through a Zoom SFU (UDP 8801): every stream of the flow is one meeting; the
    local client (0x010008: audio + video up) and the remote one (0x010004: audio down)."""
    from analyzer.capture.demo import write_demo_capture

    s = analyze(write_demo_capture(str(tmp_path / "demo.pcap")))
    st = s.streams
    assert set(st["meeting"]) == {"sfu 162.255.38.14:8801"}
    up = st[st["dir"] == 0]
    down = st[st["dir"] == 1]
    assert set(up["participant"]) == {"zoom 0x010008"} and set(up["media_type"]) == {"audio", "video"}
    assert set(down["participant"]) == {"zoom 0x010004"}
    audio = st[st["media_type"] == "audio"]
    assert (audio["clock_rate"] == 48_000).all() and (audio["frames"] == audio["packets"]).all()


def test_html_draws_the_largest_streams_only(tmp_path) -> None:
    from analyzer.report.svgcharts import MAX_STREAM_CHARTS

    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    frames = []
    n = MAX_STREAM_CHARTS + 5
    for k in range(4):
        for i in range(n):
            rtp = _rtp(96, k, k * 3000, 0x20000 + i, True, b"\x00" * 40)
            udp = struct.pack("!HHHH", 41000 + i, 42000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                             bytes([10, 0, 0, 2]))
            frames.append((T0 + k * 20_000_000 + i * 1000, eth + ip + udp))
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(frames, nanosecond=True))
    s = analyze(path)
    assert len(s.streams) == n
    html = s.to_html()
    assert html.count('class="chart stream-chart"') == MAX_STREAM_CHARTS
    assert f"The {MAX_STREAM_CHARTS} largest of {n} streams are drawn" in html
