// Static checks of compose.yaml and the Dockerfile. No Docker engine runs in CI, so these
// catch wrong hostnames, ports, variable names and start order before anyone's `docker compose up`.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";
import { parse } from "yaml";

import { type Env, readConfig } from "../common/config.ts";
import { anonymousExposure } from "../gateway/src/exposure.ts";
import { ENTRY, LAUNCH } from "./support/world/launcher.ts";

interface Service {
  image?: string;
  hostname?: string;
  profiles?: string[];
  configs?: (string | { source: string; target?: string })[];
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  volumes?: string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: (string | number | { published?: string | number; target?: string | number })[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
  restart?: string;
  cpu_shares?: number;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");

// Compose honours YAML merge keys (`<<: *app-env`); the yaml package only when asked.
const compose = parse(read("compose.yaml"), { merge: true }) as {
  services?: Record<string, Service>;
  volumes?: Record<string, unknown>;
  configs?: Record<string, { content?: string; file?: string }>;
};
const services = compose.services ?? {};
const names = Object.keys(services);

const APPS = ["gateway", "consumer"] as const;
const INFRA = ["system1-db", "system2-db", "endput-db", "redis", "rabbitmq", "mongo"];
const ONE_SHOT = ["migrate"];
const RABBIT_NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];

/** Each URL of a setting (AMQP_URL lists every node of the cluster). */
const urlsOf = (value: string) => value.split(",").map((v) => v.trim());

function service(name: string): Service {
  const s = services[name];
  if (!s) throw new Error(`compose.yaml has no service ${name}`);
  return s;
}

function env(s: Service): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((line) => [line.split("=")[0] ?? line, line.includes("=") ? line.slice(line.indexOf("=") + 1) : ""]),
    );
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v == null ? "" : String(v)]));
}

/** host port -> container port, for every port the service publishes. */
function published(s: Service): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of s.ports ?? []) {
    if (typeof p === "object") {
      if (p.published != null) out.set(Number(p.published), Number(p.target));
      continue;
    }
    const parts = String(p)
      .replace(/\/(tcp|udp)$/, "")
      .split(":");
    if (parts.length < 2) continue; // container-only: a random host port
    out.set(Number(parts.at(-2)), Number(parts.at(-1)));
  }
  return out;
}

/** A dependency list without conditions means service_started, which these checks reject. */
function dependsOn(s: Service): Record<string, string | undefined> {
  const d = s.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n) => [n, "service_started"]));
  return Object.fromEntries(Object.entries(d).map(([n, v]) => [n, v?.condition]));
}

const words = (command: string | string[] | undefined) => (Array.isArray(command) ? command.join(" ") : (command ?? ""));

