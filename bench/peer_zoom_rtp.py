"""confscope beside Princeton's zoom-analysis (`zoom_flows` + `zoom_rtp`) on the shared Zoom captures.

Not a test dependency: it needs the peer built from /work/shared/peers/zoom-analysis (AGPL; built,
never copied) with the two-line patch that calls each stream analyzer's flush() after the last
packet, so that short captures report their frames (the unpatched tool emits frames only when its
64-slot ring wraps). Build (Debian 12, offline): apt-get install cmake g++ libpcap-dev
libcxxopts-dev catch2; copy the source to /tmp; put /usr/include/cxxopts.hpp at
ext/include/cxxopts/cxxopts.h and /usr/include/catch2/catch.hpp at test/include/catch.h; apply the
patch; cmake -DCMAKE_BUILD_TYPE=Release .. && make zoom_flows zoom_rtp.

    python3 bench/peer_zoom_rtp.py --peer-bin /tmp/wt-13-peer/build [capture ...]

Per SSRC it prints packets, frames, frame rate and jitter from both tools with the clock each
assumed. How the numbers are defined on each side:
* packets: confscope per (flow, direction, SSRC, media type) with FEC (PT 110) its own stream;
  the peer per (5-tuple, SSRC, media/FEC) as well ("m"/"f" rows of its stream log).
* frames: both group packets by RTP timestamp. The peer's frame log has no media/FEC column, so
  its frames are summed per SSRC and compared with confscope's media + FEC frames of that SSRC.
* frame rate: confscope (frames - 1) / (last frame end - first frame end); the peer's is the mean
  of its per-frame "frames in the last second" counter, which is low at the start of a stream.
* jitter: confscope's is RFC 3550 over frames (frame end vs RTP timestamp) at the end of the
  stream; the peer's is the mean of its running per-frame jitter (integer ms), at 8 kHz for
  audio (Zoom audio runs at 48 kHz) and 90 kHz for video.
* bytes: the peer counts UDP lengths with the 8-byte UDP header; confscope's `udp_bytes` is the
  UDP payload and `bytes` the captured frame length.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.api import analyze

SHARED = Path("/work/shared/captures/real")
DEFAULT_CAPTURES = ("zoom.pcap", "zoom_p2p.pcapng", "princeton-test0.pcap", "princeton-test3.pcap",
                    "princeton-test4_rawip.pcap")


def run_peer(peer: Path, capture: Path, work: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    zpkt, streams, frames = work / "x.zpkt", work / "streams.csv", work / "frames.csv"
    for f in (zpkt, streams, frames):
        f.unlink(missing_ok=True)
    out = subprocess.run([peer / "zoom_flows", "-i", capture, "-z", zpkt], capture_output=True, text=True)
    note = (out.stdout + out.stderr).strip().splitlines()[-1:] if out.returncode else []
    if zpkt.exists():
        subprocess.run([peer / "zoom_rtp", "-i", zpkt, "-s", streams, "-f", frames], capture_output=True, check=False)
    s = pd.read_csv(streams, skipinitialspace=True) if streams.exists() else pd.DataFrame()
    f = pd.read_csv(frames, skipinitialspace=True) if frames.exists() else pd.DataFrame()
    return s, f, " ".join(note)


def ours(capture: Path) -> pd.DataFrame:
    return analyze(capture).streams


def peer_meetings(peer: Path, work: Path) -> int | None:
    """Meetings zoom_meetings finds in the last .zpkt (it groups media streams, FEC aside)."""
    out = work / "meetings.csv"
    out.unlink(missing_ok=True)
    if not (work / "x.zpkt").exists():
        return None
    subprocess.run([peer / "zoom_meetings", "-i", work / "x.zpkt", "-m", out], capture_output=True, check=False)
    return int(pd.read_csv(out)["meeting_id"].nunique()) if out.exists() else None


def table(capture: Path, peer: Path, work: Path) -> pd.DataFrame:
    st = ours(capture)
    ps, pf, note = run_peer(peer, capture, work)
    if note:
        print(f"  peer: {note}")
    rows = []
    ssrcs = sorted(set(st.get("ssrc", pd.Series(dtype=int)).tolist()) | set(ps.get("rtp_ssrc", pd.Series(dtype=int))))
    for ssrc in ssrcs:
        mine = st[st["ssrc"] == ssrc] if len(st) else st
        theirs = ps[ps["rtp_ssrc"] == ssrc] if len(ps) else ps
        frames = pf[pf["ssrc"] == ssrc] if len(pf) else pf
        for _, m in mine.iterrows():
            kind = "f" if m["media_type"] == "fec" else "m"
            t = theirs[theirs["stream_type"] == kind] if len(theirs) else theirs
            rows.append({
                "ssrc": f"{ssrc:#010x}", "type": m["media_type"],
                "pkts": int(m["packets"]), "peer_pkts": int(t["pkts"].sum()) if len(t) else None,
                "udp_bytes+8": int(m["udp_bytes"] + 8 * m["packets"]),
                "peer_bytes": int(t["bytes"].sum()) if len(t) else None,
                "frames": int(m["frames"]),
                "frames_ssrc": int(mine["frames"].sum()), "peer_frames_ssrc": len(frames) if len(pf) else None,
                "fps": round(float(m["frame_rate_fps"]), 2) if m["frame_rate_fps"] == m["frame_rate_fps"] else None,
                "peer_fps": round(float(frames["fps"].mean()), 2) if len(frames) else None,
                "jitter_ms": round(float(m["frame_jitter_ms"]), 2),
                "clock": int(m["clock_rate"]),
                "peer_jitter_ms": round(float(frames["jitter_ms"].mean()), 2) if len(frames) else None,
                "peer_clock": (8000 if m["media_type"] == "audio" else 90000) if len(t) else None,
            })
        if not len(mine) and len(theirs):
            for _, t in theirs.iterrows():
                rows.append({"ssrc": f"{ssrc:#010x}", "type": f"peer only ({t['media_type']}/{t['stream_type']})",
                             "peer_pkts": int(t["pkts"]), "peer_frames_ssrc": len(frames)})
    if len(st):
        print(f"  meetings: confscope {st['meeting'].nunique()} ({', '.join(sorted(st['meeting'].unique()))}), "
              f"participants {st['participant'].nunique()}; zoom_meetings {peer_meetings(peer, work)}")
    return pd.DataFrame(rows)


def without_stun(capture: Path, work: Path) -> Path | None:
    """The capture minus its STUN (UDP 3478/3479): zoom_flows only follows P2P media that a STUN
    exchange announced; confscope recognises Zoom's media header itself. Needs scapy."""
    try:
        from scapy.all import UDP, rdpcap, wrpcap
    except ImportError:
        return None
    keep = [p for p in rdpcap(str(capture))
            if not (UDP in p and ({p[UDP].sport, p[UDP].dport} & {3478, 3479}))]
    out = work / f"{capture.stem}-without-stun.pcap"
    wrpcap(str(out), keep)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-bin", required=True, type=Path, help="folder with the built zoom_flows and zoom_rtp")
    ap.add_argument("captures", nargs="*", type=Path, help=f"default: {', '.join(DEFAULT_CAPTURES)} in {SHARED}")
    args = ap.parse_args(argv)
    caps = args.captures or [SHARED / c for c in DEFAULT_CAPTURES if (SHARED / c).exists()]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    with tempfile.TemporaryDirectory(prefix="peer-zoom-") as work:
        for cap in caps:
            print(f"== {cap.name}")
            t = table(cap, args.peer_bin, Path(work))
            print(t.to_string(index=False) if len(t) else "  no RTP streams in either tool")
            if "p2p" in cap.name and (variant := without_stun(cap, Path(work))) is not None:
                print(f"== {variant.name} (STUN removed)")
                t = table(variant, args.peer_bin, Path(work))
                print(t.to_string(index=False) if len(t) else "  no RTP streams in either tool")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
