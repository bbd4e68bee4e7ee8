"""ModSecurity transformations over byte strings held as latin-1 str (one character per byte)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import string
from collections.abc import Callable
from typing import Final

Transform = Callable[[str], str]

_URL_ESCAPE: Final = re.compile(r"%([0-9a-fA-F]{2})|\+")
_URL_ESCAPE_UNI: Final = re.compile(r"%[uU]([0-9a-fA-F]{4})|%([0-9a-fA-F]{2})|\+")


def _url_replace(match: re.Match[str]) -> str:
    hex_pair = match.group(1)
    return chr(int(hex_pair, 16)) if hex_pair else " "


def url_decode(value: str) -> str:
    """%XX and '+' decoded; an invalid escape is kept as it is (ModSecurity's lenient decoder)."""
    if "%" not in value and "+" not in value:
        return value
    return _URL_ESCAPE.sub(_url_replace, value)


def _url_uni_replace(match: re.Match[str]) -> str:
    wide, hex_pair = match.group(1), match.group(2)
    if wide:
        code = int(wide, 16)
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        return chr(code & 0xFF)
    return chr(int(hex_pair, 16)) if hex_pair else " "


def url_decode_uni(value: str) -> str:
    """Like urlDecode, plus IIS %uXXXX: full-width ASCII maps to ASCII, otherwise the low byte."""
    if "%" not in value and "+" not in value:
        return value
    return _URL_ESCAPE_UNI.sub(_url_uni_replace, value)


def utf8_to_unicode(value: str) -> str:
    """Multi-byte UTF-8 sequences become %uXXXX, so later rules see them as IIS escapes."""
    if value.isascii():
        return value
    text = value.encode("latin-1").decode("utf-8", "surrogateescape")
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(chr(code - 0xDC00))
        else:
            out.append(f"%u{code:04x}" if code <= 0xFFFF else f"%u{code & 0xFFFF:04x}")
    return "".join(out)


# ModSecurity's decoder (v2 msc_util.c html_entities_decode_inplace, libmodsecurity3 the same):
# numeric entities, and only five names; the semicolon is optional, the names are caseless.
_HTML_ENTITY: Final = re.compile(r"&(?:#[xX]([0-9a-fA-F]+)|#([0-9]+)|([a-zA-Z0-9]+));?")
_HTML_NAMES: Final = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0"}
_LONG_MAX: Final = 2**63 - 1


def _html_replace(match: re.Match[str]) -> str:
    hex_digits, decimal, name = match.groups()
    if name is not None:
        # Any other name (&colon;, &Tab;, ...) stays as written: HTML5 knows them, ModSecurity not.
        return _HTML_NAMES.get(name.lower(), match.group())
    code = int(hex_digits, 16) if hex_digits is not None else int(decimal)
    # (unsigned char)strtol(...): the low byte, and strtol saturates at LONG_MAX on overflow.
    return chr(0xFF if code > _LONG_MAX else code & 0xFF)


def html_entity_decode(value: str) -> str:
    """&#NNN; &#xHH; (low byte) and &quot; &amp; &lt; &gt; &nbsp;, each with or without ';'."""
    if "&" not in value:
        return value
    return _HTML_ENTITY.sub(_html_replace, value)


_JS_ESCAPE: Final = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.S)
_JS_SIMPLE: Final = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _js_replace(match: re.Match[str]) -> str:
    token = match.group(1)
    head = token[0]
    if head == "u" and len(token) == 5:
        code = int(token[1:], 16)
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        return chr(code & 0xFF)
    if head == "x" and len(token) == 3:
        return chr(int(token[1:], 16))
    if head.isdigit() and head in "01234567":
        return chr(int(token, 8) & 0xFF)
    return _JS_SIMPLE.get(token, token)


def js_decode(value: str) -> str:
    return _JS_ESCAPE.sub(_js_replace, value) if "\\" in value else value


