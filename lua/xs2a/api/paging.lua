--- Paged lists: an iterator over the transactions of an account (or a
-- card account) that fetches pages as the loop goes, following the bank's
-- `_links.next`.
-- @module xs2a.api.paging
local errors = require "xs2a.errors"
local json = require "xs2a.codec.json"
local resource = require "xs2a.api.resource"
local exchange = require "xs2a.pipeline.exchange"
local url = require "xs2a.net.url"

local type, ipairs, str_sub = type, ipairs, string.sub
local body_list = resource.body_list

local _M = {}

local BOOKING = { "booked", "pending", "information" }

-- A next link is followed only within the same list (same account, same
-- list): its path must be the first page's path; its query may differ.
local function same_list(client, href, path)
  local full, err = exchange.resolve(client, href)
  if not full then return nil, err end
  local u = url.parse(full)
  local p = u and u.path
  if p and str_sub(p, 1, #client.root) == client.root then p = str_sub(p, #client.root + 1) end
  if p ~= path then
    return nil, errors.protocol("refusing a next link outside this transaction list", nil, "FOREIGN_PAGE_LINK")
  end
  return full
end

-- Iterator over a paged transaction list. `container` is the body key
-- ("transactions" or "cardTransactions").
function _M.iterate(self, path, query, opts, container)
  opts = opts or {}
  local max_pages = opts.max_pages or 1000
  local queue, qi = {}, 1
  local next_href
  local started, finished, pages = false, false, 0
  local seen = {}
  local function fetch()
    local res, err
    if not started then
      started = true
      res, err = self:_get(path, query, opts)
    else
      if seen[next_href] then
        return nil, errors.protocol("pagination loops back to a page already read", nil, "PAGINATION_LOOP")
      end
      seen[next_href] = true
      local full, lerr = same_list(self.client, next_href, path)
      if not full then return nil, lerr end
      res, err = self:_get(nil, nil, opts, { url = full, path = false, follow = true })
    end
    if not res then
      if type(err) == "table" and err.code == "ACCESS_EXCEEDED" then
        -- frequencyPerDay is used up (our limiter, or the bank's 429): say
        -- how far the list got, so the reader knows what it holds
        err.pages_read = pages
        err.text = tostring(err.text or "frequencyPerDay used up") .. "; the transaction iterator stopped after "
          .. pages .. " page" .. (pages == 1 and "" or "s")
      end
      return nil, err
    end
    pages = pages + 1
    local b = res.json
    if type(b) ~= "table" then
      return nil, errors.protocol(container .. ": response has no JSON object", { request_id = res.request_id })
    end
    local t = b[container]
    queue, qi = {}, 1
    next_href = nil
    if t ~= nil and (type(t) ~= "table" or json.is_array(t)) then
      return nil, errors.protocol(container .. ": not an object", { status = res.status,
        request_id = res.request_id }, "BAD_RESPONSE")
    end
    if type(t) == "table" then
      for _, status in ipairs(BOOKING) do
        if t[status] ~= nil then
          local list, lerr = body_list(res, t, status, container)
          if not list then return nil, lerr end
          for _, tx in ipairs(list) do
            if type(tx) == "table" then
              tx._status = status
              queue[#queue + 1] = tx
            end
          end
        end
      end
      local links = type(t._links) == "table" and t._links or nil
      local nxt = links and links.next
      if nxt == nil and type(b._links) == "table" then nxt = b._links.next end
      if type(nxt) == "table" then nxt = nxt.href end
      if type(nxt) == "string" and nxt ~= "" then next_href = nxt end
    end
    if pages >= max_pages then next_href = nil end
    return true
  end
  return function()
    while true do
      if finished then return nil end
      if qi <= #queue then
        local tx = queue[qi]
        qi = qi + 1
        return tx
      end
      if started and not next_href then
        finished = true
        return nil
      end
      local ok, err = fetch()
      if not ok then
        finished = true
        return false, err
      end
    end
  end
end

return _M
