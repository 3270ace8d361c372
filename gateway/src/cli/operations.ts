// The operations the CLI sends (a test checks they stay within the gateway's limits).
export const WATCH = `subscription Watch($system: System, $status: ProcessingStatus) {
  processingEvents(system: $system, status: $status) { messageId system orderId attempt round status error at }
}`;
