-- corio.json: JSON that keeps Lua 5.4's integers. `{"id": 1}` decodes to the integer 1,
-- every 64-bit integer round-trips exactly, floats use the shortest exact form, and JSON null
-- is `json.null` (distinct from a missing key). Exports: encode, decode, null, array,
-- is_array, object.
-- Exact both ways: a number too large for a float (1e400, a 400-digit integer) is an error
-- rather than infinity, and text must be valid UTF-8 (no overlong forms, no encoded
-- surrogates): decode and encode raise with the byte offset, or with {utf8 = "replace"}
-- put U+FFFD in place of each invalid sequence.
-- Why not lua-cjson 2.1.0: it decodes every number as a float and encodes at most 14 digits.
local M = {}

local byte, char, find, sub, format = string.byte, string.char, string.find, string.sub,
  string.format
local concat, tointeger, mtype, utf8char = table.concat, math.tointeger, math.type, utf8.char
local utf8len, huge = utf8.len, math.huge
local type, pairs, next, setmetatable, getmetatable, error, tostring, tonumber =
  type, pairs, next, setmetatable, getmetatable, error, tostring, tonumber

local MAX_DEPTH = 1000

-- The null sentinel: decode gives it for JSON null, encode writes it as null.
M.null = setmetatable({}, {
  __name = "corio.json.null",
  __tostring = function() return "null" end,
  __newindex = function() error("json.null is read-only", 2) end,
})
local null = M.null

-- Tables marked as arrays encode as arrays even when empty; decoded arrays carry the mark.
local array_mt = {__name = "corio.json.array"}
local object_mt = {__name = "corio.json.object"}

-- json.array([t]) -> t marked as a JSON array
function M.array(t) return setmetatable(t or {}, array_mt) end
-- json.object([t]) -> t marked as a JSON object (so an empty one encodes as {})
function M.object(t) return setmetatable(t or {}, object_mt) end
function M.is_array(t) return getmetatable(t) == array_mt end

-- ---- decoding -------------------------------------------------------------------------------

local function fail(s, pos, what)
  local near = sub(s, pos, pos + 9)
  if near == "" then
    error(format("json: %s at the end of the input", what), 0)
  end
  error(format("json: %s at position %d near '%s'", what, pos, near), 0)
end

local escapes = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
  [116] = "\t",
}

local decode_value

-- Strings: s itself when it is valid UTF-8 (strict: utf8.len rejects overlong forms,
-- surrogates and code points past U+10FFFF); else nil and the offset (1-based) of the first
-- invalid byte, or with `replace` the string with U+FFFD for each invalid sequence.
local function check_utf8(s, replace)
  if not find(s, "[\128-\255]") then return s end
  local ok, bad = utf8len(s)
  if ok then return s end
  if not replace then return nil, bad end
  local out, n, pos = {}, 0, 1
  while bad do
    n = n + 1; out[n] = sub(s, pos, bad - 1)
    n = n + 1; out[n] = "\u{FFFD}"
    -- skip the invalid byte and the continuation bytes after it
    pos = bad + 1
    while true do
      local b = byte(s, pos)
      if not b or b < 0x80 or b > 0xBF then break end
      pos = pos + 1
    end
    ok, bad = utf8len(s, pos)
    if ok then bad = nil end
  end
  n = n + 1; out[n] = sub(s, pos)
  return concat(out, "", 1, n)
end

local function skip(s, pos)
  return find(s, "[^ \t\r\n]", pos) or #s + 1
end

local replace_utf8 = false  -- decode's option, for the call in progress

local function decode_string(s, pos)
  -- pos is just after the opening quote
  local parts, n = nil, 0
  local start = pos
  while true do
    local q = find(s, '["\\\0-\31]', pos)  -- not %c: a raw DEL is allowed in JSON
    if not q then fail(s, start - 1, "unterminated string") end
    local c = byte(s, q)
    if c == 34 then
      local raw, bad
      if not parts then
        raw, bad = check_utf8(sub(s, start, q - 1), replace_utf8)
        if not raw then fail(s, start + bad - 1, "invalid UTF-8") end
        return raw, q + 1
      end
      raw, bad = check_utf8(sub(s, pos, q - 1), replace_utf8)
      if not raw then fail(s, pos + bad - 1, "invalid UTF-8") end
      n = n + 1; parts[n] = raw
      return concat(parts), q + 1
    elseif c == 92 then
      parts = parts or {}
      local raw, bad = check_utf8(sub(s, pos, q - 1), replace_utf8)
      if not raw then fail(s, pos + bad - 1, "invalid UTF-8") end
      n = n + 1; parts[n] = raw
      local e = byte(s, q + 1)
      if e == 117 then -- \uXXXX
        local hex = sub(s, q + 2, q + 5)
        if not find(hex, "^%x%x%x%x$") then fail(s, q, "invalid \\u escape") end
        local cp = tonumber(hex, 16)
        local nextpos = q + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = find(s, "^\\u[dD][c-fC-F]%x%x", nextpos)
          if not lo then fail(s, q, "unpaired UTF-16 surrogate") end
          local low = tonumber(sub(s, nextpos + 2, nextpos + 5), 16)
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
          nextpos = nextpos + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(s, q, "unpaired UTF-16 surrogate")
        end
        n = n + 1; parts[n] = utf8char(cp)
        pos = nextpos
      else
        local r = escapes[e]
        if not r then fail(s, q, "invalid escape") end
        n = n + 1; parts[n] = r
        pos = q + 2
      end
    else
      fail(s, q, "control character in string")
    end
  end
