// A connection that sends nothing: what the gateway and the health server must bound.
import net from "node:net";

/**
 * Connects to 127.0.0.1:`port` and resolves once connected. From `localAddress` (any loopback
 * address reaches a server on 127.0.0.1) it is another client, as a server counts them.
 */
export async function idleConnection(port: number, localAddress?: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: "127.0.0.1", localAddress });
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  return socket;
}
