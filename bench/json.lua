-- bench/json.lua corio|cjson [MB]: decode and encode a generated document of mixed content
-- (objects, arrays, integers, floats, ASCII and UTF-8 strings with escapes) of about MB
-- megabytes (default 10); prints "<lib> decode <MB/s> encode <MB/s>". bench/json.sh runs
-- the contenders interleaved.
local lib, mb = arg[1], tonumber(arg[2]) or 10
local rec = [[{"id": 123456, "price": 19.95, "ratio": -0.000123, "name": "caf\u00e9 \"na\u00efve\"",
"text": "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \ud83d\ude00 line\nbreak", "tags": ["a", "bb", "ccc"],
"ok": true, "none": null, "nested": {"x": [1, 2, 3, 4.5], "y": {"z": "deep"}}}]]
local n = math.ceil(mb * 1e6 / #rec)
local doc = "[" .. string.rep(rec, n, ",") .. "]"
local json = lib == "cjson" and require "cjson" or require "corio.json"
local clock = os.clock
local t0 = clock(); local v = json.decode(doc); local td = clock() - t0
t0 = clock(); local out = json.encode(v); local te = clock() - t0
print(("%s decode %.1f MB/s encode %.1f MB/s"):format(lib, #doc / 1e6 / td, #out / 1e6 / te))
