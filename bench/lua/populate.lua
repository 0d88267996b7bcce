-- Creates BENCH_COUNT devices named <BENCH_PREFIX><0000000..> with one small raw upload each.
-- Thread i of BENCH_THREADS takes ids i, i+n, i+2n ... then sends GET /healthz until every one
-- of its uploads has been answered (PUT answers carry the device id), and stops itself.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")

local count = tonumber(c.env("BENCH_COUNT", "1000"))
local prefix = c.env("BENCH_PREFIX", "dev-")
local body = c.env("BENCH_BODY", "telemetry")
local headers, idle
local all_threads = {}
local tid, nthreads, next_id, sent, answered, failed = 0, 1, 0, 0, 0, 0
local exhausted_at = nil

function setup(thread)
  thread:set("tid", #all_threads)
  table.insert(all_threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  nthreads = tonumber(c.env("BENCH_THREADS", "1"))
  next_id = tid
  headers = c.headers({["Content-Type"] = "application/octet-stream"})
  idle = wrk.format("GET", "/healthz", c.headers())
end

function request()
  if next_id >= count then return idle end
  local path = string.format("/api/devices/%s%07d", prefix, next_id)
  next_id = next_id + nthreads
  sent = sent + 1
  return wrk.format("PUT", path, headers, body)
end

function response(status, hdrs, resp_body)
  if status ~= 200 then
    failed = failed + 1
    answered = answered + 1
    wrk.thread:set("failed", failed)
  elseif resp_body and string.find(resp_body, prefix, 1, true) then
    answered = answered + 1
  end
  -- Each connection is sequential, so a few seconds of idle requests after the last upload
  -- means every upload was answered, even if one answer was miscounted.
  if next_id >= count then
    exhausted_at = exhausted_at or os.time()
    if answered >= sent or os.time() - exhausted_at >= 3 then wrk.thread:stop() end
  end
end

done = function(summary, latency, requests)
  local f = 0
  for _, t in ipairs(all_threads) do f = f + (tonumber(t:get("failed")) or 0) end
  io.write(string.format("POPULATE_FAILED %d\n", f))
  c.report(summary, latency)
end
