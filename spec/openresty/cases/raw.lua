-- Canned raw HTTP responses (served through ngx.req.socket(true) by the
-- test nginx) and the worker side of spec/openresty/parser_spec.lua, which
-- checks the ngx transport's strict response parsing against them.
local M = {}

local big_line = "X-Big: " .. string.rep("a", 20000)
local many = {}
for i = 1, 250 do many[#many + 1] = "X-H" .. i .. ": v" end

M.RESPONSES = {
  ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
  bad_status = "HTTP/1.1 abc Nope\r\nContent-Length: 0\r\n\r\n",
  not_http = "SSH-2.0-OpenSSH_9.2\r\n\r\n",
  bare_lf = "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
  te_and_cl = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  bad_chunk_size = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
  chunk_no_crlf = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
  chunk_ext_trailer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "3;name=value\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
  chunked_big = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "400\r\n" .. string.rep("x", 1024) .. "\r\n400\r\n" .. string.rep("y", 1024) .. "\r\n0\r\n\r\n",
  unknown_te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
  cl_conflict = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
  cl_bad = "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc",
  truncated = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
  truncated_headers = "HTTP/1.1 200 OK\r\nContent-Le",
  long_line = "HTTP/1.1 200 OK\r\n" .. big_line .. "\r\nContent-Length: 0\r\n\r\n",
  many_headers = "HTTP/1.1 200 OK\r\n" .. table.concat(many, "\r\n") .. "\r\nContent-Length: 0\r\n\r\n",
  no_colon = "HTTP/1.1 200 OK\r\nThis is not a header\r\nContent-Length: 0\r\n\r\n",
  folded = "HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 0\r\n\r\n",
  to_close = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until the end",
  http10 = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
  continue = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi",
  no_content = "HTTP/1.1 204 No Content\r\n\r\n",
  empty = "",
}

-- content handler of /raw/<name>: writes the canned bytes and closes
function M.serve(name)
  local raw = M.RESPONSES[name]
  local sock = assert(ngx.req.socket(true))
  if not raw then raw = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" end
  sock:send(raw)
  if name == "truncated" or name == "truncated_headers" then ngx.sleep(0.05) end
  return ngx.exit(444)
end

-- one request of the ngx transport to /raw/<name>
function M.fetch(args)
  local t = assert(require("xs2a.transport.ngx").new{ timeout = 3000, max_body = args.max_body })
  local res, err = t:request{ method = args.method or "GET", url = args.base_url .. "/raw/" .. args.name }
  if res then
    return { status = res.status, body = res.body, headers = res.headers, http_version = res.http_version,
      n_header_list = #res.header_list }
  end
  return { code = err.code, message = err.message, sent = err.sent }
end

return M
