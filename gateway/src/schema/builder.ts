import SchemaBuilder from "@pothos/core";
import PrismaPlugin from "@pothos/plugin-prisma";
import RelayPlugin from "@pothos/plugin-relay";
import { GraphQLError, Kind } from "graphql";

import type PrismaTypes from "../../../common/prisma/source/pothos-types.ts";
import { getDatamodel } from "../../../common/prisma/source/pothos-types.ts";
import type { Context } from "../context.ts";

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  DefaultFieldNullability: false;
  Scalars: { DateTime: { Input: Date; Output: Date | string } };
}>({
  plugins: [PrismaPlugin, RelayPlugin],
  defaultFieldNullability: false,
  prisma: {
    // One schema serves both source systems; resolvers pick the client per system.
    client: (ctx) => ctx.sources.SYSTEM1,
    dmmf: getDatamodel(),
    exposeDescriptions: false,
    filterConnectionTotalCount: true,
    onUnusedQuery: null,
  },
  relay: { cursorType: "String", clientMutationId: "omit" },
});

builder.scalarType("DateTime", {
  description: "An ISO-8601 date-time string in UTC",
  serialize: (value) => (value instanceof Date ? value : new Date(value)).toISOString(),
  parseValue: (value) => {
    const d = typeof value === "string" ? new Date(value) : undefined;
    if (!d || Number.isNaN(d.getTime())) throw new GraphQLError("DateTime must be an ISO-8601 string");
    return d;
  },
  parseLiteral: (ast) => {
    const d = ast.kind === Kind.STRING ? new Date(ast.value) : undefined;
    if (!d || Number.isNaN(d.getTime())) throw new GraphQLError("DateTime must be an ISO-8601 string");
    return d;
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
