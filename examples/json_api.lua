-- A small JSON API: routes with parameters, JSON in and out, errors as HTTP statuses.
-- Run: corio examples/json_api.lua [port]
--   curl localhost:8080/users
--   curl -X POST -d '{"name": "Ada"}' localhost:8080/users
--   curl localhost:8080/users/1
--   curl -X DELETE localhost:8080/users/1
local web = require "corio.web"
local json = require "corio.json"

local users, next_id = {}, 1

local function find_user(request)
  local id = math.tointeger(tonumber(request.params.id))
  local user = id and users[id]
  if not user then error(web.HTTPError(404, "no user " .. request.params.id)) end
  return user, id
end

local app = web.Application()

-- a middleware: time every request and say so in a header
app:use(function(request, handler)
  local started = os.clock()
  local response = handler(request)
  response.headers["X-Elapsed-Ms"] = ("%.3f"):format((os.clock() - started) * 1000)
  return response
end)

app:get("/users", function()
  local list = json.array()
  for id = 1, next_id - 1 do
    if users[id] then list[#list + 1] = users[id] end
  end
  return web.json(list)
end)

app:post("/users", function(request)
  local body = request:json()  -- invalid JSON becomes a 400 by itself
  if type(body) ~= "table" or type(body.name) ~= "string" or body.name == "" then
    error(web.HTTPError(422, "expected {\"name\": \"...\"}"))
  end
  local user = {id = next_id, name = body.name, email = body.email or json.null}
  users[next_id], next_id = user, next_id + 1
  return web.json(user, 201, {Location = "/users/" .. user.id})
end)

app:get("/users/{id:%d+}", function(request)
  return web.json((find_user(request)))
end)

app:delete("/users/{id:%d+}", function(request)
  local _, id = find_user(request)
  users[id] = nil
  return web.Response{status = 204}
end)

web.run_app(app, {port = tonumber(arg[1]) or 8080})
