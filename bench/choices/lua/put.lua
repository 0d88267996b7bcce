-- wrk script: PUT /upload with a 1 KiB multipart/form-data body (field "file").
-- The body is built once in init(); done() prints one machine-readable line.
local boundary = "----mindproject-bench-7d1f0c3a9b"
local size = 1024

function init(args)
  if args[1] then size = tonumber(args[1]) end
  local bytes = {}
  math.randomseed(12345)
  for i = 1, size do
    -- printable bytes so the payload never contains the boundary or CR/LF
    bytes[i] = string.char(math.random(33, 126))
  end
  local body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="t.bin"\r\n'
    .. "Content-Type: application/octet-stream\r\n\r\n"
    .. table.concat(bytes)
    .. "\r\n--" .. boundary .. "--\r\n"
  wrk.method = "PUT"
  wrk.path = "/upload"
  wrk.body = body
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

-- No response() hook: it would make wrk call into Lua per response. wrk counts
-- statuses > 399 in summary.errors.status, which is all we need.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, "
      .. "\"mean_us\": %.1f, \"err_connect\": %d, \"err_read\": %d, \"err_write\": %d, "
      .. "\"err_status\": %d, \"err_timeout\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
