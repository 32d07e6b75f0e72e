-- Loaded after every wrk script the bench runs (the service's and the baseline's, unchanged):
-- counts answers by status code when they are not 2xx, and prints one JSON line with the
-- figures the bench reads. wrk's latencies are in microseconds; reported in ms.
local threads_seen = {}
local script_setup = setup
function setup(thread)
  table.insert(threads_seen, thread)
  if script_setup then script_setup(thread) end
end

statuses = {}
samples = {}  -- the first body of each non-2xx status, to say what went wrong
function response(status, headers, body)
  if status > 299 then
    statuses[status] = (statuses[status] or 0) + 1
    if not samples[status] then samples[status] = string.sub(body or "", 1, 300) end
  end
end

function done(summary, latency, requests)
  local merged, bodies = {}, {}
  for _, thread in ipairs(threads_seen) do
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
    for status, body in pairs(thread:get("samples") or {}) do bodies[status] = body end
  end
  for status, body in pairs(bodies) do
    io.write("SAMPLE ", status, " ", (string.gsub(body, "\n", " ")), "\n")
  end
  local codes = {}
  for status, count in pairs(merged) do codes[#codes + 1] = '"' .. status .. '":' .. count end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    table.concat(codes, ",")))
end
