--- Plain-table helpers shared by the Lua layer.
-- @module xs2a.tables
local type, pairs, ipairs, next, getmetatable, setmetatable = type, pairs, ipairs, next, getmetatable, setmetatable

local _M = {}

--- Deep copy of plain tables (metatables kept, cycles not supported).
function _M.copy(v, depth)
  if type(v) ~= "table" then return v end
  depth = depth or 0
  if depth > 100 then error("table too deep to copy", 2) end
  local out = {}
  for k, x in pairs(v) do out[k] = _M.copy(x, depth + 1) end
  return setmetatable(out, getmetatable(v))
end
local copy = _M.copy

--- Merge: a copy of `a` with the keys of `b` on top (nested tables merged
-- recursively, lists replaced).
function _M.merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = copy(v) end
  for k, v in pairs(b or {}) do
    if type(v) == "table" and type(out[k]) == "table" and v[1] == nil and next(v) ~= nil
        and out[k][1] == nil then
      out[k] = _M.merge(out[k], v)
    else
      out[k] = copy(v)
    end
  end
  return out
end

--- A set from a list.
function _M.set(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

return _M
