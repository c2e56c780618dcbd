-- bench/json.lua [ROUNDS] [MB] [REPS]: corio.json against lua-cjson and Python's json on one
-- generated document of mixed content (objects, arrays, integers, floats, ASCII and UTF-8
-- strings with escapes, nesting) of about MB megabytes (default 10), the same bytes for all
-- three. Each round runs every contender once, in a separate process, in turn (interleaved:
-- back-to-back runs of one contender flatter it on these VMs, see FACTS.md); prints the
-- medians of decode and encode throughput in MB/s (of the input text, and of the text each
-- encoder writes; each process keeps the best of REPS runs, default 3) and the ratio to
-- lua-cjson. Run from the repository root:
--   build/corio bench/json.lua 7 10
local rounds, mb = tonumber(arg[1]) or 7, tonumber(arg[2]) or 10
local reps = tonumber(arg[3]) or 3  -- per process: the best of reps decodes, then of reps encodes
local corio_bin = os.getenv("CORIO") or "build/corio"

-- one process: decode `path` REPS times, encode the result REPS times; prints best-of-reps
-- seconds for each and the encoded size
local LUA_WORKER = [[
local lib, path, reps = arg[1], arg[2], tonumber(arg[3])
local json = lib == "cjson" and require "cjson" or require "corio.json"
if lib == "cjson" then json.encode_number_precision(14) end
local f = assert(io.open(path, "rb")); local doc = f:read("a"); f:close()
local clock = os.clock
local td, te, v, out = math.huge, math.huge
for _ = 1, reps do
  collectgarbage(); local t0 = clock(); v = json.decode(doc); td = math.min(td, clock() - t0)
end
for _ = 1, reps do
  collectgarbage(); local t0 = clock(); out = json.encode(v); te = math.min(te, clock() - t0)
end
print(td, te, #out)
]]
local PY_WORKER = [[
import json, sys, time
path, reps = sys.argv[1], int(sys.argv[2])
doc = open(path, encoding="utf-8").read()
td = te = float("inf")
for _ in range(reps):
    t0 = time.process_time(); v = json.loads(doc); td = min(td, time.process_time() - t0)
for _ in range(reps):
    t0 = time.process_time(); out = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    te = min(te, time.process_time() - t0)
print(td, te, len(out.encode("utf-8")))
]]

-- The document: deterministic (a fixed LCG), mixed records until MB megabytes.
local function document(bytes)
  local seed = 12345
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
  local words = {"alpha", "beta", "gamma", "caf\\u00e9", "na\195\175ve", "Gr\195\188\195\159e",
                 "K\195\182ln", "\226\128\148", "\240\159\152\128", "tab\\tand\\nnewline",
                 "quote\\\"d", "back\\\\slash", "\\ud83d\\ude00", "plain text here"}
  local function str()
    local t = {}
    for i = 1, 1 + rnd(6) do t[i] = words[1 + rnd(#words)] end
    return '"' .. table.concat(t, " ") .. '"'
  end
  local function num()
    local r = rnd(4)
    if r == 0 then return tostring(rnd(1000000)) end
    if r == 1 then return tostring(rnd(2147483647) * 4294967296 + rnd(2147483647)) end
    if r == 2 then return string.format("%.2f", rnd(100000) / 100) end
    return string.format("%.17g", (rnd(2147483647) / 2147483647 - 0.5) * 10 ^ (rnd(20) - 10))
  end
  local parts, size, id = {}, 2, 0
  while size < bytes do
    id = id + 1
    local rec = ('{"id":%d,"name":%s,"price":%s,"qty":%s,"ok":%s,"none":null,'
                 .. '"tags":[%s,%s,%s],"pos":{"x":%s,"y":%s,"z":[%s,%s,%s,%s]},'
                 .. '"text":%s,"notes":[]}')
      :format(id, str(), num(), num(), rnd(2) == 0 and "true" or "false", str(), str(), str(),
              num(), num(), num(), num(), num(), num(), str())
    parts[#parts + 1] = rec
    size = size + #rec + 1
  end
  return "[" .. table.concat(parts, ",\n") .. "]"
end

local doc = document(math.floor(mb * 1e6))
local path = os.tmpname()
local f = assert(io.open(path, "wb")); f:write(doc); f:close()
local lua_w, py_w = os.tmpname(), os.tmpname()
f = assert(io.open(lua_w, "w")); f:write(LUA_WORKER); f:close()
f = assert(io.open(py_w, "w")); f:write(PY_WORKER); f:close()

local contenders = {
  {name = "corio.json", cmd = ("%s %s corio %s %d"):format(corio_bin, lua_w, path, reps)},
  {name = "lua-cjson", cmd = ("%s %s cjson %s %d"):format(corio_bin, lua_w, path, reps)},
  {name = "python3 json", cmd = ("python3 %s %s %d"):format(py_w, path, reps)},
}
local results = {}
for _ = 1, rounds do
  for _, c in ipairs(contenders) do
    local p = assert(io.popen(c.cmd))
    local td, te, n = p:read("n", "n", "n")
    p:close()
    assert(td, c.name .. " failed")
    results[c.name] = results[c.name] or {dec = {}, enc = {}}
    table.insert(results[c.name].dec, #doc / 1e6 / td)
    table.insert(results[c.name].enc, n / 1e6 / te)
  end
end
os.remove(path); os.remove(lua_w); os.remove(py_w)

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end
local function spread(t) return (t[#t] - t[1]) / median(t) * 100 end
print(("document: %.1f MB, %d rounds interleaved, medians (spread = (max-min)/median)")
      :format(#doc / 1e6, rounds))
print(("%-13s %10s %7s %7s %10s %7s %7s"):format("", "decode MB/s", "spread", "vs cjson",
                                                 "encode MB/s", "spread", "vs cjson"))
local base = results["lua-cjson"]
local bd, be = median(base.dec), median(base.enc)
for _, c in ipairs(contenders) do
  local r = results[c.name]
  local d, e = median(r.dec), median(r.enc)
  print(("%-13s %10.1f %6.0f%% %7.2fx %10.1f %6.0f%% %7.2fx"):format(c.name, d, spread(r.dec),
        d / bd, e, spread(r.enc), e / be))
end
