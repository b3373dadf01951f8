-- wrk script for scripts/bench-read.sh: each request gets its own parameters, so the benchmark
-- does not measure one cached page. BENCH_CASE picks the query; the seed layout (senders, days,
-- the rare word) must match the seeding SQL in bench-read.sh.
local case = os.getenv("BENCH_CASE") or "all"
local senders = tonumber(os.getenv("SENDERS") or "10000")
local cursor = os.getenv("BENCH_CURSOR") or ""
local word = os.getenv("BENCH_WORD") or "refund"
-- "off" sends Prefer: consistency=eventual (no read-your-writes wait); BENCH_LOAD only labels.
local consistency = os.getenv("BENCH_CONSISTENCY") or "on"
local load = os.getenv("BENCH_LOAD") or "idle"

local counter = 0
local threads = {}
stale = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function response(status, headers, body)
  if (headers["consistency"] or headers["Consistency"]) == "stale" then
    stale = stale + 1
  end
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

local function sender()
  -- '+' percent-encoded; the raw form is covered by the tests.
  return string.format("%%2B91%07d", math.random(0, senders - 1))
end

-- The seeded year: 2025 as bench-read.sh seeds it, or BENCH_DAY0 (unix seconds of its first
-- midnight UTC) for a database seeded otherwise (scripts/bench-growth.sh).
local day0 = tonumber(os.getenv("BENCH_DAY0") or "1735689600")

local function day()
  local t = day0 + math.random(0, 363) * 86400
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

function request()
  local q
  local prefer = {}
  if consistency == "off" then
    prefer[#prefer + 1] = "consistency=eventual"
  end
  if case == "all" then
    q = "/messages"
  elseif case == "from" then
    q = "/messages?from=" .. sender()
  elseif case == "since" then
    q = "/messages?since=" .. day()
  elseif case == "since_until" then
    local a = day()
    q = "/messages?since=" .. a .. "&until=" .. day()
  elseif case == "q" then
    q = "/messages?q=" .. word
  elseif case == "q_estimated" then
    q = "/messages?q=" .. word
    prefer[#prefer + 1] = "count=estimated"
  elseif case == "q_from" then
    q = "/messages?q=" .. word .. "&since=" .. day()
  elseif case == "cursor" then
    q = "/messages?cursor=" .. cursor
  elseif case == "offset" then
    q = "/messages?offset=5000"
  elseif case == "stats" then
    q = "/stats"
  elseif case == "series_day" then
    q = "/stats/timeseries?bucket=day"
  elseif case == "series_hour" then
    -- A cut first hour, then whole hours to the end of the year.
    q = "/stats/timeseries?bucket=hour&since=" .. string.gsub(day(), "T00:00:00Z", "T10:30:00Z")
  elseif case == "series_from" then
    q = "/stats/timeseries?bucket=day&from=" .. sender()
  else
    error("unknown BENCH_CASE " .. case)
  end
  local headers = {}
  if #prefer > 0 then
    headers["Prefer"] = table.concat(prefer, ", ")
  end
  return wrk.format("GET", q, headers)
end

function done(summary, latency, requests)
  local stale_total = 0
  for _, thread in ipairs(threads) do
    stale_total = stale_total + thread:get("stale")
  end
  io.write(string.format(
    "RESULT case=%s consistency=%s load=%s requests=%d errors=%d non2xx=%d rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f stale=%d\n",
    case, consistency, load, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, stale_total))
end
