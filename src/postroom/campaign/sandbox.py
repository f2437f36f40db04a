"""The Jinja2 environment templates run in: sandboxed, strict, and bounded.

Templates are written by a project's operators and rendered once per contact
on the sending machine, so a template must not reach Python internals (Jinja2's
`SandboxedEnvironment` refuses `__class__`, `_private` and unsafe callables)
and must not make a render unbounded in time or memory. Bounds, on top of the
sandbox, for one render (`with RenderBudget():`):

- time: every loop iteration and every call made by the template (macros,
  recursive loops, methods, `~`) is a step; a render has `MAX_RENDER_STEPS`
  (loops are made to count by rewriting each `{% for %}` of the parsed
  template, `bound_template`) and `MAX_RENDER_SECONDS` of wall clock, checked
  at every step and after every filter, method, operator and captured block;
- size: a value a template builds (a string, or a list, tuple, dict, set or
  namespace counted as its items plus the characters of its strings, nested)
  holds at most `MAX_VALUE_CHARS`: every argument of a call, filter or operator
  and every result is measured (`value_size`, whose work stops past the bound);
  all the values a render builds add up to at most `MAX_BUILT_CHARS`; an integer
  has at most `MAX_INT_BITS`;
- operations whose result is a product of their inputs are checked before
  they run: `*` (repetition, up to `MAX_REPEATED_CHARS`; integers), `**` (the
  exponent up to `MAX_EXPONENT`, and the result's bits), `%` and `format`
  (`%` fields times the values; a width or precision of more than four digits),
  `replace` and `join` (filter or method), `indent`; filters that pad (`center`,
  `indent`, `batch`, `slice`) take a width up to `MAX_WIDTH`; `sum` adds numbers;
- what cannot be bounded cheaply or has no use in a mail is absent: the
  filters `wordwrap` (quadratic on a long word), `pprint`, `tojson`, `urlize`
  (it would turn a contact's text into links), the global `lipsum`, and every
  string method outside `_STRING_METHODS` (padding, `format`, `translate`...);
- the caller caps the output as it is produced (`render.py`).

A refusal is Jinja2's `SecurityError` (one line). An undefined name raises
`UndefinedVariable` (the variable's full name, `contact.city`) instead of
Jinja2's message about an object's attributes; `default(...)` and
`is defined` still work, as with `StrictUndefined`.
No I/O; pure functions of the template and its values.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Undefined, UndefinedError, nodes, pass_eval_context
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_RENDER_STEPS = 100_000
MAX_RENDER_SECONDS = 2.0
MAX_RANGE_ITEMS = 10_000
MAX_VALUE_CHARS = 2 * 1024 * 1024  # also the output cap of a part (render.py)
MAX_BUILT_CHARS = 16 * MAX_VALUE_CHARS
MAX_REPEATED_CHARS = 1_000_000
MAX_EXPONENT = 1000
MAX_INT_BITS = 10_000  # about 3,000 digits
MAX_WIDTH = 1000
LOOP_GUARD = "postroom_counted"  # the global each rewritten loop calls
CONCAT_GUARD = "postroom_concat"  # the global each rewritten `~` calls

_STRING_METHODS = frozenset(
    {
        *("capitalize", "casefold", "lower", "upper", "swapcase", "title"),
        *("strip", "lstrip", "rstrip", "removeprefix", "removesuffix"),
        *("count", "find", "rfind", "index", "rindex", "startswith", "endswith"),
        *("split", "rsplit", "splitlines", "partition", "rpartition", "join", "replace"),
        *("isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier"),
        *("islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper"),
        *("striptags", "unescape"),  # Markup's
    }
)
_ABSENT_FILTERS = frozenset({"wordwrap", "pprint", "tojson", "urlize"})
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(?:\d{5,}|\*)|\.\d{5,}")
_CONTAINERS = (list, tuple, set, frozenset, type({}.keys()), type({}.values()), type({}.items()))
_STRINGS = frozenset({str, Markup})
_SCALARS = frozenset({int, float, bool, type(None)})


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
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=_Undefined,
            keep_trailing_newline=True,
            finalize=_printable,  # `{{ contact.registered }}` without a date: nothing
        )
        del self.globals["lipsum"]
        self.globals["range"] = _bounded_range
        self.globals[LOOP_GUARD] = _counted
        self.globals[CONCAT_GUARD] = _concatenated
        self.filters = {
            name: _bounded_filter(name, jinja_filter)
            for name, jinja_filter in FILTERS.items()
            if name not in _ABSENT_FILTERS
        }

    # Blocks whose output a template captures (macros, `{% set %}...{% endset %}`,
    # `{% filter %}`, `caller()`) are joined by this; the top level is capped by the caller.
    @staticmethod
    def concat(pieces: Iterable[str]) -> str:
        pieces = list(pieces)
        if sum(map(len, pieces)) > MAX_VALUE_CHARS:
            raise SecurityError(f"a block or macro builds more than {MAX_VALUE_CHARS} characters")
        return _built("".join(pieces))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr not in _STRING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        _check_size("call", (args, kwargs))
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and __obj.__name__ in ("replace", "join"):
            args = _checked_string_method(owner, __obj.__name__, args, kwargs)
        return _built(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        _check_size(operator_name, (left, right))
        if operator_name == "*":
            _check_repetition(left, right)
            _check_repetition(right, left)
            if isinstance(left, int) and isinstance(right, int):
                _check_bits("*", left.bit_length() + right.bit_length())
        elif operator_name == "**":
            _check_power(left, right)
        elif operator_name == "%" and isinstance(left, str):
            _check_format(left, right)
        return _built(_BINOPS[operator_name](left, right))


class _Bounds(NodeTransformer):
    def visit_For(self, loop: nodes.For) -> nodes.For:
        self.generic_visit(loop)
        loop.iter = _guard_call(LOOP_GUARD, [loop.iter], loop.lineno)
        return loop

    def visit_Concat(self, concat: nodes.Concat) -> nodes.Call:
        self.generic_visit(concat)
        return _guard_call(CONCAT_GUARD, concat.nodes, concat.lineno)


def bound_template(template: nodes.Template) -> nodes.Template:
    """The parsed template (changed in place) with every loop's iterable passed through
    the step counter and every `~` made a call, whose operands the sandbox measures."""
    _Bounds().visit(template)
    return template


def _guard_call(name: str, arguments: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(
        nodes.Name(name, "load", lineno=lineno), arguments, [], None, None, lineno=lineno
    )


class _Budget:
    __slots__ = ("built", "deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_RENDER_STEPS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.built = 0


_budget: ContextVar[_Budget | None] = ContextVar("postroom_render_budget", default=None)


class RenderBudget:
    """`with RenderBudget():` around one render: its steps, time and built values are
    counted from zero."""

    def __enter__(self) -> RenderBudget:
        self._token = _budget.set(_Budget())
        return self

    def __exit__(self, *exc: object) -> None:
        _budget.reset(self._token)


def value_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """The characters of `value`'s strings plus its items, nested (lists, tuples,
    sets, dicts and their views, namespaces; a cycle counts again), counted until the
    total passes `limit`: the work is linear in `limit` whatever the value."""
    if type(value) is str:
        return len(value)
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Namespace):
            pending.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, dict):
            total += len(item)
            pending += (item.keys(), item.values())
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            if total > limit:  # a container too large is not walked
                break
            kinds = set(map(type, item))  # whole lists at C speed, the common case
            if kinds <= _STRINGS:
                total += sum(map(len, item))
            elif not kinds <= _SCALARS:
                pending.extend(item)
    return total


def _check_size(what: str, value: Any) -> None:
    if value_size(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"{what}: a value of more than {MAX_VALUE_CHARS} characters or items")


def _built(result: Any) -> Any:
    """`result` of an operation, measured: refused when too large, counted in the
    render's budget (the time too)."""
    size = value_size(result)
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"a value of more than {MAX_VALUE_CHARS} characters or items")
    if type(result) is int:
        _check_bits("result", result.bit_length())
    budget = _budget.get()
    if budget is not None:
        budget.built += size
        if budget.built > MAX_BUILT_CHARS:
            raise SecurityError(f"the template builds more than {MAX_BUILT_CHARS} characters")
        _check_deadline(budget)
    return result


