"""The Jinja2 environment templates run in: sandboxed, strict, and bounded.

Templates are written by a project's operators and rendered once per contact
on the sending machine, so a template must not reach Python internals (Jinja2's
`SandboxedEnvironment` refuses `__class__`, `_private` and unsafe callables)
and must not make a render unbounded. Bounds, on top of the sandbox:

- every loop iteration and every call made by the template (macros, recursive
  loops, methods) is a step; a render has `MAX_RENDER_STEPS` (loops are made
  to count by rewriting each `{% for %}` of the parsed template, `bound_loops`);
- `range` yields at most `MAX_RANGE_ITEMS`;
- `*` (repetition) and `**` (power) are refused past `MAX_REPEATED_CHARS` and
  `MAX_EXPONENT`; a %-format or format filter with a width of more than four
  digits is refused; the padding and format methods of strings (`ljust`,
  `center`, `zfill`, `format`, ...) are not available; filters that pad
  (`center`, `indent`, `batch`, `slice`) take a width up to `MAX_WIDTH`;
- the caller caps the output as it is produced (`render.py`).

A refusal is Jinja2's `SecurityError`. An undefined name raises
`UndefinedVariable` (the variable's full name, `contact.city`) instead of
Jinja2's message about an object's attributes; `default(...)` and
`is defined` still work, as with `StrictUndefined`.
No I/O; pure functions of the template and its values.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Undefined, UndefinedError, nodes
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_RENDER_STEPS = 100_000
MAX_RANGE_ITEMS = 10_000
MAX_REPEATED_CHARS = 1_000_000
MAX_EXPONENT = 1000
MAX_WIDTH = 1000
LOOP_GUARD = "postroom_counted"  # the global each rewritten loop calls

_UNSAFE_STRING_METHODS = frozenset(
    {"ljust", "rjust", "center", "zfill", "expandtabs", "format", "format_map"}
)
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(?:\d{5,}|\*)|\.\d{5,}")
_steps_left: ContextVar[list[int] | None] = ContextVar("postroom_render_steps", default=None)


class UndefinedVariable(Exception):
    """The template uses a variable the contact (or context) does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"undefined variable {name!r} (give it a value, or write "
            f'{{{{ {name} | default("...") }}}})'
        )
        self.name = name


class Fields:
    """Named values as a template sees them: `contact.city` and `contact["city"]`.
    No public attributes, so a variable named `items` or `keys` is the variable,
    not a dict method; `path` names it in UndefinedVariable."""

    __slots__ = ("_path", "_values")

    def __init__(self, path: str, values: dict[str, Any]) -> None:
        self._path = path
        self._values = values

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __str__(self) -> str:
        return self._path


class _Undefined(StrictUndefined):
    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        if self._undefined_exception is not UndefinedError or self._undefined_hint:
            return super()._fail_with_undefined_error(*args, **kwargs)  # the sandbox's refusals
        owner = self._undefined_obj
        name = self._undefined_name or "?"
        if isinstance(owner, Fields):
            name = f"{owner._path}.{name}"
        raise UndefinedVariable(name)


# Undefined binds its operators (`+`, `str()`, `==`, iteration, ...) to the base class's
# failing method itself, not by name: point each at the override above.
for _name, _value in [*vars(Undefined).items(), *vars(StrictUndefined).items()]:
    if _value is Undefined._fail_with_undefined_error:
        setattr(_Undefined, _name, _Undefined._fail_with_undefined_error)


class BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=_Undefined,
            keep_trailing_newline=True,
            finalize=_none_as_empty,  # `{{ contact.registered }}` without a date: nothing
        )
        self.globals["range"] = _bounded_range
        self.globals[LOOP_GUARD] = _counted
        for name in ("center", "indent", "batch", "slice", "format"):
            self.filters[name] = _width_checked(FILTERS[name])

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STRING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            _check_repetition(left, right)
            _check_repetition(right, left)
        elif operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"power: exponent above {MAX_EXPONENT}")
        elif isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("format: width or precision above 4 digits")
        return _BINOPS[operator_name](left, right)


def bound_loops(template: nodes.Template) -> nodes.Template:
    """The parsed template with every loop's iterable passed through the step counter."""
    for loop in template.find_all(nodes.For):
        loop.iter = nodes.Call(
            nodes.Name(LOOP_GUARD, "load", lineno=loop.lineno),
            [loop.iter],
            [],
            None,
            None,
            lineno=loop.lineno,
        )
    return template


class StepBudget:
    """`with StepBudget():` around one render: its steps are counted from zero."""

    def __enter__(self) -> StepBudget:
        self._token = _steps_left.set([MAX_RENDER_STEPS])
        return self

    def __exit__(self, *exc: object) -> None:
        _steps_left.reset(self._token)


def _step() -> None:
    left = _steps_left.get()
    if left is None:
        return
    left[0] -= 1
    if left[0] < 0:
        raise SecurityError(f"the template takes more than {MAX_RENDER_STEPS} steps")


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _step()
        yield item


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE_ITEMS:
        raise SecurityError(f"range: more than {MAX_RANGE_ITEMS} items")
    return numbers


def _check_repetition(sequence: Any, times: Any) -> None:
    repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
    if repeats and len(sequence) * times > MAX_REPEATED_CHARS:
        raise SecurityError(f"repetition: more than {MAX_REPEATED_CHARS} items")


def _width_checked(jinja_filter: Callable[..., Any]) -> Callable[..., Any]:
    """A padding filter whose numeric arguments stay below MAX_WIDTH; a format filter
    whose format string has no wide fields."""

    value_index = 1 if hasattr(jinja_filter, "jinja_pass_arg") else 0  # after env/context
    name = jinja_filter.__name__.removeprefix("do_").removeprefix("sync_do_")

    def checked(*args: Any, **kwargs: Any) -> Any:
        for argument in [*args[value_index + 1 :], *kwargs.values()]:
            if type(argument) is int and argument > MAX_WIDTH:  # bool is no width
                raise SecurityError(f"{name}: width above {MAX_WIDTH}")
        value = args[value_index] if len(args) > value_index else None
        if name == "format" and isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise SecurityError("format: width or precision above 4 digits")
        return jinja_filter(*args, **kwargs)

    for attribute in ("jinja_pass_arg", "__name__"):
        if hasattr(jinja_filter, attribute):
            setattr(checked, attribute, getattr(jinja_filter, attribute))
    return checked


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
}
