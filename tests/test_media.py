"""MediaTap: per-SSRC stream statistics and the ECB repeated-block statistic (analyzer/scan/media.py).

The tap is driven exactly as scan.py drives its taps: CaptureReader -> decode_chunk -> the decoded
packets' payload kinds, canonical flow keys and direction. Expected figures are computed here
independently (scapy parses the same captures; a scalar RFC 3550 jitter loop).
"""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer.capture import CaptureReader
from analyzer.decode import DecodeState, decode_chunk
from analyzer.decode import reasons as R
from analyzer.dissect.kinds import payload_kinds
from analyzer.scan.ecb import ecb_statistics, random_entropy
from analyzer.scan.flows import canonical, flow_keys
from analyzer.scan.media import MediaResult, MediaTap
from analyzer.session.media_verdicts import ecb_verdict, media_verdict
from tests.conftest import real_capture

scapy_all = pytest.importorskip("scapy.all")
UDP, IP, Ether, wrpcap, rdpcap = scapy_all.UDP, scapy_all.IP, scapy_all.Ether, scapy_all.wrpcap, scapy_all.rdpcap


def run_tap(path: Path, chunk_bytes: int | None = None) -> MediaResult:
    tap = MediaTap()
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    with CaptureReader(path, **kwargs) as reader:
        state = DecodeState()
        for chunk in reader.chunks():
            cols = decode_chunk(chunk, state)
            idx = np.flatnonzero(cols.status == R.OK)
            if not idx.size:
                continue
            kinds = payload_kinds(
                chunk.buf, cols.l4_off[idx], cols.l4_len[idx], cols.proto[idx], cols.sport[idx], cols.dport[idx]
            ).astype(np.int64)
            c = canonical(cols, idx)
            tap.update(chunk, cols, idx, kinds, flow_keys(c), c["dir"])
    return tap.result()


def udp_payloads(path: Path) -> list[tuple[object, int, bytes, int]]:
    """(time, sport, UDP payload, wire length) of every UDP packet, parsed by scapy. The time is
    scapy's exact decimal, so differences keep their nanoseconds."""
    out = []
    for p in rdpcap(str(path)):
        if UDP in p:
            out.append((p.time, int(p[UDP].sport), bytes(p[UDP].payload), int(p.wirelen or len(p))))
    return out


def seq_summary(seqs: list[int]) -> tuple[int, int]:
    """(expected, lost) from 16-bit sequence numbers in arrival order, unwrapped one by one."""
    ext = [seqs[0]]
    for s in seqs[1:]:
        d = (s - ext[-1] % 65536 + 32768) % 65536 - 32768
        ext.append(ext[-1] + d)
    expected = max(ext) - min(ext) + 1
    return expected, expected - len(set(ext))


def by_ssrc(df: pd.DataFrame, media_type: str | None = None) -> dict[int, pd.Series]:
    rows = df if media_type is None else df[df["media_type"] == media_type]
    return {int(r["ssrc"]): r for _, r in rows.iterrows()}


# -- real captures -------------------------------------------------------------------------------
def test_zoom_p2p_streams_match_an_independent_parse():
    path = real_capture("zoom_p2p.pcapng")
    df = run_tap(path).streams
    assert len(df) == 5  # 2 video, 1 audio, and the two video FEC (PT 110) sequence spaces
    media = df[df["media_type"] != "fec"]
    assert dict(zip(media["ssrc"], media["media_type"], strict=True)) == {
        0x01000401: "video", 0x01000801: "video", 0x01000802: "audio"
    }
    assert sorted(df.loc[df["media_type"] == "fec", "ssrc"]) == [0x01000401, 0x01000801]
    # Independent parse: Zoom P2P header at UDP+0, RTP at +19 (audio) / +24 or +20 (video).
    seqs: dict[tuple[int, int], list[int]] = {}
    for _t, _sport, d, _w in udp_payloads(path):
        if len(d) < 40 or d[1:4] != b"\x01\x00\xfb" or d[0] not in (0x0F, 0x10):
            continue
        rel = 19 if d[0] == 0x0F else (24 if d[20] == 2 else 20)
        ssrc, pt = int.from_bytes(d[rel + 8 : rel + 12], "big"), d[rel + 1] & 0x7F
        seqs.setdefault((ssrc, pt == 110), []).append(int.from_bytes(d[rel + 2 : rel + 4], "big"))
    for _, row in df.iterrows():
        s = seqs[(int(row["ssrc"]), row["media_type"] == "fec")]
        expected, lost = seq_summary(s)
        assert (row["packets"], row["expected"], row["lost"]) == (len(s), expected, lost)
    assert set(df["packets"]) == {81, 89, 44, 18, 15}
    assert (df["reordered"] == 0).all() and (df["duplicates"] == 0).all()
    # GCM-encrypted (Zoom >= 5.0): no repeated block at any alignment, and never ECB-like.
    assert (media["ecb_blocks"] > 400).all()
    assert (media["ecb_repeats_max"] == 0).all()
    assert not any(ecb_verdict(r)[0] for _, r in df.iterrows())
    assert {media_verdict(r)[0] for _, r in media.iterrows()} == {"ciphertext_like"}
    assert (df["clock_rate"] == np.where(df["media_type"] == "audio", 48000, 90000)).all()
    assert df["jitter_clock_assumed"].all()


