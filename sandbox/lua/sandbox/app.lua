--- The sandbox bank's request entry point: builds ctx, runs the platform
-- checks, dispatches to the bank's routes (sandbox.bank.routes), renders the
-- answer and applies injected faults. See sandbox/CONTRACT.md.
local util = require "sandbox.util"
local http = require "sandbox.http"
local config = require "sandbox.config"
local checks = require "sandbox.checks"

local ngx = ngx
local find, sub = string.find, string.sub

local _M = {}

--- Settings fixed at start (from nginx.conf): prefix, port, faults, pki,
-- config_file; plus the PKI file contents read by init().
local settings = { port = 8443, faults = false, pki = "", prefix = "" }
_M.settings = settings

local VARIANTS = {
  { name = "berlin", root = "/xs2a/berlin/1.3" },
  { name = "georgia", root = "/xs2a/georgia/0.8" },
}
_M.VARIANTS = VARIANTS

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- init_by_lua: remembers the settings, loads the startup configuration and
-- reads the CA and the bank's seal (before workers drop privileges).
function _M.init(opts)
  for k, v in pairs(opts) do settings[k] = v end
  local file_cfg
  if settings.config_file and settings.config_file ~= "" then
    local s = read_file(settings.config_file)
    if not s then error("sandbox: cannot read config file " .. settings.config_file) end
    local err
    file_cfg, err = util.json_decode(s)
    if type(file_cfg) ~= "table" then
      error("sandbox: config file " .. settings.config_file .. " is not a JSON object: " .. tostring(err))
    end
  end
  config.init(file_cfg)
  settings.ca_pem = read_file(settings.pki .. "/ca.pem")
  settings.seal_pem = read_file(settings.pki .. "/aspsp-seal.pem")
  settings.seal_key_pem = read_file(settings.pki .. "/aspsp-seal.key")
  ngx.shared.sandbox_state:flush_all()
  ngx.shared.sandbox_limits:flush_all()
end

function _M.init_worker()
end

--- The bank's route list, or an empty list while the bank module is absent.
local function bank_routes()
  local ok, bank = pcall(require, "sandbox.bank")
  if ok and type(bank) == "table" and type(bank.routes) == "table" then
    return bank.routes
  end
  if not ok and not tostring(bank):find("module 'sandbox.bank' not found", 1, true) then
    ngx.log(ngx.ERR, "sandbox: cannot load sandbox.bank: ", bank)
  end
  return {}
end

local function bank_module(name)
  local ok, m = pcall(require, "sandbox.bank." .. name)
  if ok and type(m) == "table" then return m end
  if not ok and not tostring(m):find("not found", 1, true) then
    ngx.log(ngx.ERR, "sandbox: cannot load sandbox.bank.", name, ": ", m)
  end
  return nil
end
_M.bank_module = bank_module

--- Seeds the bank's data once after start and after each reset (all workers
-- agree through the state dict).
function _M.reseed()
  local d = ngx.shared.sandbox_state
  local seed = bank_module("seed")
  if seed and seed.reset then
    local ok, err = pcall(seed.reset)
    if not ok then ngx.log(ngx.ERR, "sandbox: seed.reset failed: ", err) end
  end
  d:set("__seeded", true)
end

local function ensure_seeded()
  local d = ngx.shared.sandbox_state
  if d:get("__seeded") then return end
  if d:add("__seeding", true, 30) then
    _M.reseed()
    d:delete("__seeding")
    return
  end
  for _ = 1, 3000 do
    ngx.sleep(0.01)
    if d:get("__seeded") then return end
  end
end
_M.ensure_seeded = ensure_seeded

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if file then return read_file(file) or "" end
  return ""
end

local function get_headers()
  local raw = ngx.req.get_headers(200)
  local h = {}
  for k, v in pairs(raw) do
    if type(v) == "table" then v = table.concat(v, ", ") end
    h[k:lower()] = v
  end
  return h
end

-- Which of the server's origins took the request: "bank", or the OAuth
-- authorization server's own "as" / "as_mtls" (--as-port, --as-mtls-port).
local function listener()
  local p = tonumber(ngx.var.server_port)
  if p and p == settings.as_port then return "as" end
  if p and p == settings.as_mtls_port then return "as_mtls" end
  return "bank"
end

--- Builds the request context for a path under a variant root.
local function build_ctx(variant, path)
  local headers = get_headers()
  local host = headers["host"] or ("127.0.0.1:" .. settings.port)
  local ctx = {
    variant = variant.name,
    root = variant.root,
    base_url = "https://" .. host,
    path = path,
    method = ngx.req.get_method(),
    args = ngx.req.get_uri_args(100),
    headers = headers,
    body = read_body(),
    params = {},
    cfg = config.for_variant(variant.name),
    platform_test_routes = nil,
    request_id = headers["x-request-id"],
    request_uri = ngx.var.request_uri,
    port = settings.port,
    listener = listener(),
    ports = {
      bank = settings.port,
      as = (settings.as_port or 0) > 0 and settings.as_port or nil,
      as_mtls = (settings.as_mtls_port or 0) > 0 and settings.as_mtls_port or nil,
    },
  }
  ctx.platform_test_routes = ctx.cfg.platform_test_routes == true
  return ctx
