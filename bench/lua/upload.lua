-- PUT /api/devices/<id> with a BENCH_SIZE-byte body, multipart (field "file") or raw
-- (BENCH_MODE=raw). Device ids cycle through BENCH_DEVICES ids per thread.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")

local size = tonumber(c.env("BENCH_SIZE", "1024"))
local devices = tonumber(c.env("BENCH_DEVICES", "1000"))
local mode = c.env("BENCH_MODE", "multipart")
local prefix = c.env("BENCH_PREFIX", "bench-")
local payload = string.rep("x", size)
local body, headers
local counter = 0
local tid = 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  if mode == "raw" then
    body = payload
    headers = c.headers({["Content-Type"] = "application/octet-stream"})
  else
    local boundary = "----mindprojectbench7d1a"
    body = "--" .. boundary .. "\r\n" ..
      'Content-Disposition: form-data; name="file"; filename="telemetry.bin"\r\n' ..
      "Content-Type: application/octet-stream\r\n\r\n" ..
      payload .. "\r\n--" .. boundary .. "--\r\n"
    headers = c.headers({["Content-Type"] = "multipart/form-data; boundary=" .. boundary})
  end
end

function request()
  counter = counter + 1
  local path = string.format("/api/devices/%s%d-%d", prefix, tid, counter % devices)
  return wrk.format("PUT", path, headers, body)
end

done = function(summary, latency, requests) c.report(summary, latency) end