end

local function decode_number(s, pos)
  local i, j = find(s, "^-?%d+", pos)
  if not i then fail(s, pos, "unexpected character") end
  local digits_at = byte(s, pos) == 45 and pos + 1 or pos
  if byte(s, digits_at) == 48 and j > digits_at then fail(s, pos, "leading zero in number") end
  local isfloat = false
  local _, fj = find(s, "^%.%d+", j + 1)
  if fj then j = fj; isfloat = true
  elseif byte(s, j + 1) == 46 then fail(s, j + 1, "invalid number") end
  local _, ej = find(s, "^[eE][-+]?%d+", j + 1)
  if ej then j = ej; isfloat = true
  elseif find(s, "^[eE]", j + 1) then fail(s, j + 1, "invalid number") end
  local text = sub(s, pos, j)
  if not isfloat then
    -- Integers stay integers; one beyond 64 bits becomes the nearest float (as JSON allows).
    local v = tointeger(tonumber(text))
    if v and format("%d", v) == text then return v, j + 1 end
    v = tonumber(text .. ".0")
    if v == huge or v == -huge then fail(s, pos, "number out of range") end
    return v, j + 1
  end
  local v = tonumber(text)
  if v == huge or v == -huge then fail(s, pos, "number out of range") end
  return v, j + 1
end

local function decode_array(s, pos, depth)
  local t, n = setmetatable({}, array_mt), 0
  pos = skip(s, pos)
  if byte(s, pos) == 93 then return t, pos + 1 end
  while true do
    local v
    v, pos = decode_value(s, pos, depth)
    n = n + 1; t[n] = v
    pos = skip(s, pos)
    local c = byte(s, pos)
    if c == 93 then return t, pos + 1 end
    if c ~= 44 then fail(s, pos, "expected ',' or ']'") end
    pos = pos + 1
  end
end

local function decode_object(s, pos, depth)
  local t = {}
  pos = skip(s, pos)
  if byte(s, pos) == 125 then return t, pos + 1 end
  while true do
    if byte(s, pos) ~= 34 then fail(s, pos, "expected a string key") end
    local k
    k, pos = decode_string(s, pos + 1)
    pos = skip(s, pos)
    if byte(s, pos) ~= 58 then fail(s, pos, "expected ':'") end
    local v
    v, pos = decode_value(s, skip(s, pos + 1), depth)
    t[k] = v
    pos = skip(s, pos)
    local c = byte(s, pos)
    if c == 125 then return t, pos + 1 end
    if c ~= 44 then fail(s, pos, "expected ',' or '}'") end
    pos = skip(s, pos + 1)
  end
end

decode_value = function(s, pos, depth)
  pos = skip(s, pos)
  local c = byte(s, pos)
  if c == 123 or c == 91 then
    if depth >= MAX_DEPTH then fail(s, pos, "nested too deeply") end
    if c == 123 then return decode_object(s, pos + 1, depth + 1) end
    return decode_array(s, pos + 1, depth + 1)
  elseif c == 34 then
    return decode_string(s, pos + 1)
  elseif c == 116 and sub(s, pos, pos + 3) == "true" then
    return true, pos + 4
  elseif c == 102 and sub(s, pos, pos + 4) == "false" then
    return false, pos + 5
  elseif c == 110 and sub(s, pos, pos + 3) == "null" then
    return null, pos + 4
  elseif c == 45 or (c and c >= 48 and c <= 57) then
    return decode_number(s, pos)
  elseif not c then
    fail(s, pos, "unexpected end")
  end
  fail(s, pos, "unexpected character")
end

