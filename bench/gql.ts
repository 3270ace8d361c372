// A GraphQL-over-HTTP client for the gateway child. node:http with no timeout:
// publishing a million rows is one request that runs for minutes.
import http from "node:http";

import { print } from "graphql";

import { graphql, type ResultOf, type TadaDocumentNode, type VariablesOf } from "../gateway/client/graphql.ts";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Operation = TadaDocumentNode<any, any>;
/** Sends one operation written with graphql(); the answer's type is inferred from schema.graphql. */
export type Gql = <D extends Operation>(document: D, variables?: VariablesOf<D>) => Promise<ResultOf<D>>;

export function createGql(port: number, token: string | undefined): { gql: Gql; close(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const gql: Gql = (document, variables) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ query: print(document), variables });
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

/** The gateway is ready for the bench when this answers: it reads the broker, Redis and PostgreSQL. */
export const READY = graphql(`
  query Ready {
    pipelineStats {
      queues {
        name
      }
    }
  }
`);

export const HISTORY = graphql(`
  query History($id: ID!) {
    messageHistory(messageId: $id) {
      id
      messageId
      round
      attempt
      status
      system
      orderId
      product
      price
      error
      processedAt
      durationMs
      consumerId
    }
  }
`);
