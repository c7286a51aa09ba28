-- wrk script for tests/soak/run: a mix of requests, every answer checked.
-- 80% GET /hello, 15% POST /upload of a fixed 16 KiB body (the app answers
-- its sha256), 5% GET /download of 256 KiB (the length and the first and
-- last bytes are checked). The expected values come from the environment
-- (soak.py computes them with the app's own generator).
local body = io.open(os.getenv("SOAK_BODY_FILE"), "rb"):read("*a")
local upload_answer = os.getenv("SOAK_UPLOAD_ANSWER")
local download_head = os.getenv("SOAK_DOWNLOAD_HEAD")
local download_tail = os.getenv("SOAK_DOWNLOAD_TAIL")
local download_size = tonumber(os.getenv("SOAK_DOWNLOAD_SIZE"))
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   n = 0
   bad = 0
   first_bad = ""
end

local function hex(s)
   return (s:gsub(".", function(c) return string.format("%02x", string.byte(c)) end))
end

function request()
   n = n + 1
   local k = n % 20
   if k < 16 then
      return wrk.format("GET", "/hello")
   elseif k < 19 then
      return wrk.format("POST", "/upload", {["Content-Type"] = "application/octet-stream"}, body)
   else
      return wrk.format("GET", "/download?bytes=" .. download_size .. "&seed=3")
   end
end

-- wrk does not say which request an answer is for: an answer must be
-- exactly one of the three right ones (a cut, a corrupted or a foreign
-- body is none of them).
function response(status, headers, rbody)
   local ok
   if rbody == "hello soak\n" then
      ok = true
   elseif rbody == upload_answer then
      ok = true
   elseif #rbody == download_size then
      ok = hex(rbody:sub(1, 16)) == download_head and hex(rbody:sub(-16)) == download_tail
   else
      ok = false
   end
   if status ~= 200 or not ok then
      bad = bad + 1
      if first_bad == "" then
         first_bad = status .. " " .. #rbody .. " " .. hex(rbody:sub(1, 32))
      end
   end
end

function done(summary, latency, requests)
   local total_bad, example = 0, ""
   for _, t in ipairs(threads) do
      total_bad = total_bad + t:get("bad")
      if example == "" then example = t:get("first_bad") end
   end
   io.write(string.format(
      '{"requests": %d, "bad": %d, "first_bad": "%s", "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d}\n',
      summary.requests, total_bad, example, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout, summary.duration,
      latency:percentile(50), latency:percentile(99)))
end
