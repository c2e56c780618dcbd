-- corio.fs: files without blocking the loop. The operations are C (corio._fs: libuv's fs
-- requests and threadpool jobs); this module is the policy on top: mkdir with parents,
-- recursive remove, iterators, io-style read formats and lines() on open files.
-- Expected failures return nil, "op path: message", "ECODE"; misuse raises.
local C = require "corio._fs"

local M = {
  stat = C.stat, lstat = C.lstat, rename = C.rename, realpath = C.realpath,
  read_file = C.read_file, open = C.open,
}

local type, error = type, error

local function check_path(fname, p, level)
  if type(p) ~= "string" then
    error(("%s: path must be a string, got %s"):format(fname, type(p)), level + 1)
  end
end

-- fs.write_file(path, data[, {append = false, mode = 0666, atomic = false}]) -> true | nil, msg, code
-- atomic: write a temporary file beside it, flush it to disk, then rename it over `path`:
-- readers and crashes see the old contents or the new, never half of them.
function M.write_file(path, data, opts)
  check_path("write_file", path, 2)
  if type(data) ~= "string" then
    error(("write_file: data must be a string, got %s"):format(type(data)), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("write_file: options must be a table", 2) end
  if opts.mode ~= nil and math.type(opts.mode) ~= "integer" then
    error("write_file: mode must be an integer (e.g. 0x1a4 for 0644: Lua has no octal)", 2)
  end
  return C._write_file(path, data, opts.append, opts.mode, opts.atomic)
end

-- fs.mkdtemp([prefix]) -> path of a new private directory (mode 0700) | nil, msg, code
-- Six random characters are appended to prefix (default "$TMPDIR/corio-", else "/tmp/corio-"),
-- as Node's fs.mkdtemp; removing it is the caller's (fs.remove(path, true)).
function M.mkdtemp(prefix)
  if prefix == nil then prefix = (os.getenv("TMPDIR") or "/tmp"):gsub("/*$", "/corio-") end
  check_path("mkdtemp", prefix, 2)
  return C._mkdtemp(prefix .. "XXXXXX")
end

-- fs.mkdir(path[, parents]) -> true | nil, msg, code
-- With `parents`, missing parents are made too and an existing directory is not an error.
-- The second argument may also be a table {parents =, mode =}.
function M.mkdir(path, parents)
  check_path("mkdir", path, 2)
  local mode
  if type(parents) == "table" then parents, mode = parents.parents, parents.mode end
  if not parents then return C._mkdir(path, mode) end
  local ok, msg, code = C._mkdir(path, mode)
  if ok then return ok end
  if code == "EEXIST" then
    local st = C.stat(path)
    if st and st.type == "directory" then return true end
    return nil, msg, code
  end
  if code ~= "ENOENT" then return nil, msg, code end
  local parent = path:match("^(.*[^/])/+[^/]+/*$")
  if not parent then return nil, msg, code end
  local pok, pmsg, pcode = M.mkdir(parent, {parents = true, mode = mode})
  if not pok then return nil, pmsg, pcode end
  ok, msg, code = C._mkdir(path, mode)
  if ok or code == "EEXIST" then return true end
  return nil, msg, code
end

-- fs.remove(path[, recursive]) -> true | nil, msg, code
-- Removes a file, a link or an empty directory; with `recursive`, a directory and everything
-- in it (links are removed, never followed).
function M.remove(path, recursive)
  check_path("remove", path, 2)
  local st, msg, code = C.lstat(path)
  if not st then return nil, (msg:gsub("^lstat", "remove")), code end
  if st.type ~= "directory" then return C._unlink(path) end
  if recursive then
    local names, types, scode = C._scandir(path)
    if not names then return nil, types, scode end
    for i, name in ipairs(names) do
      local child = path .. "/" .. name
      local ok, m, c
      if types[i] == "directory" then ok, m, c = M.remove(child, true)
      else ok, m, c = C._unlink(child) end
      if not ok and c ~= "ENOENT" then return nil, m, c end
    end
  end
  return C._rmdir(path)
end

-- fs.scandir(path) -> iterator of name, type | nil, msg, code
--   for name, kind in assert(fs.scandir(dir)) do ... end
-- `kind` is "file", "directory", "link", "fifo", "socket", "char", "block" or "unknown".
function M.scandir(path)
  check_path("scandir", path, 2)
  local names, types, code = C._scandir(path)
  if not names then return nil, types, code end
  local i = 0
  return function()
    i = i + 1
    return names[i], types[i]
  end
end

-- fs.watch(path) -> watcher, nil, nil, watcher | nil, msg, code
--   for name, what in fs.watch(dir) do ... end   -- what: "rename" | "change"
-- The watcher is also the loop's closing value: leaving the loop stops watching.
function M.watch(path)
  check_path("watch", path, 2)
  local w, msg, code = C._watch(path)
  if not w then return nil, msg, code end
  return w, nil, nil, w
end

-- ---- open files: io-style read formats and lines() ----------------------------------------

local File = C._File
local raw_read = File.read

-- The next line (keep: with its newline), nil at the end; raises on a read error when `raise`.
local function read_line(f, keep)
  local eof = false
  while true do
    local line = f:_line(keep, eof)
    if line or eof then return line end
    local more, msg, code = f:_fill()
    if more == nil then return nil, msg, code end
    eof = not more
  end
end

local function read_all(f)
  local parts = {}
  while true do
    local line = f:_line(true, true)  -- what lines() read ahead comes first
    if not line then break end
    parts[#parts + 1] = line
  end
  while true do
    local chunk, msg, code = raw_read(f, 1 << 20)
    if chunk == nil then
      if msg then return nil, msg, code end
      break
    end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end

-- file:read([n | "a" | "l" | "L"]) -> data | nil at the end | nil, msg, code  [suspends]
-- n bytes at most (default 64 KiB: a chunk, for streaming); "a" the rest of the file (""
-- at the end); "l"/"L" the next line without/with its newline.
function File:read(what)
  if what == nil or math.type(what) == "integer" then return raw_read(self, what) end
  if type(what) == "string" then
    local fmt = what:gsub("^%*", ""):sub(1, 1)
    if fmt == "a" then return read_all(self) end
    if fmt == "l" then return read_line(self, false) end
    if fmt == "L" then return read_line(self, true) end
  end
  error(("read: invalid format %s"):format(tostring(what)), 2)
end

-- file:lines([keep_newline]) -> iterator over the lines; a read error raises.
function File:lines(keep)
  return function()
    local line, msg = read_line(self, keep)
    if line == nil and msg then error(msg, 2) end
    return line
  end
end

return M
