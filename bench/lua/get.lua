-- GET BENCH_PATH (a device download, the device list ...) with the auth header if any.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")

local path = c.env("BENCH_PATH", "/healthz")
local req

function init(args)
  req = wrk.format("GET", path, c.headers())
end

function request()
  return req
end

done = function(summary, latency, requests) c.report(summary, latency) end
