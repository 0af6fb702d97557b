--- The JSON codec of lua-xs2a.
--
-- Decoding uses cjson. Where cjson can mark arrays (`array_mt` and
-- `decode_array_with_array_mt`: the lua-cjson of LuaRocks and OpenResty's
-- cjson) that is detected at load and used, so decoded arrays, empty ones
-- included, carry the array metatable with no extra pass. Debian's lua-cjson
-- 2.1.0 cannot: there a decoded non-empty array is marked by one walk over
-- the decoded value (no pass over the text), and an empty `[]` decodes as an
-- empty table like `{}`: which fields are arrays is the resource layer's
-- knowledge (its shapes, below), not the codec's.
--
-- Encoding is our own (pure Lua), because Debian's lua-cjson 2.1.0 cannot
-- write an empty array and sorts no keys. Rules of `encode(v, shape)`:
--
-- * a table marked with `json.array(t)` is an array (empty or not);
-- * an unmarked table whose keys are exactly 1..n (n >= 1) is an array;
-- * an unmarked empty table is an object `{}`, unless `shape` says the
--   field is an array: `shape` mirrors the body, `shape.field = "array"`
--   (an array of anything), `{ array = true, item = <shape> }` (an array
--   whose items have a shape) or a nested table (an object's fields);
-- * object keys are written in sorted order (stable output);
-- * `json.null` writes `null`;
-- * NaN, infinities, functions, threads, userdata, cycles, sparse or mixed
--   tables give `nil, err` (never a raised error).
--
-- `decode(text)` returns the value or `nil, err`; JSON `null` is `json.null`
-- and integral numbers are Lua integers on Lua 5.3+.
-- @module xs2a.codec.json
local cjson = require "cjson"

local type, pairs, next, rawget, rawlen = type, pairs, next, rawget, rawlen or function(t) return #t end
local setmetatable, getmetatable, pcall, tostring, tonumber = setmetatable, getmetatable, pcall, tostring,
  tonumber
local str_format, str_byte, str_find = string.format, string.byte, string.find
local str_gsub = string.gsub
local tbl_concat, tbl_sort = table.concat, table.sort
local math_floor, math_huge = math.floor, math.huge
local tointeger = math.tointeger

local _M = { _VERSION = "0.2" }

--- The JSON null value (the same value cjson uses).
_M.null = cjson.null

-- cjson that marks arrays itself (detected once)
local NATIVE = type(cjson.decode_array_with_array_mt) == "function" and type(cjson.array_mt) == "table"
  and type(cjson.new) == "function"
local decoder = cjson
if NATIVE then
  decoder = cjson.new()
  decoder.decode_array_with_array_mt(true)
end
--- True when cjson marks decoded arrays (empty ones included).
_M.NATIVE_ARRAYS = NATIVE

--- Metatable of tables that are JSON arrays (cjson's own where it has one).
_M.array_mt = NATIVE and cjson.array_mt or { __name = "xs2a.json.array" }
local array_mt = _M.array_mt

-- Lua 5.3+ with a cjson that gives floats for integral numbers
local FLOATS = tointeger ~= nil and math.type(cjson.decode("[1]")[1]) == "float"

--- Marks `t` (default: a new table) as a JSON array and returns it.
function _M.array(t)
  return setmetatable(t or {}, array_mt)
end

--- True when `t` is marked as an array.
function _M.is_array(t)
  return type(t) == "table" and getmetatable(t) == array_mt
end

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
local function escape_char(c)
  return escapes[c] or str_format("\\u%04x", str_byte(c))
end

-- Printable ASCII but `"` and `\`: text that needs no escape. One anchored
-- scan of ranges (the first one holds the lower-case letters) is several
-- times cheaper than an unanchored search for `[%c"\\]`, which restarts the
-- class match at every byte. Anything else (controls, quotes, bytes >= 128)
-- takes the general path, so the output is the same.
local PLAIN = '^[]-~ !#-Z%[]*$'

local function encode_string(s)
  if str_find(s, PLAIN) or not str_find(s, '[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. str_gsub(s, '[%c"\\]', escape_char) .. '"'
end

-- object keys are a small set of field names: each is encoded once, with
-- its colon (bounded: past KEYS_MAX names the memo starts again)
local key_memo, n_keys, KEYS_MAX = {}, 0, 1024
local function encode_key(k)
  local e = key_memo[k]
  if e == nil then
    e = encode_string(k) .. ":"
    if n_keys >= KEYS_MAX then key_memo, n_keys = {}, 0 end
    key_memo[k], n_keys = e, n_keys + 1
  end
  return e
end

local function encode_number(n)
  if n ~= n then error("cannot encode NaN", 0) end
  if n == math_huge or n == -math_huge then error("cannot encode an infinite number", 0) end
  if math_floor(n) == n and n >= -2^53 and n <= 2^53 then
    return str_format("%d", n)
  end
  -- the shortest of %.14g .. %.17g that reads back as the same number
  for digits = 14, 16 do
    local text = str_format("%." .. digits .. "g", n)
    if tonumber(text) == n then return text end
  end
  return str_format("%.17g", n)
end

local encode_value

-- kind of a table: "array", n | "object"
local function classify(t, want_array)
  if getmetatable(t) == array_mt then
    local n = rawlen(t)
    for k in pairs(t) do
      if type(k) ~= "number" or k < 1 or k > n or math_floor(k) ~= k then
        error("array has a non-index key " .. tostring(k), 0)
      end
    end
    return "array", n
  end
  local k1 = next(t)
  if k1 == nil then
    return want_array and "array" or "object", 0
  end
  if type(k1) == "string" then
    -- the keys, checked and collected in one pass
    local keys, n = {}, 0
    for k in next, t do
      if type(k) ~= "string" then error("table mixes string and other keys", 0) end
      n = n + 1
      keys[n] = k
    end
    return "object", n, keys
  end
  local n, count = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or math_floor(k) ~= k then
      error("table mixes index and other keys", 0)
    end
    count = count + 1
    if k > n then n = k end
  end
  if n ~= count then error("cannot encode a sparse array", 0) end
  return "array", n
end

-- appends the text of `v` to `buf` after its `n` pieces; returns the new count
encode_value = function(v, buf, n, seen, shape, depth)
  local tv = type(v)
  if tv == "string" then
    n = n + 1
    buf[n] = encode_string(v)
  elseif tv == "number" then
    n = n + 1
    buf[n] = encode_number(v)
  elseif tv == "boolean" then
    n = n + 1
    buf[n] = v and "true" or "false"
  elseif v == cjson.null then
    n = n + 1
    buf[n] = "null"
  elseif tv == "table" then
    if seen[v] then error("cannot encode a cycle", 0) end
    if depth > 200 then error("nesting too deep", 0) end
    seen[v] = true
    local want_array = shape == "array" or (type(shape) == "table" and shape.array == true)
    local kind, count, keys = classify(v, want_array)
    if kind == "array" then
      n = n + 1
      buf[n] = "["
      local item = type(shape) == "table" and shape.item or nil
      for i = 1, count do
        if i > 1 then
          n = n + 1
          buf[n] = ","
        end
        n = encode_value(rawget(v, i), buf, n, seen, item, depth + 1)
      end
      n = n + 1
      buf[n] = "]"
    elseif count == 0 then
      n = n + 1
      buf[n] = "{}"
    else
      if count > 1 then tbl_sort(keys) end
      local sub = type(shape) == "table" and shape or nil
      n = n + 1
      buf[n] = "{"
      for i = 1, count do
        local k = keys[i]
        if i > 1 then
          n = n + 1
          buf[n] = ","
        end
        n = n + 1
        buf[n] = encode_key(k)
        local x = v[k]
        if type(x) == "string" then
          n = n + 1
          buf[n] = encode_string(x)
        else
          n = encode_value(x, buf, n, seen, sub and sub[k], depth + 1)
        end
      end
      n = n + 1
      buf[n] = "}"
    end
    seen[v] = nil
  elseif v == nil then
    n = n + 1
    buf[n] = "null"
  else
    error("cannot encode a " .. tv, 0)
  end
  return n
end

--- Encodes a Lua value as JSON.
-- @param v value
-- @param[opt] shape which (possibly empty) fields are arrays (see above)
-- @return string, or nil and an error message
function _M.encode(v, shape)
  local buf = {}
  local ok, err = pcall(encode_value, v, buf, 0, {}, shape, 0)
  if not ok then
    return nil, "json.encode: " .. tostring(err)
  end
  return tbl_concat(buf)
end

local MARK = not NATIVE
local WALK = MARK or FLOATS

-- one walk over a decoded table: marks non-empty arrays (when cjson does
-- not) and turns integral floats into integers (Lua 5.3+). The tables are
-- cjson's own, without metatables: `v[1]` is a raw read.
local function walk(v)
  local arr = MARK and v[1] ~= nil
  for k, x in next, v do
    local tx = type(x)
    if tx == "table" then
      walk(x)
    elseif FLOATS and tx == "number" then
      local i = tointeger(x)
      if i then v[k] = i end  -- an existing key: allowed while traversing
    end
  end
  if arr then setmetatable(v, array_mt) end
  return v
end

-- The same walk in C (csrc/json.c), used under PUC Lua when the core is
-- loaded: over a page of 50 transactions it takes about 37 us against
-- 96-115 us for the Lua walk under Lua 5.4. LuaJIT keeps the Lua walk, which
-- its compiler makes faster (1-15 us) than the C API calls of the C walk
-- (15-30 us). Both are exposed to the spec that checks they agree.
local core_walk
do
  local ok, core = pcall(require, "xs2a.core")
  if ok and type(core) == "table" and type(core.json_walk) == "function" then core_walk = core.json_walk end
end
local c_walk = rawget(_G, "jit") == nil and core_walk or nil
_M._walks = { lua = walk, c = core_walk, mark = MARK, floats = FLOATS, used = WALK and (c_walk and "c" or "lua") }

--- Decodes JSON text.
-- @param text string
-- @return value, or nil and an error message
function _M.decode(text)
  if type(text) ~= "string" then
    return nil, "json.decode: expected a string, got " .. type(text)
  end
  local ok, v = pcall(decoder.decode, text)
  if not ok then
    return nil, "json.decode: " .. tostring(v)
  end
  if WALK then
    if c_walk then
      local w, werr = c_walk(v, array_mt, MARK, FLOATS)
      if w == nil and werr then return nil, "json.decode: " .. werr end
      return w
    end
    if type(v) == "table" then return walk(v) end
    if FLOATS and type(v) == "number" then return tointeger(v) or v end
  end
  return v
end

return _M
