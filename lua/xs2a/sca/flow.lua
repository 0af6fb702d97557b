--- SCA flows: a state machine driven by the bank's `_links`. Its state is
-- data (`d.phase` and what each phase needs), never a private coroutine:
-- `flow:next()` runs phases until one needs the PSU or the TPP, and a
-- polling wait sleeps through the client (`xs2a.parallel`'s sleep), so it
-- yields to the scheduler: flows inside `xs2a.parallel` overlap.
--
-- `consent:authorise(opts)`, `payment:authorise(opts)`,
-- `payment:authorise_cancellation(opts)` and `basket:authorise(opts)` return a Flow. Drive it with
-- `flow:next(input)`; each call returns the next step that needs the PSU or
-- the TPP:
--
--   { kind = "redirect", url = ..., approach = "oauth"|"redirect" }
--       send the PSU's browser to url, then call next{ callback = <the URL the
--       browser came back to> }
--   { kind = "choose_method", methods = { scaMethod, ... } }
--       next{ method = authenticationMethodId }
--   { kind = "credentials" }          next{ psu_id = ..., password = ... }
--   { kind = "otp", challenge = challengeData, method = chosenScaMethod }
--       next{ otp = "123456" }
--   { kind = "wait", after = seconds, message = psuMessage, authorisation_id = ... }
--       only with opts.poll == false (decoupled SCA, or a status still moving);
--       call next() again after `after` seconds
--   { kind = "done", status = "valid"|"ACSC"|..., approach = ..., authorisations = n }
--
-- or `nil, err`. An error with `err.terminal == true` ends the flow (SCA
-- denied, failed, timed out); other errors (state mismatch, wrong OTP or
-- password, a network failure) leave the flow at the same step, so the right
-- input can still be given. SCA errors have `kind = "sca"` and `code` one of
-- `SCA_DENIED`, `SCA_FAILED`, `SCA_TIMEOUT`, `STATE_MISMATCH`.
--
-- `flow:save()` returns a JSON-safe table (resource reference, approach,
-- step, OAuth state and PKCE verifier, authorisation id and links; never a
-- token or a password) and `flow.resume(client, saved)` (`xs2a.resume`)
-- continues it in another client or process sharing the same token store.
-- @module xs2a.sca.flow
local oauth = require "xs2a.sca.oauth"
local errors = require "xs2a.errors"
local crypto = require "xs2a.crypto"
local date = require "xs2a.net.date"
local url_mod = require "xs2a.net.url"
local authorisation = require "xs2a.api.authorisation"

local _M = {}

local Flow = {}
Flow.__index = Flow


local now, new_error = date.now, errors.make

--- Default seconds a flow waits for a decoupled SCA or a final status.
_M.TIMEOUT = 900
_M.POLL_FIRST = 0.2
_M.POLL_MAX = 5

local SAVE_VERSION = 1

-- statuses after one of several required authorisations (multilevel SCA)
local PARTIAL = { partiallyAuthorised = true, PATC = true, PART = false }

local function ct_equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then return false end
  return crypto.ct_equal(a, b)
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- {name = {href = "..."}} or {name = "..."} -> {name = "..."}
-- The SCA status of a body: `scaStatus`, or `scatransactionStatus` as
-- Paysera's Georgia page spells it (docs/paysera.md, reading 10g)
local function sca_status_of(body)
  if type(body) ~= "table" then return nil end
  local s = body.scaStatus
  if s == nil then s = body.scatransactionStatus end
  return s
end

-- Does the profile list this approach (sca.approaches)?
local function approach_listed(profile, approach)
  for _, a in ipairs(profile and profile.sca and profile.sca.approaches or {}) do
    if a == approach then return true end
  end
  return false
end

local function norm_links(links)
  local out = {}
  if type(links) ~= "table" then return out end
  for name, v in pairs(links) do
    if type(v) == "table" and type(v.href) == "string" then out[name] = v.href
    elseif type(v) == "string" then out[name] = v end
  end
  return out
