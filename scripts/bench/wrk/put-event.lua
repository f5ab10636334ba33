-- wrk: every request appends a new event (no eventId, so the server makes one).
wrk.method = "PUT"
wrk.body = '{"eventType":"todo-added","body":{"title":"milk","done":false,"tags":["bench"]}}'
wrk.headers["Content-Type"] = "application/json"
