/* corio.http's handling of untrusted text. The first byte picks what the rest feeds:
 *   0: a response head as curl hands it over -> parse_head never raises, and no header name
 *      or value it returns holds CR or LF (nor a name a colon);
 *   1: a request header (name: the next byte's low 5 bits give its length; value: the rest)
 *      -> rejected with an "http.request: ..." error, or every line written holds no CR, LF
 *      or NUL (no header injection);
 *   2: a URL, alone and joined to a base -> rejected with "http.request: bad URL ...", or an
 *      http(s) URL (curl also takes "http:/host") without spaces or control characters. */
#include "fuzz.h"

static const char PROPERTY[] =
  "local http = require 'corio.http'\n"
  "local I = http._internal\n"
  "local function rejected(ok, e, what)\n"
  "  assert(not ok)\n"
  "  assert(type(e) == 'string' and e:find('http%.request: ' .. what), 'bad error: '\n"
  "         .. tostring(e))\n"
  "end\n"
  "local function url_ok(u)\n"
  "  local ok, e = pcall(I.check_url, 'request', u)\n"
  "  if not ok then return rejected(ok, e, 'bad URL ') end\n"
  "  assert(not u:find('[%c ]'), 'accepted a URL with spaces or controls')\n"
  "  assert(u:lower():find('^https?:'), 'accepted a URL that is not http(s)')\n"
  "end\n"
  "return function(input)\n"
  "  local sel, rest = input:byte(1), input:sub(2)\n"
  "  if not sel then return end\n"
  "  sel = sel % 3\n"
  "  if sel == 0 then\n"
  "    local h = I.parse_head(rest)\n"
  "    for i, pair in ipairs(h) do\n"
  "      assert(not pair[1]:find('[\\r\\n:]'), 'header name with CR, LF or colon')\n"
  "      assert(not pair[2]:find('[\\r\\n]'), 'header value with CR or LF')\n"
  "      assert(h:get(pair[1]) ~= nil, 'a parsed header cannot be got')\n"
  "    end\n"
  "  elseif sel == 1 then\n"
  "    local n = (rest:byte(1) or 0) % 32\n"
  "    local name, value = rest:sub(2, n + 1), rest:sub(n + 2)\n"
  "    local ok, lines = pcall(I.header_lines, 'request', {[name] = value})\n"
  "    if not ok then return rejected(ok, lines, '') end\n"
  "    for _, line in ipairs(lines) do\n"
  "      assert(not line:find('[\\r\\n%z]'), 'header injection: ' .. ('%q'):format(line))\n"
  "      assert(line:sub(1, #name) == name, 'a line for another header')\n"
  "    end\n"
  "  else\n"
  "    url_ok(rest)\n"
  "    url_ok(I.join_url('http://example.com/base/', rest))\n"
  "  end\n"
  "end\n";

FUZZ_TARGET(PROPERTY)
