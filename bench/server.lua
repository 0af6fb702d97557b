--- The benchmarks' HTTPS server: the spec's loopback nginx
-- (spec/support/tlsserver.lua: mTLS required, HTTP/2 offered, TLS facts in
-- `srv:tls_stats()`) with two cheap locations, so that what is measured is
-- the client, not the server:
--   GET  .../ok   200 {"ok":true}     (echoes X-Request-ID)
--   POST .../pay  201 {"transactionStatus":"RCVD",...}
local tlsserver = require "support.tlsserver"

local _M = {}

local EXTRA = [[
        location ~ /ok$ {
            default_type application/json;
            add_header X-Request-ID $http_x_request_id;
            return 200 '{"ok":true}';
        }
        location ~ /pay$ {
            default_type application/json;
            add_header X-Request-ID $http_x_request_id;
            return 201 '{"transactionStatus":"RCVD","paymentId":"bench-1","_links":{}}';
        }
]]

--- Starts the server (`opts.http2` as in tlsserver; default true).
function _M.start(opts)
  opts = opts or {}
  return tlsserver.start{ http2 = opts.http2, extra = EXTRA }
end

return _M