end

local function sca_error(code, message, fields)
  local e = { kind = "sca", code = code, message = message, terminal = true }
  for k, v in pairs(fields or {}) do e[k] = v end
  return new_error(e)
end

local function set_terminal(err, terminal)
  if type(err) == "table" then
    pcall(function() err.terminal = terminal end)
  end
  return err
end

local function append_query(url, params)
  local q = url_mod.encode_query(params)
  local base, frag = url:match("^([^#]*)(#?.*)$")
  return base .. (base:find("?", 1, true) and "&" or "?") .. q .. frag
end

--- Starts a flow for a resource (called by `resource:authorise`).
-- @param client the xs2a client
-- @param resource a consent, payment, cancellation or basket object
-- @tparam[opt] table opts `{ timeout = s, poll = bool, poll_interval = s,
--   max_poll_interval = s, redirect_uri = url }`: `timeout` bounds every wait
--   (decoupled SCA, status polling; default 900 s), `poll = false` returns
--   `wait` steps instead of sleeping, `redirect_uri` overrides the client's
-- @return Flow
function _M.start(client, resource, opts)
  assert(type(client) == "table", "flow.start: client required")
  assert(type(resource) == "table", "flow.start: resource required")
  opts = opts or {}
  local self = setmetatable({ client = client, resource = resource }, Flow)
  self.d = {
    v = SAVE_VERSION,
    phase = "start",
    level = 0,
    links = norm_links(resource.links),
    opts = {
      timeout = opts.timeout, poll = opts.poll, poll_interval = opts.poll_interval,
      max_poll_interval = opts.max_poll_interval, redirect_uri = opts.redirect_uri,
    },
  }
  return self
end

--- Continues a saved flow (`xs2a.resume(client, saved)`).
-- @param client a client (may be a fresh one in another process) sharing the token store
-- @tparam table saved the table from `flow:save()`
-- @return Flow | nil, err
function _M.resume(client, saved)
  if type(saved) ~= "table" or saved.v ~= SAVE_VERSION or type(saved.phase) ~= "string"
      or type(saved.resource) ~= "table" then
    return nil, new_error{ kind = "config", code = "FLOW_SAVED_INVALID", message = "flow.resume: not a saved flow" }
  end
  if type(client.resource_from_ref) ~= "function" then
    return nil, new_error{ kind = "config", code = "FLOW_SAVED_INVALID",
      message = "flow.resume: client cannot rebuild resources" }
  end
  local resource, err = client:resource_from_ref(saved.resource)
  if not resource then return nil, err end
  local self = setmetatable({ client = client, resource = resource }, Flow)
  local d = deep_copy(saved)
  d.resource = nil
  d.opts = type(d.opts) == "table" and d.opts or {}
  d.links = type(d.links) == "table" and d.links or {}
  self.d = d
  return self
end

--- A JSON-safe snapshot of the flow, enough (with the shared token store) to
-- continue it elsewhere with `xs2a.resume`.
function Flow:save()
  local t = deep_copy(self.d)
  t.resource = self.resource:ref()
  return t
end

--- "active", "done" or "failed".
function Flow:state()
  if self.d.phase == "done" then return "done" end
  if self.d.phase == "failed" then return "failed" end
  return "active"
end

--- The approach in use ("oauth", "redirect", "decoupled", "embedded") once known.
function Flow:approach() return self.d.approach end

--- The id of the current authorisation sub-resource, when there is one.
function Flow:authorisation_id() return self.d.auth_id end

function Flow:__tostring()
  return string.format("xs2a.Flow (%s, %s, %s)", tostring(self.resource.kind),
    tostring(self.d.approach or "?"), self.d.phase)
end

-- ---------------------------------------------------------------------------
-- plumbing

function Flow:_log(event, fields)
  local c = self.client
  if type(c.log) == "function" then
    fields = fields or {}
    fields.resource = self.resource.kind
    fields.approach = self.d.approach
    pcall(c.log, c, "info", event, fields)
  end
