// A graphql-ws client that subscribes and then stops reading its socket, so that what the gateway
// sends it piles up as it would for a client that hung (subscriptions.test.ts, fault scenario 6b).
import WebSocket from "ws";

import { sleep } from "../../common/errors.ts";

export interface Frame {
  id?: string;
  type: string;
  payload?: { errors?: { extensions?: { code?: string } }[] };
}

/** Connects, subscribes as `id` with `query`, and stops reading; resume() reads again. */
export async function stalledSubscriber(port: number, id: string, query: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, "graphql-transport-ws");
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  const frames: Frame[] = [];
  let closed = false;
  ws.on("message", (data) => frames.push(JSON.parse(String(data)) as Frame));
  ws.on("close", () => (closed = true));
  ws.send(JSON.stringify({ type: "connection_init" }));
  for (let i = 0; i < 100 && !frames.some((f) => f.type === "connection_ack"); i++) await sleep(50);
  if (!frames.some((f) => f.type === "connection_ack")) throw new Error("the gateway did not acknowledge the connection in 5 s");
  ws.send(JSON.stringify({ id, type: "subscribe", payload: { query } }));
  const socket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  socket.pause();
  return {
    /** This subscription's frames received so far. */
    frames: () => frames.filter((f) => f.id === id),
    /** Whether the connection closed (the gateway's keep-alive closes one that answers no ping). */
    closed: () => closed,
    /** Whether the gateway completed the subscription. */
    completed: () => frames.some((f) => f.id === id && f.type === "complete"),
    resume: () => socket.resume(),
    close: () => ws.close(),
  };
}
