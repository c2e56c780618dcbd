-- corio.json: JSON that keeps Lua 5.4's integers. `{"id": 1}` decodes to the integer 1,
-- every 64-bit integer round-trips exactly, floats use the shortest exact form, and JSON null
-- is `json.null` (distinct from a missing key). Exports: encode, decode, null, array,
-- is_array, object.
-- Exact both ways: a number too large for a float (1e400, a 400-digit integer) is an error
-- rather than infinity, and text must be valid UTF-8 (no overlong forms, no encoded
-- surrogates): decode and encode raise with the byte offset, or with {utf8 = "replace"}
-- put U+FFFD in place of each invalid sequence.
-- Why not lua-cjson 2.1.0: it decodes every number as a float and encodes at most 14 digits.
-- The codec itself is C (bindings/json/, module corio._json); this file holds the policy: the
-- null sentinel, the array and object marks, the options. Nesting is limited to 1000 levels.
local M = {}

local format = string.format
local type, setmetatable, getmetatable, error = type, setmetatable, getmetatable, error

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

local c_decode, c_encode = require("corio._json").new(null, array_mt, object_mt)

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
  return c_decode(s, utf8_option("decode", opts))
end

-- json.encode(value[, {utf8 = "strict" | "replace"}]) -> text. Raises on values JSON cannot
-- hold (functions, NaN, infinities, cycles, strings that are not valid UTF-8 unless
-- "replace"). A table is an array when its keys are exactly 1..#t (or it was marked with
-- json.array).
function M.encode(v, opts)
  return c_encode(v, utf8_option("encode", opts))
end

return M
