-- checkin.lua: wrk posts real agent check-ins (POST /v1/checkin), each
-- authenticated as one of the enrolled agents in the credentials file.
--
--   VIGIL_WRK_CREDS=creds.txt wrk -t2 -c64 -d10s --latency \
--       -s bench/wrk/checkin.lua http://127.0.0.1:PORT
--
-- The credentials file (written by the benchmark that enrolls the agents,
-- bench/loadgen BenchmarkCheckInTools, or by hand) has on its first line
-- the check-in path (for example /vigil/v1/checkin) and then one line per
-- agent: its bearer credential "AGENTID.SECRET", a tab, and the JSON body
-- the agent sends (epoch, hostname, os, arch, version, groups, last_seq,
-- counters, on_access), as internal/agent/loop.go builds it.
--
-- Thread k of n takes the agents k, k+n, k+2n, ... in turn, so every
-- agent checks in and the agents go round robin across the threads and,
-- within a thread, across its connections. Each request is formatted
-- once, at start, so that wrk measures the server, not the script.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path = os.getenv("VIGIL_WRK_CREDS")
   if path == nil or path == "" then
      error("VIGIL_WRK_CREDS: name the credentials file")
   end
   local f = assert(io.open(path, "r"))
   local route = f:read("*l")
   local lines = {}
   for line in f:lines() do
      table.insert(lines, line)
   end
   f:close()
   local n = tonumber(os.getenv("VIGIL_WRK_THREADS") or "")
   if n == nil then
      error("VIGIL_WRK_THREADS: give the number of threads (wrk's -t)")
   end
   reqs = {}
   for i = id + 1, #lines, n do
      local tab = string.find(lines[i], "\t", 1, true)
      if tab == nil then
         error("credentials file line " .. (i + 1) .. ": want CREDENTIAL<TAB>BODY")
      end
      local cred = string.sub(lines[i], 1, tab - 1)
      local body = string.sub(lines[i], tab + 1)
      table.insert(reqs, wrk.format("POST", route, {
         ["Authorization"] = "Bearer " .. cred,
         ["Content-Type"] = "application/json",
         ["User-Agent"] = "vigil-agent (wrk)",
      }, body))
   end
   if #reqs == 0 then
      error("thread " .. id .. " has no agent: fewer agents than threads?")
   end
   nextreq = 0
end

function request()
   nextreq = nextreq % #reqs + 1
   return reqs[nextreq]
end
