FROM node:24-bookworm-slim

# Prisma probes the OpenSSL version to pick its engine builds; the slim image lacks it.
RUN apt-get update \
  && apt-get install -y --no-install-recommends openssl ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dev dependencies stay: the services run from TypeScript through tsx, and migrations use the prisma CLI.
COPY package.json package-lock.json ./
RUN npm ci --include=dev --no-audit --no-fund

COPY tsconfig.json ./
COPY common ./common
COPY consumer ./consumer
COPY gateway ./gateway
COPY prisma ./prisma
COPY scripts ./scripts
RUN npx tsx scripts/prisma.ts generate && npx vite build --config gateway/dashboard/vite.config.ts

# Set only after npm ci: with NODE_ENV=production npm would skip dev dependencies.
ENV NODE_ENV=production \
  NPM_CONFIG_UPDATE_NOTIFIER=false

EXPOSE 4000 9464
CMD ["npx", "tsx", "gateway/src/main.ts"]
