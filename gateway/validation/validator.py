"""The per-route validator, built once at policy load: what each request is checked against."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from gateway.errors import InvalidUtf8, PolicyError, caused_by
from gateway.policy.model import Route
from gateway.policy.validation import Validation
from gateway.validation.forms import FormChecker, Part
from gateway.validation.jsonlimits import DEFAULT_LIMITS, JsonChecker
from gateway.validation.limits import HeadLimits, MediaType, RequestHead
from gateway.validation.paths import FieldPath, pointer
from gateway.validation.sanitize import Sanitizer, SanitizerError
from gateway.validation.schema import CompiledSchema, SchemaError, load_schema
from gateway.validation.ssrf import SsrfGuard


@dataclass(frozen=True, slots=True)
class BodyOutcome:
    """The bytes to forward and what was learnt reading them (the attack scan reuses it)."""

    body: bytes
    sanitized: int = 0
    document: Any = None
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Validator:
    """Everything one route's validation needs, derived from its policy block."""

    route: str
    mode: str
    max_body: int
    head: HeadLimits
    json: JsonChecker
    forms: FormChecker
    json_explicit: bool = False
    forms_explicit: bool = False
    schemas: dict[str, CompiledSchema] = field(default_factory=dict)
    sanitizer: Sanitizer | None = None
    ssrf: SsrfGuard | None = None

    @classmethod
    def build(cls, route: str, policy: Validation, base_dir: Path) -> Validator:
        """Compile the schemas and cleaners; SchemaError/SanitizerError for a bad block."""
        excluded: dict[str, tuple[FieldPath, ...]] = {}
        for exclusion in policy.exclusions:
            paths = tuple(FieldPath.compile(text) for text in exclusion.fields)
            for check in exclusion.checks:
                excluded[check] = excluded.get(check, ()) + paths
        schemas: dict[str, CompiledSchema] = {}
        if policy.schema_ is not None:
            for target in ("body", "query", "headers"):
                spec = getattr(policy.schema_, target)
                if spec is not None:
                    schemas[target] = CompiledSchema.compile(target, load_schema(spec, base_dir))
        return cls(
            route=route,
            mode=policy.mode,
            max_body=policy.max_body,
            head=HeadLimits.build(policy),
            json=JsonChecker(
                policy.json_limits or DEFAULT_LIMITS,
                exempt_string=excluded.get("max_string", ()),
                exempt_array=excluded.get("max_array", ()),
            ),
            forms=FormChecker(policy.forms) if policy.forms else FormChecker(),
            json_explicit=policy.json_limits is not None,
            forms_explicit=policy.forms is not None,
            schemas=schemas,
            sanitizer=Sanitizer.build(policy.sanitize_html, excluded.get("sanitize", ()))
            if policy.sanitize_html
            else None,
            ssrf=SsrfGuard.build(policy.ssrf, excluded.get("ssrf", ())) if policy.ssrf else None,
        )

    @property
    def shadow(self) -> bool:
        return self.mode == "shadow"

    def check_head(self, head: RequestHead) -> None:
        self.head.check(head)

    def check_query(self, pairs: Iterable[tuple[str, str]]) -> None:
        schema = self.schemas.get("query")
        if schema is not None:
            schema.check(_as_object(pairs, join=None))

    def check_headers(self, pairs: Iterable[tuple[str, str]]) -> None:
        schema = self.schemas.get("headers")
        if schema is not None:
            schema.check(_as_object(((k.lower(), v) for k, v in pairs), join=", "))

    def needs_body(self, media: MediaType | None, declared: int | None) -> bool:
        """Whether a later step must see the body; else it streams through untouched."""
        if declared is None:
            return True  # an undeclared length is only known by counting to the limit
        if media is None:
            return False
        if media.is_json:
            return bool(self.json_explicit or "body" in self.schemas or self.sanitizer or self.ssrf)
        if media.is_urlencoded or media.is_multipart:
            return bool(
                self.forms_explicit
                or (self.sanitizer and self.sanitizer.form_fields)
                or (self.ssrf and self.ssrf.form_fields)
            )
        return False

    def check_body(self, body: bytes, media: MediaType | None) -> BodyOutcome:
        """Decode, bound, check and clean the body; a violation raises its Rejection."""
        if media is None or not body:
            return BodyOutcome(body)
        if media.is_json:
            return self._json(body)
        if media.is_urlencoded:
            return self._urlencoded(body)
        if media.is_multipart:
            return self._multipart(body, media.boundary)
        return BodyOutcome(body)

    def _json(self, body: bytes) -> BodyOutcome:
        document = self.json.parse(body)
        schema = self.schemas.get("body")
        if schema is not None:
            schema.check(document)
        if self.ssrf is not None:
            self.ssrf.check_document(document)
        sanitized = self.sanitizer.clean_document(document) if self.sanitizer else 0
        if sanitized and not self.shadow:
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return BodyOutcome(body, sanitized, document)

    def _urlencoded(self, body: bytes) -> BodyOutcome:
        pairs = self.forms.urlencoded(body)
        self._check_urls(pairs)
        sanitized = 0
        if self.sanitizer is not None:
            indexed = dict(enumerate(pairs))
            sanitized = self.sanitizer.clean_fields(indexed)
            if sanitized:
                pairs = [indexed[i] for i in range(len(pairs))]
                if not self.shadow:
                    body = urlencode(pairs).encode()
        return BodyOutcome(body, sanitized, fields=tuple(pairs))

    def _multipart(self, body: bytes, boundary: str | None) -> BodyOutcome:
        parts = self.forms.multipart(body, boundary)
        texts = {
            i: (part.name, _text(body, part)) for i, part in enumerate(parts) if not part.is_file
        }
        self._check_urls(texts.values())
        sanitized = self.sanitizer.clean_fields(texts) if self.sanitizer else 0
        fields = tuple(texts[i] for i in sorted(texts))
        if sanitized and not self.shadow:
            body = _splice(body, parts, texts)
        return BodyOutcome(body, sanitized, fields=fields)

    def _check_urls(self, pairs: Iterable[tuple[str, str]]) -> None:
        if self.ssrf is None:
            return
        names = self.ssrf.form_fields
        for name, value in pairs:
            if name in names:
                self.ssrf.check_value(value, (name,))


