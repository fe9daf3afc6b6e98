"""Containers built with analyzer.capture.writer: formats, timestamps, gzip and damage."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from analyzer.capture import open_capture
from analyzer.capture import writer as W
from analyzer.errors import CaptureFormatError
from analyzer.scan.scanner import scan_capture

scapy_all = pytest.importorskip("scapy.all")
Ether, IP, UDP, TCP, raw = scapy_all.Ether, scapy_all.IP, scapy_all.UDP, scapy_all.TCP, scapy_all.raw
T0 = 1_700_000_000_000_000_000


def udp(sport: int = 1000, dport: int = 2000, src: str = "10.0.0.1", dst: str = "10.0.0.2", n: int = 10) -> bytes:
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"x" * n))


def eth(payload_ip: bytes) -> bytes:
    etype = 0x86DD if payload_ip[0] >> 4 == 6 else 0x0800
    return raw(Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02", type=etype)) + payload_ip


def frames_of(data: bytes, **kw) -> list:
    with open_capture(data, **kw) as r:
        chunks = list(r.chunks())
        return chunks, r.info


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_byte_orders_and_resolutions(big: bool, ns: bool) -> None:
    ts = [T0 + 123_456_789, T0 + 2_000_001_000] if ns else [T0 + 123_456_000, T0 + 2_000_001_000]
    data = W.pcap_bytes(
        [(ts[0], eth(udp())), (ts[1], eth(udp(2000, 1000, "10.0.0.2", "10.0.0.1")), 1500)],
        big_endian=big,
        nanosecond=ns,
    )
    chunks, info = frames_of(data)
    assert info.byte_order == ("big" if big else "little") and info.ts_resolution == ("ns" if ns else "us")
    assert [int(t) for c in chunks for t in c.ts_ns] == ts
    assert [int(w) for c in chunks for w in c.wirelen] == [len(eth(udp())), 1500]
    flows = scan_capture(data).flows
    assert len(flows) == 1 and flows.loc[0, "packets"] == 2 and flows.loc[0, "bytes_s2c"] == 1500


def test_pcapng_interfaces_with_own_linktype_and_tsresol_exact_ns() -> None:
    ip = udp()
    base2 = 0x80 | 20  # 2^-20 s units
    ifaces = [
        (1, None, eth(ip)),
        (101, 9, ip),
        (228, 3, ip),
        (1, base2, eth(ip)),
        (113, 7, b"\0" * 14 + b"\x08\0" + ip),
    ]
    # Timestamps exactly representable in each interface's unit.
    stamps = [T0 + 5_000, T0 + 7, T0 + 9_000_000, T0 + 1_953_125 * 3, T0 + 300]
    for big in (False, True):
        parts = [W.shb(big_endian=big)]
        parts += [W.idb(lt, tsresol=r, name=f"if{i}", big_endian=big) for i, (lt, r, _) in enumerate(ifaces)]
        for i, ((_, r, data), ts) in enumerate(zip(ifaces, stamps, strict=True)):
            parts.append(W.epb(i, W.ts_units(ts, r), data, big_endian=big))
        chunks, info = frames_of(b"".join(parts))
        assert [int(t) for c in chunks for t in c.ts_ns] == stamps
        assert [int(x) for c in chunks for x in c.linktype] == [1, 101, 228, 1, 113]
        assert [i.name for i in info.interfaces] == [f"if{i}" for i in range(5)]
        assert scan_capture(b"".join(parts)).flows.loc[0, "packets"] == 5


def test_pcapng_spb_opb_unknown_blocks_and_sections_of_both_byte_orders() -> None:
    ip = udp()
    sec1 = [
        W.shb(),
        W.idb(1, tsresol=9),
        W.epb(0, W.ts_units(T0 + 11, 9), eth(ip)),
        W.block(0x00000BAD, b"custom-block"),
        W.block(0x40000BAD, b"local custom"),
        W.block(5, b"\0" * 8),
        W.spb(eth(ip)),
        W.opb(0, W.ts_units(T0 + 40, 9), eth(ip)),
    ]
    sec2 = [
        W.shb(big_endian=True),
        W.idb(101, big_endian=True),
        W.epb(0, W.ts_units(T0 + 50_000), ip, big_endian=True),
        W.block(0x0BAD, b"x", big_endian=True),
    ]
    chunks, info = frames_of(b"".join(sec1 + sec2))
    assert [int(t) for c in chunks for t in c.ts_ns] == [T0 + 11, T0 + 11, T0 + 40, T0 + 50_000]
    assert [int(x) for c in chunks for x in c.linktype] == [1, 1, 1, 101]
    assert len(info.interfaces) == 2 and info.skipped.get("corrupt_record", 0) == 0
    assert any("both byte orders" in w for w in info.warnings)


def test_gzip_is_transparent() -> None:
    data = W.pcap_bytes([(T0 + i * 1000, eth(udp(1000 + i % 3))) for i in range(50)])
    plain, gz = scan_capture(data), scan_capture(W.gzip_bytes(data))
    assert gz.info.compressed == "gzip" and gz.info.frames == 50
    cols = ["client_port", "packets", "bytes", "first_ts_ns", "community_id"]
    assert gz.flows[cols].equals(plain.flows[cols])


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"this is a text file, not a capture\n", "text"),
        (struct.pack(">QBBHHH", 0x5E5E5E5E00000000, 2, 4, 60, 0, 60) + b"\0" * 40, "ERF"),
        (W.gzip_bytes(b"plain text inside gzip " * 4), "text"),
    ],
)
def test_unreadable_inputs_raise_one_clear_error(data: bytes, words: str) -> None:
    with pytest.raises(CaptureFormatError) as exc:
        scan_capture(data)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_truncated_last_record_gives_partial_result() -> None:
    data = W.pcap_bytes([(T0 + i, eth(udp())) for i in range(5)])
    res = scan_capture(data[:-7])
    assert res.info.truncated and res.info.frames == 4
    assert res.flows.loc[0, "packets"] == 4
    assert res.info.skipped["truncated_record"] == 1 and any("truncated" in w for w in res.info.warnings)


def test_impossible_record_length_resynchronises_and_counts() -> None:
    good = [W.pcap_record(T0 + i * 1000, eth(udp())) for i in range(6)]
    bad = W.pcap_record(T0 + 2500, eth(udp(7, 7)), caplen=0x7FFF0000)
    data = W.pcap_bytes([]) + b"".join(good[:3]) + bad + b"".join(good[3:])
    res = scan_capture(data)
    assert res.info.frames == 6 and res.info.skipped["corrupt_record"] == 1
    assert any("resynchronise" in w for w in res.info.warnings)
    assert list(res.flows["packets"]) == [6]


def test_unknown_link_type_is_counted_as_skipped() -> None:
    res = scan_capture(W.pcap_bytes([(T0, b"\x01\x02" + udp()), (T0 + 1, b"\x03" + udp())], linktype=147))
    assert res.flows.empty and res.info.frames == 2
    assert res.info.skipped["unknown_linktype"] == 2


@pytest.mark.parametrize("length", [0, 8, 13, 0xFFFFFFF0, 0x7FFFFFFC])
def test_pcapng_absurd_block_lengths_do_not_hang_or_raise(length: int) -> None:
    ok = W.epb(0, 1, eth(udp()))
    damaged = W.block(6, b"\0" * 40, length=length)
    data = W.shb() + W.idb(1) + ok + damaged + ok + ok
    res = scan_capture(data)
    assert res.info.skipped["corrupt_record"] >= 1 or res.info.truncated
    assert 1 <= res.info.frames <= 3


def test_pcapng_epb_caplen_beyond_block_is_skipped() -> None:
    data = W.shb() + W.idb(1) + W.epb(0, 1, eth(udp()), caplen=5000) + W.epb(0, 2, eth(udp()))
    res = scan_capture(data)
    assert res.info.frames == 1 and res.info.skipped["bad_record_length"] == 1


def test_chunked_reading_equals_one_chunk() -> None:
    frames = []
    for i in range(400):
        fr = (
            eth(udp(1000 + i % 37, 53, n=i % 200))
            if i % 3
            else eth(
                raw(IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=40000 + i % 11, dport=443, flags="A") / (b"y" * 90))
            )
        )
        frames.append((T0 + i * 997, fr))
    data = W.pcap_bytes(frames)
    one, many = scan_capture(data), scan_capture(data, chunk_bytes=4096)
    assert len(many.flows) == 48
    cols = [c for c in one.flows.columns if c != "flow_id"]
    assert one.flows[cols].equals(many.flows[cols])


def test_compiled_and_pure_python_walks_agree(tmp_path) -> None:
    from analyzer.capture import walk

    if not walk.COMPILED:
        pytest.skip("the C record walker was not built (no compiler at install time)")
    frames = [(T0 + i * 1000, eth(udp(1000 + i % 5))) for i in range(300)]
    pcap = tmp_path / "a.pcap"
    ng = tmp_path / "a.pcapng"
    pcap.write_bytes(W.pcap_bytes(frames)[:-3])
    ng.write_bytes(W.pcapng_bytes(frames, tsresol=9) + W.block(6, b"\0" * 8, length=3))
    code = (
        "import sys; from analyzer.scan.scanner import scan_capture; from analyzer.capture import walk;"
        "print(walk.COMPILED);"
        "[print(scan_capture(p, chunk_bytes=4096).flows.drop(columns=['flow_key']).to_csv()) for p in sys.argv[1:]]"
    )
    outs = []
    for pure in ("", "1"):
        env = {**os.environ, "CONFSCOPE_PURE_PYTHON": pure}
        if not pure:
            env.pop("CONFSCOPE_PURE_PYTHON")
        proc = subprocess.run(
            [sys.executable, "-c", code, str(pcap), str(ng)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outs.append(proc.stdout)
    assert outs[0].startswith("True") and outs[1].startswith("False")
    assert outs[0].split("\n", 1)[1] == outs[1].split("\n", 1)[1]
    assert "1000" in outs[0]
