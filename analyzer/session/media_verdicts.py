"""Verdicts on media streams: is a stream's encryption ECB-like, unencrypted-like or
ciphertext-like? Drawn from the numbers of analyzer/scan/ecb.py (protocols.md section 5)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from analyzer.scan.ecb import random_entropy

# Verdict thresholds (ecb_verdict). Random 16-byte blocks collide with probability ~n^2/2^129, so
# even one repeat is significant; 4 tolerates a stray cleartext fragment repeating once or twice.
ECB_MIN_EXCESS = 4
ECB_MIN_RATIO = 0.01
# Ciphertext-like: the distinct blocks' byte entropy is within this many bits of what uniformly
# random bytes of the same sample size give (plug-in entropy is biased low on small samples).
ENTROPY_MARGIN = 0.35
ENTROPY_MIN_BYTES = 256
# A verdict on fewer sampled packets than this is "insufficient": a handful of packets (a stream's
# first keyframe fragments, a probe) says nothing about a call's encryption. Eight G.711 packets
# already hold 1,280 payload bytes (sip.pcap), enough for the entropy test.
VERDICT_MIN_PACKETS = 8


def _looks_random(entropy: float, nbytes: int) -> bool:
    return nbytes >= ENTROPY_MIN_BYTES and entropy >= random_entropy(nbytes) - ENTROPY_MARGIN


def ecb_verdict(row: Mapping | pd.Series) -> tuple[bool, str]:
    """Is this stream's encryption ECB-like? (is_ecb_like, reason).

    ECB-like when (1) the worst-alignment repeats reach ECB_MIN_EXCESS and ECB_MIN_RATIO of the
    blocks, which random ciphertext would give with probability ~n^2/2^129 (nil), and (2) the
    distinct blocks look like ciphertext: their byte entropy is within ENTROPY_MARGIN bits of
    random bytes of the same sample size. Repeats with low-entropy distinct blocks are plaintext
    (for example G.711 silence), reported as unencrypted-like, not ECB.
    """
    repeats = int(row.get("ecb_repeats_max", 0) or 0)
    blocks = int(row.get("ecb_blocks", 0) or 0)
    if blocks == 0:
        return False, "no media payload blocks sampled"
    ent = float(row.get("ecb_distinct_entropy", float("nan")))
    nbytes = int(row.get("ecb_distinct_bytes", 0) or 0)
    expected = blocks**2 / 2.0**129
    if repeats < ECB_MIN_EXCESS or repeats < ECB_MIN_RATIO * blocks:
        return False, (f"{repeats} repeated 16-byte blocks of {blocks} (random ciphertext: {expected:.1e}); "
                       f"below the threshold of {ECB_MIN_EXCESS} and {ECB_MIN_RATIO:.0%}")
    ent_rand = random_entropy(nbytes)
    if not _looks_random(ent, nbytes):
        return False, (f"unencrypted_like: {repeats} repeated blocks of {blocks}, but the distinct blocks "
                       f"have {ent:.2f} bits/byte over {nbytes} bytes (random: {ent_rand:.2f}), so not ciphertext")
    return True, (f"{repeats} of {blocks} 16-byte blocks repeat (alignment {int(row.get('ecb_repeat_alignment', 0))}) "
                  f"against {expected:.1e} expected from random ciphertext, and the distinct blocks look "
                  f"encrypted ({ent:.2f} bits/byte over {nbytes} bytes, random {ent_rand:.2f})")


def media_verdict(row: Mapping | pd.Series) -> tuple[str, str]:
    """('ecb_like' | 'unencrypted_like' | 'ciphertext_like' | 'insufficient', reason) for a stream.

    Measured only on the encrypted part of each packet: after the RTP header with its CSRCs and
    extensions (and after Zoom's own header, which precedes the RTP header), without RTP padding and
    the SRTP authentication tag; FEC packets and Zoom probes are not sampled. Fewer than
    VERDICT_MIN_PACKETS sampled packets give "insufficient". The reason names the statistic.
    """
    sampled = int(row.get("ecb_packets", 0) or 0)
    if sampled < VERDICT_MIN_PACKETS:
        return "insufficient", (f"only {sampled} packets' encrypted regions sampled (a verdict needs "
                                f"{VERDICT_MIN_PACKETS})")
    is_ecb, reason = ecb_verdict(row)
    if is_ecb:
        return "ecb_like", reason
    if reason.startswith("unencrypted_like"):
        return "unencrypted_like", reason.removeprefix("unencrypted_like: ")
    ent = float(row.get("ecb_payload_entropy", float("nan")))
    nbytes = int(row.get("ecb_sample_bytes", 0) or 0)
    if nbytes < ENTROPY_MIN_BYTES:
        return "insufficient", f"only {nbytes} payload bytes sampled"
    ent_rand = random_entropy(nbytes)
    if ent < ent_rand - ENTROPY_MARGIN:
        return "unencrypted_like", (f"payload entropy {ent:.2f} bits/byte over {nbytes} bytes, random bytes "
                                    f"give {ent_rand:.2f}: not ciphertext")
    return "ciphertext_like", f"payload entropy {ent:.2f} bits/byte over {nbytes} bytes (random {ent_rand:.2f})"


def judge_streams(streams: pd.DataFrame) -> pd.DataFrame:
    """Add the media verdict (ecb_like / unencrypted_like / ciphertext_like / insufficient) per stream."""
    if streams.empty:
        return streams
    out = streams.copy()
    verdicts = [media_verdict(row) for _, row in out.iterrows()]
    out["verdict"] = [v for v, _r in verdicts]
    out["verdict_reason"] = [r for _v, r in verdicts]
    out["ecb_like"] = out["verdict"] == "ecb_like"
    out["unencrypted_like"] = out["verdict"] == "unencrypted_like"
    out["ecb_random_expected"] = out.get("ecb_repeats_expected_random", 0.0)
    out["ecb_reason"] = out["verdict_reason"]
    return out
