// What an event sent for appending may look like, and what a stream may be
// called: one home for these rules, shared by the server (which answers 400
// with the message) and the client (which refuses to queue such an event).

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const STREAM_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const FIELDS = new Set(['eventType', 'body', 'eventId']);

/** The first problem with an event to append, or null when it is well-formed. */
export function eventInputProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'the event must be a JSON object';
  for (const key of Object.keys(value)) {
    if (!FIELDS.has(key)) return `unknown field "${key}": an event has eventType, body and optionally eventId`;
  }
  const { eventType, body, eventId } = value as Record<string, unknown>;
  if (eventType === undefined) return 'eventType is missing';
  if (typeof eventType !== 'string') return 'eventType must be a string';
  if (eventType === '') return 'eventType must not be empty';
  if ([...eventType].length > 256) return 'eventType is over 256 characters';
  if (!Object.hasOwn(value, 'body') || body === undefined) return 'body is missing';
  if (eventId !== undefined && (typeof eventId !== 'string' || !UUID_RE.test(eventId))) return 'eventId must be a UUID';
  return null;
}
