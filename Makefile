# tentativa: `make start` runs the pipeline, `make test` runs every check.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# CLUSTER=1 (make services, start, stop, status): RabbitMQ as a cluster of three nodes on
# 5682-5684 (management 15682-15684) instead of one node on 5672; the pipeline connects to all.
ifeq ($(CLUSTER),1)
export RABBITMQ_NODES := 3
endif

NODE_BIN := $(shell scripts/ensure-node.sh)
export PATH := $(if $(NODE_BIN),$(NODE_BIN):,)$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: dashboard help install services services-down status migrate start start_with_logs stop clean test test-quick test-faults typecheck lint format schema bench

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	@echo "[install] npm ci (node $$(node -v))"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

common/prisma/.generated: node_modules/.installed prisma/source/schema.prisma prisma/endput/schema.prisma
	@npm run -s generate
	@touch $@

install: node_modules/.installed common/prisma/.generated ## install dependencies and generate the Prisma clients

services: ## start PostgreSQL, Redis, RabbitMQ (CLUSTER=1: three nodes) and the Mongo-compatible server
	@scripts/services.sh up

services-down: ## stop the local services
	@scripts/services.sh down

status: ## show which local services are up
	@scripts/services.sh status

migrate: install services ## apply the migrations to system1, system2 and endput
	@npm run -s migrate

dashboard: install ## build the dashboard bundle served at /
	@npm run -s build:dashboard

start: install services migrate dashboard ## run the whole pipeline in the foreground (Ctrl-C stops it)
	@scripts/start.sh

start_with_logs: start ## alias of start

stop: ## stop the gateway, the consumer and the local services
	@scripts/start.sh stop || true
	@scripts/services.sh down

clean: stop ## stop everything and delete local data (.local/, generated clients, test output)
	@rm -rf .local common/prisma/source common/prisma/endput common/prisma/.generated test-output
	@echo "[clean] removed .local/ and generated files"

typecheck: install ## regenerate the clients' schema types, check their operations (gql.tada check), tsc --noEmit
	@npm run -s typecheck

lint: install ## prettier --check and eslint
	@npm run -s lint

format: install ## rewrite files with prettier and eslint --fix
	@npm run -s format

schema: install ## print schema.graphql from the Pothos schema, and the client types from it
	@npm run -s schema:print

test: test-quick ## test-quick, then the fault-injection suite (20 to 40 more minutes on 2 cores)
	@echo "[test] fault-injection suite"; npm run -s test:faults

test-quick: install services ## typecheck, lint and run every test against the real services
	@echo "[test] typecheck"; npm run -s typecheck
	@echo "[test] lint"; npm run -s lint
	@echo "[test] browser"; scripts/ensure-chromium.sh
	@echo "[test] dashboard bundle"; npm run -s build:dashboard
	@echo "[test] vitest"; npm run -s test

test-faults: install services ## the fault-injection suite alone (kills, restarts, outages, load)
	@npm run -s test:faults

bench: install services migrate ## benchmarks: prints a table, writes bench/results/*.json
	@npm run -s bench