describe("compose.yaml", () => {
  it("defines every service of the pipeline", () => {
    expect(names).toEqual(expect.arrayContaining([...INFRA, "mongo-express", ...ONE_SHOT, ...APPS]));
    expect(service("system1-db").image).toBe("postgres:16");
    expect(service("system2-db").image).toBe("postgres:16");
    expect(service("endput-db").image).toBe("postgres:16");
    expect(service("redis").image).toBe("redis:7-alpine");
    expect(service("rabbitmq").image).toBe("rabbitmq:3.13-management-alpine");
    expect(service("mongo").image).toBe("mongo:7");
    expect(service("mongo-express").image).toMatch(/^mongo-express(:|$)/);
  });

  it.each([
    [5432, "system1-db", 5432],
    [5433, "system2-db", 5432],
    [5434, "endput-db", 5432],
    [6379, "redis", 6379],
    [5672, "rabbitmq", 5672],
    [15672, "rabbitmq", 15672],
    [5673, "rabbitmq-2", 5672],
    [15673, "rabbitmq-2", 15672],
    [5674, "rabbitmq-3", 5672],
    [15674, "rabbitmq-3", 15672],
    [27017, "mongo", 27017],
    [8081, "mongo-express", 8081],
    [4000, "gateway", 4000],
    [9464, "consumer", 9464],
  ])("publishes host port %i from %s (container port %i)", (host, name, container) => {
    expect(published(service(name)).get(host)).toBe(container);
    const others = names.filter((n) => n !== name && published(service(n)).has(host));
    expect(others, `host port ${host} is also published by`).toEqual([]);
  });

  it("runs Redis with an fsynced append-only file on a volume", () => {
    const redis = service("redis");
    expect(words(redis.command)).toMatch(/--appendonly yes/);
    expect(words(redis.command)).toMatch(/--appendfsync (everysec|always)/);
    const volumes = redis.volumes ?? [];
    expect(volumes.map((v) => v.split(":")[1])).toContain("/data");
    const named = volumes.map((v) => v.split(":")[0]!);
    for (const v of named) expect(Object.keys(compose.volumes ?? {})).toContain(v);
  });

  it("names the database each PostgreSQL service creates", () => {
    for (const db of ["system1", "system2", "endput"]) {
      expect(env(service(`${db}-db`))).toMatchObject({
        POSTGRES_DB: db,
        POSTGRES_USER: "postgres",
        POSTGRES_PASSWORD: "postgres",
      });
    }
  });

  it("gives every long-running service a healthcheck", () => {
    for (const name of names.filter((n) => n !== "mongo-express" && !ONE_SHOT.includes(n))) {
      const hc = service(name).healthcheck;
      expect(hc?.test, `${name} healthcheck.test`).toBeTruthy();
      expect(hc?.disable, `${name} healthcheck.disable`).not.toBe(true);
      const test = hc?.test ?? [];
      if (Array.isArray(test)) {
        expect(["CMD", "CMD-SHELL"], `${name} healthcheck.test[0]`).toContain(test[0]);
        expect(test.length, `${name} healthcheck.test has a command`).toBeGreaterThan(1);
      }
    }
    for (const db of ["system1-db", "system2-db", "endput-db"])
      expect(words(service(db).healthcheck?.test)).toContain("pg_isready");
    expect(words(service("redis").healthcheck?.test)).toMatch(/redis-cli\s+ping/);
    expect(words(service("rabbitmq").healthcheck?.test)).toMatch(/rabbitmq-diagnostics.*\bping\b/);
    expect(words(service("mongo").healthcheck?.test)).toMatch(/mongosh.*ping/);
  });

  it.each([
    ["gateway", 4000],
    ["consumer", 9464],
  ])("probes %s's /readyz on port %i and fails unless it answers 200", (name, port) => {
    const test = words(service(name).healthcheck?.test);
    expect(test).toContain(`http://127.0.0.1:${port}/readyz`);
    expect(test).toMatch(/200/);
    expect(test).toMatch(/process\.exit\(1\)|exit\(\s*1\s*\)/);
  });

  it("orders start-up with conditions on existing services", () => {
    for (const name of names) {
      for (const [dep, condition] of Object.entries(dependsOn(service(name)))) {
        expect(names, `${name} depends on an unknown service`).toContain(dep);
        expect(["service_healthy", "service_completed_successfully"], `${name} -> ${dep}`).toContain(condition);
        if (condition === "service_healthy") expect(service(dep).healthcheck?.test, `${dep} has no healthcheck`).toBeTruthy();
        if (condition === "service_completed_successfully") expect(ONE_SHOT, `${dep} is not a one-shot`).toContain(dep);
      }
    }
    expect(dependsOn(service("migrate"))).toEqual({
      "system1-db": "service_healthy",
      "system2-db": "service_healthy",
      "endput-db": "service_healthy",
    });
    for (const app of APPS) {
      const deps = dependsOn(service(app));
      for (const infra of INFRA) expect(deps[infra], `${app} -> ${infra}`).toBe("service_healthy");
      expect(deps.migrate, `${app} -> migrate`).toBe("service_completed_successfully");
    }
    expect(dependsOn(service("mongo-express")).mongo).toBe("service_healthy");
  });

  it("brings a crashed gateway or consumer back, neither waiting on the other", () => {
    for (const app of APPS) expect(service(app).restart, app).toBe("unless-stopped");
    expect(Object.keys(dependsOn(service("consumer")))).not.toContain("gateway");
    expect(Object.keys(dependsOn(service("gateway")))).not.toContain("consumer");
  });

  it("weighs the gateway's CPU above the stores' and the consumer's below, as GATEWAY_NICE and CONSUMER_NICE do outside containers", () => {
    // Docker's default weight is 1024; the kernel weighs niceness -5 at 3121, 0 at 1024 and 10 at 110.
    expect(service("gateway").cpu_shares).toBe(3121);
    expect(service("consumer").cpu_shares).toBe(110);
    for (const name of Object.keys(services).filter((n) => !(APPS as readonly string[]).includes(n)))
      expect(service(name).cpu_shares ?? 1024, name).toBe(1024);
    expect(env(service("gateway")).GATEWAY_NICE).toBe("0");
  });

  it("builds the app services from the Dockerfile at the repository root", () => {
    for (const name of [...APPS, ...ONE_SHOT]) {
      const build = service(name).build;
      const context = typeof build === "string" ? build : build?.context;
      const dockerfile = typeof build === "object" ? (build.dockerfile ?? "Dockerfile") : "Dockerfile";
      expect(context, `${name} build context`).toBe(".");
      expect(dockerfile, `${name} dockerfile`).toBe("Dockerfile");
    }
    expect(words(service("consumer").command)).toMatch(/consumer\/src\/main\.ts/);
    expect(words(service("migrate").command)).toMatch(/scripts\/prisma\.ts migrate/);
    // The gateway may rely on the image's CMD, but must not be pointed elsewhere.
    expect(words(service("gateway").command)).toMatch(/^$|gateway\/src\/main\.ts/);
  });

  it("points every URL of the app services at a service of this file", () => {
    for (const name of [...APPS, ...ONE_SHOT]) {
      for (const [key, value] of Object.entries(env(service(name))).flatMap(([k, v]) => urlsOf(v).map((u) => [k, u]))) {
        if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value!)) continue;
        const url = new URL(value!);
        expect(names, `${name} ${key}=${value}`).toContain(url.hostname);
        if (url.port) {
          const containerPorts = [...published(service(url.hostname)).values()];
          expect(containerPorts, `${name} ${key}: port ${url.port} is not one ${url.hostname} listens on`).toContain(
            Number(url.port),
          );
        }
      }
    }
  });

  it("wires each setting to the right service with that service's credentials", () => {
    const rabbit = env(service("rabbitmq"));
    expect(rabbit.RABBITMQ_DEFAULT_USER, "guest may only connect from localhost").toBeTruthy();
    expect(rabbit.RABBITMQ_DEFAULT_USER).not.toBe("guest");
    for (const name of APPS) {
      const e = env(service(name));
      for (const [key, host, db] of [
        ["SYSTEM1_DATABASE_URL", "system1-db", "system1"],
        ["SYSTEM2_DATABASE_URL", "system2-db", "system2"],
        ["ENDPUT_DATABASE_URL", "endput-db", "endput"],
      ] as const) {
        const url = new URL(e[key] ?? "missing:");
        const pg = env(service(host));
        expect(url.hostname, `${name} ${key}`).toBe(host);
        expect(url.pathname, `${name} ${key}`).toBe(`/${db}`);
        expect([url.username, url.password], `${name} ${key} credentials`).toEqual([pg.POSTGRES_USER, pg.POSTGRES_PASSWORD]);
      }
      expect(new URL(e.REDIS_URL ?? "missing:").hostname, `${name} REDIS_URL`).toBe("redis");
      expect(new URL(e.MONGO_URL ?? "missing:").hostname, `${name} MONGO_URL`).toBe("mongo");
      // Every node of the cluster profile, node 1 first.
      const amqp = urlsOf(e.AMQP_URL ?? "missing:").map((u) => new URL(u));
      expect(
        amqp.map((u) => u.hostname),
        `${name} AMQP_URL`,
      ).toEqual(RABBIT_NODES);
      for (const url of amqp)
        expect([url.username, url.password], `${name} AMQP_URL credentials`).toEqual([
          rabbit.RABBITMQ_DEFAULT_USER,
          rabbit.RABBITMQ_DEFAULT_PASS,
        ]);
    }
    expect(env(service("gateway")).GATEWAY_HOST).toBe("0.0.0.0");
    // Listening beyond loopback, the gateway only starts with a token (or an explicit opt-out).
    const gateway = readConfig(env(service("gateway")) as Partial<Record<keyof Env, string>>).gateway;
    expect(anonymousExposure(gateway)).toBeUndefined();
    expect(gateway.token).toBeDefined();
  });

  it("runs nodes 2 and 3 of a RabbitMQ cluster in the cluster profile, joining node 1", () => {
    const nodes = RABBIT_NODES.map((n) => service(n));
    expect(service("rabbitmq").profiles, "node 1 runs in every profile").toBeUndefined();
    for (const [i, node] of nodes.entries()) {
      const name = RABBIT_NODES[i]!;
      // The node name is rabbit@<hostname>: the hostname must be fixed and match the peer list.
      expect(node.hostname, `${name} hostname`).toBe(name);
      expect(node.image, `${name} image`).toBe(nodes[0]!.image);
      expect(env(node), `${name} user and cookie`).toEqual(env(nodes[0]!));
      const cookie = /-setcookie\s+(\S+)/.exec(env(node).RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS ?? "")?.[1];
      expect(cookie, `${name} shares an Erlang cookie`).toBeTruthy();
      // The health check's CLI needs the same cookie to reach its node.
      expect(words(node.healthcheck?.test)).toContain(`--erlang-cookie ${cookie}`);
      if (i === 0) continue;
      expect(node.profiles, `${name} profiles`).toEqual(["cluster"]);
      expect(dependsOn(node), `${name} starts after node 1`).toEqual({ rabbitmq: "service_healthy" });
      const mounted = (node.configs ?? []).map((c) => (typeof c === "string" ? { source: c, target: `/${c}` } : c));
      const conf = mounted.find((c) => c.target?.startsWith("/etc/rabbitmq/conf.d/"));
      expect(conf, `${name} mounts a cluster config into conf.d`).toBeDefined();
      const content = compose.configs?.[conf!.source]?.content ?? "";
      expect(content).toMatch(/^cluster_formation\.peer_discovery_backend\s*=\s*classic_config$/m);
      const peers = [...content.matchAll(/^cluster_formation\.classic_config\.nodes\.\d+\s*=\s*(\S+)$/gm)].map((m) => m[1]);
      expect(peers).toEqual(RABBIT_NODES.map((n) => `rabbit@${n}`));
    }
    // The apps see a list of nodes, so they declare quorum queues.
    for (const app of APPS)
      expect(readConfig(env(service(app)) as Partial<Record<keyof Env, string>>).broker.queueType).toBe("quorum");
  });

  it("sets only variables that common/config.ts knows", () => {
    const config = read("common/config.ts");
    for (const name of [...APPS, ...ONE_SHOT]) {
      const keys = Object.keys(env(service(name)));
      expect(keys.length, `${name} sets no environment`).toBeGreaterThan(0);
      const unknown = keys.filter((k) => !new RegExp(`^\\s*${k.replace(/[^A-Z0-9_]/gi, "\\$&")}:`, "m").test(config));
      expect(unknown, `${name} sets variables unknown to common/config.ts`).toEqual([]);
    }
  });
});

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");
  const lines = dockerfile.split("\n").map((l) => l.trim());

  it("builds on a Node 24 image", () => {
    const from = lines.filter((l) => /^FROM\s/i.test(l));
    expect(from.length).toBeGreaterThan(0);
    for (const l of from) expect(l).toMatch(/^FROM\s+(--platform=\S+\s+)?node:24[\w.-]*(\s|$)/i);
  });

  it("keeps the dev dependencies the services run with (tsx, prisma)", () => {
    const ci = lines.findIndex((l) => /\bnpm ci\b/.test(l));
    expect(ci, "npm ci").toBeGreaterThanOrEqual(0);
    expect(lines[ci]).not.toMatch(/--omit[= ]dev|--production|--only[= ]prod/);
    // With NODE_ENV=production in effect, npm ci silently omits dev dependencies.
    const nodeEnv = lines.findIndex((l) => /^ENV\b.*NODE_ENV/.test(l));
    if (nodeEnv >= 0 && nodeEnv < ci) expect(lines[ci]).toMatch(/--include[= ]dev/);
    expect(dockerfile).toMatch(/scripts\/prisma\.ts generate/);
  });

  it("leaves local state out of the build context", () => {
    const ignored = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim().replace(/^\/|\/$/g, ""));
    for (const entry of ["node_modules", ".local", ".git", "common/prisma/source", "common/prisma/endput"])
      expect(ignored).toContain(entry);
  });
});

