std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["spec/openresty"] = { globals = { "ngx" } }
files["spec/hsm/ngx_cases.lua"] = { globals = { "ngx" } }
files["lua/xs2a/transport/ngx.lua"] = { globals = { "ngx" } }
files["lua/xs2a/store/shdict.lua"] = { globals = { "ngx" } }
files["sandbox/lua"] = { globals = { "ngx" } }
files["examples/openresty"] = { globals = { "ngx" } }
files["spec/fixtures"] = { globals = { "ngx" } }
