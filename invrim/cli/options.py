"""Component options on the command line: ``--forward-model-option psf_sigma=[1,2]`` and friends."""
from __future__ import annotations

import inspect
import json
from typing import Any, Optional, Sequence


class OptionError(ValueError):
    """A malformed or unknown ``KEY=VALUE`` option (one line)."""


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, lists, true/false/null), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: Optional[Sequence[str]], flag: str) -> dict[str, Any]:
    """``["a=1", "b=[2,3]", "kind=random"]`` → ``{"a": 1, "b": [2, 3], "kind": "random"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"{flag} expects KEY=VALUE (e.g. {flag} sigma=0.1), got {item!r}")
        out[key] = parse_value(value.strip())
    return out


def accepted_options(factory: Any) -> Optional[list[str]]:
    """The keyword options a component's factory accepts (None when it takes ``**kwargs``)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
            names.append(p.name)
    return names


def check_options(components, name: str, options: dict[str, Any], flag: str) -> None:
    """Fail with one line naming the unknown option and the accepted ones."""
    factory = components.load(name)
    accepted = accepted_options(factory)
    if accepted is None:
        return
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise OptionError(f"{components.label} {name!r} has no option {', '.join(map(repr, unknown))} "
                          f"({flag}); its options: {', '.join(accepted) or '(none)'}")


def describe_options(components, name: str) -> str:
    """``name(option=default, ...)`` and the summary, for ``--help``-like listings."""
    info = components.info(name)
    factory = info.load()
    try:
        params = [p for p in inspect.signature(factory).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        sig = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
    except (TypeError, ValueError):
        sig = "..."
    return f"{components.label} {name}: {info.summary}\n  options: {sig or '(none)'}"
