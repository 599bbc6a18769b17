-- wrk script for bench_webhook.py: sends precomputed, signed webhook requests (one
-- "<signature>\t<body>" per line of args[1]); each of the args[2] wrk threads sends its own
-- share once, in file order, then stops and touches "<args[3]>.<thread index>". Bodies are
-- signed in Python beforehand.
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  done_path = args[3]
  reqs = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == thread_index then
      local signature, body = line:match("^(%x+)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/api/webhooks/call", {
        ["Content-Type"] = "application/json",
        ["X-Callkaro-Signature"] = signature,
      }, body)
    end
    i = i + 1
  end
  sent = 0
  received = 0
  non200 = 0
end

function request()
  sent = sent + 1
  -- Past the end (at most one per connection, just before stop) repeat the last request:
  -- a duplicate the app answers 200 and ignores.
  return reqs[math.min(sent, #reqs)]
end

function response(status, headers, body)
  received = received + 1
  if status ~= 200 then
    non200 = non200 + 1
  end
  if received == #reqs then
    -- wrk's main thread sleeps for the whole -d duration whatever the threads do: tell the
    -- harness, which stops wrk with SIGINT so that the reported duration is the real one.
    local marker = io.open(done_path .. "." .. thread_index, "w")
    marker:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non200=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    bad, e.connect + e.read + e.write + e.timeout))
end
