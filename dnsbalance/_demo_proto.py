"""The demo service on the wire (``examples/demo/demo.proto``), hand-encoded without protobuf.

One place for both ends: the test backend (:mod:`dnsbalance.testing`) answers with it,
the ``dnsbalance demo`` client reads the answers with it.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["METHOD", "SERVICE", "decode_response", "encode_response", "stream_request"]

SERVICE = "demo.DemoService"
METHOD = f"/{SERVICE}/Demo"  # Demo(Empty) -> Response{value}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message holding varint and bytes fields."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(data, i)
            yield number, value
        elif wire_type == 2:
            length, i = _read_varint(data, i)
            yield number, data[i : i + length]
            i += length
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def stream_request(data: bytes) -> tuple[int, int]:
    """``demo.StreamRequest{count, interval_ms}``, count bounded to 100000."""
    count, interval_ms = 1, 0
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            count = value
        elif number == 2 and isinstance(value, int):
            interval_ms = value
    return min(count, 100_000), interval_ms


def encode_response(value: str) -> bytes:
    """``demo.Response{value}`` on the wire."""
    raw = value.encode()
    return b"\x0a" + _varint(len(raw)) + raw if raw else b""


def decode_response(data: bytes) -> str:
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            return value.decode()
    return ""
