-- How CTest runs a spec file: `corio spec/busted.lua BUSTED [busted's arguments]` runs busted
-- (its path first) with the other arguments. CORIO_SPEC_SHUFFLE=<seed> in the environment adds
-- `--shuffle --seed=<seed>`, so the same test list can run in a random but reproducible order
-- (.ci/run's second pass).
local busted = table.remove(arg, 1)
arg[0] = busted
local seed = os.getenv("CORIO_SPEC_SHUFFLE")
if seed and seed ~= "" then
  assert(math.tointeger(tonumber(seed)), "CORIO_SPEC_SHUFFLE must be an integer seed")
  table.insert(arg, 1, "--shuffle")
  table.insert(arg, 2, "--seed=" .. seed)
end
dofile(busted)
