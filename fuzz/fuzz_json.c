/* corio.json: decode any bytes; whatever decode accepts, encode must write, as valid UTF-8,
 * and the text must decode to an equal value (integers stay integers, floats stay floats).
 * decode may only fail with a "json: ..." message. */
#include "fuzz.h"

static const char PROPERTY[] =
  "local json = require 'corio.json'\n"
  "local function same(a, b, depth)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    return math.type(a) == math.type(b) and a == b and 1/a == 1/b\n"
  "  end\n"
  "  if type(a) ~= 'table' or a == json.null or b == json.null then return a == b end\n"
  "  if json.is_array(a) ~= json.is_array(b) then return false end\n"
  "  for k, v in pairs(a) do\n"
  "    if not same(v, b[k]) then return false end\n"
  "  end\n"
  "  for k in pairs(b) do if a[k] == nil then return false end end\n"
  "  return true\n"
  "end\n"
  "return function(input)\n"
  "  local ok, v = pcall(json.decode, input)\n"
  "  if not ok then\n"
  "    assert(type(v) == 'string' and v:find('^json: '), 'decode: not a json error: '\n"
  "           .. tostring(v))\n"
  "    return\n"
  "  end\n"
  "  local ok2, text = pcall(json.encode, v)\n"
  "  assert(ok2, 'decode accepted what encode refuses: ' .. tostring(text))\n"
  "  assert(utf8.len(text), 'encode wrote invalid UTF-8')\n"
  "  local back = json.decode(text)\n"
  "  assert(same(v, back), 'decode(encode(v)) differs from v: ' .. text)\n"
  "  assert(json.encode(back) == text or type(v) == 'table', 'encode is not stable')\n"
  "end\n";

FUZZ_TARGET(PROPERTY)
