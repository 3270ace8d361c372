import type { ProcessingStatus } from "./operations.ts";

const LABELS: Record<ProcessingStatus, string> = {
  SUCCEEDED: "Succeeded",
  RETRY_SCHEDULED: "Retry scheduled",
  DEAD_LETTERED: "Dead-lettered",
  REJECTED: "Rejected",
  REDRIVEN: "Redriven",
  DISCARDED: "Discarded",
};

export function StatusBadge(props: { status: ProcessingStatus }) {
  return (
    <span class={`badge status-${props.status}`} title={props.status}>
      {LABELS[props.status] ?? props.status}
    </span>
  );
}
