-- wrk script for native/bench/http_baselines.sh: BEP 3 announces (compact, BEP 23).
--
--   wrk -t1 -cN -dS -s native/bench/announce.lua http://HOST:PORT/announce -- HASH_FILE [NUMWANT]
--
-- HASH_FILE holds hex info hashes, one a line (the torrents opentracker whitelists). Each request
-- names one of them at random, a fresh random peer_id and port, and is a seeder one time in four.
-- done() prints one line for the script: "WRK requests=N seconds=S non2xx=N errors=N"
-- (errors leave out read errors: a tracker that closes after every reply, as opentracker does,
-- makes one per request).

local hex = {}
for i = 0, 255 do hex[i] = string.format("%%%02X", i) end

local hashes = {}
local numwant = "50"
local path = "/announce"

function init(args)
  local file = args[1]
  if not file then error("announce.lua: pass the hash file after --") end
  numwant = args[2] or numwant
  for line in io.lines(file) do
    if #line >= 40 then
      local t = {}
      for i = 1, 40, 2 do t[#t + 1] = hex[tonumber(line:sub(i, i + 1), 16)] end
      hashes[#hashes + 1] = table.concat(t)
    end
  end
  if #hashes == 0 then error("announce.lua: no hashes in " .. file) end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  if wrk.path ~= "" and wrk.path ~= "/" then path = wrk.path end
end

local id = {}
local random = math.random

function request()
  for i = 1, 20 do id[i] = hex[random(0, 255)] end
  return wrk.format("GET", path .. "?info_hash=" .. hashes[random(#hashes)]
    .. "&peer_id=" .. table.concat(id)
    .. "&port=" .. random(1024, 65535)
    .. "&uploaded=0&downloaded=0&left=" .. ((random(4) == 1) and "0" or "1000000")
    .. "&event=started&compact=1&numwant=" .. numwant)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d seconds=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.write + e.timeout))
end
