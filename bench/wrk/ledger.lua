-- wrk script for points-ledger (the bench appends wrk/summary.lua for its done()).
-- SCENARIO: earn | order | tiers | redeem | hot | read | history | batch.
--   earn: explicit points; order and tiers: an order the program's rules price (tiers runs once
--   the program has tiers, a first-purchase bonus and a daily cap); hot: every earn on m1.
-- Members are m1..mN, chosen with a Zipf distribution (exponent 1): a few customers buy often.
-- Batches spread their members uniformly (a till's backlog covers the whole membership).
-- Every write carries a unique Idempotency-Key (or unique event ids in a batch).
-- To add a scenario (e.g. a reward redemption), add a branch to request() and a Scenario in
-- bench/scenarios.py.
local scenario = os.getenv("SCENARIO") or "earn"
local api_key = os.getenv("KEY")
local members = tonumber(os.getenv("MEMBERS") or "100000")
local batch_size = tonumber(os.getenv("BATCH") or "1000")
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

local function order()
  return post("/v1/earn", '{"member":"m' .. zipf() .. '","order":{"id":"' .. next_key() ..
    '","amount":' .. math.random(500, 20000) .. ',"currency":"EUR"}}')
end

local function batch()
  local events = {}
  for i = 1, batch_size do
    events[i] = '{"id":"' .. next_key() .. '","type":"earn","member":"m' ..
      math.random(1, members) .. '","points":3}'
  end
  json["Idempotency-Key"] = nil  -- a batch's keys are its events' ids
  return wrk.format("POST", "/v1/events/batch", json,
    '{"events":[' .. table.concat(events, ",") .. ']}')
end

local requests = {
  earn = function() return post("/v1/earn", '{"member":"m' .. zipf() .. '","points":10}') end,
  order = order,
  tiers = order,
  redeem = function() return post("/v1/redeem", '{"member":"m' .. zipf() .. '","points":1}') end,
  hot = function() return post("/v1/earn", '{"member":"m1","points":10}') end,
  read = function() return wrk.format("GET", "/v1/members/m" .. zipf(), auth) end,
  history = function()
    return wrk.format("GET", "/v1/members/m" .. zipf() .. "/transactions?limit=20", auth)
  end,
  batch = batch,
  -- NEXT SCENARIO: a reward redemption (POST /v1/rewards/.../redeem, not built yet) goes here.
}

request = requests[scenario] or error("unknown SCENARIO " .. scenario)
