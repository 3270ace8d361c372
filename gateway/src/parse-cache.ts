// Yoga caches every parsed document and every parse error under the document's text, up to
// 1,024 of each. A document of up to GATEWAY_MAX_BODY_BYTES can be refused by the token limit
// and still be kept as a key: a few hundred distinct 1 MB documents would fill the gateway's
// heap. Only documents up to MAX_CACHED_DOCUMENT_CHARS are cached; longer ones are parsed
// (and refused) each time, which the token limit keeps cheap.
import type { DocumentNode } from "graphql";
import { createLRUCache, type YogaServerOptions } from "graphql-yoga";

export const MAX_CACHED_DOCUMENT_CHARS = 16 * 1024;

interface Cache<T> {
  get(key: string): T | undefined;
  set(key: string, value: T): void;
}

export function withBoundedKeys<T>(cache: Cache<T>, maxKeyChars = MAX_CACHED_DOCUMENT_CHARS): Cache<T> {
  return {
    get: (key) => (key.length > maxKeyChars ? undefined : cache.get(key)),
    set: (key, value) => {
      if (key.length <= maxKeyChars) cache.set(key, value);
    },
  };
}

export function boundedParserCache(): NonNullable<YogaServerOptions<object, object>["parserAndValidationCache"]> {
  return {
    documentCache: withBoundedKeys(createLRUCache<DocumentNode>({ max: 1024 }) as Cache<DocumentNode>),
    errorCache: withBoundedKeys(createLRUCache<object>({ max: 1024 }) as Cache<unknown>),
    validationCache: true,
  };
}
