-- xs2a.net.http1 (the ngx transport's HTTP/1.1 parser) against random and
-- mutated responses: every input gives a response or nil, err (a typed
-- transport error), never a Lua error. A string stands in for the cosocket.
local http1 = require "xs2a.net.http1"

-- a connection reading from `bytes` the way a cosocket does
local function conn_of(bytes)
  local pos, boundary = 1, false
  local sock = {}
  function sock.receive(_, n)
    assert(type(n) == "number", "only sized reads")
    if pos > #bytes then return nil, "closed", "" end
    local chunk = bytes:sub(pos, pos + n - 1)
    pos = pos + #chunk
    if #chunk < n then return nil, "closed", chunk end
    return chunk
  end
  -- receiveuntil("\r\n") iterator: data before the delimiter (at most
  -- `size` bytes a call), then nil at the delimiter
  local function line_reader(size)
    if boundary then
      boundary = false
      return nil
    end
    local s, e = bytes:find("\r\n", pos, true)
    if not s then
      local rest = bytes:sub(pos)
      if #rest > size then
        pos = pos + size
        return rest:sub(1, size)
      end
      pos = #bytes + 1
      return nil, "closed", rest
    end
    if s - pos > size then
      local chunk = bytes:sub(pos, pos + size - 1)
      pos = pos + size
      return chunk
    end
    local data = bytes:sub(pos, s - 1)
    pos = e + 1
    if data == "" then return nil end
    boundary = true
    return data
  end
  return { sock = sock, line_reader = line_reader, arm = function() return true end }
end

local SEEDS = {
  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
  "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
  "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nabcde",
  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
  "HTTP/1.1 400 Bad Request\r\nContent-Length: 5, 5\r\n\r\nerror",
  "HTTP/1.1 200 OK\r\n\r\nread to close",
}

local function mutate(s, rnd)
  local kind = rnd(6)
  if kind == 1 then                                -- flip bytes
    local t = { s:byte(1, -1) }
    for _ = 1, rnd(4) do
      local i = rnd(#t)
      t[i] = rnd(256) - 1
    end
    return string.char((table.unpack or unpack)(t))
  elseif kind == 2 then                            -- truncate
    return s:sub(1, rnd(#s + 1) - 1)
  elseif kind == 3 then                            -- insert junk
    local i = rnd(#s + 1)
    local junk = {}
    for j = 1, rnd(8) do junk[j] = string.char(rnd(256) - 1) end
    return s:sub(1, i - 1) .. table.concat(junk) .. s:sub(i)
  elseif kind == 4 then                            -- duplicate a slice
    local i = rnd(#s)
    local j = math.min(#s, i + rnd(20))
    return s:sub(1, j) .. s:sub(i, j) .. s:sub(j + 1)
  elseif kind == 5 then                            -- swap CRLF for LF or CR
    return (s:gsub("\r\n", rnd(2) == 1 and "\n" or "\r", rnd(3)))
  end
  local t = {}                                     -- pure noise
  for j = 1, rnd(200) do t[j] = string.char(rnd(256) - 1) end
  return table.concat(t)
end

local function check(bytes, method)
  local ok, res, err = pcall(http1.read_response, conn_of(bytes), math.huge, method or "GET", 4096)
  assert(ok, "raised on " .. string.format("%q", bytes) .. ": " .. tostring(res))
  if res then
    assert(type(res.status) == "number" and type(res.body) == "string" and type(res.headers) == "table",
      "bad response table")
    return res
  else
    assert(type(err) == "table" and type(err.code) == "string" and type(err.message) == "string",
      "untyped error for " .. string.format("%q", bytes))
    assert(err.sent == true, "a read error must say the request was sent")
  end
  return res, err
end

describe("xs2a.net.http1 fuzz", function()
  it("parses the seeds", function()
    for _, s in ipairs(SEEDS) do
      local res, err = check(s)
      assert.truthy(res, tostring(err and err.message))
    end
    local res = check(SEEDS[2])
    assert.equal("hello", res.body)
    assert.equal("1, 2", res.headers["x-a"])
  end)

  it("gives nil, err (never a Lua error) for 4000 mutated and random responses", function()
    local state = 12345
    local function rnd(n) -- a small LCG: the same inputs on every run and interpreter
      state = (state * 1103515245 + 12345) % 2147483648
      return state % n + 1
    end
    local failures = 0
    for i = 1, 4000 do
      local bytes = mutate(SEEDS[rnd(#SEEDS)], rnd)
      if i % 7 == 0 then bytes = mutate(bytes, rnd) end
      local res = check(bytes, rnd(5) == 1 and "HEAD" or "GET")
      if not res then failures = failures + 1 end
    end
    -- most mutations break the framing: the parser refuses them
    assert.is_true(failures > 1000, "only " .. failures .. " refused")
  end)

  it("refuses bodies over the cap and lines over the line cap", function()
    local _, err = check("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" .. ("x"):rep(5000))
    assert.equal("too_large", err.code)
    _, err = check("HTTP/1.1 200 OK\r\nX: " .. ("y"):rep(http1.MAX_LINE + 10) .. "\r\n\r\n")
    assert.equal("protocol", err.code)
  end)

  it("serialises a request with our own framing headers", function()
    local url = require "xs2a.net.url"
    local bytes = assert(http1.serialise("POST", url.parse("https://bank.test:8443/v1/x?a=1"),
      { ["Content-Length"] = "999", ["X-Request-ID"] = "r1" }, "{}"))
    assert.truthy(bytes:find("^POST /v1/x%?a=1 HTTP/1.1\r\n"))
    assert.truthy(bytes:find("\r\nHost: bank.test:8443\r\n", 1, true))
    assert.truthy(bytes:find("\r\nContent-Length: 2\r\n", 1, true))
    assert.is_nil(bytes:find("999", 1, true))
    assert.is_nil((http1.serialise("GET", url.parse("https://b/x"), { ["X"] = "a\r\nB: c" })))
  end)
end)