def test_plain_rtp_streams_rtp_pcapng():
    path = real_capture("rtp.pcapng")
    df = run_tap(path).streams
    got = by_ssrc(df)
    assert set(got) == {0xB80974D8, 0x1646, 0x1A759F, 0x1A7E73, 0x1A757D}
    seqs: dict[int, list[int]] = {}
    for _t, _sport, d, _w in udp_payloads(path):
        if len(d) >= 12 and d[0] >> 6 == 2 and not 192 <= d[1] <= 223:
            seqs.setdefault(int.from_bytes(d[8:12], "big"), []).append(int.from_bytes(d[2:4], "big"))
    for ssrc, row in got.items():
        expected, lost = seq_summary(seqs[ssrc])
        assert (row["packets"], row["expected"], row["lost"]) == (len(seqs[ssrc]), expected, lost)
    h263 = got[0x1646]  # static PT 34: video, 90 kHz known, not assumed
    assert (h263["media_type"], h263["clock_rate"], h263["jitter_clock_assumed"]) == ("video", 90000, False)
    opus = got[0x1A759F]  # dynamic PT: media unknown, clock guessed from the timestamps
    assert opus["media_type"] == "unknown" and opus["jitter_clock_assumed"]
    assert opus["media_type_guess"] == "audio" and opus["clock_rate"] == 48000
    assert (df["ecb_repeats"] == 0).all()


def test_jitter_matches_scalar_rfc3550_loop():
    path = real_capture("rtp.pcapng")
    row = by_ssrc(run_tap(path).streams)[0x1646]
    j = 0.0
    prev = None
    for t, _sport, d, _w in udp_payloads(path):
        if len(d) < 12 or int.from_bytes(d[8:12], "big") != 0x1646:
            continue
        ts = int.from_bytes(d[4:8], "big")
        if prev is not None:
            dts = (ts - prev[1] + 2**31) % 2**32 - 2**31
            j += (abs(float(Decimal(t) - Decimal(prev[0])) * 90000 - dts) - j) / 16
        prev = (t, ts)
    assert row["jitter_ms"] == pytest.approx(j / 90.0, rel=1e-6)
    assert row["jitter_ms"] > 0


def test_sip_pcma_is_unencrypted_not_ecb():
    df = run_tap(real_capture("sip.pcap")).streams
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["media_type"], row["payload_type"], row["clock_rate"]) == ("audio", 8, 8000)
    assert not ecb_verdict(row)[0]
    label, reason = media_verdict(row)
    assert label == "unencrypted_like", reason
    assert row["ecb_payload_entropy"] < row["ecb_payload_entropy_random"] - 0.5


@pytest.mark.parametrize(
    "name", ["teams.pcap", "discord.pcap", "stun_dtls_rtp.pcapng", "skype-conference-call.pcap", "stun.pcap"]
)
def test_real_srtp_has_no_repeated_blocks(name):
    df = run_tap(real_capture(name)).streams
    assert len(df) >= 1
    assert df["ecb_blocks"].sum() >= 10
    assert (df["ecb_repeats_max"] == 0).all(), df[["ssrc", "ecb_blocks", "ecb_repeats_max"]]
    assert not any(ecb_verdict(r)[0] for _, r in df.iterrows())


def test_teams_srtp_stream():
    df = run_tap(real_capture("teams.pcap")).streams
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["ssrc"], row["packets"], row["lost"], row["payload_types"]) == (0x74EC, 18, 0, [104])


