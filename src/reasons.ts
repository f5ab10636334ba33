// Reason phrases for the status codes Apie sends (node:http is not loaded under CGI).
export const REASONS: Record<number, string> = {
  200: 'OK', 204: 'No Content', 206: 'Partial Content', 304: 'Not Modified',
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Content Too Large',
  416: 'Range Not Satisfiable', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
};
