"""Component options on the command line: ``--forward-model-option psf_sigma=[1,2]`` and friends."""
from __future__ import annotations

import collections.abc
import inspect
import json
import numbers
import types
import typing
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence


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


# ---------------------------------------------------------------------------------------------
# which option a component rejected: its factory's annotations against the values given
# ---------------------------------------------------------------------------------------------

_UNKNOWN = object()          # an annotation this module cannot check: never blamed


def _annotations(factory: Any) -> dict[str, Any]:
    """The factory's parameter annotations, resolved (``{}`` when they cannot be)."""
    try:
        sig = inspect.signature(factory, eval_str=True)
    except Exception:                         # unresolvable string annotations, builtins, ...
        return {}
    return {p.name: p.annotation for p in sig.parameters.values() if p.annotation is not p.empty}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fits(value: Any, annotation: Any) -> Any:
    """True / False whether a JSON-parsed ``value`` fits ``annotation``; ``_UNKNOWN`` if it cannot tell."""
    if annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        verdicts = [_fits(value, a) for a in args]
        return True if True in verdicts else (_UNKNOWN if _UNKNOWN in verdicts else False)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return _is_number(value)
    if annotation is str:
        return isinstance(value, str)
    container = origin or annotation
    if isinstance(container, type) and issubclass(container, (dict, collections.abc.Mapping)):
        return isinstance(value, dict)
    if isinstance(container, type) and container is not str and issubclass(container, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        items = [a for a in args if a is not Ellipsis]
        if not items:
            return True
        verdicts = [_fits(v, items[0] if len(items) == 1 else a) for v, a in
                    zip(value, items if len(items) > 1 and Ellipsis not in args else [items[0]] * len(value))]
        return False if False in verdicts else (_UNKNOWN if _UNKNOWN in verdicts else True)
    return _UNKNOWN                            # a tensor, an enum, a class of the plugin's own ...


def _describe(annotation: Any) -> str:
    """``Union[float, Sequence[float], None]`` → ``"a number or a list of numbers"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in names:
        return names[annotation]
    container = origin or annotation
    if isinstance(container, type) and issubclass(container, (dict, collections.abc.Mapping)):
        return "a JSON object"
    if isinstance(container, type) and issubclass(container, collections.abc.Sequence):
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1:
            plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
            return f"a list of {plural.get(items[0], _describe(items[0]))}"
        return "a list"
    return getattr(annotation, "__name__", str(annotation))


def _given(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return json.dumps(value) if isinstance(value, (list, dict, bool, int, float)) or value is None else repr(value)


def named_option_error(components, name: str, options: dict[str, Any], flag: str) -> Optional[str]:
    """One line naming the option whose value does not fit the factory's annotation, with the
    expected type; ``None`` when no single option can be blamed."""
    hints = _annotations(components.load(name))
    wrong = [k for k, v in options.items() if k in hints and _fits(v, hints[k]) is False]
    if len(wrong) != 1:
        return None
    key = wrong[0]
    return (f"{components.label} {name!r}: {key} must be {_describe(hints[key])}, got {_given(options[key])} "
            f"({flag} {key}=...)")


@contextmanager
def option_errors(components, name: Optional[str], options: dict[str, Any], flag: str) -> Iterator[None]:
    """Turn a component's refusal of its options (a ``ValueError`` / ``TypeError`` raised when
    it is built, e.g. ``could not convert string to float: 'wide'``) into one line naming the
    option and the type its factory expects. Errors that are not the building of that component,
    or that no single option explains, pass through unchanged."""
    try:
        yield
    except (ValueError, TypeError) as e:
        from ..plugins.errors import ComponentBuildError
        if components is None or not options or not isinstance(e, ComponentBuildError) \
                or f"{components.label} {name!r}" not in str(e):
            raise
        try:
            message = named_option_error(components, name, options, flag)
        except Exception:                     # never hide the original error behind our own
            message = None
        if message is None:
            raise
        raise OptionError(message) from e
