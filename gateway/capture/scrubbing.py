"""Secret scrubbing, compiled once: denylisted names (Sentry's list and ours) and value patterns.

A name is denied when, lowercased with `-` read as `_`, it contains a denylisted word: this
scrubs more than Sentry's exact match (`author` contains `auth`), which errs on the safe side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

FILTERED = "[Filtered]"

SENTRY_DENYLIST = (
    # sentry_sdk.scrubber.DEFAULT_DENYLIST (sentry-sdk 2.x), copied so the list is visible here.
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd",
    "privatekey", "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken",
    "x_forwarded_for", "set_cookie", "cookie", "authorization", "proxy-authorization",
    "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session", "_xsrf", "XSRF-TOKEN",
)  # fmt: skip
DEFAULT_HEADERS = ("authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return FILTERED if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A secret's shape; `trigger` is a cheap test (on the text and its lowercase) that lets
    text without any sign of it skip the regex."""

    regex: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]
    trigger: Callable[[str, str], bool] = lambda text, folded: True


_FOUR_DIGITS = re.compile(r"\d{4}")
_LONG_RUN = re.compile(r"[A-Za-z0-9]{40}")
_KEY_PREFIXES = ("sk_", "pk_", "rk_", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "aiza")

PATTERNS: dict[str, Pattern] = {
    "credit_card": Pattern(
        re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d.])"),
        _card,  # the Luhn check decides
        lambda text, folded: _FOUR_DIGITS.search(text) is not None,
    ),
    "bearer_token": Pattern(
        re.compile(r"(?i)\b(bearer|basic|token)(\s+|%20|\+)[A-Za-z0-9\-._~+/]+=*"),
        r"\1\2" + FILTERED,
        lambda text, folded: "bearer" in folded or "basic" in folded or "token" in folded,
    ),
    "jwt": Pattern(
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        FILTERED,
        lambda text, folded: "eyJ" in text,
    ),
    "api_key": Pattern(
        re.compile(
            r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"
            r"|\bAKIA[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
            r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
            r"|\bAIza[0-9A-Za-z_-]{35}"
            # Long mixed letter-and-digit runs; 40+ so that 32-hex request ids survive.
            r"|\b(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{40,}\b"
        ),
        FILTERED,
        lambda text, folded: (
            any(prefix in folded for prefix in _KEY_PREFIXES) or _LONG_RUN.search(text) is not None
        ),
    ),
    "email": Pattern(
        re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), FILTERED, lambda text, folded: "@" in text
    ),
}


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
# What follows a denied key in `key = value`, `key: value` or `"key": "value"` (JSON, forms,
# log-style text). Quoted values are written unrolled: Python's re is slow on per-character
# alternation.
_AFTER_KEY = re.compile(
    r"""(?P<q>["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<val>"[^"\\]*(?:\\.[^"\\]*)*"?|'[^']*'?|[^&\s,;}\]"']+)"""
)


def _fold(text: str) -> str:
    """Lowercase with - as _, keeping every character's position."""
    folded = text.lower()
    if len(folded) != len(text):  # a few Unicode letters grow when lowered
        folded = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return folded.replace("-", "_")


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_")


class Scrubber:
    """Replaces secrets in header values, query strings and free text (bodies, messages)."""

    def __init__(
        self,
        *,
        headers: Iterable[str] = (),
        fields: Iterable[str] = (),
        patterns: Iterable[str] = ("credit_card", "bearer_token", "jwt", "api_key"),
        custom_patterns: Iterable[str] = (),
    ) -> None:
        self._headers = frozenset(_normalise(h) for h in (*DEFAULT_HEADERS, *headers))
        words = sorted({_normalise(w) for w in (*SENTRY_DENYLIST, *fields)}, key=len)
        self._words = tuple(words)
        self._word = re.compile("|".join(re.escape(w) for w in reversed(words)))
        self._patterns = [PATTERNS[name] for name in dict.fromkeys(patterns)]
        self._patterns += [Pattern(re.compile(p), FILTERED) for p in custom_patterns]

    def denied(self, name: str) -> bool:
        normal = _normalise(name)
        return normal in self._headers or self._word.search(normal) is not None

    def header(self, name: str, value: str) -> str:
        return FILTERED if self.denied(name) else self.text(value)

    def query(self, query: str) -> str:
        """A query string with denied parameters' values replaced and patterns scrubbed."""
        if not query:
            return query
        parts = []
        for pair in query.split("&"):
            key, sep, value = pair.partition("=")
            key = unquote_plus(key)
            if sep and self.denied(key):
                parts.append(f"{key}={FILTERED}")
            else:
                parts.append(self.text(f"{key}{sep}{unquote_plus(value)}"))
        return "&".join(parts)

    def text(self, value: str) -> str:
        """Free text: every pattern, then denied `key=value` pairs.

        Patterns go first so that `Authorization: Bearer x` loses the token, not just the word.
        """
        folded = _fold(value)
        for pattern in self._patterns:
            if pattern.trigger(value, folded):
                value = pattern.regex.sub(pattern.replacement, value)
        return self._fields(value)

    def _fields(self, text: str) -> str:
        parts: list[str] = []
        position = 0
        for hit in self._word_hits(text):
            if hit < position:
                continue  # inside a value already masked
            end = hit
            while end < len(text) and text[end] in _NAME_CHARS:
                end += 1
            after = _AFTER_KEY.match(text, end)
            if after is None:
                continue
            value = after["val"]
            masked = f'"{FILTERED}"' if value.startswith('"') else FILTERED
            if value.startswith("'"):
                masked = f"'{FILTERED}'"
            parts.append(text[position : after.start("val")])
            parts.append(masked)
            position = after.end("val")
        parts.append(text[position:])
        return "".join(parts)

    def _word_hits(self, text: str) -> list[int]:
        """Where denylisted words occur, in order. One str.find pass per word beats one regex
        alternation of them all by far (Python's re tries each alternative at each position)."""
        folded = _fold(text)
        hits = []
        for word in self._words:
            found = folded.find(word)
            while found != -1:
                hits.append(found)
                found = folded.find(word, found + 1)
        return sorted(hits)
