// An RTE client written against the official SignalR client, as Enreach's own samples are:
// connects to a hub, lists and makes subscriptions, prints every MessageReceived, then
// exercises ActiveSubscriptions, Unsubscribe and UnsubscribeAll and stops.
// Usage: node rte-client.js <hub url> <token> <subscriptions JSON> <messages to wait for>
// Output: one JSON object per line ({kind, ...}) for tests/it/hub.rs to read.
const signalR = require("@microsoft/signalr");

const [url, token, subscriptions, expected] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const connection = new signalR.HubConnectionBuilder()
  .withUrl(url, { accessTokenFactory: () => token })
  .configureLogging(signalR.LogLevel.Warning)
  .build();

let received = 0;
connection.on("MessageReceived", async (message) => {
  out({ kind: "message", message });
  received += 1;
  if (received === Number(expected)) {
    out({ kind: "active", result: await connection.invoke("ActiveSubscriptions") });
    const first = JSON.parse(subscriptions).slice(0, 1);
    out({ kind: "unsubscribed", result: await connection.invoke("Unsubscribe", first) });
    out({ kind: "active-after", result: await connection.invoke("ActiveSubscriptions") });
    out({ kind: "unsubscribed-all", result: await connection.invoke("UnsubscribeAll") });
    await connection.stop();
    out({ kind: "stopped" });
  }
});
connection.onclose((error) => out({ kind: "closed", error: error ? String(error) : null }));

(async () => {
  try {
    await connection.start();
  } catch (error) {
    out({ kind: "start-failed", error: String(error), status: error.statusCode ?? null });
    return;
  }
  out({ kind: "connected", connectionId: connection.connectionId });
  out({ kind: "available", result: await connection.invoke("AvailableSubscriptions") });
  out({ kind: "subscribed", result: await connection.invoke("Subscribe", JSON.parse(subscriptions)) });
})();