_CSS_ESCAPE: Final = re.compile(r"\\([0-9a-fA-F]{1,6})\s?|\\(\n)|\\(.)", re.S)


def _css_replace(match: re.Match[str]) -> str:
    if match.group(1):
        code = int(match.group(1), 16)
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        return chr(code & 0xFF)
    if match.group(2):
        return ""
    return match.group(3)


def css_decode(value: str) -> str:
    return _CSS_ESCAPE.sub(_css_replace, value) if "\\" in value else value


_ESCAPE_SEQ: Final = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|[abfnrtv\\?'\"])")
_C_SIMPLE: Final = {**_JS_SIMPLE, "\\": "\\", "?": "?", "'": "'", '"': '"'}


def _esc_replace(match: re.Match[str]) -> str:
    token = match.group(1)
    if token[0] == "x":
        return chr(int(token[1:], 16))
    if token[0] in "01234567":
        return chr(int(token, 8) & 0xFF)
    return _C_SIMPLE[token]


def escape_seq_decode(value: str) -> str:
    return _ESCAPE_SEQ.sub(_esc_replace, value) if "\\" in value else value


_CMD_DELETED: Final = "\\\"'^"
# The separators ModSecurity's cmdLine folds (not \f nor \v); Python's \s would take more.
_CMD_SEPARATORS: Final = "\t\n\r,;"
_CMD_SPACE_BEFORE: Final = re.compile(r" (?=[/(])")


def _delete(value: str, characters: str) -> str:
    """str.translate deleting characters is slow; a replace per character present is not."""
    for character in characters:
        if character in value:
            value = value.replace(character, "")
    return value


def _fold(value: str, separators: str) -> str:
    """Each run of spaces and `separators` becomes one space.

    str.replace runs in C where Python's re scans slowly: the separators become spaces, then
    runs of spaces halve until none is left (log2 of the longest run passes).
    """
    for character in separators:
        if character in value:
            value = value.replace(character, " ")
    while "  " in value:
        value = value.replace("  ", " ")
    return value


def cmd_line(value: str) -> str:
    """Windows/Unix command-line evasions: drop \\ " ' ^, fold separators, lowercase."""
    value = _fold(_delete(value, _CMD_DELETED), _CMD_SEPARATORS)
    if " /" in value or " (" in value:
        value = _CMD_SPACE_BEFORE.sub("", value)
    return ascii_lower(value)


_TO_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_TO_UPPER: Final = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def ascii_lower(value: str) -> str:
    """tolower() in the C locale, as ModSecurity: bytes above 0x7f are left alone."""
    return value.lower() if value.isascii() else value.translate(_TO_LOWER)


def ascii_upper(value: str) -> str:
    return value.upper() if value.isascii() else value.translate(_TO_UPPER)


# isspace() and the non-breaking space 0xa0, as ModSecurity's whitespace transformations.
_WHITESPACE: Final = "\t\n\r\f\v\xa0"


def compress_whitespace(value: str) -> str:
    return _fold(value, _WHITESPACE)


def remove_whitespace(value: str) -> str:
    return _delete(value, " " + _WHITESPACE)


_COMMENT: Final = re.compile(r"/\*.*?(?:\*/|\Z)|<!--.*?(?:-->|\Z)|--.*|#.*", re.S)
_C_COMMENT: Final = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)


def remove_comments(value: str) -> str:
    return _COMMENT.sub("", value)


def replace_comments(value: str) -> str:
    return _C_COMMENT.sub(" ", value)


def remove_comments_char(value: str) -> str:
    for token in ("/*", "*/", "<!--", "-->", "--", "#"):
        value = value.replace(token, "")
    return value


def normalise_path(value: str) -> str:
    """Collapse //, /./ and /../ the way ModSecurity does, without touching the filesystem."""
    if "." not in value and "//" not in value:
        return value
    absolute = value.startswith("/")
    trailing = value.endswith("/") or value.endswith("/.") or value.endswith("/..")
    parts: list[str] = []
    for segment in value.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append("..")
            continue
        parts.append(segment)
    result = ("/" if absolute else "") + "/".join(parts)
    if trailing and parts:
        result += "/"
    return result


