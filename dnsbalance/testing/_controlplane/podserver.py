"""The pods' gRPC backends, run inside the pod network's namespace.

``python -m dnsbalance.testing._controlplane.podserver`` is started by
:class:`~.podnet.PodNetwork` under ``ip netns exec``. It reads one JSON command a
line on stdin and answers one JSON line on stdout:

- ``{"op": "start", "name": N, "ip": IP, "port": P}``: serve the demo service as
  pod ``N`` on ``IP:P`` (an :class:`~dnsbalance.testing.AioBackend`, whose replies name it);
- ``{"op": "stop", "name": N, "grace": S}``: stop it gracefully (GOAWAY, ``S`` seconds);
- ``{"op": "calls"}``: ``{"calls": {name: count}}``, the calls each pod served.

Every answer has ``"ok": true`` or ``"error": "..."``. It exits when stdin closes, so
it never outlives the test process that started it. One asyncio loop serves every pod.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from dnsbalance.testing._backend import AioBackend


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    backends: dict[str, AioBackend] = {}
    try:
        while line := await reader.readline():
            reply: dict[str, Any]
            try:
                reply = await _command(json.loads(line), backends)
            except Exception as exc:  # every command gets an answer, never a dead server
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        await asyncio.gather(*(b.stop(0) for b in backends.values()), return_exceptions=True)


async def _command(command: dict[str, Any], backends: dict[str, AioBackend]) -> dict[str, Any]:
    op = command["op"]
    if op == "start":
        name = command["name"]
        if name in backends:
            raise ValueError(f"pod {name} is already served")
        backend = AioBackend(command["ip"], int(command["port"]), name=name)
        await backend.start()
        backends[name] = backend
        return {"ok": True, "port": backend.port}
    if op == "stop":
        backend = backends.pop(command["name"])
        await backend.stop(command.get("grace", 1.0))
        return {"ok": True}
    if op == "calls":
        return {"ok": True, "calls": {name: b.calls for name, b in backends.items()}}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    asyncio.run(_serve())