def test_zoom_pcap_probes_are_not_media_and_not_ecb():
    path = real_capture("zoom.pcap")
    res = run_tap(path)
    assert not any(ecb_verdict(r)[0] for _, r in res.streams.iterrows())
    assert res.streams.empty  # the 2019 capture holds probes and control, no audio/video
    # Even fed straight to the statistic, the probe filler repeats but is not ciphertext.
    probes = [d[16:] for _t, _s, d, _w in udp_payloads(path) if d[:2] == b"\x05\x15" and len(d) > 1000]
    assert len(probes) > 100
    lens = np.array([len(p) for p in probes])
    stats = ecb_statistics(np.zeros(len(probes), np.int64), lens, np.frombuffer(b"".join(probes), np.uint8))
    row = stats.iloc[0]
    assert row["ecb_repeat_ratio"] > 0.9
    flagged, reason = ecb_verdict(row)
    assert not flagged and reason.startswith("unencrypted_like")


# -- simulated Zoom Gen A streams ------------------------------------------------------------------
KEY = bytes(range(16, 32))


def _encrypt(mode: str, plain: bytes, seq: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if mode == "ecb":
        cut = len(plain) - len(plain) % 16
        enc = Cipher(algorithms.AES(KEY), modes.ECB()).encryptor()
        return enc.update(plain[:cut]) + enc.finalize() + plain[cut:]
    nonce = struct.pack("!QQ", seq, 0)  # a fresh IV per packet, block counter below it, as in SRTP
    enc = Cipher(algorithms.AES(KEY), modes.CTR(nonce)).encryptor()
    return enc.update(plain) + enc.finalize()


def _plaintext(i: int) -> bytes:
    # Silence frames that repeat (what made Zoom's ECB visible), with a varying frame now and then.
    if i % 4 == 3:
        return bytes((i * 37 + k * 11) % 256 for k in range(96))
    return b"\x55\xd5" * 40 + bytes([i % 7]) * 16


def _gen_a_packet(seq: int, ssrc: int, mode: str) -> bytes:
    ts = (seq * 960) & 0xFFFFFFFF
    inner = bytes([0x0F, 0x01, 0x00, 0xFB]) + bytes(5) + struct.pack("!HI", seq & 0xFFFF, ts) + bytes(4)
    rtp = struct.pack("!BBHII", 0x90, 99, seq & 0xFFFF, ts, ssrc) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\x01\x00\x00"
    return b"\x05" + inner + rtp + _encrypt(mode, _plaintext(seq), seq)


# Sequence numbers across the 16-bit wrap, with one loss (65534), one reordered pair and a duplicate.
SEQS = [*range(65500, 65534), 65535, 1, 0, *range(2, 30), 10, *range(30, 60)]


def write_gen_a(path: Path, mode: str, seqs: list[int] = SEQS) -> Path:
    pkts = []
    t0 = 1586000000.0
    for n, seq in enumerate(seqs):
        p = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="192.168.1.23", dst="162.255.38.14")
            / UDP(sport=50300, dport=8801)
            / _gen_a_packet(seq, 0x01000802, mode)
        )
        p.time = t0 + n * 0.02 + (0.003 if n % 5 == 0 else 0.0)
        pkts.append(p)
    wrpcap(str(path), pkts, linktype=1)
    return path


def test_simulated_ecb_is_flagged_and_ctr_is_not(tmp_path):
    ecb = run_tap(write_gen_a(tmp_path / "ecb.pcap", "ecb")).streams
    ctr = run_tap(write_gen_a(tmp_path / "ctr.pcap", "ctr")).streams
    for df in (ecb, ctr):
        assert len(df) == 1
        row = df.iloc[0]
        assert (row["ssrc"], row["media_type"], row["payload_types"]) == (0x01000802, "audio", [99])
        # 93 packets, seq 65500..(65536+59) is 96 numbers, 65534 missing, one duplicate of 10.
        assert (row["packets"], row["expected"], row["lost"]) == (len(SEQS), 96, 1)
        assert (row["duplicates"], row["reordered"]) == (1, 1)
        assert row["ecb_packets"] == len(SEQS) - 2  # the first packet precedes plausibility; dup dropped
    e, c = ecb.iloc[0], ctr.iloc[0]
    flagged, reason = ecb_verdict(e)
    assert flagged, reason
    assert e["ecb_repeats"] > 100 and e["ecb_repeat_alignment"] == 0
    assert e["ecb_repeats_expected_random"] < 1e-20
    assert media_verdict(e)[0] == "ecb_like"
    assert c["ecb_repeats_max"] == 0 and c["ecb_blocks"] == e["ecb_blocks"]
    assert not ecb_verdict(c)[0]
    assert media_verdict(c)[0] == "ciphertext_like"


