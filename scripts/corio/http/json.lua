-- A small JSON codec for corio.http, used only when corio.json is not available: lua-cjson
-- 2.1.0 turns every number into a float and rounds to 14 digits, which would corrupt ids.
-- Rules: integers stay integers (floats beyond 64 bits stay floats), null is cjson.null,
-- decode raises on malformed input with the byte position. `corio.http.json` exports
-- decode, encode and null.
local cjson = require "cjson"

local M = {null = cjson.null}

local byte, sub, find, concat = string.byte, string.sub, string.find, table.concat
local tointeger, tonumber = math.tointeger, tonumber
local utf8char = utf8.char

local escapes = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                 r = "\r", t = "\t"}

local function fail(s, i, what)
  error(("json: %s at byte %d"):format(what, i), 0)
end

local decode_value

local function skip(s, i)
  return find(s, "[^ \t\r\n]", i) or #s + 1
end

local function decode_string(s, i)
  -- s:sub(i, i) == '"'
  local parts, n = {}, 0
  local j = i + 1
  while true do
    local a, b = find(s, '^[^"\\%c]+', j)
    if a then n = n + 1; parts[n] = sub(s, a, b); j = b + 1 end
    local c = sub(s, j, j)
    if c == '"' then return concat(parts), j + 1 end
    if c == "\\" then
      local e = sub(s, j + 1, j + 1)
      if e == "u" then
        local hex = sub(s, j + 2, j + 5)
        if not find(hex, "^%x%x%x%x$") then fail(s, j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        j = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = find(s, "^\\u[dD][c-fC-F]%x%x", j) and tonumber(sub(s, j + 2, j + 5), 16)
          if not lo then fail(s, j, "lone surrogate") end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          j = j + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(s, j, "lone surrogate")
        end
        n = n + 1; parts[n] = utf8char(cp)
      else
        local v = escapes[e]
        if not v then fail(s, j, "bad escape") end
        n = n + 1; parts[n] = v
        j = j + 2
      end
    elseif c == "" then
      fail(s, j, "unterminated string")
    else
      fail(s, j, "control character in string")
    end
  end
end

local function decode_number(s, i)
  local a, b, int, frac, exp = find(s, "^(-?%d+)(%.?%d*)([eE]?[-+]?%d*)", i)
  if not a or find(int, "^-?0%d") or frac == "." or (exp ~= "" and not find(exp, "^[eE][-+]?%d+$"))
  then
    fail(s, i, "bad number")
  end
  local text = sub(s, a, b)
  if frac == "" and exp == "" then
    local v = tointeger(tonumber(text))
    -- tonumber gives a float past 64 bits: keep it (precision lost as in any decoder)
    if v and #int <= 20 then return v, b + 1 end
  end
  return tonumber(text) + 0.0, b + 1
end

local literals = {t = {"true", true}, f = {"false", false}, n = {"null", M.null}}

decode_value = function(s, i, depth)
  i = skip(s, i)
  local c = sub(s, i, i)
  if c == '"' then return decode_string(s, i) end
  if c == "{" then
    if depth > 1000 then fail(s, i, "nesting too deep") end
    local obj = {}
    i = skip(s, i + 1)
    if sub(s, i, i) == "}" then return obj, i + 1 end
    while true do
      if sub(s, i, i) ~= '"' then fail(s, i, "expected a string key") end
      local k
      k, i = decode_string(s, i)
      i = skip(s, i)
      if sub(s, i, i) ~= ":" then fail(s, i, "expected ':'") end
      obj[k], i = decode_value(s, i + 1, depth + 1)
      i = skip(s, i)
      local d = sub(s, i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then fail(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  end
  if c == "[" then
    if depth > 1000 then fail(s, i, "nesting too deep") end
    local arr, n = {}, 0
    i = skip(s, i + 1)
    if sub(s, i, i) == "]" then return arr, i + 1 end
    while true do
      n = n + 1
      arr[n], i = decode_value(s, i, depth + 1)
      i = skip(s, i)
      local d = sub(s, i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then fail(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  end
  local lit = literals[c]
  if lit then
    if sub(s, i, i + #lit[1] - 1) ~= lit[1] then fail(s, i, "bad literal") end
    return lit[2], i + #lit[1]
  end
  if c == "-" or find(c, "^%d") then return decode_number(s, i) end
  if c == "" then fail(s, i, "unexpected end of input") end
  fail(s, i, "unexpected character")
end

-- json.decode(text) -> value (raises on malformed JSON)
function M.decode(s)
  if type(s) ~= "string" then error("json.decode: expected a string", 2) end
  local v, i = decode_value(s, 1, 0)
  i = skip(s, i)
  if i <= #s then fail(s, i, "trailing characters") end
  return v
end

local encode_value

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local e = ({['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                ["\t"] = "\\t"})[c]
    return e or ("\\u%04x"):format(byte(c))
  end) .. '"'
end

encode_value = function(v, out, seen)
  local t = type(v)
  if t == "string" then out[#out + 1] = encode_string(v)
  elseif t == "number" then
    if tointeger(v) and math.type(v) == "integer" then out[#out + 1] = ("%d"):format(v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: cannot encode " .. tostring(v), 0)
    else
      -- the shortest form that reads back as the same float
      local s
      for digits = 15, 17 do
        s = ("%." .. digits .. "g"):format(v)
        if tonumber(s) == v then break end
      end
      if not find(s, "[.eE]") then s = s .. ".0" end
      out[#out + 1] = s
    end
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif v == nil or v == M.null then out[#out + 1] = "null"
  elseif t == "table" then
    if seen[v] then error("json.encode: a table contains itself", 0) end
    seen[v] = true
    local n = #v
    local is_array = n > 0 or next(v) == nil and getmetatable(v) == M.array_mt
    if is_array then
      for k in pairs(v) do
        if math.type(k) ~= "integer" or k < 1 or k > n then is_array = false break end
      end
    end
    if is_array then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, seen)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("json.encode: object keys must be strings, got " .. type(k), 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode_value(v[k], out, seen)
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    error("json.encode: cannot encode a " .. t, 0)
  end
end

M.array_mt = {__name = "json.array"}

-- json.array([t]) -> t marked as an array (so that an empty one encodes as [])
function M.array(t) return setmetatable(t or {}, M.array_mt) end

-- json.encode(value) -> text (an empty table is {} unless made with json.array)
function M.encode(v)
  local out = {}
  encode_value(v, out, {})
  return concat(out)
end

return M
