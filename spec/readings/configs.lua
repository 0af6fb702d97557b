-- The reading configurations of the matrix (spec/readings/matrix_spec.lua):
-- each names the sandbox switches it turns (sandbox/lua/sandbox/config.lua,
-- docs/paysera.md) and the client profile settings that go with them. Not
-- every combination: each switch is in both positions somewhere below.
--
--   switch                         positions (configuration numbers)
--   sign_responses (georgia)       on 1 3 4 5, off 2
--   sca.oauth_link                 on 1 2 5, off 3 4
--   oauth_metadata                 variant 1 5 (and 3 Georgia, 4 Berlin), root 3 Berlin / 4 Georgia,
--                                  both 2 (the host root serves the first variant that has it there)
--   token_error_status             401 1 3 4 5, 403 2
--   link_form                      host (berlin) / absolute (georgia) 1 3 5, variant 2, absolute/host swapped 4
--   frequency_rule                 resource 1-4, consent 5 (profile too)
--   consent_over_max               cap 1-4, refuse 5 (profile too)
--   multiple_consents              keep 1-4 (what spec support starts with), replace 5 (the sandbox default)
--   sca.honour_preferred           off 1-4, on 5
--   sca.status_field               scaStatus 1-4, scatransactionStatus 5
--   funds_confirmation             off 1-4, on 5 (profile too)
return {
  {
    name = "1 defaults",
    sandbox = {},
  },
  {
    name = "2 unsigned Georgia, token errors 403, links relative to the variant root",
    sandbox = {
      token_error_status = 403, oauth_metadata = "both",
      variants = { berlin = { link_form = "variant" },
        georgia = { link_form = "variant", signing = { sign_responses = false } } },
    },
  },
  {
    name = "3 no scaOAuth; Berlin's metadata at the host root only, Georgia's per variant",
    sandbox = { sca = { oauth_link = false }, variants = { berlin = { oauth_metadata = "root" } } },
  },
  {
    name = "4 no scaOAuth; Georgia's metadata at the host root only; absolute links on Berlin, host links on Georgia",
    sandbox = {
      sca = { oauth_link = false },
      variants = { berlin = { link_form = "absolute" }, georgia = { link_form = "host", oauth_metadata = "root" } },
    },
  },
  {
    name = "5 strict frequency, refused long consents, one consent per PSU, scatransactionStatus, PIIS on",
    sandbox = {
      frequency_rule = "consent", consent_over_max = "refuse", multiple_consents = "replace",
      sca = { honour_preferred = true, status_field = "scatransactionStatus" }, funds_confirmation = true,
    },
    profile = { frequency_rule = "consent", consent_over_max = "refuse", funds_confirmation = true },
  },
}