end

function Flow:_opt(name, default)
  local v = self.d.opts[name]
  if v == nil then return default end
  return v
end

function Flow:_psu(extra)
  local psu = {}
  for k, v in pairs(self.resource.psu or {}) do psu[k] = v end
  for k, v in pairs(extra or {}) do psu[k] = v end
  return psu
end

-- An authorisation request of the resource, sent by the authorisation API
-- (`xs2a.api.authorisation.send`: the same headers, bodies and errors as
-- the explicit calls). A POST starts an authorisation: it carries
-- TPP-Redirect-URI and TPP-Nok-Redirect-URI. `step` names the PSU-data body
-- (`"authenticate"`, `"authorise_transaction"`...), `value` the PSU's input.
function Flow:_request(method, href, step, value, psu_extra)
  local target
  if href:sub(1, 1) == "/" and self.resource.authorisations_path == href then
    target = { path = href }
  else
    target = { url = href }
  end
  return authorisation.send(self.resource, method, target, step, value,
    { psu = self:_psu(psu_extra), redirect_uri = self:_opt("redirect_uri", nil) })
end

function Flow:_begin_wait()
  local d = self.d
  d.deadline = now() + self:_opt("timeout", _M.TIMEOUT)
  d.delay = nil
end

-- next polling delay, growing to max_poll_interval
function Flow:_next_delay()
  local d = self.d
  local first = self:_opt("poll_interval", _M.POLL_FIRST)
  local max = self:_opt("max_poll_interval", _M.POLL_MAX)
  local delay = d.delay or first
  d.delay = math.min(delay * 1.5, max)
  return delay
end

-- After a polling attempt that did not finish: wait (or hand a wait step to
-- the caller with opts.poll == false). Returns a step or nothing.
function Flow:_wait(message)
  local d = self.d
  if not d.deadline then self:_begin_wait() end
  local left = d.deadline - now()
  if left <= 0 then
    return nil, sca_error("SCA_TIMEOUT", "flow: no final status before the deadline", {
      status = d.last_status, authorisation_id = d.auth_id })
  end
  local delay = math.min(self:_next_delay(), left)
  if self:_opt("poll", true) == false then
    return { kind = "wait", after = delay, message = message, authorisation_id = d.auth_id,
      approach = d.approach }
  end
  self.client:sleep(delay)
end

