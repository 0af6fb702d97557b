--- The sandbox bank: the banking domain behind the platform (see
-- sandbox/CONTRACT.md and sandbox/BANK.md). Exports the route list the
-- platform dispatches to, matched in order.
local _M = {}

local MODULES = { "oauth", "redirect", "consents", "accounts", "payments", "baskets" }

_M.routes = {}
for _, name in ipairs(MODULES) do
  for _, r in ipairs(require("sandbox.bank." .. name).routes) do
    _M.routes[#_M.routes + 1] = r
  end
end

return _M
