"""A rule's non-disruptive actions compiled: setvar into SetVar, ctl into what runs per request;
every other action either describes the rule or is noted as unsupported."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.validation.crs.compiled import SetVar
from gateway.validation.crs.parser import ActionSpec, Location

# Actions that only describe a rule or steer logging: accepted, no effect on the verdict.
METADATA_ACTIONS = frozenset(
    {
        "id",
        "phase",
        "msg",
        "tag",
        "severity",
        "ver",
        "rev",
        "logdata",
        "maturity",
        "accuracy",
        "log",
        "nolog",
        "auditlog",
        "noauditlog",
        "status",
        "capture",
        "chain",
        "t",
        "setvar",
        "ctl",
        "skipAfter",
        "skip",
        "pass",
        "block",
        "deny",
        "drop",
        "multiMatch",
        "sanitiseMatched",
        "sanitizeMatched",
    }
)

# Persistent collections and logging side effects this engine does not keep: reported once.
NO_OP_ACTIONS = frozenset({"initcol", "setsid", "setuid", "expirevar", "deprecatevar", "exec"})

NO_OP_CTLS = frozenset(
    {
        "forceRequestBodyVariable",
        "auditEngine",
        "auditLogParts",
        "requestBodyAccess",
        "requestBodyProcessor",
        "requestBodyLimit",
        "debugLogLevel",
        "hashEngine",
    }
)

RUNTIME_CTLS = (
    "ruleRemoveById",
    "ruleRemoveByTag",
    "ruleRemoveTargetById",
    "ruleRemoveTargetByTag",
    "ruleEngine",
)

"""The ctls the evaluation applies (Evaluation.apply_ctl)."""

Note = Callable[[str, Location], None]


def compile_actions(
    actions: Sequence[ActionSpec], location: Location, note: Note
) -> tuple[list[SetVar], list[tuple[str, str]]]:
    """The rule's setvars and ctls; each action without effect here is noted."""
    setvars: list[SetVar] = []
    ctls: list[tuple[str, str]] = []
    for action in actions:
        if action.name == "setvar":
            setvar = compile_setvar(action.value or "")
            if setvar is None:
                note(f"unsupported setvar target {action.value!r} (only tx.*)", location)
            else:
                setvars.append(setvar)
        elif action.name == "ctl":
            kind, _, argument = (action.value or "").partition("=")
            if kind in NO_OP_CTLS:
                note(f"ctl:{kind} accepted with no effect", location)
            elif kind in RUNTIME_CTLS:
                ctls.append((kind, argument))
            else:
                note(f"unsupported ctl:{kind}", location)
        elif action.name in NO_OP_ACTIONS:
            note(f"action {action.name} accepted with no effect", location)
        elif action.name not in METADATA_ACTIONS:
            note(f"unsupported action {action.name}", location)
    return setvars, ctls


def compile_setvar(text: str) -> SetVar | None:
    """`tx.name=value`, `tx.name=+5`, `!tx.name`; None for any other collection."""
    text = text.strip()
    delete = text.startswith("!")
    if delete:
        text = text[1:]
    target, equals, value = text.partition("=")
    collection, dot, name = target.partition(".")
    if collection.lower() != "tx" or not dot:
        return None
    if delete:
        return SetVar(name, "!", "")
    if not equals:
        return SetVar(name, "=", "1")
    if (
        value[:1] in ("+", "-")
        and value[1:2] != ""
        and (value[1:].strip().isdigit() or value[1:].startswith("%{"))
    ):
        return SetVar(name, value[0], value[1:])
    return SetVar(name, "=", value)
