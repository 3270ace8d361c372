// Reading the fault set's RabbitMQ cluster: which node leads a queue, which node
// a process is connected to, and waiting for the pipeline to move again.
import { CLUSTER, clusterUrls } from "./fault-services.ts";
import { attemptsDone, sleep } from "./ops.ts";
import type { Child } from "./processes.ts";
import { managementGet, type World, type WorldBroker } from "./world.ts";

export const CLUSTER_BROKER: WorldBroker = {
  amqp: clusterUrls(),
  management: CLUSTER.nodes.map((i) => CLUSTER.management(i)),
};

/** AMQP_URL for a process that should start on node `first` (and know the others after it). */
export function startingOn(first: number): string {
  const order = [first, ...CLUSTER.nodes.filter((i) => i !== first)];
  return clusterUrls(order).join(",");
}

export const nodeIndex = (node: string): number => {
  const m = /^rq(\d+)@/.exec(node);
  if (!m) throw new Error(`not a cluster node name: ${node}`);
  return Number(m[1]);
};

/** The node that leads a quorum queue (the management API's `leader`), waiting while an election runs. */
export async function queueLeader(world: World, queue: string, not?: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await managementGet(world.broker, `/api/queues/%2F/${encodeURIComponent(queue)}`);
    const q = (await res.json()) as { leader?: string; node?: string };
    const last = q.leader ?? q.node ?? "";
    if (/^rq\d+@/.test(last) && nodeIndex(last) !== not) return nodeIndex(last);
    if (Date.now() > deadline) throw new Error(`${queue} has no leader (other than rq${not}) after ${timeoutMs} ms: ${last}`);
    await sleep(250);
  }
}

/** The node a process's main AMQP connection is on (named `<kind>@<pid>` by common/broker.ts). */
export async function connectedNode(world: World, child: Child, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await managementGet(world.broker, "/api/connections?columns=node,client_properties.connection_name");
    const list = (await res.json()) as { node: string; client_properties?: { connection_name?: string } }[];
    const mine = list.find((c) => c.client_properties?.connection_name === `${child.kind}@${child.pid}`);
    if (mine) return nodeIndex(mine.node);
    if (Date.now() > deadline) throw new Error(`no AMQP connection named ${child.kind}@${child.pid}`);
    await sleep(500);
  }
}

/** Milliseconds until `more` further attempts complete (counted from `from`). */
export async function timeToProgress(world: World, from: number, more: number, timeoutMs = 120_000): Promise<number> {
  const started = Date.now();
  while ((await attemptsDone(world)) < from + more) {
    if (Date.now() - started > timeoutMs) throw new Error(`fewer than ${more} attempts completed within ${timeoutMs} ms`);
    await sleep(50);
  }
  return Date.now() - started;
}