def normalise_path_win(value: str) -> str:
    return normalise_path(value.replace("\\", "/"))


_BASE64_ALPHABET: Final = (string.ascii_letters + string.digits + "+/").encode()
_NOT_BASE64: Final = bytes(byte for byte in range(256) if byte not in _BASE64_ALPHABET)
_NOT_BASE64_NOR_NEWLINE: Final = _NOT_BASE64.replace(b"\n", b"")


def base64_decode(value: str) -> str:
    """Characters outside the alphabet are skipped, a dangling sextet dropped, padding added."""
    # Every value holds one character per byte (latin-1): bytes.translate deletes in C.
    return _decode_cleaned(value.encode("latin-1", "replace").translate(None, _NOT_BASE64))


def _decode_cleaned(cleaned: bytes) -> str:
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    try:
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4)).decode("latin-1")
    except (binascii.Error, ValueError):
        return ""


def hex_decode(value: str) -> str:
    even = value[: len(value) - len(value) % 2]
    try:
        return bytes.fromhex(even).decode("latin-1")
    except ValueError:
        return value


def sql_hex_decode(value: str) -> str:
    return re.sub(
        r"0x((?:[0-9a-fA-F]{2})+)", lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), value
    )


def _digest(name: str) -> Transform:
    def digest(value: str) -> str:
        return hashlib.new(name, value.encode("latin-1")).digest().decode("latin-1")

    return digest


def _identity(value: str) -> str:
    return value


TRANSFORMS: Final[dict[str, Transform]] = {
    "none": _identity,
    "lowercase": ascii_lower,
    "uppercase": ascii_upper,
    "urldecode": url_decode,
    "urldecodeuni": url_decode_uni,
    "htmlentitydecode": html_entity_decode,
    "jsdecode": js_decode,
    "cssdecode": css_decode,
    "escapeseqdecode": escape_seq_decode,
    "cmdline": cmd_line,
    "compresswhitespace": compress_whitespace,
    "removewhitespace": remove_whitespace,
    "removenulls": lambda v: v.replace("\x00", ""),
    "replacenulls": lambda v: v.replace("\x00", " "),
    "removecomments": remove_comments,
    "removecommentschar": remove_comments_char,
    "replacecomments": replace_comments,
    "normalisepath": normalise_path,
    "normalizepath": normalise_path,
    "normalisepathwin": normalise_path_win,
    "normalizepathwin": normalise_path_win,
    "utf8tounicode": utf8_to_unicode,
    "base64decode": base64_decode,
    "base64decodeext": base64_decode,
    "base64encode": lambda v: base64.b64encode(v.encode("latin-1")).decode("latin-1"),
    "hexdecode": hex_decode,
    "hexencode": lambda v: v.encode("latin-1").hex(),
    "sqlhexdecode": sql_hex_decode,
    "length": lambda v: str(len(v)),
    "trim": lambda v: v.strip(" \t\n\r\f\v\x00"),
    "trimleft": lambda v: v.lstrip(" \t\n\r\f\v\x00"),
    "trimright": lambda v: v.rstrip(" \t\n\r\f\v\x00"),
    "sha1": _digest("sha1"),
    "md5": _digest("md5"),
}
"""Keyed by lowercased name: ModSecurity accepts base64decode as well as base64Decode."""


def lookup(name: str) -> Transform | None:
    return TRANSFORMS.get(name.lower())


# --- batch application over newline-joined values -------------------------------------------
#
# The prefilters search the values of a target joined by newlines. Transforming that joined
# text once instead of each value is exact when the result is the join of the transformed
# values; each op below returns that join, or the transformed values one by one (when they
# may hold newlines), or None when it cannot vouch for either.

