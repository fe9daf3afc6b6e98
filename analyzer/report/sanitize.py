"""Making report values plain and captured strings inert, one function per output medium.

Captured strings (hostnames, SIP headers, certificate names, file names) are hostile: a capture
can put markup, formulas or terminal escape sequences in an SNI. Every renderer passes them
through the function of its medium here, so the rules live in one place and are tested once.
"""

from __future__ import annotations

import json
import re
import unicodedata
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
# Everything that is not visible text: C0/C1 controls, format characters (category Cf: bidi
# marks and overrides, zero-width characters, U+061C, U+180E, U+2060-2064, U+FEFF, the TAG
# characters U+E0000-E007F ...), line/paragraph separators, surrogates, private use, unassigned,
# and the Hangul fillers that are letters by category but draw nothing. Such a character is
# shown as one U+FFFD per run, so "zoom.us" followed by TAG characters does not display as
# "zoom.us" and cannot pass for it.
_HANGUL_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
# Spaces other than U+0020 (no-break, ideographic, ...) are not printable either; they show as one.
_NON_ASCII_OR_CONTROL = re.compile("[^\x20-\x7e]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
REPLACEMENT = "\ufffd"


def invisible(ch: str) -> bool:
    """True for a character that draws nothing or changes how other characters draw."""
    return ch in _HANGUL_FILLERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def _visible_char(ch: str) -> str:
    if ch in "\t\n\r\f\v" or (not invisible(ch) and unicodedata.category(ch) == "Zs"):
        return " "
    return REPLACEMENT if invisible(ch) else ch


def visible(value: Any) -> str:
    """Display text, the one sanitiser under every output medium: terminal escape sequences
    removed whole, whitespace controls as spaces, every other invisible or format character as
    U+FFFD (one per run). Printable ASCII passes through untouched (the fast path)."""
    s = text(value)
    if not _NON_ASCII_OR_CONTROL.search(s):
        return s
    s = _ANSI_SEQ.sub("", s)
    out = _NON_ASCII_OR_CONTROL.sub(lambda m: _visible_char(m.group()), s)
    return re.sub("\ufffd{2,}", REPLACEMENT, out) if REPLACEMENT in out else out

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


def one_line(value: Any, limit: int = 500) -> str:
    """An error or warning line that may quote captured bytes or a hostile file name: visible
    text on one line, at most `limit` characters."""
    return visible(value)[:limit]


def strip_terminal(value: Any) -> str:
    """Text safe for a terminal (the same rules as every medium: see `visible`)."""
    return visible(value.replace("\r\n", " ") if isinstance(value, str) else value)


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
    """A cell that no spreadsheet evaluates and that displays what it holds: strings go through
    `visible`, and those that could start a formula get a quote.

    Only strings are touched; numbers stay numbers (a negative number is not an injection).
    """
    if not isinstance(value, str):
        return value
    value = visible(value)
    if value.startswith(_FORMULA_START):
        return "'" + value
    return value


def json_text(s: str) -> str:
    """JSON text (already serialised) with every invisible or format character written as a
    backslash-u escape: the data is unchanged for a JSON reader, the file shows no hidden text."""
    if s.isascii():
        return s

    def esc(m: re.Match[str]) -> str:
        ch = m.group()
        if not invisible(ch):
            return ch
        c = ord(ch)
        if c <= 0xFFFF:
            return f"\\u{c:04x}"
        c -= 0x10000
        return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"

    # Only non-ASCII: json.dumps escapes C0 controls inside strings itself, and the newlines of
    # indentation between tokens must stay.
    return _NON_ASCII.sub(esc, s)


_SCRIPT_UNSAFE = re.compile("[\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_for_script(value: Any) -> str:
    """JSON safe to embed inside <script>: no `</script>`, `<!--`, entity or line-separator tricks."""
    s = json.dumps(to_plain(value), ensure_ascii=False, allow_nan=False, sort_keys=True)
    s = s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    # Line separators break old JS parsers; bidi and C1 controls would reorder the page source
    # for anyone reading it. All stay valid JSON as backslash-u escapes.
    return json_text(_SCRIPT_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", s))


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
