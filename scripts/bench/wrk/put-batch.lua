-- wrk: every request appends a batch of 100 new events (no eventIds, so the server makes them).
local events = {}
for i = 1, 100 do
  events[i] = '{"eventType":"todo-added","body":{"title":"milk","done":false,"tags":["bench"]}}'
end
wrk.method = "PUT"
wrk.body = "[" .. table.concat(events, ",") .. "]"
wrk.headers["Content-Type"] = "application/json"
