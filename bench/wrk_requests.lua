-- Cycles through pre-signed requests from REQFILE (see gen_requests.mjs).
local reqs = {}
local idx = 0
local path = os.getenv("CG_BENCH_PATH") or "/webhook/card"
local file = os.getenv("CG_BENCH_REQFILE")
local n = 0

-- Built in init, not at load time: only then does wrk.headers carry the Host
-- header (HTTP/1.1 servers such as nginx and Node answer 400 without it).
init = function(args)
  for line in io.lines(file) do
    local ts, nonce, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {
      ["Host"] = wrk.headers["Host"],
      ["Content-Type"] = "application/json",
      ["X-Lark-Request-Timestamp"] = ts,
      ["X-Lark-Request-Nonce"] = nonce,
      ["X-Lark-Signature"] = sig,
    }, body)
  end
  n = #reqs
  idx = math.random(0, n - 1)
end

request = function()
  idx = idx + 1
  if idx > n then idx = 1 end
  return reqs[idx]
end

local non2xx = 0
response = function(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("CGBENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d errors=%d non2xx_status=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