// The flags the fault suite, the tests and the bench launch with (tests/support/world/launcher.ts)
// are the ones each deployment runs: a gateway started without its heap limits behaves
// differently under hostile requests than the one the suite measured.
describe("launch recipe", () => {
  const argv = (kind: keyof typeof LAUNCH) => ["node", ...LAUNCH[kind].nodeArgs, ENTRY[kind]];

  it("is the Dockerfile's command and environment", () => {
    const dockerfile = read("Dockerfile");
    const cmd = dockerfile.split("\n").find((l) => l.startsWith("CMD "));
    expect(JSON.parse(cmd!.slice(4))).toEqual(argv("gateway"));
    for (const [key, value] of Object.entries(LAUNCH.gateway.env))
      expect(dockerfile).toMatch(new RegExp(`\\b${key}=${value}\\b`));
  });

  it("is compose's command for each app service", () => {
    for (const kind of APPS) expect(services[kind]?.command, kind).toEqual(argv(kind));
  });

  it("is what npm run gateway and npm run consumer run", () => {
    const { scripts } = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    for (const kind of APPS) {
      const vars = Object.entries(LAUNCH[kind].env).map(([k, v]) => `${k}=${v} `);
      expect(scripts[kind], kind).toBe(`${vars.join("")}${argv(kind).join(" ")}`);
    }
  });

  it("is what scripts/start.sh runs", () => {
    const script = read("scripts/start.sh");
    const array = (name: string) => {
      const m = new RegExp(`^${name}=\\((.*)\\)$`, "m").exec(script);
      return m ? m[1]!.split(/\s+/) : [];
    };
    const expand = (words: string) =>
      words.split(/\s+/).flatMap((w) => {
        const ref = /^"\$\{(\w+)\[@\]\}"$/.exec(w);
        return ref ? array(ref[1]!) : [w];
      });
    for (const kind of APPS) {
      const line = script.split("\n").find((l) => l.startsWith(`run ${kind} `));
      const m = /^run \w+ \d+ (setsid )?(?:env ((?:\w+=\S+ )*))?(node .*)$/.exec(line ?? "");
      expect(m, `start.sh's run line for the ${kind}`).not.toBeNull();
      expect(m![1] !== undefined, `${kind} in a session of its own`).toBe(LAUNCH[kind].ownSession);
      expect(expand(m![3]!), kind).toEqual(argv(kind));
      const vars = Object.fromEntries(
        (m![2] ?? "")
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map((v) => v.split("=")),
      );
      expect(vars, kind).toEqual(LAUNCH[kind].env);
    }
  });
});
