"""Session's constructor against aiosmtpd's own: the same attributes, the same values.

Session sets what aiosmtpd's SMTP.__init__ sets, from tables built once per handler
(its introspection per connection was a third of a connection's CPU). If a future
aiosmtpd sets an attribute more, or another value, these tests fail: the constructor
must then learn it (session.py, `Session.__init__`)."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, _AuthMechAttr, auth_mechanism

from postroom.mta.inbound import session as session_module
from postroom.mta.inbound.session import ConnectionLimits, Session


class Hooks:
    """A handler with hooks of every kind aiosmtpd looks for."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"

    @auth_mechanism("X-TOKEN")
    async def auth_token(self, server: Any, args: list[str]) -> AuthResult:
        return AuthResult(success=False)

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


OPTIONS: list[dict[str, Any]] = [
    {},
    {"data_size_limit": 1000, "enable_SMTPUTF8": True, "ident": "postroom"},
    {"auth_required": True, "require_starttls": True},
]


def ours(handler: Any, **options: Any) -> Session:
    return Session(
        handler,
        limits=ConnectionLimits(max_total=1, max_per_ip=1),
        max_line_length=998,
        idle_timeout_s=42,
        data_timeout_s=60,
        hostname="mx.test",
        **options,
    )


def aiosmtpds(handler: Any, **options: Any) -> Session:
    """A Session whose aiosmtpd attributes come from aiosmtpd's own constructor."""
    reference = Session.__new__(Session)
    reference.line_length_limit = 999
    SMTP.__init__(
        reference,
        handler,
        timeout=42,
        hostname="mx.test",
        loop=asyncio.get_running_loop(),
        **options,
    )
    return reference


def comparable(value: Any, owner: object) -> Any:
    """A value with its references to `owner` (the session) made owner-independent.
    The session's own methods, which aiosmtpd binds per connection, are shared plain
    functions in ours (called with the session): both compare as ("own", function)."""
    if value is owner:
        return "<session>"
    if isinstance(value, weakref.ReferenceType):
        return ("weakref", comparable(value(), owner))
    if isinstance(value, session_module._OwnAuthMethod):
        return ("own", value.function)
    if getattr(value, "__self__", None) is owner:  # a bound method of the session
        return ("own", value.__func__)
    if inspect.isfunction(value) and getattr(Session, value.__name__, None) is value:
        return ("own", value)
    if hasattr(value, "__func__") and hasattr(value, "__self__"):  # bound elsewhere
        return ("method", value.__func__, comparable(value.__self__, owner))
    if isinstance(value, _AuthMechAttr):
        return (comparable(value.method, owner), value.is_builtin)
    if isinstance(value, dict):
        return {key: comparable(item, owner) for key, item in value.items()}
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit, value._loop)  # type: ignore[attr-defined]
    if isinstance(value, asyncio.Future):
        return ("future", value.done())
    return value


@pytest.mark.parametrize("handler_kind", ["hooks", "none"])
@pytest.mark.parametrize("options", OPTIONS)
async def test_every_attribute_aiosmtpd_sets_is_set_alike(
    handler_kind: str, options: dict[str, Any]
) -> None:
    handler = Hooks() if handler_kind == "hooks" else object()
    built, reference = ours(handler, **options), aiosmtpds(handler, **options)
    expected = {name: comparable(value, reference) for name, value in vars(reference).items()}
    actual = {
        name: comparable(value, built) for name, value in vars(built).items() if name in expected
    }
    assert sorted(expected) == sorted(actual)  # an attribute aiosmtpd sets and we do not
    assert actual == expected


async def test_auth_mechanisms_are_the_builtin_ones_and_the_handlers_in_aiosmtpd_order() -> None:
    session = ours(Hooks(), auth_required=True)
    assert list(session._auth_methods) == ["LOGIN", "PLAIN", "CRAM-MD5", "X-TOKEN"]
    assert [method.is_builtin for method in session._auth_methods.values()] == [
        True,
        True,
        False,
        False,
    ]


async def test_a_builtin_auth_mechanism_is_called_as_aiosmtpd_calls_a_bound_method() -> None:
    session = ours(object(), auth_required=True)
    called = []

    async def fake_plain(server: Any, caller: Any, args: list[str]) -> AuthResult:
        called.append((server, caller, args))
        return AuthResult(success=True)

    assert session._auth_methods["PLAIN"].method.function is Session.auth_PLAIN
    result = await session_module._OwnAuthMethod(fake_plain)(session, ["AUTH", "PLAIN"])
    assert result.success and called == [(session, session, ["AUTH", "PLAIN"])]


async def test_tables_are_built_once_per_handler_and_not_shared_across_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = []
    real = session_module._HandlerTables.build

    def counting(session_class: type, handler: Any) -> Any:
        builds.append(handler)
        return real(session_class, handler)

    monkeypatch.setattr(session_module._HandlerTables, "build", counting)
    first, second = Hooks(), Hooks()
    sessions = [ours(first) for _ in range(3)] + [ours(second)]
    assert builds == [first, second]
    assert sessions[0]._handle_hooks["DATA"].__self__ is first
    assert sessions[3]._handle_hooks["DATA"].__self__ is second
    assert sessions[0]._smtp_methods is sessions[2]._smtp_methods


async def test_implicit_tls_offers_auth_without_starttls_and_without_a_warning(
    recwarn: pytest.WarningsRecorder,
) -> None:
    session = ours(object(), auth_required=True, implicit_tls=True)
    assert session._auth_require_tls is False
    assert not recwarn.list
    with pytest.warns(UserWarning, match="Requiring AUTH while not requiring TLS"):
        ours(object(), auth_required=True, auth_require_tls=False)
