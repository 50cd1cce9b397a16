"""The two resolve_channel functions take exactly settings_for's parameters: one list,
written three times, held equal here (so neither driver can drift from the other)."""

from __future__ import annotations

import inspect

import dnsbalance
import dnsbalance.aio
from dnsbalance._settings import settings_for


def _described(function: object) -> list[tuple[str, object, object, str]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default, str(p.annotation)) for p in signature.parameters.values()]


def test_sync_and_asyncio_resolve_channel_take_settings_for_parameters() -> None:
    expected = _described(settings_for)
    assert _described(dnsbalance.resolve_channel) == expected
    assert _described(dnsbalance.aio.resolve_channel) == expected


def test_return_types_name_each_driver_channel() -> None:
    sync = inspect.signature(dnsbalance.resolve_channel).return_annotation
    aio = inspect.signature(dnsbalance.aio.resolve_channel).return_annotation
    assert sync == "BalancedChannel"
    assert aio == "aio_channel.BalancedChannel"
    assert inspect.iscoroutinefunction(dnsbalance.aio.resolve_channel)
    assert not inspect.iscoroutinefunction(dnsbalance.resolve_channel)


def test_settings_for_is_called_with_every_parameter_by_name() -> None:
    """``settings_for(**locals())`` is the first statement: a local variable defined
    before it would be passed on too (and fail), so each function's first statement is
    that call."""
    for function in (dnsbalance.resolve_channel, dnsbalance.aio.resolve_channel):
        source = inspect.getsource(function)
        body = source.split('"""')[-1].strip().splitlines()
        assert body[0].startswith("settings = settings_for(**locals())"), function
