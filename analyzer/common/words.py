"""Counted nouns for messages and reports: `1 packet`, `3 packets`, `1,204 flows`."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n word` with the plural (`word + "s"` unless `many` is given) for every n but 1."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {many or word + 's'}"


def human_duration(seconds: float | None) -> str:
    """`0.4 s`, `6.5 s`, `12 min 5 s`, `3 h 12 min`, `1,203 days`, `3.3 years`."""
    if seconds is None or seconds != seconds:
        return "-"
    s = abs(float(seconds))
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min" + (f" {int(s % 60)} s" if int(s % 60) else "")
    if s < 86400:
        return f"{int(s // 3600)} h" + (f" {int(s % 3600 // 60)} min" if int(s % 3600 // 60) else "")
    days = s / 86400
    if days < 730:
        return plural(round(days), "day")
    return f"{days / 365.25:.1f} years"


def capture_time(cap: dict) -> str:
    """The capture's duration for a reader: the active time, with the periods when traffic falls
    into several (TIME_GAPS) or some timestamps are impossible (TIMESTAMP_OUTLIERS)."""
    segments = [s for s in cap.get("time_segments") or [] if isinstance(s, dict)]
    good = [s for s in segments if not s.get("implausible")]
    if len(segments) <= 1 or not good:
        return human_duration(cap.get("duration_s"))
    text = f"{human_duration(cap.get('active_s'))} active"
    if len(good) > 1:
        text += f" in {len(good)} periods over {human_duration(good[-1]['end_ts'] - good[0]['start_ts'])}"
    if len(good) < len(segments):
        text += f", {plural(len(segments) - len(good), 'period')} with impossible timestamps left out"
    return text