end

local function json_content(ctx)
  local ct = (ctx.headers["content-type"] or ""):lower()
  if ct:find("application/x-www-form-urlencoded", 1, true) then
    ctx.form = ngx.decode_args(ctx.body, 100)
    return false
  end
  if ct:find("multipart/", 1, true) or ct:find("xml", 1, true) or ct:find("text/plain", 1, true) then
    return false
  end
  return ctx.body ~= ""
end

--- Finds the route for ctx (sets ctx.params).
-- @return route, or nil and whether the path exists with another method
local function match_route(ctx, routes)
  local path_known = false
  for _, r in ipairs(routes) do
    -- `enabled(ctx)`: a route the configuration may switch off (then the next one matches)
    local res = (r.enabled == nil or r.enabled(ctx)) and { find(ctx.path, r.pattern) } or {}
    if res[1] then
      if r.method == ctx.method or r.method == "*" then
        ctx.params = { select(3, unpack(res)) }
        return r
      end
      path_known = true
    end
  end
  return nil, path_known
end

-- The platform checks for an mTLS route, in the order of CONTRACT.md.
local function mtls_checks(ctx, route, cert_error)
  local status, code, detail, headers = checks.certificate(ctx, cert_error)
  if status then return status, code, detail, headers end
  status, code, detail, headers = checks.role(ctx, route.service)
  if status then return status, code, detail, headers end
  status, code, detail, headers = checks.rate(ctx)
  if status then return status, code, detail, headers end
  local rid_required = route.request_id
  if rid_required == nil then
    rid_required = route.service ~= nil or sub(ctx.path, 1, 4) == "/v1/"
  end
  status, code, detail = checks.request_id(ctx, rid_required)
  if status then return status, code, detail end
  if route.psu_ip then
    status, code, detail = checks.psu_ip(ctx)
    if status then return status, code, detail end
  end
  local signing = ctx.cfg.signing or {}
  local required = false
  for _, s in ipairs(signing.required_for or {}) do
    if s == route.service then required = true end
  end
  if required then
    status, code, detail = require("sandbox.sig").verify(ctx, route, settings)
    if status then return status, code, detail end
  end
  return checks.policy(ctx, route)
end

-- Routes for the platform's own specs, served only while the configuration
-- has `platform_test_routes = true`: they echo what the platform saw.
local function echo(ctx)
  return 200, {
    variant = ctx.variant, path = ctx.path, method = ctx.method, params = util.array(ctx.params),
    org_id = ctx.tpp and ctx.tpp.org_id or util.null,
    roles = ctx.tpp and util.array(ctx.tpp.role_list) or util.null,
    signer = ctx.signer or util.null, json = ctx.json or util.null,
    form = ctx.form or util.null,
  }
end

local TEST_ROUTES = {
  { method = "GET", pattern = "^/v1/_platform/ais$", handler = echo, auth = "mtls", service = "AIS" },
  { method = "POST", pattern = "^/v1/_platform/pis$", handler = echo, auth = "mtls", service = "PIS", psu_ip = true },
  { method = "GET", pattern = "^/v1/_platform/piis/([%w%-]+)$", handler = echo, auth = "mtls", service = "PIIS" },
  { method = "POST", pattern = "^/_platform/token$", handler = echo, auth = "mtls" },
  { method = "GET", pattern = "^/_platform/page$", handler = echo, auth = "none" },
  { method = "GET", pattern = "^/v1/_platform/boom$", handler = function() error("boom") end, auth = "mtls" },
}

