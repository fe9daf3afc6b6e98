"""Per-packet RTP and RTCP header columns of whole chunks at once, for the scan's media tap.

The vectorised side of RTP (the scalar parsers and the registry declaration are in rtp.py): where
the RTP header of each media packet starts (plain RTP, or inside Zoom's media header), what it
says, and the sender reports and report blocks of RTCP. numpy, with the compiled twin in _kinds.c
(rtp_fields); tests/test_compiled_twins.py keeps the two equal. A module of its own because it
reads kind codes (kinds.py, which the registry builds from rtp.py itself).
"""

from __future__ import annotations

import numpy as np

from analyzer.common.compiled import load
from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.kinds import RTCP, RTP, ZOOM_MEDIA, c_packet_columns
from analyzer.dissect.zoom import ZOOM_UDP_PORTS
from analyzer.dissect.zoom import media_ok as zoom_media_ok

MEDIA_TYPES: tuple[str, ...] = ("unknown", "audio", "video", "screenshare", "fec")
UNKNOWN, AUDIO, VIDEO, SCREEN, FEC = range(len(MEDIA_TYPES))
_compiled_kinds = load("analyzer.dissect._kinds")


def _zoom_inner(b: Bytes, zp: np.ndarray, sp: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """Offset of the Zoom media header: SFU Gen B (UDP+8) when its check passes, else Gen A
    (UDP+1), else P2P (UDP+0), as kinds.py decides (protocols.md 1.2)."""
    sfu = (b.at(0) == 0x05) & port_in(sp, dp, ZOOM_UDP_PORTS)
    gen_b = sfu & (zp > 8) & np.isin(b.at(7), (0x00, 0x04)) & zoom_media_ok(b, zp, 8)
    gen_a = sfu & ~gen_b & zoom_media_ok(b, zp, 1)
    return np.where(gen_b, 8, np.where(gen_a, 1, 0)).astype(np.int64)


RTCP_SR, RTCP_RR = 200, 201
RTCP_MAX_BLOCKS = 31  # RFC 3550 6.4: RC is 5 bits


def rtcp_reports(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sender reports and report blocks of the first RTCP packet of each datagram (RFC 3550 6.4;
    a compound packet starts with its SR or RR). Plain RTCP (kind rtcp) starts at 0, Zoom's
    RTCP (inner types 0x21-0x23, kind zoom_media) at inner+16 (protocols.md 1.3).

    Returns (srs, blocks): srs has `i` (packet index), `ssrc` (sender) and `ntp_mid` (the middle
    32 bits of the NTP timestamp, what a receiver echoes as LSR); blocks has `i`, `ssrc` (the
    reporter), `source` (the reportee), `lsr` and `dlsr` (1/65536 s), only blocks with an LSR."""
    n = off.shape[0]
    rel = np.full(n, -1, np.int64)
    rel[kinds == RTCP] = 0
    z = np.flatnonzero(kinds == ZOOM_MEDIA)
    if z.size:
        b = Bytes(buf, off[z], plen[z])
        inner = _zoom_inner(b, plen[z], sport[z], dport[z])
        t = b.at(inner)
        rel[z] = np.where((t >= 0x21) & (t <= 0x23), inner + 16, -1)
    cand = np.flatnonzero(rel >= 0)
    b = Bytes(buf, off[cand], plen[cand])
    r = rel[cand]
    b0, pt = b.at(r), b.at(r + 1)
    words = b.u16(r + 2)
    ssrc = b.u32(r + 4)
    ok = (b0 >> 6 == 2) & (words >= 1) & (ssrc >= 0) & (r + 4 * (words + 1) <= plen[cand])
    sr = ok & (pt == RTCP_SR) & (words >= 6)
    ntp_mid = b.u32(r + 10)
    srs = {"i": cand[sr], "ssrc": ssrc[sr], "ntp_mid": ntp_mid[sr]}
    rc = np.where(ok, np.maximum(b0, 0) & 0x1F, 0)
    first = np.where(pt == RTCP_SR, r + 28, r + 8)
    has_blocks = ok & ((pt == RTCP_SR) | (pt == RTCP_RR))
    end = r + 4 * (words + 1)
    parts: dict[str, list[np.ndarray]] = {"i": [], "ssrc": [], "source": [], "lsr": [], "dlsr": []}
    for k in range(int(rc[has_blocks].max()) if has_blocks.any() else 0):
        base = first + 24 * k
        sel = has_blocks & (rc > k) & (base + 24 <= end)
        lsr = b.u32(base + 16)
        sel &= lsr > 0
        parts["i"].append(cand[sel])
        parts["ssrc"].append(ssrc[sel])
        parts["source"].append(b.u32(base)[sel])
        parts["lsr"].append(lsr[sel])
        parts["dlsr"].append(b.u32(base + 20)[sel])
    blocks = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()}
    return srs, blocks


def locate_rtp(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rtp offset in the payload or -1, media code from the Zoom header or -1, is_zoom) per packet.

    Plain RTP (kind rtp) starts at 0. For Zoom media, the generation is chosen as kinds.py does:
    SFU Gen B (inner at UDP+8) when its check passes, else Gen A (UDP+1), else P2P (UDP+0).
    """
    n = off.shape[0]
    rel = np.full(n, -1, np.int64)
    media = np.full(n, -1, np.int64)
    rel[kinds == RTP] = 0
    z = np.flatnonzero(kinds == ZOOM_MEDIA)
    if z.size:
        b = Bytes(buf, off[z], plen[z])
        zp = plen[z]
        inner = _zoom_inner(b, zp, sport[z], dport[z])
        t = b.at(inner)
        b20 = b.at(inner + 20)
        r = np.full(z.size, -1, np.int64)
        m = np.full(z.size, -1, np.int64)
        is_a, is_v = t == 0x0F, (t == 0x10) & (b20 >= 0)
        is_s = ((t == 0x0D) & (b.at(inner + 7) == 0x1E)) | (t == 0x1E)
        r = np.where(is_a, inner + 19, r)
        r = np.where(is_v, np.where(b20 == 0x02, inner + 24, inner + 20), r)
        r = np.where((t == 0x0D) & is_s, inner + 27, r)
        r = np.where(t == 0x1E, inner + 20, r)
        m = np.where(is_a, AUDIO, np.where(is_v, VIDEO, np.where(is_s, SCREEN, m)))
        rel[z], media[z] = r, m
    return rel, media, kinds == ZOOM_MEDIA


def rtp_header_fields(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per media packet (kind rtp or zoom_media; `plen` already clamped to the buffer):
    (rtp offset, header length, seq, RTP timestamp, SSRC, PT, Zoom media code, ok)."""
    if _compiled_kinds is None:
        return rtp_header_fields_numpy(buf, off, plen, kinds, sport, dport)
    out = np.empty((off.shape[0], 8), np.int64)
    _compiled_kinds.rtp_fields(*c_packet_columns(buf, off, plen, kinds, sport, dport, np.int64), out)
    cols = tuple(out[:, j].copy() for j in range(8))
    return (*cols[:7], cols[7].astype(bool))


def rtp_header_fields_numpy(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, ...]:
    """rtp_header_fields with numpy only: the reference for the compiled loop in _kinds.c."""
    rel, zmedia, zoom = locate_rtp(buf, off, plen, kinds, sport.astype(np.int64), dport.astype(np.int64))
    b = Bytes(buf, off, plen)
    relc = np.maximum(rel, 0)
    b0, b1 = b.at(relc), b.at(relc + 1)
    cc, has_x = np.maximum(b0, 0) & 0x0F, (np.maximum(b0, 0) & 0x10) != 0
    hl = 12 + 4 * cc
    ext_words = b.u16(relc + hl + 2)
    hl = np.where(has_x, hl + 4 + 4 * np.maximum(ext_words, 0), hl)
    seq, rts, ssrc = b.u16(relc + 2), b.u32(relc + 4), b.u32(relc + 8)
    pt = np.maximum(b1, 0) & 0x7F
    ok = (rel >= 0) & (b0 >> 6 == 2) & (seq >= 0) & (ssrc >= 0) & (~has_x | (ext_words >= 0))
    ok &= relc + hl <= plen
    # RFC 3551 / protocols.md 2.4: plain RTP PTs are 0-34 or 96-127.
    ok &= zoom | (pt <= 34) | (pt >= 96)
    ok &= ~zoom | (zmedia >= 0)
    return rel, hl, seq, rts, ssrc, pt, zmedia, ok
