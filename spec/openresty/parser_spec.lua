-- Strict HTTP/1.1 response parsing of the ngx transport, against canned raw
-- responses that the test nginx writes byte for byte (ngx.req.socket(true)).
local harness = require "openresty.harness"

describe("#openresty ngx transport response parsing", function()
  local ng

  lazy_setup(function()
    ng = harness.start{ workers = 1, server = [[
    location ~ ^/raw/(\w+)$ {
      set $raw_name $1;
      content_by_lua_block { require("openresty.cases.raw").serve(ngx.var.raw_name) }
    }
]] }
  end)

  lazy_teardown(function()
    if ng then ng:stop() end
  end)

  local function fetch(name, extra)
    local args = { base_url = ng.base_url, name = name }
    for k, v in pairs(extra or {}) do args[k] = v end
    local r = ng:call("openresty.cases.raw", "fetch", args)
    assert.is_true(r.ok, r.err)
    return r.result
  end

  it("reads a plain response with repeated headers", function()
    local r = fetch("ok")
    assert.equal(200, r.status)
    assert.equal("hello", r.body)
    assert.equal("1, 2", r.headers["x-a"])
    assert.equal(3, r.n_header_list)
    assert.equal("1.1", r.http_version)
  end)

  for name, code in pairs({
    bad_status = "protocol", not_http = "protocol", bare_lf = "protocol", te_and_cl = "protocol",
    bad_chunk_size = "protocol", chunk_no_crlf = "protocol", unknown_te = "protocol",
    cl_conflict = "protocol", cl_bad = "protocol", long_line = "protocol", many_headers = "protocol",
    no_colon = "protocol", folded = "protocol", truncated = "closed", truncated_headers = "closed",
    empty = "closed",
  }) do
    it("fails with " .. code .. " on " .. name:gsub("_", " "), function()
      local r = fetch(name)
      assert.is_nil(r.status, "got a response: " .. tostring(r.status))
      assert.equal(code, r.code, tostring(r.message))
      assert.is_true(r.sent)
      assert.is_string(r.message)
    end)
  end

  it("decodes chunks with extensions and ignores trailers", function()
    local r = fetch("chunk_ext_trailer")
    assert.equal(200, r.status)
    assert.equal("abcde", r.body)
  end)

  it("caps a chunked body", function()
    local r = fetch("chunked_big", { max_body = 1500 })
    assert.equal("too_large", r.code)
    r = fetch("chunked_big", { max_body = 2048 })
    assert.equal(2048, #r.body)
  end)

  it("reads a body delimited by the connection close", function()
    local r = fetch("to_close")
    assert.equal(200, r.status)
    assert.equal("body until the end", r.body)
  end)

  it("accepts HTTP/1.0, skips 100 Continue, and reads no body after 204 or HEAD", function()
    local r = fetch("http10")
    assert.equal("1.0", r.http_version)
    assert.equal("ok", r.body)
    r = fetch("continue")
    assert.equal(201, r.status)
    assert.equal("hi", r.body)
    r = fetch("no_content")
    assert.equal(204, r.status)
    assert.equal("", r.body)
    r = fetch("ok", { method = "HEAD" })
    assert.equal(200, r.status)
    assert.equal("", r.body)
  end)
end)
