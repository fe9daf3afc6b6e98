"""Making report values plain and captured strings inert, one function per output medium.

Captured strings (hostnames, SIP headers, certificate names, file names) are hostile: a capture
can put markup, formulas or terminal escape sequences in an SNI. Every renderer passes them
through the function of its medium here, so the rules live in one place and are tested once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from analyzer.common.plain import to_plain

# C0 and C1 controls, DEL, and the Unicode bidi/format characters that can reorder or hide text
# on a terminal (Trojan Source style). ESC sequences are removed whole first so their printable
# tail ("[31m") does not survive as garbage.
_ANSI_SEQ = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (hyperlinks, titles), BEL or ST terminated
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # two-byte Fe escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

# Markdown: ASCII punctuation that starts emphasis, code, links, images, tables, headings,
# math (GitHub renders $...$), footnotes, or GFM autolinks (scheme ":" and e-mail "@").
_MD_PUNCT = set("\\`*_{}[]()#+!|~:@$^")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text(value: Any) -> str:
    """A value as display text: None/NaN become the empty string."""
    value = to_plain(value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def strip_terminal(value: Any) -> str:
    """Text with escape sequences and control/bidi characters removed (newlines become spaces)."""
    s = text(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")
    s = _ANSI_SEQ.sub("", s)
    return _CONTROL.sub("", s)


def md_escape(value: Any) -> str:
    """Text that renders literally in CommonMark/GFM, inside a table cell or a paragraph.

    Markdown punctuation is backslash-escaped, HTML metacharacters become entities (a bare `<`
    can open raw HTML), newlines become spaces (they would end a table row), and the dot of
    `www.` is escaped so GFM's extended autolinks cannot fire.
    """
    s = strip_terminal(value)
    out: list[str] = []
    for ch in s:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch in _MD_PUNCT:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return re.sub(r"(?i)(www)\.", r"\1\\.", "".join(out))


def csv_cell(value: Any) -> Any:
    """A cell that no spreadsheet evaluates: strings that could start a formula get a quote.

    Only strings are touched; numbers stay numbers (a negative number is not an injection).
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


_SCRIPT_UNSAFE = re.compile("[\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_for_script(value: Any) -> str:
    """JSON safe to embed inside <script>: no `</script>`, `<!--`, entity or line-separator tricks."""
    s = json.dumps(to_plain(value), ensure_ascii=False, allow_nan=False, sort_keys=True)
    s = s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    # Line separators break old JS parsers; bidi and C1 controls would reorder the page source
    # for anyone reading it. All stay valid JSON as backslash-u escapes.
    return _SCRIPT_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)


def human_bytes(n: Any) -> str:
    """1536 -> '1.5 KiB'; None -> ''."""
    v = to_plain(n)
    if v is None or isinstance(v, str | list | dict):
        return text(v)
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{int(v)} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # unreachable; keeps type checkers calm
