FROM node:24-bookworm-slim

# Prisma probes the OpenSSL version to pick its engine builds; the slim image lacks it.
RUN apt-get update \
  && apt-get install -y --no-install-recommends openssl ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dev dependencies stay: migrations run through tsx and use the prisma CLI.
COPY package.json package-lock.json ./
RUN npm ci --include=dev --no-audit --no-fund

COPY tsconfig.json ./
COPY common ./common
COPY consumer ./consumer
COPY gateway ./gateway
COPY prisma ./prisma
COPY scripts ./scripts
RUN npx tsx scripts/prisma.ts generate && npx vite build --config gateway/dashboard/vite.config.ts

# Set only after npm ci: with NODE_ENV=production npm would skip dev dependencies. Two malloc
# arenas instead of eight per core: the helper threads reuse freed memory rather than each keeping
# its own (a few MB of the gateway's peak, BENCHMARKS.md).
ENV NODE_ENV=production \
  NPM_CONFIG_UPDATE_NOTIFIER=false \
  MALLOC_ARENA_MAX=2

EXPOSE 4000 9464
# node itself rather than npx: no npm process beside it, and signals reach the gateway. The heap
# limits are the ones scripts/start.sh uses (BENCHMARKS.md, gateway memory while publishing); the
# preload lets OpenTelemetry instrument the client libraries when tracing is on (a no-op when off).
CMD ["node", "--max-semi-space-size=12", "--max-old-space-size=128", "--import", "./common/tracing-preload.ts", "gateway/src/main.ts"]
