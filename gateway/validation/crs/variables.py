"""SecLang variables: collections and scalars resolved against one transaction's state."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.validation.crs.parser import VariableSpec
from gateway.validation.crs.request import Pairs, RequestData


@dataclass(slots=True)
class TxState:
    """Per-request mutable state: TX variables and what the last rule matched."""

    data: RequestData
    tx: dict[str, str]
    unique_id: str = ""
    matched_var: str = ""
    matched_var_name: str = ""
    matched_vars: Pairs = field(default_factory=list)
    labeled: dict[str, Pairs] = field(default_factory=dict)
    """Static collections as (NAME:key, value), built on first use in this request."""

    def collection(self, name: str) -> Pairs:
        pairs = self.labeled.get(name)
        if pairs is None:
            if name == "MATCHED_VARS":
                # Already (ARGS:q, value): a rule over MATCHED_VARS reports the original name.
                return self.matched_vars
            pairs = [(f"{name}:{k}", v) for k, v in COLLECTIONS[name](self)]
            if name not in DYNAMIC:
                self.labeled[name] = pairs
        return pairs


def _names(pairs: Pairs) -> Pairs:
    return [(k, k) for k, _ in pairs]


def _args(s: TxState) -> Pairs:
    return s.data.args_get + s.data.args_post


def _combined_size(s: TxState) -> str:
    return str(sum(len(k) + len(v) for k, v in _args(s)))


COLLECTIONS: Final[dict[str, Callable[[TxState], Pairs]]] = {
    "ARGS": _args,
    "ARGS_GET": lambda s: s.data.args_get,
    "ARGS_POST": lambda s: s.data.args_post,
    "ARGS_NAMES": lambda s: _names(_args(s)),
    "ARGS_GET_NAMES": lambda s: _names(s.data.args_get),
    "ARGS_POST_NAMES": lambda s: _names(s.data.args_post),
    "REQUEST_HEADERS": lambda s: s.data.headers,
    "REQUEST_HEADERS_NAMES": lambda s: _names(s.data.headers),
    "REQUEST_COOKIES": lambda s: s.data.cookies,
    "REQUEST_COOKIES_NAMES": lambda s: _names(s.data.cookies),
    "FILES": lambda s: s.data.files,
    "FILES_NAMES": lambda s: _names(s.data.files),
    "FILES_SIZES": lambda s: s.data.file_sizes,
    "MULTIPART_PART_HEADERS": lambda s: s.data.part_headers,
    "TX": lambda s: list(s.tx.items()),
    "MATCHED_VARS": lambda s: s.matched_vars,
    "MATCHED_VARS_NAMES": lambda s: [(n, n) for n, _ in s.matched_vars],
    # The XML body processor is not implemented: XML targets see nothing (reported at load).
    "XML": lambda s: [],
}

SCALARS: Final[dict[str, Callable[[TxState], str]]] = {
    "REQUEST_URI": lambda s: s.data.uri,
    "REQUEST_URI_RAW": lambda s: s.data.uri_raw,
    "REQUEST_FILENAME": lambda s: s.data.filename,
    "REQUEST_BASENAME": lambda s: s.data.basename,
    "REQUEST_LINE": lambda s: s.data.request_line,
    "REQUEST_METHOD": lambda s: s.data.method,
    "REQUEST_PROTOCOL": lambda s: s.data.protocol,
    "QUERY_STRING": lambda s: s.data.query,
    "REQUEST_BODY": lambda s: s.data.body,
    "REQUEST_BODY_LENGTH": lambda s: str(len(s.data.body)),
    "ARGS_COMBINED_SIZE": _combined_size,
    "FILES_COMBINED_SIZE": lambda s: str(sum(int(v) for _, v in s.data.file_sizes)),
    "REMOTE_ADDR": lambda s: s.data.remote_addr,
    "UNIQUE_ID": lambda s: s.unique_id,
    "REQBODY_PROCESSOR": lambda s: s.data.body_processor,
    "REQBODY_ERROR": lambda s: "1" if s.data.body_error else "0",
    "REQBODY_PROCESSOR_ERROR": lambda s: "1" if s.data.body_error else "0",
    "MULTIPART_STRICT_ERROR": lambda s: (
        "1" if s.data.body_error and s.data.body_processor == "MULTIPART" else "0"
    ),
    "MULTIPART_UNMATCHED_BOUNDARY": lambda s: "0",
    "MATCHED_VAR": lambda s: s.matched_var,
    "MATCHED_VAR_NAME": lambda s: s.matched_var_name,
}

DYNAMIC: Final = frozenset({"TX", "MATCHED_VARS", "MATCHED_VARS_NAMES"})
"""Collections that change while the rules run, so they are never cached."""

KeyTest = Callable[[str], bool]


def key_test(selector: str, is_regex: bool) -> KeyTest:
    """Collection keys compare case-insensitively, as in ModSecurity; /re/ selectors search."""
    if is_regex:
        search = re.compile(selector, re.I).search
        return lambda key: search(key) is not None
    lowered = selector.lower()
    return lambda key: key.lower() == lowered


@dataclass(frozen=True, slots=True)
class Target:
    """A compiled positive target; `fetch` returns (MATCHED_VAR_NAME, value) pairs."""

    collection: str
    fetch: Callable[[TxState], Pairs]


def supported(spec: VariableSpec) -> bool:
    return spec.name in COLLECTIONS or spec.name in SCALARS


def compile_target(spec: VariableSpec, exclusions: list[tuple[str, KeyTest]]) -> Target:
    """One positive variable with the rule's `!COLL:key` exclusions for the same collection."""
    name = spec.name
    excluded = [test for collection, test in exclusions if collection == name]
    if name in SCALARS:
        scalar = SCALARS[name]
        if spec.count:
            return Target(name, lambda s: [(f"&{name}", "1")])
        return Target(name, lambda s: [(name, scalar(s))])
    selected = key_test(spec.selector, spec.selector_is_regex) if spec.selector else None
    if name == "TX" and spec.selector and not spec.selector_is_regex:
        # TX is looked up by name on nearly every rule; a dict get beats a scan.
        tx_key = spec.selector.lower()
        tx_label = f"TX:{tx_key}"

        def fetch_tx(s: TxState) -> Pairs:
            value = s.tx.get(tx_key)
            return [] if value is None else [(tx_label, value)]

        fetch = fetch_tx
    elif name == "REQUEST_HEADERS" and spec.selector and not spec.selector_is_regex:
        header = spec.selector.lower()
        label = f"REQUEST_HEADERS:{spec.selector}"

        def fetch_header(s: TxState) -> Pairs:
            return [(label, v) for v in s.data.header_index.get(header, ())]

        fetch = fetch_header
    elif selected is None and not excluded:

        def fetch_all(s: TxState) -> Pairs:
            return s.collection(name)

        fetch = fetch_all
    else:
        skip = len(name) + 1

        def fetch_collection(s: TxState) -> Pairs:
            return [
                (label, v)
                for label, v in s.collection(name)
                if (selected is None or selected(label[skip:]))
                and not any(t(label[skip:]) for t in excluded)
            ]

        fetch = fetch_collection
    if spec.count:
        inner = fetch
        return Target(name, lambda s: [(f"&{name}", str(len(inner(s))))])
    return Target(name, fetch)