local function routes_for(ctx)
  local routes = bank_routes()
  if ctx.listener ~= "bank" then
    -- the authorization server's own origins serve only its routes
    local own = {}
    for _, r in ipairs(routes) do
      if r.listeners and r.listeners[ctx.listener] then own[#own + 1] = r end
    end
    return own
  end
  if not ctx.platform_test_routes then return routes end
  local all = {}
  for _, r in ipairs(TEST_ROUTES) do all[#all + 1] = r end
  for _, r in ipairs(routes) do all[#all + 1] = r end
  return all
end

local function dispatch(ctx, cert_error)
  local route, path_known = match_route(ctx, routes_for(ctx))
  if not route then
    -- unknown API paths still demand a certificate first, like the real API
    local status, code, detail = checks.certificate(ctx, cert_error)
    if status then return http.err(ctx, status, code, detail) end
    if path_known then
      return http.err(ctx, 405, "SERVICE_INVALID", "method " .. ctx.method .. " is not supported here")
    end
    return http.err(ctx, 404, "RESOURCE_UNKNOWN", "no such endpoint: " .. ctx.path)
  end
  if route.auth ~= "none" then
    local status, code, detail, headers = mtls_checks(ctx, route, cert_error)
    if status then return http.err(ctx, status, code, detail, headers) end
  else
    -- browser pages: a valid certificate is used when present, never required
    local tpp = checks.client_cert(cert_error)
    ctx.tpp = tpp
  end
  if route.auth ~= "none" and sub(ctx.path, 1, 4) == "/v1/" and ctx.body ~= ""
      and (ctx.method == "POST" or ctx.method == "PUT") then
    -- the API's bodies are JSON: another declared type is 415
    local ct = (ctx.headers["content-type"] or ""):lower()
    if ct ~= "" and not ct:find("json", 1, true) then
      return http.err(ctx, 415, "FORMAT_ERROR", "Content-Type must be application/json")
    end
  end
  if json_content(ctx) then
    local v, err = util.json_decode(ctx.body)
    if v == nil then
      ctx.json_error = err or "invalid JSON"
      if route.auth ~= "none" then
        return http.err(ctx, 400, "FORMAT_ERROR", "the body is not valid JSON")
      end
    else
      ctx.json = v
    end
  end
  return route.handler(ctx)
end

local function variant_of(uri)
  for _, v in ipairs(VARIANTS) do
    if uri == v.root or sub(uri, 1, #v.root + 1) == v.root .. "/" then
      return v, sub(uri, #v.root + 1)
    end
  end
  return nil
end

local METADATA = "/.well-known/oauth-authorization-server"

-- Where the OAuth metadata is served (setting `oauth_metadata`): "variant"
-- (<root>/.well-known/..., the authentication guide), "root" (the host root,
-- the getting-started page) or "both".
local function metadata_at(variant_name, where)
  local m = config.for_variant(variant_name).oauth_metadata or "variant"
  return m == "both" or m == where
end

-- The variant whose metadata the host root serves: the first that has it there.
local function root_metadata_variant()
  for _, v in ipairs(VARIANTS) do
    if metadata_at(v.name, "root") then return v end
  end
end

local function index()
  local port = settings.port
  return 200, {
    name = "lua-xs2a sandbox bank",
    variants = {
      berlin = "https://127.0.0.1:" .. port .. "/xs2a/berlin/1.3",
      georgia = "https://127.0.0.1:" .. port .. "/xs2a/georgia/0.8",
    },
    control = "https://127.0.0.1:" .. port .. "/_sandbox/",
    faults = settings.faults,
  }
end

--- content_by_lua: handles one request. `cert_error` is true in the
-- location nginx redirects to after refusing a client certificate (495/496).
function _M.handle(cert_error)
  local uri = ngx.var.uri
  if sub(uri, 1, 10) == "/_sandbox/" or uri == "/_sandbox" then
    return require("sandbox.control").handle(settings)
  end
  local variant, path = variant_of(uri)
  if uri == METADATA then
    variant, path = root_metadata_variant(), METADATA
  elseif variant and path == METADATA and not metadata_at(variant.name, "variant") then
    variant = nil
  end
  if not variant then
    if uri == "/" then
      return http.write(http.render(nil, index()))
    end
    return http.write(http.render(nil, http.err(nil, 404, "RESOURCE_UNKNOWN", "no such endpoint")))
  end
  ensure_seeded()
  local ctx = build_ctx(variant, path == "" and "/" or path)
  ngx.ctx.sandbox = ctx
  if ctx.cfg.record then require("sandbox.recorder").record(ctx, settings) end

  local fault
  if settings.faults then
    fault = require("sandbox.faults").take(ctx)
    if fault and fault.kind == "status" then
      return require("sandbox.faults").status(ctx, fault)
    end
    if fault and fault.kind == "oversize" then
      return require("sandbox.faults").oversize(ctx, fault)
    end
  end

  local ok, status, body, headers = xpcall(dispatch, debug.traceback, ctx, cert_error)
  if not ok then
    ngx.log(ngx.ERR, "sandbox: handler failed: ", status)
    status, body, headers = http.err(ctx, 500, "INTERNAL_SERVER_ERROR", "the sandbox failed on this request")
  end
  local rs, rh, rb = http.render(ctx, status, body, headers)
  if ctx.cfg.signing and ctx.cfg.signing.sign_responses and ctx.variant == "georgia" then
    local sok, err = pcall(require("sandbox.sig").sign_response, ctx, rs, rh, rb, settings)
    if not sok then ngx.log(ngx.ERR, "sandbox: cannot sign the response: ", err) end
  end
  if fault and fault.kind == "delay" then
    -- after the handler, so a slow answer holds its concurrency slot
    ngx.sleep(tonumber(fault.seconds) or 1)
  elseif fault then
    return require("sandbox.faults").apply(ctx, fault, rs, rh, rb)
  end
  return http.write(rs, rh, rb)
end

--- log_by_lua: releases the request's concurrency slot.
function _M.log()
  checks.release()
end

return _M