-- Decides the next phase from an authorisation (or creation) response.
function Flow:_route(links, body, implicit)
  local d = self.d
  local L = norm_links(links)
  d.links = L
  if L.scaStatus and not d.auth_id then
    d.auth_id = L.scaStatus:match("/authorisations/([^/?#]+)")
  end
  if type(body) == "table" then
    if type(body.authorisationId) == "string" then d.auth_id = body.authorisationId end
    if type(body.psuMessage) == "string" then d.message = body.psuMessage end
    if type(body.scaMethods) == "table" then d.methods = body.scaMethods end
    if type(body.chosenScaMethod) == "table" then d.method = body.chosenScaMethod end
    if type(body.challengeData) == "table" then d.challenge = body.challengeData end
  end
  local sca = sca_status_of(body)
  if sca == "failed" then
    return nil, sca_error("SCA_FAILED", "flow: the bank reports the authorisation failed",
      { sca_status = sca, authorisation_id = d.auth_id })
  end
  if sca == "finalised" or sca == "exempted" then
    if d.pending then d.level = d.level + 1 end   -- one more PSU authorised
    d.pending = false
    d.phase = "poll"
  elseif L.scaOAuth then
    d.approach, d.phase = "oauth", "oauth_start"
  elseif L.scaRedirect then
    d.approach, d.phase = "redirect", "redirect_start"
  elseif L.selectAuthenticationMethod or L.startAuthorisationWithAuthenticationMethodSelection then
    d.approach, d.phase = d.approach or "embedded", "choose_method"
  elseif L.authoriseTransaction or L.startAuthorisationWithTransactionAuthorisation then
    d.approach, d.phase = d.approach or "embedded", "otp"
  elseif L.updatePsuAuthentication or L.startAuthorisationWithPsuAuthentication then
    d.approach, d.phase = d.approach or "embedded", "credentials"
  elseif L.updatePsuIdentification or L.startAuthorisationWithPsuIdentification then
    d.phase = "identify"
  elseif L.startAuthorisation then
    d.phase = "start_auth"
  elseif L.scaStatus and (sca or implicit) and self:_oauth_without_link() then
    -- no scaOAuth link (docs/paysera.md, reading 2): OAuth all the same,
    -- with the metadata found where the profile says
    d.approach, d.phase = "oauth", "oauth_start"
  elseif L.scaStatus and (sca or implicit) then
    d.approach, d.phase = d.approach or "decoupled", "decoupled"
    self:_begin_wait()
  else
    d.phase = "poll"
  end
  -- an approach the profile does not list is refused (docs/paysera.md, reading 8)
  -- (the ASPSP-SCA-Approach header's REDIRECT stands for oauth and redirect alike)
  local approach = d.approach
  local header = self.resource.approach
  if approach == nil and (header == "embedded" or header == "decoupled") then approach = header end
  if approach and not approach_listed(self.client.profile, approach) then
    return nil, new_error{ kind = "config", code = "APPROACH_UNSUPPORTED", terminal = true,
      message = "flow: the bank chose the " .. approach .. " SCA approach, which profile "
        .. tostring(self.client.profile.name) .. " does not list in sca.approaches (docs/paysera.md)" }
  end
  if d.phase == "poll" then self:_begin_wait() end
end

-- True when a scaStatus-only answer means OAuth: the profile lists oauth,
-- and decoupled is either not listed or not what the bank's
-- ASPSP-SCA-Approach header says.
function Flow:_oauth_without_link()
  local p = self.client.profile
  if not approach_listed(p, "oauth") or not (p.oauth_metadata and #p.oauth_metadata > 0) then return false end
  local header = self.resource.approach
  if header == "decoupled" or header == "embedded" then return false end
  return header == "redirect" or header == "oauth" or not approach_listed(p, "decoupled")
end

local function body_of(res)
  if type(res) ~= "table" then return nil end
  if type(res.json) == "table" then return res.json end
  return nil
end

-- After the bank refused an input (password, OTP): the error stays
-- non-terminal unless the bank has failed the authorisation meanwhile (too
-- many attempts), which a GET of the authorisation tells.
function Flow:_refused(err, href)
  local d = self.d
  local link = d.links.scaStatus or href
  if type(err) == "table" and err.kind == "http" and link then
    local res = self:_request("GET", link)
    local body = res and body_of(res)
    if body and sca_status_of(body) == "failed" then
      return nil, sca_error("SCA_FAILED", "flow: the bank failed the authorisation after refused input",
        { sca_status = "failed", authorisation_id = d.auth_id, status = err.status, cause = err })
    end
  end
  return nil, set_terminal(err, false)
end

-- ---------------------------------------------------------------------------
-- phases: handler(self, input) -> step | nil (phase moved on) | nil, err
-- (terminal unless err.terminal == false)

local phases = {}

function phases.start(self)
  local L = self.d.links
  local sca_link = false
  for name in pairs(L) do
    if name == "scaOAuth" or name == "scaRedirect" or name == "scaStatus" or name == "confirmation"
        or name:match("^startAuthorisation") or name:match("^update") or name == "selectAuthenticationMethod"
        or name == "authoriseTransaction" then
      sca_link = true
    end
  end
  if not sca_link and self.resource.authorisations_path then
    -- explicit start: nothing to follow, open an authorisation ourselves
    self.d.links = { startAuthorisation = self.resource.authorisations_path }
    self.d.phase = "start_auth"
    return
  end
  return self:_route(L, nil, true)
end

-- The PSU of the authorisation being opened. Multilevel SCA: after the
-- first PSU, the next one must be named (`flow:next{ psu_id = "bob" }`);
-- the first PSU's id is never sent again.
function Flow:_level_psu(input)
  local d = self.d
  if input and type(input.psu_id) == "string" then d.next_psu = input.psu_id end
  if d.level == 0 then return d.next_psu or (self.resource.psu and self.resource.psu.id) end
  return d.next_psu
end

function phases.start_auth(self, input)
  local d = self.d
  local href = d.links.startAuthorisation or self.resource.authorisations_path
  if not href then
    return nil, sca_error("SCA_FAILED", "flow: no way to start an authorisation")
  end
  local psu_id = self:_level_psu(input)
  if d.level > 0 and not psu_id and d.approach == "decoupled" then
    -- the decoupled approach pushes to the PSU's app: the bank must know who
    return { kind = "credentials", need = "psu_id", approach = d.approach, level = d.level + 1 }
  end
  local res, err = self:_request("POST", href, "start", nil, { id = psu_id or false })
  if not res then return nil, set_terminal(err, false) end
  d.pending = true
  local body = body_of(res) or {}
  self:_log("flow.authorisation", { level = d.level + 1 })
  return self:_route(body._links, body)
end

function phases.identify(self, input)
  local d = self.d
  local psu_id = self:_level_psu(input)
  if not psu_id then return { kind = "credentials", need = "psu_id", level = d.level + 1 } end
  local href, method = d.links.updatePsuIdentification, "PUT"
  if not href then href, method = d.links.startAuthorisationWithPsuIdentification, "POST" end
  local res, err = self:_request(method, href, "identify", nil, { id = psu_id })
  if not res then return nil, set_terminal(err, false) end
  d.pending = true
  local body = body_of(res) or {}
  return self:_route(body._links, body)
end

function phases.credentials(self, input)
  local d = self.d
  if not (input and type(input.password) == "string") then
    return { kind = "credentials", approach = d.approach, level = d.level + 1 }
  end
  local psu_id = self:_level_psu(input)
  local href, method = d.links.updatePsuAuthentication, "PUT"
  if not href then href, method = d.links.startAuthorisationWithPsuAuthentication, "POST" end
  local res, err = self:_request(method, href, "authenticate", input.password, { id = psu_id or false })
  if not res then
    if method == "PUT" then return self:_refused(err, href) end
    return nil, set_terminal(err, false)
  end
  d.pending = true
  local body = body_of(res) or {}
  return self:_route(body._links, body)
end

function phases.choose_method(self, input)
  local d = self.d
  local id = input and (input.method or input.authentication_method_id)
  if type(id) == "table" then id = id.authenticationMethodId end
  if type(id) ~= "string" then
    return { kind = "choose_method", methods = deep_copy(d.methods or {}), approach = d.approach }
  end
  local href, method = d.links.selectAuthenticationMethod, "PUT"
  if not href then href, method = d.links.startAuthorisationWithAuthenticationMethodSelection, "POST" end
  local res, err = self:_request(method, href, "select_method", id)
  if not res then return nil, set_terminal(err, false) end
  local body = body_of(res) or {}
  return self:_route(body._links, body)
end

function phases.otp(self, input)
  local d = self.d
  local otp = input and (input.otp or input.sca_authentication_data)
  if type(otp) ~= "string" then
    return { kind = "otp", challenge = deep_copy(d.challenge), method = deep_copy(d.method), approach = d.approach }
  end
  local href, method = d.links.authoriseTransaction, "PUT"
  if not href then href, method = d.links.startAuthorisationWithTransactionAuthorisation, "POST" end
  local res, err = self:_request(method, href, "authorise_transaction", otp)
  if not res then
    -- a wrong OTP: the PSU may try again unless the bank failed the authorisation
    return self:_refused(err, method == "PUT" and href or nil)
  end
  local body = body_of(res) or {}
  local links = body._links
  if links == nil then links = {} end
  return self:_route(links, body)
end

function phases.decoupled(self)
  local d = self.d
  local href = d.links.scaStatus
  local res, err = self:_request("GET", href)
  if not res then
    if type(err) == "table" and err.retryable then return self:_wait(d.message) end
    return nil, set_terminal(err, false)
  end
  local body = body_of(res) or {}
  local sca = sca_status_of(body)
  if type(body.psuMessage) == "string" then d.message = body.psuMessage end
  d.last_sca = sca
  if sca == "failed" then
    return nil, sca_error("SCA_FAILED", "flow: the authorisation failed (denied by the PSU or expired)",
      { sca_status = sca, authorisation_id = d.auth_id })
  end
  if sca == "finalised" or sca == "exempted" then
    d.pending = false
    d.level = d.level + 1
    d.phase = "poll"
    self:_begin_wait()
    return
  end
  return self:_wait(d.message)
end

function phases.oauth_start(self)
  local d = self.d
  local meta
  local meta_url = d.links.scaOAuth
  if meta_url then
    local err
    meta, err = oauth.metadata(self.client, meta_url)
    if not meta then return nil, set_terminal(err, false) end
  else
    meta, meta_url = oauth.discover(self.client)
    if not meta then return nil, set_terminal(meta_url, false) end
  end
  local c = crypto
  local verifier, challenge = c.pkce()
  d.meta_url = meta_url
  d.state = c.state()
  d.verifier = verifier
  d.redirect_uri = self:_opt("redirect_uri", nil) or self.client.redirect_uri
  if type(d.redirect_uri) ~= "string" then
    error("flow: a redirect_uri is required for the OAuth approach (client or authorise option)", 0)
  end
  d.url = oauth.authorization_url(meta, {
    client_id = self.client.client_id,
    scope = self.resource.scope,
    state = d.state,
    redirect_uri = d.redirect_uri,
    code_challenge = challenge,
  })
  d.pending = true
  d.phase = "oauth_wait"
end

-- checks the state of a callback; returns the query table or nil, err (non-terminal)
function Flow:_callback(url)
  local q = url_mod.query_of(url)
  if not ct_equal(q.state, self.d.state) then
    self:_log("flow.state_mismatch", {})
    return nil, set_terminal(new_error{ kind = "sca", code = "STATE_MISMATCH",
      message = "flow: callback state does not match this flow" }, false)
  end
  if q.error then
    local code = q.error == "access_denied" and "SCA_DENIED" or "SCA_FAILED"
    return nil, sca_error(code, "flow: authorisation ended with " .. tostring(q.error):sub(1, 64),
      { oauth_error = q.error:sub(1, 64) })
  end
  return q
end

function phases.oauth_wait(self, input)
  local d = self.d
  if not (input and type(input.callback) == "string") then
    return { kind = "redirect", url = d.url, approach = "oauth" }
  end
  local q, err = self:_callback(input.callback)
  if not q then return nil, err end
  local meta, merr = oauth.metadata(self.client, d.meta_url)
  if not meta then return nil, set_terminal(merr, false) end
  -- mix-up defence (RFC 9207): a response from another issuer ends the flow
  -- before its code goes anywhere
  local iss_ok, iss_err = oauth.check_iss(meta, q.iss)
  if not iss_ok then
    self:_log("flow.issuer_mismatch", {})
    return nil, set_terminal(iss_err, true)
  end
  local rec, xerr = oauth.exchange_code(self.client, meta, self.resource.token_key, q.code, d.verifier,
    d.redirect_uri, d.meta_url)
  if not rec then
    -- an answer from the token endpoint (the code is single-use) ends the
    -- flow; a transport failure may be retried with the same callback
    local retry = type(xerr) == "table" and xerr.retryable and not xerr.status
    return nil, set_terminal(xerr, not retry)
  end
  d.state, d.verifier, d.url = nil, nil, nil
  d.level = d.level + 1
  d.pending = false
  self:_log("flow.authorised", { level = d.level })
  d.phase = "poll"
  self:_begin_wait()
end

function phases.redirect_start(self)
  local d = self.d
  d.state = crypto.state()
  d.url = append_query(d.links.scaRedirect, { state = d.state })
  d.pending = true
  d.phase = "redirect_wait"
end

function phases.redirect_wait(self, input)
  local d = self.d
  if not (input and type(input.callback) == "string") then
    return { kind = "redirect", url = d.url, approach = "redirect" }
  end
  local q, err = self:_callback(input.callback)
  if not q then return nil, err end
  d.state, d.url = nil, nil
  if q.confirmationCode and d.links.confirmation then
    local res, cerr = self:_request("PUT", d.links.confirmation, "confirm", q.confirmationCode)
    if not res then return nil, set_terminal(cerr, true) end
    local body = body_of(res) or {}
    if sca_status_of(body) == "failed" then
      return nil, sca_error("SCA_FAILED", "flow: the bank rejected the confirmation code",
        { sca_status = "failed", authorisation_id = d.auth_id })
    end
  end
  d.level = d.level + 1
  d.pending = false
  d.phase = "poll"
  self:_begin_wait()
end

function phases.poll(self)
  local d = self.d
  local r = self.resource
  local status, err = r:current_status()
  if not status then
    if type(err) == "table" and err.retryable then return self:_wait(d.message) end
    return nil, set_terminal(err, false)
  end
  d.last_status = status
  if r.success and r.success[status] then
    d.phase = "done"
    d.status = status
    return { kind = "done", status = status, approach = d.approach, authorisations = d.level }
  end
  if PARTIAL[status] and not d.pending then
    -- multilevel SCA: the next PSU authorises on a new sub-resource
    d.links = { startAuthorisation = r.authorisations_path or d.links.startAuthorisation }
    d.state, d.verifier, d.url, d.next_psu, d.auth_id = nil, nil, nil, nil, nil
    d.phase = "start_auth"
    return
  end
  if r.final and r.final[status] then
    return nil, sca_error("SCA_FAILED", "flow: the " .. tostring(r.kind) .. " ended with status " .. status,
      { status = status, resource_status = status })
  end
  return self:_wait(d.message)
end

-- ---------------------------------------------------------------------------
-- running the phases

-- Runs phases until one returns a step (it needs the PSU or the TPP), a
-- terminal error, or an error that leaves the flow at its step.
-- @return step, nil, finished | nil, err, finished
function Flow:_run(input)
  while true do
    local d = self.d
    local handler = phases[d.phase]
    if not handler then
      return nil, new_error{ kind = "config", code = "FLOW_STATE",
        message = "flow: unknown phase " .. tostring(d.phase) }, true
    end
    local step, err = handler(self, input)
    input = nil
    if step then
      return step, nil, step.kind == "done"
    elseif err then
      return nil, err, not (type(err) == "table" and err.terminal == false)
    end
  end
end

--- Advances the flow.
-- @tparam[opt] table input what the last step asked for: `{ callback = url }`,
--   `{ method = id }`, `{ psu_id = ..., password = ... }`, `{ otp = ... }`
-- @return step | nil, err
function Flow:next(input)
  if input ~= nil and type(input) ~= "table" then
    error("flow:next: input must be a table", 2)
  end
  local d = self.d
  if d.phase == "done" then
    return { kind = "done", status = d.status, approach = d.approach, authorisations = d.level }
  end
  if d.phase == "failed" then
    return nil, self.err or sca_error(d.error_code or "SCA_FAILED", d.error_message or "flow: failed earlier")
  end
  local step, err, finished = self:_run(input)
  if finished then
    if not step then
      d.phase = "failed"
      self.err = err
      d.error_code = type(err) == "table" and err.code or "SCA_FAILED"
      d.error_message = type(err) == "table" and err.text or tostring(err)
      self:_log("flow.failed", { code = d.error_code })
      return nil, err
    end
    self:_log("flow.done", { status = step.status })
  end
  return step, err
end

return _M
