// Who can reach the gateway decides whether it may run without a token: on loopback only this
// machine can seed, publish, reset cursors, redrive and discard; anywhere else, anyone on the network.
import net from "node:net";

import type { Config } from "../../common/config.ts";

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (net.isIPv4(h)) return h.startsWith("127.");
  if (net.isIPv6(h)) return h === "::1" || /^::ffff:127\./.test(h);
  return false;
}

/** Why the gateway must not start as configured, or undefined when it may. */
export function anonymousExposure(gateway: Config["gateway"]): string | undefined {
  if (gateway.token || gateway.allowAnonymous || isLoopback(gateway.host)) return undefined;
  return (
    `GATEWAY_HOST=${gateway.host} is not a loopback address and GATEWAY_TOKEN is not set: anyone who can reach ` +
    `it could seed, publish, reset cursors, redrive and discard dead letters. Set GATEWAY_TOKEN, listen on 127.0.0.1, ` +
    `or set GATEWAY_ALLOW_ANONYMOUS=true to accept that`
  );
}
