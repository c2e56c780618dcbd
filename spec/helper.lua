-- busted --helper: make spec/ modules requirable from the source tree, and run the leak check
-- (support.assert_clean) after every test of every spec file. A task error nobody retrieved
-- fails the test itself: its body is wrapped to check for one once it has returned. The hook is registered on
-- busted's root context, so it runs after the spec files' own after_each hooks (a spec that
-- closes its server in after_each has done so when the check runs).
package.path = "spec/?.lua;" .. package.path

require("busted").after_each(function()
  require("support").assert_clean()
end)

local busted = require("busted")
busted.subscribe({"test", "start"}, function(element)
  local run = element.run
  if type(run) == "function" and not element.corio_checked then
    element.corio_checked = true
    element.run = function(...)
      run(...)
      require("support").assert_no_lost_errors(3)
    end
  end
  return nil, true
end)
