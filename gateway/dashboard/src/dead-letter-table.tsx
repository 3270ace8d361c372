// What the two dead-letter panels share: the load error, the last action's result, and a
// table whose last column holds each row's actions.
import type { ComponentChildren } from "preact";

import { shortId } from "./format.ts";
import type { Polled } from "./use-poll.ts";

export interface Column {
  label: string;
  numeric?: boolean;
}

export function DeadLetterTable(props: {
  columns: Column[];
  polled: Polled<unknown>;
  /** The single row's text while there are no rows to show. */
  empty: { unavailable: string; none: string } | null;
  result: ComponentChildren;
  resultTestId: string;
  children: ComponentChildren;
}) {
  const { columns, polled, empty } = props;
  return (
    <>
      {polled.error && (
        <p class="panel-error" role="alert">
          {polled.error}
        </p>
      )}
      {props.result && (
        <p class="result" role="status" data-testid={props.resultTestId}>
          {props.result}
        </p>
      )}
      <div class="scroll short">
        <table>
          <thead>
            <tr>
              {columns.map((c) => (
                <th key={c.label} scope="col" class={c.numeric ? "num" : undefined}>
                  {c.label}
                </th>
              ))}
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {empty && (
              <tr>
                <td colSpan={columns.length + 1} class="empty">
                  {polled.error ? empty.unavailable : polled.data ? empty.none : "Loading…"}
                </td>
              </tr>
            )}
            {props.children}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** A message id that opens its attempt timeline. */
export function MessageLink(props: { messageId: string; onSelect(messageId: string): void }) {
  return (
    <button
      type="button"
      class="link mono"
      title={`Show the attempt timeline of ${props.messageId}`}
      onClick={() => props.onSelect(props.messageId)}
    >
      {shortId(props.messageId)}
    </button>
  );
}
