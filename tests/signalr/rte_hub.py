"""A stand-in for Enreach RTE built on a SignalR server callgate did not write: aiosignalr's
aiohttp server (PyPI, installed by .ci/run). It serves RTE's token endpoint, validates
Subscribe as the seed describes, and answers each valid subscription with one
MessageReceived; after the first connection's event it drops the
connection so the client must reconnect, fetch a fresh token and resubscribe.

Usage: python3 rte_hub.py <port> <data JSON file> [keep]
With `keep`, no connection is dropped (the reload test changes the client's subscriptions).
Output: one JSON object per line ({kind, ...}) for tests/it/hub.rs to read."""

import asyncio
import json
import re
import sys

from aiohttp import web
from aiosignalr.server.aiohttp_server import build_aiohttp_app
from aiosignalr.server.hub import Hub
from aiosignalr.server.server import SignalRServer

PORT = int(sys.argv[1])
DATA = json.load(open(sys.argv[2]))
KEEP = len(sys.argv) > 3 and sys.argv[3] == "keep"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EVENTS = {"usercallincoming", "userstatus", "useravailability"}
state = {"connections": 0, "tokens": 0}


def out(**record):
    print(json.dumps(record), flush=True)


class Rte(Hub):
    async def on_connected(self):
        state["connections"] += 1
        out(kind="connected", n=state["connections"],
            authorization=self.context.http_headers.get("authorization"))

    # aiosignalr sends a result only when the method is annotated with a return type.
    async def Subscribe(self, subscriptions) -> list:
        results = []
        for s in subscriptions:
            entity, event = s.get("EntityId", ""), s.get("EventName", "")
            if not GUID.match(entity):
                message = "Invalid EntityId"
            elif event.lower() not in EVENTS:
                message = "Invalid event name"
            else:
                message = None
            results.append({"subscribed": message is None, "message": message,
                            "entityId": entity, "eventName": event.lower()})
        out(kind="subscribe", results=results)
        caller = self.clients.caller
        n = state["connections"]
        context = self.context

        async def push():
            await asyncio.sleep(0.2)
            data = dict(DATA, Id=f"{DATA['Id']}-{n}", CallId=f"{DATA['CallId']}-{n}")
            await caller.send("MessageReceived", {
                "subscription": {"id": "s", "eventType": "UserCallInComing",
                                 "entityId": data["EntityId"], "entityType": "User"},
                "data": data})
            out(kind="pushed", n=n)
            if n == 1 and not KEEP:
                await asyncio.sleep(0.2)
                await context.close(1011, "going away")
                out(kind="dropped", n=n)

        asyncio.get_running_loop().create_task(push())
        return results


async def token(request):
    state["tokens"] += 1
    out(kind="token", n=state["tokens"], authorization=request.headers.get("Authorization"))
    return web.json_response({"WSSEndpoint": f"ws://127.0.0.1:{PORT}/rte", "Token": f"jwt-{state['tokens']}"})


async def main():
    server = SignalRServer(Rte)
    app = build_aiohttp_app(server, path="/rte")
    app.router.add_get("/token/me/rte/", token)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    out(kind="listening")
    await asyncio.Event().wait()


asyncio.run(main())