def _step() -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.steps -= 1
    if budget.steps < 0:
        raise SecurityError(f"the template takes more than {MAX_RENDER_STEPS} steps")
    _check_deadline(budget)


def _check_deadline(budget: _Budget) -> None:
    if time.monotonic() > budget.deadline:
        raise SecurityError(f"the template takes more than {MAX_RENDER_SECONDS:g} s")


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _step()
        yield item


@pass_eval_context
def _concatenated(eval_ctx: EvalContext, *operands: Any) -> str:
    # Jinja's own `~`, once `call` has measured the operands.
    return markup_join(operands) if eval_ctx.autoescape else str_join(operands)


def _printable(value: Any) -> Any:
    if value is None:
        return ""
    _check_size("output", value)  # a list of a million references to one long string
    return value


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE_ITEMS:
        raise SecurityError(f"range: more than {MAX_RANGE_ITEMS} items")
    return numbers


def _check_repetition(sequence: Any, times: Any) -> None:
    if not (isinstance(sequence, str | list | tuple) and isinstance(times, int)) or times <= 0:
        return
    if value_size(sequence, MAX_REPEATED_CHARS // times) * times > MAX_REPEATED_CHARS:
        raise SecurityError(f"repetition: more than {MAX_REPEATED_CHARS} characters or items")


def _check_bits(what: str, bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError(f"{what}: a number of more than {MAX_INT_BITS} bits")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise SecurityError(f"power: exponent above {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        _check_bits("power", base.bit_length() * exponent)


def _check_format(template: str, values: Any) -> None:
    """A %-format whose fields are narrow and whose output stays bounded: each `%`
    may print every value (`%(name)s` may repeat)."""
    if _WIDE_FORMAT.search(template):
        raise SecurityError("format: width or precision above 4 digits")
    if len(template) + template.count("%") * value_size(values) > MAX_VALUE_CHARS:
        raise SecurityError(f"format: more than {MAX_VALUE_CHARS} characters")


def _check_product(what: str, base: int, copies: int, copy_chars: int) -> None:
    if base + copies * copy_chars > MAX_VALUE_CHARS:
        raise SecurityError(f"{what}: more than {MAX_VALUE_CHARS} characters")


def _checked_string_method(
    owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """The arguments of `owner.replace(old, new)` or `owner.join(items)` once the
    result is known to stay bounded (a generator of items is made a list to count)."""
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = str(args[0]), str(args[1])
        _check_product("replace", len(owner), owner.count(old), len(new) - len(old))
    elif name == "join" and args and not kwargs:
        items = args[0] if isinstance(args[0], Collection) else list(args[0])
        _check_size("join", items)
        _check_product("join", value_size(items), len(items), len(owner))
        return (items, *args[1:])
    return args


def _bounded_filter(name: str, jinja_filter: Callable[..., Any]) -> Callable[..., Any]:
    """`jinja_filter` measured like a call: its arguments before, its result after,
    with the checks of the filters whose result is a product of their arguments."""
    value_index = 1 if hasattr(jinja_filter, "jinja_pass_arg") else 0  # after env/context
    product_check = _FILTER_CHECKS.get(name)
    widths = name in _PADDING_FILTERS

    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "join" and isinstance(args[value_index], Iterator):  # count its items
            args = (*args[:value_index], list(args[value_index]), *args[value_index + 1 :])
        _check_size(name, (args[value_index:], kwargs))
        if widths:
            for argument in [*args[value_index + 1 :], *kwargs.values()]:
                if type(argument) is int and argument > MAX_WIDTH:  # bool is no width
                    raise SecurityError(f"{name}: width above {MAX_WIDTH}")
        if product_check is not None:
            product_check(*args[value_index:], **kwargs)
        return _built(jinja_filter(*args, **kwargs))

    for attribute in ("jinja_pass_arg", "__name__"):
        if hasattr(jinja_filter, attribute):
            setattr(bounded, attribute, getattr(jinja_filter, attribute))
    return bounded


def _check_replace_filter(value: Any, old: Any = "", new: Any = "", *_: Any, **__: Any) -> None:
    text, old, new = str(value), str(old), str(new)
    _check_product("replace", len(text), text.count(old), len(new) - len(old))


def _check_join_filter(value: Any, separator: Any = "", *_: Any, **kwargs: Any) -> None:
    separator = kwargs.get("d", separator)
    count = len(value) if isinstance(value, Collection) else 0
    _check_product("join", value_size(value), count, len(str(separator)))


def _check_indent_filter(value: Any, width: Any = 4, *_: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    text = str(value)
    indent = len(width) if isinstance(width, str) else int(width)
    _check_product("indent", len(text), text.count("\n") + 1, indent)


def _check_format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_format(str(value), (args, kwargs))


def _check_sum_filter(value: Any, attribute: Any = None, start: Any = 0, *_: Any) -> None:
    if not isinstance(start, int | float):  # lists would be copied once per item
        raise SecurityError("sum: adds numbers only")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "replace": _check_replace_filter,
    "join": _check_join_filter,
    "indent": _check_indent_filter,
    "format": _check_format_filter,
    "sum": _check_sum_filter,
}
_PADDING_FILTERS = frozenset({"center", "indent", "batch", "slice"})


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
    "+": operator.add,
}
