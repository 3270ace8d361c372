// AMQP 0-9-1 transactions on a channel: the methods Tx.Select, Tx.Commit and Tx.Rollback
// (class tx, id 90) and their -Ok replies. amqplib encodes these methods but has no API
// for them, so they go through its channel's internal rpc (send a method, await the reply).
import type { Channel } from "amqplib";

const TX_CLASS = 90;
const method = (id: number) => (TX_CLASS << 16) | id;
const TX = {
  select: method(10),
  selectOk: method(11),
  commit: method(20),
  commitOk: method(21),
  rollback: method(30),
  rollbackOk: method(31),
} as const;

type RpcChannel = Channel & { rpc(method: number, fields: object, expect: number): Promise<unknown> };

/** Tx.Select: from now on the channel's publishes and acks take effect together, at the next commit. */
export async function txSelect(ch: Channel): Promise<void> {
  await (ch as RpcChannel).rpc(TX.select, {}, TX.selectOk);
}

/** Tx.Commit: the pending publishes and acks take effect atomically; if the channel dies first, none do. */
export async function txCommit(ch: Channel): Promise<void> {
  await (ch as RpcChannel).rpc(TX.commit, {}, TX.commitOk);
}

/** Tx.Rollback: the pending publishes and acks are discarded (the acked deliveries stay unacked). */
export async function txRollback(ch: Channel): Promise<void> {
  await (ch as RpcChannel).rpc(TX.rollback, {}, TX.rollbackOk);
}
