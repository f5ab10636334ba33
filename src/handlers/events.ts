// The event stream. Placeholder until the event-stream issue lands.
import { httpError } from '../errors.ts';

export function getEvents(): never {
  throw httpError(501, 'not implemented yet');
}
export const appendEvent = getEvents;
export const verifyEvents = getEvents;
export const getEvent = getEvents;