local function utf8_option(fname, opts)
  if opts == nil then return false end
  if type(opts) ~= "table" then
    error(format("json.%s: options must be a table, got %s", fname, type(opts)), 3)
  end
  local u = opts.utf8
  if u == nil or u == "strict" then return false end
  if u == "replace" then return true end
  error(format("json.%s: utf8 must be \"strict\" or \"replace\"", fname), 3)
end

-- json.decode(text[, {utf8 = "strict" | "replace"}]) -> value. Raises "json: ..." on
-- invalid input with the byte position (numbers beyond a float's range and invalid UTF-8 in
-- strings are invalid input; "replace" puts U+FFFD in place of the latter).
function M.decode(s, opts)
  if type(s) ~= "string" then
    error(format("json.decode: expected a string, got %s", type(s)), 2)
  end
  replace_utf8 = utf8_option("decode", opts)
  local ok, v, pos = pcall(decode_value, s, 1, 0)
  replace_utf8 = false
  if not ok then error(v, 0) end
  pos = skip(s, pos)
  if pos <= #s then fail(s, pos, "trailing garbage") end
  return v
end

-- ---- encoding -------------------------------------------------------------------------------

local str_escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local ch = char(i)
  if not str_escapes[ch] then str_escapes[ch] = format("\\u%04x", i) end
end
str_escapes["\127"] = "\\u007f"

local encode_replace = false  -- encode's option, for the call in progress

local function encode_string(s)
  local bad
  s, bad = check_utf8(s, encode_replace)
  if not s then
    error(format("json.encode: invalid UTF-8 at position %d of a string", bad), 0)
  end
  if not find(s, '[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', str_escapes) .. '"'
end

local function encode_number(v)
  if mtype(v) == "integer" then return format("%d", v) end
  if v ~= v or v == math.huge or v == -math.huge then
    error("json.encode: cannot encode " .. tostring(v), 0)
  end
  -- the shortest form that reads back as the same float
  for prec = 15, 17 do
    local s = format("%." .. prec .. "g", v)
    if tonumber(s) == v then
      if not find(s, "[.eEn]") then s = s .. ".0" end  -- keep it a float when decoded
      return s
    end
  end
end

local encode_value

local function encode_table(t, buf, n, depth, seen)
  if seen[t] then error("json.encode: a table contains itself", 0) end
  if depth >= MAX_DEPTH then error("json.encode: nested too deeply", 0) end
  seen[t] = true
  local mt = getmetatable(t)
  local len = #t
  local is_array = mt == array_mt
  if not is_array and mt ~= object_mt then
    if len > 0 then
      is_array = true
      for k in pairs(t) do
        if mtype(k) ~= "integer" or k < 1 or k > len then is_array = false; break end
      end
    end
  end
  if is_array then
    n = n + 1; buf[n] = "["
    for i = 1, len do
      if i > 1 then n = n + 1; buf[n] = "," end
      n = encode_value(t[i], buf, n, depth + 1, seen)
    end
    n = n + 1; buf[n] = "]"
  else
    n = n + 1; buf[n] = "{"
    local first = true
    for k, v in pairs(t) do
      local tk = type(k)
      if tk == "number" then k = mtype(k) == "integer" and format("%d", k) or encode_number(k)
      elseif tk ~= "string" then error("json.encode: cannot use a " .. tk .. " as a key", 0) end
      if not first then n = n + 1; buf[n] = "," end
      first = false
      n = n + 1; buf[n] = encode_string(k)
      n = n + 1; buf[n] = ":"
      n = encode_value(v, buf, n, depth + 1, seen)
    end
    n = n + 1; buf[n] = "}"
  end
  seen[t] = nil
  return n
end

encode_value = function(v, buf, n, depth, seen)
  local tv = type(v)
  local s
  if tv == "string" then s = encode_string(v)
  elseif tv == "number" then s = encode_number(v)
  elseif tv == "boolean" then s = v and "true" or "false"
  elseif v == null or v == nil then s = "null"
  elseif tv == "table" then return encode_table(v, buf, n, depth, seen)
  else error("json.encode: cannot encode a " .. tv, 0) end
  n = n + 1; buf[n] = s
  return n
end

-- json.encode(value[, {utf8 = "strict" | "replace"}]) -> text. Raises on values JSON cannot
-- hold (functions, NaN, infinities, cycles, strings that are not valid UTF-8 unless
-- "replace"). A table is an array when its keys are exactly 1..#t (or it was marked with
-- json.array).
function M.encode(v, opts)
  encode_replace = utf8_option("encode", opts)
  local buf = {}
  local ok, n = pcall(encode_value, v, buf, 0, 0, {})
  encode_replace = false
  if not ok then error(n, 0) end
  return concat(buf, "", 1, n)
end

return M
