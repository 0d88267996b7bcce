-- The fleet benchmark's load (bench/fleet.py): PUT a BENCH_SIZE-byte raw body (BENCH_METHOD=PUT)
-- to <BENCH_PREFIX><n>, n cycling over BENCH_DEVICES ids, or GET BENCH_PATH (BENCH_METHOD=GET).
-- Each connection is one client waiting for its answer. Besides the usual JSON report it prints
-- its latency quantile grid (WRKQ), so that fleet.py can merge the runs of two wrk processes.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")

local method = c.env("BENCH_METHOD", "PUT")
local size = tonumber(c.env("BENCH_SIZE", "1024"))
local devices = tonumber(c.env("BENCH_DEVICES", "100000"))
local prefix = c.env("BENCH_PREFIX", "fleet-")
local path = c.env("BENCH_PATH", "/healthz")
local body = string.rep("x", size)
local headers, get
local counter = 0

function init(args)
  headers = c.headers({["Content-Type"] = "application/octet-stream"})
  get = wrk.format("GET", path, c.headers())
end

function request()
  if method == "GET" then return get end
  counter = counter + 1
  return wrk.format("PUT", string.format("/api/devices/%s%d", prefix, counter % devices),
                    headers, body)
end

done = function(summary, latency, requests)
  c.report(summary, latency)
  local q = {}
  for i = 1, 99 do q[#q + 1] = string.format('[%g,%d]', i, latency:percentile(i)) end
  for i = 1, 9 do q[#q + 1] = string.format('[%g,%d]', 99 + i / 10, latency:percentile(99 + i / 10)) end
  q[#q + 1] = string.format('[100,%d]', latency.max)
  io.write('WRKQ [' .. table.concat(q, ",") .. ']\n')
end