def _text(body: bytes, part: Part) -> str:
    try:
        return body[part.start : part.end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise caused_by(
            InvalidUtf8(
                f"field {part.name[:64]!r} is not UTF-8",
                extensions={
                    "check": "utf8",
                    "pointer": pointer((part.name,)),
                    "offset": exc.start,
                    "expected": "UTF-8 text",
                },
            ),
            None,
        )


def _splice(body: bytes, parts: list[Part], texts: dict[int, tuple[str, str]]) -> bytes:
    """The multipart body with the text parts' contents replaced, boundaries untouched."""
    pieces: list[bytes] = []
    cursor = 0
    for index, part in enumerate(parts):
        if index in texts:
            pieces.append(body[cursor : part.start])
            pieces.append(texts[index][1].encode("utf-8"))
            cursor = part.end
    pieces.append(body[cursor:])
    return b"".join(pieces)


def _as_object(pairs: Iterable[tuple[str, str]], join: str | None) -> dict[str, Any]:
    """Single values as strings; repeated ones as a list (query) or joined (headers)."""
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name not in result:
            result[name] = value
        elif join is not None:
            result[name] = f"{result[name]}{join}{value}"
        elif isinstance(result[name], list):
            result[name].append(value)
        else:
            result[name] = [result[name], value]
    return result


def compile_validator(route: Route, index: int, source: str) -> Validator | None:
    """The route's validator, or None when it validates nothing; PolicyError for a bad block."""
    policy = route.validation
    if policy is None or policy.mode == "off":
        return None
    base_dir = Path(source).parent if not source.startswith("<") else Path.cwd()
    try:
        return Validator.build(route.name, policy, base_dir)
    except (SchemaError, SanitizerError) as exc:
        raise caused_by(PolicyError([f"{source}: routes[{index}].validation: {exc}"]), exc)
