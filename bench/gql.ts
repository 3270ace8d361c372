// A GraphQL-over-HTTP client for the gateway child. node:http with no timeout:
// publishing a million rows is one request that runs for minutes.
import http from "node:http";

export type Gql = <T>(query: string, variables?: Record<string, unknown>) => Promise<T>;

export function createGql(port: number, token: string | undefined): { gql: Gql; close(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const gql: Gql = (query, variables) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ query, variables });
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          path: "/graphql",
          method: "POST",
          agent,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            try {
              const json = JSON.parse(text) as { data?: unknown; errors?: { message: string }[] };
              if (json.errors?.length) reject(new Error(`GraphQL: ${json.errors.map((e) => e.message).join("; ")}`));
              else resolve(json.data as never);
            } catch {
              reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
            }
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  return { gql, close: () => agent.destroy() };
}

export const SEED = `mutation Seed($system: System!, $count: Int!, $ratio: Float) {
  seedOrders(system: $system, count: $count, securityCheckRatio: $ratio) { inserted firstId lastId securityCheckTrue }
}`;

export const PUBLISH = `mutation Publish($system: System!) {
  publishPending(system: $system) { published fromId toId cursor waitingOnTransactions }
}`;

export const STATS = `{
  pipelineStats {
    queues { name messages consumers }
    systems { system sourceRows published succeeded deadLettered inFlight endputRows }
    attempts { status count }
  }
}`;

export const HISTORY = `query History($id: ID!) {
  messageHistory(messageId: $id) { id messageId round attempt status system orderId product price error processedAt durationMs consumerId }
}`;

export interface PublishResult {
  published: number;
  fromId: number | null;
  toId: number | null;
  cursor: number;
  waitingOnTransactions: boolean;
}

export interface Stats {
  pipelineStats: {
    queues: { name: string; messages: number; consumers: number }[];
    systems: {
      system: string;
      sourceRows: number;
      published: number;
      succeeded: number;
      deadLettered: number;
      inFlight: number;
      endputRows: number;
    }[];
    attempts: { status: string; count: number }[];
  };
}
