-- busted --helper: make spec/ modules requirable from the source tree, and run the leak check
-- (support.assert_clean) after every test of every spec file. The hook is registered on
-- busted's root context, so it runs after the spec files' own after_each hooks (a spec that
-- closes its server in after_each has done so when the check runs).
package.path = "spec/?.lua;" .. package.path

require("busted").after_each(function()
  require("support").assert_clean()
end)
