"""The `validation:` block of a route: limits, allow-lists, JSON Schema, sanitization, SSRF."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.policy.attacks import Attacks
from gateway.policy.types import Bytes, HttpMethod, Model

ValidationMode = Literal["enforce", "shadow", "off"]
"""enforce: reject; shadow: log and count what would be rejected, change nothing; off."""

ExcludableCheck = Literal["max_string", "max_array", "sanitize", "ssrf"]
"""Field-level checks an exclusion may switch off for the fields it names."""

DEFAULT_MAX_BODY = 1024 * 1024
"""The body limit of a route that sets none (and what its attack scan reads at most)."""

_JSON_PATH = re.compile(r"^\$((\.[A-Za-z0-9_-]+)|(\[\*\])|(\[\d+\]))+$")
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)$")


def _json_paths(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not _JSON_PATH.match(value):
            raise ValueError(
                f"invalid field path {value!r} (use $.comment, $.profile.bio or $.items[*].note)"
            )
    return values


def _default_attrs() -> dict[str, tuple[str, ...]]:
    return {"a": ("href",)}


class HeaderLimits(Model):
    """How many request header lines, and how many bytes of them, a route accepts (431)."""

    count: int = Field(default=100, ge=1)
    size: Bytes = 16 * 1024


class JsonLimits(Model):
    """Bounds on the shape of a JSON body, checked before any schema runs (400)."""

    max_depth: int = Field(default=32, ge=1, le=1000)
    max_keys: int = Field(default=1000, ge=1, description="Object members in the whole document.")
    max_array: int = Field(default=10000, ge=1, description="Items in any one array.")
    max_string: Bytes = Field(default=64 * 1024, description="Characters in any one string.")
    duplicate_keys: Literal["reject", "last_wins"] = Field(
        default="reject",
        description="reject: 400 when an object repeats a key; last_wins: keep the last one.",
    )


class Schemas(Model):
    """JSON Schemas (draft 2020-12 subset, see README), inline or a file beside the policy."""

    body: str | dict[str, Any] | None = None
    query: str | dict[str, Any] | None = None
    headers: str | dict[str, Any] | None = None


class SanitizeHtml(Model):
    """Fields whose HTML is cleaned with nh3 (an allow-list sanitizer) before forwarding."""

    fields: tuple[str, ...] = Field(min_length=1)
    allow_tags: tuple[str, ...] = ("b", "i", "em", "strong", "a", "p", "br", "ul", "ol", "li")
    allow_attrs: dict[str, tuple[str, ...]] = Field(default_factory=_default_attrs)

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _json_paths(value)


class Forms(Model):
    """Limits on urlencoded and multipart bodies."""

    max_fields: int = Field(default=1000, ge=1)
    max_field_size: Bytes = 64 * 1024
    max_files: int = Field(default=10, ge=0)
    max_file_size: Bytes = 10 * 1024 * 1024
    fields: tuple[str, ...] | None = Field(
        default=None, description="When set, the only field names accepted."
    )


class Ssrf(Model):
    """Fields holding URLs the upstream will fetch; private and metadata targets are refused."""

    fields: tuple[str, ...] = Field(min_length=1)
    schemes: tuple[str, ...] = ("http", "https")
    allow_hosts: tuple[str, ...] = Field(
        default=(), description="Host names accepted even though they look internal."
    )

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _json_paths(value)


class Exclusion(Model):
    """Switch some field-level checks off for the named fields (a known false positive)."""

    fields: tuple[str, ...] = Field(min_length=1)
    checks: tuple[ExcludableCheck, ...] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _json_paths(value)


class Validation(Model):
    """What a route accepts; each check is on only when its key is given (max_body excepted)."""

    mode: ValidationMode = "enforce"
    max_body: Bytes = DEFAULT_MAX_BODY
    max_headers: HeaderLimits | None = None
    max_url: Bytes | None = None
    max_query_params: int | None = Field(default=None, ge=0)
    methods: tuple[HttpMethod, ...] | None = None
    content_types: tuple[str, ...] | None = None
    # `json` would shadow BaseModel.json; the policy still spells it `json`.
    json_limits: JsonLimits | None = Field(default=None, alias="json")
    schema_: Schemas | None = Field(default=None, alias="schema")
    sanitize_html: SanitizeHtml | None = None
    forms: Forms | None = None
    ssrf: Ssrf | None = None
    exclusions: tuple[Exclusion, ...] = ()
    attacks: Attacks | None = Field(
        default=None, description="Attack detection with the OWASP Core Rule Set."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false; `mode: off` should still mean off.
        return "off" if value is False else value

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        lower = tuple(v.strip().lower() for v in value)
        for media in lower:
            if not _MEDIA_TYPE.match(media):
                raise ValueError(f"invalid media type {media!r} (use application/json or text/*)")
        return lower
