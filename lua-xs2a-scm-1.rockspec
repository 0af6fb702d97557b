rockspec_format = "3.0"
package = "lua-xs2a"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-xs2a/lua-xs2a.git",
}
description = {
  summary = "PSD2 / NextGenPSD2 (XS2A) client for Paysera Open Banking: mTLS, QSealC signing, OAuth SCA",
  detailed = [[
lua-xs2a lets a licensed third-party provider use Paysera's Open Banking API
(Berlin Group NextGenPSD2 1.3 and Georgia 0.8): consents, accounts, balances,
transactions and payments, over mutual TLS with eIDAS certificates, with
Berlin Group, Georgian JWS or MAC request signing, and OAuth 2.0 strong
customer authentication. A C core (libcurl, OpenSSL) and a Lua layer; runs in
Lua 5.4 scripts and inside OpenResty/nginx. Ships a local sandbox bank.
]],
  license = "MIT",
  labels = { "psd2", "xs2a", "open-banking", "openresty" },
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
test_dependencies = { "busted" }
test = { type = "busted" }
build = {
  -- The Makefile's `rock` target compiles xs2a.core into build/rock/ (every
  -- csrc/*.c, no object files): nothing is left in the checkout's csrc/ or
  -- a stray xs2a/core.so, as LuaRocks' builtin backend would.
  type = "make",
  build_target = "rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA_INCDIR = "$(LUA_INCDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)", CURL_LIBDIR = "$(CURL_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)", OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
  },
  install_pass = false,
  install = {
    lib = { ["xs2a.core"] = "build/rock/xs2a/core.so" },
    lua = {
      ["xs2a"] = "lua/xs2a/init.lua",
      ["xs2a.api"] = "lua/xs2a/api/init.lua",
      ["xs2a.api.authorisation"] = "lua/xs2a/api/authorisation.lua",
      ["xs2a.api.basket"] = "lua/xs2a/api/basket.lua",
      ["xs2a.api.consent"] = "lua/xs2a/api/consent.lua",
      ["xs2a.api.funds"] = "lua/xs2a/api/funds.lua",
      ["xs2a.api.paging"] = "lua/xs2a/api/paging.lua",
      ["xs2a.api.payment"] = "lua/xs2a/api/payment.lua",
      ["xs2a.api.resource"] = "lua/xs2a/api/resource.lua",
      ["xs2a.client"] = "lua/xs2a/client.lua",
      ["xs2a.codec.json"] = "lua/xs2a/codec/json.lua",
      ["xs2a.crypto"] = "lua/xs2a/crypto.lua",
      ["xs2a.errors"] = "lua/xs2a/errors.lua",
      ["xs2a.identity"] = "lua/xs2a/identity.lua",
      ["xs2a.limiter"] = "lua/xs2a/limiter.lua",
      ["xs2a.net.date"] = "lua/xs2a/net/date.lua",
      ["xs2a.net.headers"] = "lua/xs2a/net/headers.lua",
      ["xs2a.net.http1"] = "lua/xs2a/net/http1.lua",
      ["xs2a.net.url"] = "lua/xs2a/net/url.lua",
      ["xs2a.parallel"] = "lua/xs2a/parallel.lua",
      ["xs2a.pipeline"] = "lua/xs2a/pipeline/init.lua",
      ["xs2a.pipeline.exchange"] = "lua/xs2a/pipeline/exchange.lua",
      ["xs2a.pipeline.retry"] = "lua/xs2a/pipeline/retry.lua",
      ["xs2a.profile"] = "lua/xs2a/profile.lua",
      ["xs2a.redact"] = "lua/xs2a/redact.lua",
      ["xs2a.sca.flow"] = "lua/xs2a/sca/flow.lua",
      ["xs2a.sca.oauth"] = "lua/xs2a/sca/oauth.lua",
      ["xs2a.sca.tokens"] = "lua/xs2a/sca/tokens.lua",
      ["xs2a.sign"] = "lua/xs2a/sign/init.lua",
      ["xs2a.sign.berlin"] = "lua/xs2a/sign/berlin.lua",
      ["xs2a.sign.common"] = "lua/xs2a/sign/common.lua",
      ["xs2a.sign.jws"] = "lua/xs2a/sign/jws.lua",
      ["xs2a.sign.mac"] = "lua/xs2a/sign/mac.lua",
      ["xs2a.sign.verify"] = "lua/xs2a/sign/verify.lua",
      ["xs2a.status"] = "lua/xs2a/status.lua",
      ["xs2a.store"] = "lua/xs2a/store/init.lua",
      ["xs2a.store.contract"] = "lua/xs2a/store/contract.lua",
      ["xs2a.store.file"] = "lua/xs2a/store/file.lua",
      ["xs2a.store.memory"] = "lua/xs2a/store/memory.lua",
      ["xs2a.store.redis"] = "lua/xs2a/store/redis.lua",
      ["xs2a.store.resp"] = "lua/xs2a/store/resp.lua",
      ["xs2a.store.shdict"] = "lua/xs2a/store/shdict.lua",
      ["xs2a.tables"] = "lua/xs2a/tables.lua",
      ["xs2a.transport"] = "lua/xs2a/transport/init.lua",
      ["xs2a.transport.curl"] = "lua/xs2a/transport/curl.lua",
      ["xs2a.transport.ngx"] = "lua/xs2a/transport/ngx.lua",
      -- the sandbox's scripted PSU (a browser stand-in for demos and tests)
      ["xs2a.sandbox.psu"] = "examples/psu_browser.lua",
    },
    -- the command line (Lua 5.4 with lua-argparse and lua-socket; see the README)
    bin = { xs2a = "bin/xs2a" },
  },
  copy_directories = { "examples", "docs" },
}