def test_demo_capture_media_is_flagged_ecb(tmp_path):
    from analyzer.capture.demo import write_demo_capture

    df = run_tap(write_demo_capture(tmp_path / "demo.pcap")).streams
    assert sorted(df["media_type"]) == ["audio", "audio", "video"]
    assert (df["lost"] == 0).all() and (df["packets"] > 100).all()
    assert all(ecb_verdict(r)[0] for _, r in df.iterrows())


def test_chunk_boundaries_do_not_change_the_figures(tmp_path):
    path = write_gen_a(tmp_path / "ecb.pcap", "ecb")
    for p in (path, real_capture("zoom_p2p.pcapng")):
        one = run_tap(p).streams.sort_values(["ssrc", "media_type"]).reset_index(drop=True)
        tiny = run_tap(p, chunk_bytes=4096).streams.sort_values(["ssrc", "media_type"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(one, tiny, check_exact=False, rtol=1e-9)


# -- the statistic itself --------------------------------------------------------------------------
def test_repeats_are_found_at_their_alignment():
    rng = np.random.default_rng(5)
    block = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    regions = [rng.bytes(5) + block + rng.bytes(11 + 16 * (i % 3)) for i in range(20)]
    data = np.frombuffer(b"".join(regions), np.uint8)
    stats = ecb_statistics(np.zeros(20, np.int64), np.array([len(r) for r in regions]), data).iloc[0]
    assert stats["ecb_repeat_alignment"] == 5
    assert stats["ecb_repeats_max"] == 19
    assert stats["ecb_repeats"] == 0  # at alignment 0 every block straddles random bytes
    assert stats["ecb_packets_with_repeats"] == 0
    assert stats["ecb_blocks"] == sum(len(r) // 16 for r in regions)


def test_random_entropy_matches_simulation():
    rng = np.random.default_rng(0)
    for n in (256, 1600):
        sims = []
        for _ in range(200):
            counts = np.bincount(rng.integers(0, 256, n), minlength=256)
            p = counts[counts > 0] / n
            sims.append(-(p * np.log2(p)).sum())
        assert random_entropy(n) == pytest.approx(np.mean(sims), abs=0.01)


def test_empty_and_unrelated_input():
    assert MediaTap().result().streams.empty
    assert ecb_statistics(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)).empty
    assert ecb_verdict({"ecb_blocks": 0}) == (False, "no media payload blocks sampled")
    assert run_tap(real_capture("dns_fragmented.pcap")).streams.empty


def test_flow_ids_and_client_direction_from_the_flow_table():
    from analyzer.scan.scanner import scan_capture

    path = real_capture("sip.pcap")
    flows = scan_capture(path, keep_samples=False).flows
    keys = flows["flow_key"].to_numpy()
    tap_result = run_tap(path)
    tap = MediaTap()
    with CaptureReader(path) as reader:
        for chunk in reader.chunks():
            cols = decode_chunk(chunk)
            idx = np.flatnonzero(cols.status == R.OK)
            kinds = payload_kinds(chunk.buf, cols.l4_off[idx], cols.l4_len[idx], cols.proto[idx],
                                  cols.sport[idx], cols.dport[idx]).astype(np.int64)
            c = canonical(cols, idx)
            tap.update(chunk, cols, idx, kinds, flow_keys(c), c["dir"])
    df = tap.result(pd.Series(flows["flow_id"].to_numpy(), index=keys),
                    dict(zip(keys.tolist(), flows["a_is_client"].tolist(), strict=True))).streams
    row = df.iloc[0]
    flow = flows[flows["flow_key"] == row["flow_key"]].iloc[0]
    assert row["flow_id"] == flow["flow_id"]
    # The RTP sender is the flow's client exactly when the stream goes client -> server.
    assert row["dir"] == (0 if flow["packets_c2s"] >= row["packets"] else 1)
    assert tap_result.streams["flow_id"].isna().all()  # no mapping given


def test_gather_bytes_in_small_steps():
    from analyzer.scan.ecb import gather_bytes

    buf = np.arange(200, dtype=np.uint8)
    starts, lens = np.array([5, 100, 0, 150]), np.array([7, 40, 3, 50])
    want = np.concatenate([buf[s : s + n] for s, n in zip(starts, lens, strict=True)])
    assert np.array_equal(gather_bytes(buf, starts, lens, step=16), want)
    assert gather_bytes(buf, np.zeros(0, np.int64), np.zeros(0, np.int64)).size == 0
