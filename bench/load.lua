-- wrk script for bench/load.sh: one kind of request per wrk process, every answer checked.
--
--   wrk -t1 -cN -dNs -s bench/load.lua URL -- LABEL KIND AUTH [EXPECTED_FILE]
--
-- LABEL    the name of this kind of traffic in the report (download-small, proxy, ...)
-- KIND
--   issue  POST URL (the gate's /v1/keys) with a small JSON body; a good answer is 201 with a
--          "token" in its JSON body.
--   get    GET URL (a store blob with a key, or a gate proxy route); a good answer is 200 whose
--          body is byte for byte the content of EXPECTED_FILE.
-- AUTH     "-" for none, else the value of an Authorization header sent with every request.
--
-- At the end, one machine-readable line for bench/load.sh (all times in microseconds):
--   LOAD_RESULT kind=K requests=N duration_us=N p50_us=N p99_us=N max_us=N wrong=N
--               errors=N statuses=200:N,503:N
--   LOAD_HIST kind=K V:C,V:C,...   latency distribution: C requests (fractional: from 1000
--                                  quantiles) in bucket V (us, 3 significant digits)
-- `wrong` counts answers with an unexpected status or body; `errors` counts wrk's socket
-- errors (connect, read, write) and timeouts.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Globals of each thread's Lua state (`done` runs in another one and reads them with
-- thread:get): label, kind, statuses, wrong.
local expected

function init(args)
  label, kind = args[1], args[2]
  local auth = args[3]
  if auth and auth ~= "-" then
    wrk.headers["Authorization"] = auth
  end
  if kind == "issue" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"resource":"blob:files/load/issued.bin","ops":["read"],"ttl":"1m"}'
  elseif kind == "get" then
    local f = assert(io.open(args[4], "rb"))
    expected = f:read("*a")
    f:close()
  else
    error("unknown kind " .. tostring(kind))
  end
  statuses = {}
  wrong = 0
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  local good
  if kind == "issue" then
    good = status == 201 and body ~= nil and string.find(body, '"token":"', 1, true) ~= nil
  else
    -- Lua strings are interned: equal content, one string; `==` is an exact comparison.
    good = status == 200 and body == expected
  end
  if not good then
    wrong = wrong + 1
  end
end

-- The bucket of a latency: exact below 1 ms, then 3 significant digits.
local function bucket(us)
  if us < 1000 then
    return us
  end
  local scale = 1
  while us >= 1000 * scale do
    scale = scale * 10
  end
  return math.floor(us / scale) * scale
end

function done(summary, latency, requests)
  local label = threads[1]:get("label")
  local all, bad = {}, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do
      all[k] = (all[k] or 0) + v
    end
    bad = bad + t:get("wrong")
  end
  local parts = {}
  for k, v in pairs(all) do
    table.insert(parts, k .. ":" .. v)
  end
  table.sort(parts)
  local e = summary.errors
  io.write(string.format(
    "LOAD_RESULT kind=%s requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d wrong=%d errors=%d statuses=%s\n",
    label, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, bad, e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
  -- The distribution as 1000 quantiles, each standing for a thousandth of the requests
  -- (this wrk's latency[i] does not give the raw counts).
  local hist, order = {}, {}
  if summary.requests > 0 then
    local share = summary.requests / 1000
    for i = 1, 1000 do
      local b = bucket(latency:percentile(i / 10))
      if hist[b] == nil then
        hist[b] = 0
        table.insert(order, b)
      end
      hist[b] = hist[b] + share
    end
  end
  local out = {}
  for _, b in ipairs(order) do
    table.insert(out, string.format("%d:%.3f", b, hist[b]))
  end
  io.write("LOAD_HIST kind=" .. label .. " " .. table.concat(out, ",") .. "\n")
end
