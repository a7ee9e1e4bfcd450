-- wrk script for the soak: a mixed workload over a fixed set of paths
-- (narinfo and NAR hits, NARs that must be filled from the flaky upstream,
-- and paths nobody has), counting statuses per kind.
local paths = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("SOAK_PATHS")) do
    table.insert(paths, line)
  end
  math.randomseed(os.time() + (args[1] or 0))
  statuses = {}
end

function request()
  current = paths[math.random(#paths)]
  return wrk.format("GET", current)
end

function response(status, headers, body)
  local cache = headers["x-cache-status"] or headers["X-Cache-Status"] or "-"
  local key = status .. "/" .. cache
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do
      total[k] = (total[k] or 0) + v
    end
  end
  local keys = {}
  for k in pairs(total) do table.insert(keys, k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    io.write(string.format("status %s %d\n", k, total[k]))
  end
  io.write(string.format("errors connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
  io.write(string.format("requests %d bytes %d p50_ms %.1f p99_ms %.1f\n",
    summary.requests, summary.bytes, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
