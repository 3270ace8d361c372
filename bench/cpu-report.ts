// CPU time by process group: the cores each measurement kept busy, and the CPU
// microseconds per unit of work (message, row, order, attempt, request).
import { type CpuUsage, describeCores, OTHER, REAPED } from "./machine.ts";
import { fmt } from "./progress.ts";
import type { Results } from "./results.ts";

export interface PerUnit {
  total: number;
  groups: [string, number][];
}

/** CPU microseconds per unit, by group, leaving out the machine's other load and PostgreSQL children of unknown origin. */
export function perMessage(u: CpuUsage, count: number): PerUnit {
  const groups = Object.entries(u.groups)
    .filter(([g]) => g !== OTHER && g !== REAPED)
    .map(([g, s]): [string, number] => [g, (s * 1e6) / count])
    .sort((x, y) => y[1] - x[1]);
  return { total: groups.reduce((n, [, us]) => n + us, 0), groups };
}

/** Each measurement's CPU usage, the count of work it did and the unit of that work. */
function measurements(r: Results): [string, CpuUsage | undefined, number | undefined, string][] {
  return [
    ["raw publish", r.raw?.cpu.publish, r.raw?.messages, "msg"],
    ["raw publish+consume", r.raw?.cpu.publishConsume, r.raw?.messages, "msg"],
    ["publish only", r.publish?.cpu, r.publish?.rows, "row"],
    ...(r.scaling ?? []).map((s): [string, CpuUsage, number, string] => [`scaling ${s.consumers}`, s.cpu, s.orders, "order"]),
    [`live, ${r.live?.live?.subscribers} subscribers`, r.live?.cpu, r.live?.orders, "order"],
    ["e2e seed mix", r.mix?.cpu, r.mix?.attempts, "attempt"],
    ["read { __typename }", r.read?.cpu.trivial, r.read?.trivial.requests, "request"],
    ["read messageHistory", r.read?.cpu.history, r.read?.history.requests, "request"],
    ["refused 1 MB of tokens", r.read?.cpu.refused, r.read?.refused?.requests, "request"],
    ["raw again, both", r.rawAgain?.cpu.publishConsume, r.rawAgain?.messages, "msg"],
    ["e2e happy", r.happy?.cpu, r.happy?.orders, "order"],
    ["happy on big log", r.logGrowth?.cpu, r.logGrowth?.orders, "order"],
    ["profiled happy", r.profile?.run.cpu, r.profile?.run.orders, "order"],
  ];
}

export function cpuLines(r: Results): { cores: string[]; perMessage: string[]; json: Record<string, PerUnit> } {
  const cores: string[] = [];
  const per: string[] = [];
  const json: Record<string, PerUnit> = {};
  for (const [name, u, count, unit] of measurements(r)) {
    if (!u) continue;
    cores.push(`  ${name.padEnd(22)} machine ${u.machineCores.toFixed(2)} cores busy: ${describeCores(u)}`);
    if (!count) continue;
    const p = perMessage(u, count);
    json[name] = p;
    const parts = p.groups.filter(([, us]) => us >= 3).map(([g, us]) => `${g} ${fmt(us)}`);
    per.push(`  ${name.padEnd(22)} ${fmt(p.total).padStart(5)} µs per ${unit}: ${parts.join(", ")}`);
  }
  return { cores, perMessage: per, json };
}