BatchOp = Callable[[str, int], str | list[str] | None]
"""(text of n values joined by n - 1 newlines, n - 1) -> the join of the transformed values,
or the list of them."""

# f(a + "\n" + b) == f(a) + "\n" + f(b) for any a, b: a newline is never consumed nor merged.
SEPARATOR_SAFE: Final = frozenset(
    {
        "none",
        "lowercase",
        "uppercase",
        "urldecode",
        "urldecodeuni",
        "htmlentitydecode",
        "utf8tounicode",
        "removenulls",
        "replacenulls",
    }
)

# Identity on any value that contains none of these substrings (so on their join as well).
_TRIGGERS: Final[dict[str, tuple[str, ...]]] = {
    "jsdecode": ("\\",),
    "cssdecode": ("\\",),
    "escapeseqdecode": ("\\",),
    "replacecomments": ("/*",),
    "removecomments": ("/*", "<!--", "--", "#"),
    "removecommentschar": ("/*", "*/", "<!--", "-->", "--", "#"),
}


# The same transformation with "\n" taken out of the whitespace: exact when no value holds one.
def _compress_lines(value: str) -> str:
    return _fold(value, "\t\r\f\v\xa0")


def _remove_lines(value: str) -> str:
    return _delete(value, " \t\r\f\v\xa0")


def _cmd_line_lines(value: str) -> str:
    value = _fold(_delete(value, _CMD_DELETED), "\t\r,;")
    if " /" in value or " (" in value:
        value = _CMD_SPACE_BEFORE.sub("", value)
    return ascii_lower(value)


_LINE_VARIANTS: Final[dict[str, Transform]] = {
    "compresswhitespace": _compress_lines,
    "removewhitespace": _remove_lines,
    "cmdline": _cmd_line_lines,
}


def _base64_each(text: str, separators: int) -> list[str] | None:
    """base64Decode of each value, all cleaned in one pass (the newlines between them kept).

    Decoded bytes often hold newlines, and then the joined text would no longer tell the
    values apart: the decoded values come back one by one.
    """
    if text.count("\n") != separators:
        return None  # a value holds a newline: the caller splits them its own way
    cleaned = text.encode("latin-1", "replace").translate(None, _NOT_BASE64_NOR_NEWLINE)
    return [_decode_cleaned(piece) for piece in cleaned.split(b"\n")]


def _has_dot_line(text: str) -> bool:
    return text == "." or text.startswith(".\n") or text.endswith("\n.") or "\n.\n" in text


def _per_value(function: Transform) -> Callable[[str, int], str | None]:
    """Split on the separators (only when no value holds a newline) and transform each value."""

    def op(text: str, separators: int) -> str | None:
        if text.count("\n") != separators:
            return None
        return "\n".join(function(v) for v in text.split("\n"))

    return op


def batch_op(name: str) -> BatchOp:
    """The batch form of transformation `name` (lowercased, known to `lookup`)."""
    function = TRANSFORMS[name]
    per_value = _per_value(function)
    if name in SEPARATOR_SAFE:
        return lambda text, separators: function(text)
    triggers = _TRIGGERS.get(name)
    if triggers is not None:

        def unless(text: str, separators: int) -> str | None:
            for trigger in triggers:
                if trigger in text:
                    return per_value(text, separators)
            return text

        return unless
    if name in ("normalisepath", "normalizepath", "normalisepathwin", "normalizepathwin"):
        windows = name.endswith("win")

        def path(text: str, separators: int) -> str | None:
            # Without a slash, only a value that is exactly "." changes (it becomes "").
            if "/" in text or (windows and "\\" in text) or _has_dot_line(text):
                return per_value(text, separators)
            return text

        return path
    if name in ("base64decode", "base64decodeext"):
        return _base64_each
    variant = _LINE_VARIANTS.get(name)
    if variant is not None:

        def line_variant(text: str, separators: int) -> str | None:
            return variant(text) if text.count("\n") == separators else None

        return line_variant
    return per_value
