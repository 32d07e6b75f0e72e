-- wrk script for points-ledger.
-- SCENARIO: earn | order | order_tiers | redeem | hot | read | history | batch.
-- earn posts explicit points; order and order_tiers post an order the rules price (order_tiers
-- against a program with tiers and a first-purchase bonus: the member-dependent path).
-- Members are m1..mN, chosen with a Zipf distribution (exponent 1): a few customers buy often.
-- Every write carries a unique Idempotency-Key (or unique event ids in a batch).
local scenario = os.getenv("SCENARIO") or "earn"
local api_key = os.getenv("KEY")
local members = tonumber(os.getenv("MEMBERS") or "100000")
local batch_size = tonumber(os.getenv("BATCH") or "100")
local run_id = os.getenv("RUN_ID") or tostring(os.time())
local threads = {}
local counter = 0
local cdf = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  local total = 0
  for k = 1, members do total = total + 1 / k; cdf[k] = total end
  for k = 1, members do cdf[k] = cdf[k] / total end
end

local function zipf()
  local u, lo, hi = math.random(), 1, members
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function next_key()
  counter = counter + 1
  return run_id .. "-" .. scenario .. "-" .. tid .. "-" .. counter
end

local json = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. api_key}
local auth = {["Authorization"] = "Bearer " .. api_key}

local function post(path, body)
  json["Idempotency-Key"] = next_key()
  return wrk.format("POST", path, json, body)
end

function request()
  if scenario == "earn" then
    return post("/v1/earn", '{"member":"m' .. zipf() .. '","points":10}')
  elseif scenario == "order" or scenario == "order_tiers" then
    return post("/v1/earn", '{"member":"m' .. zipf() .. '","order":{"id":"' .. next_key() ..
      '","amount":' .. math.random(500, 20000) .. ',"currency":"EUR"}}')
  elseif scenario == "redeem" then
    return post("/v1/redeem", '{"member":"m' .. zipf() .. '","points":1}')
  elseif scenario == "hot" then
    return post("/v1/earn", '{"member":"m1","points":10}')
  elseif scenario == "read" then
    return wrk.format("GET", "/v1/members/m" .. zipf(), auth)
  elseif scenario == "history" then
    return wrk.format("GET", "/v1/members/m" .. zipf() .. "/transactions?limit=20", auth)
  elseif scenario == "batch" then
    local events = {}
    for i = 1, batch_size do
      -- a till's backlog: its customers spread over the whole membership
      local member = math.random(1, members)
      events[i] = '{"id":"' .. next_key() .. '","type":"earn","member":"m' .. member .. '","points":3}'
    end
    return wrk.format("POST", "/v1/events/batch", json, '{"events":[' .. table.concat(events, ",") .. ']}')
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
