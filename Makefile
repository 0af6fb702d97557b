# lua-xs2a developer build. Every path can be overridden on the command line.
# `make` builds xs2a/core.so for Lua 5.4 and for LuaJIT 2.1 (OpenResty's
# flavour) into separate directories: a LuaJIT build loads silently into
# lua5.4 and then crashes, so the two never share a directory.

LUA_VERSION ?= 5.4
PKG_CONFIG  ?= pkg-config
CC          ?= cc
PREFIX      ?= /usr/local
BUILD       ?= build
DEP_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags libcurl libcrypto libssl 2>/dev/null)
DEP_LIBS    ?= $(shell $(PKG_CONFIG) --libs libcurl libcrypto libssl 2>/dev/null)
LUA54_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null)
LUAJIT_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags luajit 2>/dev/null)
WARN        ?= -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS      ?= -O2 -g
LIBFLAG     ?= -shared
INST_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INST_LUADIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)

SRCS    := $(sort $(wildcard csrc/*.c))
HDRS    := $(wildcard csrc/*.h)
LUASRC  := $(shell find lua -name '*.lua' 2>/dev/null)

.PHONY: interop-deps all older lua54 luajit deps docs rock pki test test-fast lint sandbox sandbox-stop demo bench install clean valgrind fuzz test-c

all: lua54 luajit

lua54: $(BUILD)/lua5.4/xs2a/core.so
luajit: $(BUILD)/luajit/xs2a/core.so

$(BUILD)/lua5.4/xs2a/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -fPIC $(LUA54_CFLAGS) $(DEP_CFLAGS) $(LIBFLAG) -o $@ $(SRCS) $(DEP_LIBS)

$(BUILD)/luajit/xs2a/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -fPIC $(LUAJIT_CFLAGS) $(DEP_CFLAGS) $(LIBFLAG) -o $@ $(SRCS) $(DEP_LIBS)

# The other Lua versions the rockspec claims (5.1, 5.2, 5.3), each with
# -Werror into its own directory; `make test` runs the version-sensitive
# specs under each (spec/run-suites, suite "older").
OLDER_LUAS ?= 5.1 5.2 5.3
older: $(foreach v,$(OLDER_LUAS),$(BUILD)/lua$(v)/xs2a/core.so)
$(BUILD)/lua5.%/xs2a/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -fPIC $(shell $(PKG_CONFIG) --cflags lua5.$*) $(DEP_CFLAGS) $(LIBFLAG) -o $@ $(SRCS) $(DEP_LIBS)

# The HTML API reference from the LDoc comments (config.ld) into
# $(BUILD)/docs; fails on any LDoc warning (scripts/docs).
docs:
	@sh scripts/docs $(BUILD)/docs

# LuaRocks' build step (the rockspec's `make` backend passes the variables):
# xs2a.core from every csrc/*.c straight into $(BUILD)/rock, no object files.
LUA_INCDIR     ?= /usr/include/lua$(LUA_VERSION)
CURL_INCDIR    ?= /usr/include
CURL_LIBDIR    ?= /usr/lib
OPENSSL_INCDIR ?= /usr/include
OPENSSL_LIBDIR ?= /usr/lib
rock: $(SRCS) $(HDRS)
	@mkdir -p $(BUILD)/rock/xs2a
	$(CC) $(CFLAGS) -fPIC -I$(LUA_INCDIR) -I$(CURL_INCDIR) -I$(OPENSSL_INCDIR) $(LIBFLAG) \
	  -o $(BUILD)/rock/xs2a/core.so $(SRCS) -L$(CURL_LIBDIR) -L$(OPENSSL_LIBDIR) -lcurl -lssl -lcrypto

# Installs what is missing from Debian's archive (needs root).
deps:
	@sh scripts/deps

pki: $(BUILD)/pki/qwac.pem
$(BUILD)/pki/qwac.pem: sandbox/bin/mkpki
	sh sandbox/bin/mkpki $(BUILD)/pki

lint:
	luacheck -q lua spec sandbox/lua examples bench fuzz bin/xs2a

# The README's test command: deps, build, lint, every suite, one summary line.
test:
	@sh scripts/deps
	@$(MAKE) --no-print-directory all older pki
	@sh spec/run-suites

# The suites without re-checking packages (for a quick loop).
test-fast: all older pki interop-deps
	@sh spec/run-suites

# spec/interop's third-party verifiers (npm, from its package-lock.json)
interop-deps: spec/interop/node_modules/.package-lock.json
spec/interop/node_modules/.package-lock.json: spec/interop/package-lock.json
	cd spec/interop && npm ci --no-audit --no-fund --silent

sandbox: all pki
	@sh sandbox/bin/sandbox start $(if $(PORT),--port $(PORT),) $(if $(FAULTS),--faults,)

sandbox-stop:
	@sh sandbox/bin/sandbox stop

# only what the demo needs: no browser, no test tools, no LuaJIT build
demo:
	@XS2A_DEPS=demo sh scripts/deps
	@$(MAKE) --no-print-directory lua54 pki
	@HSM=$(HSM) sh scripts/demo

bench: all pki
	@sh bench/run

valgrind: lua54 pki
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	  lua5.4 spec/valgrind_core.lua

# libFuzzer targets (fuzz/*.c) under ASan/UBSan, each for FUZZ_TIME seconds,
# starting from seeds made from the test PKI; the corpus grows in
# $(BUILD)/fuzz/corpus, crashes land in $(BUILD)/fuzz/crash-<target>-*.
FUZZ_TIME ?= 30
fuzz: lua54 pki
	@sh fuzz/build $(BUILD)/fuzz
	@lua5.4 fuzz/gen-inputs.lua $(BUILD)/pki $(BUILD)/fuzz
	@set -e; for t in $$(ls fuzz/*.c | sed 's|fuzz/||; s|\.c$$||'); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_TIME) s"; \
	  $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_TIME) -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crash-$$t- \
	    $(BUILD)/fuzz/corpus/$$t $(BUILD)/fuzz/seeds/$$t 2>&1 | grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' || true; \
	  ls $(BUILD)/fuzz/crash-$$t-* > /dev/null 2>&1 && { echo "fuzz: $$t crashed"; exit 1; } || true; \
	done

# The C-level suite alone (TAP): fuzz targets replayed under ASan/UBSan, valgrind.
test-c:
	@sh spec/c/run

install: lua54
	install -d $(DESTDIR)$(INST_LIBDIR)/xs2a $(DESTDIR)$(INST_LUADIR) $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/lua5.4/xs2a/core.so $(DESTDIR)$(INST_LIBDIR)/xs2a/core.so
	cd lua && find xs2a -name '*.lua' -exec install -D -m 0644 {} $(DESTDIR)$(INST_LUADIR)/{} \;
	install -D -m 0644 examples/psu_browser.lua $(DESTDIR)$(INST_LUADIR)/xs2a/sandbox/psu.lua
	install -m 0755 bin/xs2a $(DESTDIR)$(PREFIX)/bin/xs2a

clean:
	rm -rf $(BUILD)/lua5.1 $(BUILD)/lua5.2 $(BUILD)/lua5.3 $(BUILD)/lua5.4 $(BUILD)/luajit $(BUILD)/test-results
