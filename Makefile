# cio: one plain GNU Makefile.
#   make                      libcio.a, libcio.so and the examples
#   make check [T=pattern]    every test (per backend), then every example
#                             (and mini_redis against redis-server)
#   make check REPEAT=20 [PIN=1] [LOAD=2]   the same, 20 times in a row
#   make check SAN=address,undefined | SAN=thread | VALGRIND=1
#   make demo                 the guided run of the examples
#   make bench [B=name]       benchmarks against peers (never part of check)
#   make faults [FULL=1] | fuzz [T=secs] | coverage | soak [SECS=n]
#                             the harnesses (docs/trust.md has their figures)
#   make install PREFIX=/usr/local [LIBDIR= INCLUDEDIR= DESTDIR=]; uninstall
#   make check-install        install staged, build outside programs with it
#   make docs                 the reference (Doxygen) and the guide (pandoc)
#                             in build/docs; check-docs opens them in Chromium
#   BUILD_DIR=dir             build somewhere else (parallel work trees)
#   TLS=0                     build without OpenSSL even where it is found
#                             (TLS calls then return -ENOTSUP)
#   make check CC=aarch64-linux-gnu-gcc RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
#                             cross-build (own build dir, named after CC) and
#                             run the tests and examples under qemu-user

ifeq ($(origin CC),default)
CC = gcc
endif
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
# The version is the header's (CIO_VERSION_STRING); the soname carries its
# major number, as libuv.so.1 does.
VERSION := $(shell sed -n 's/^\#define CIO_VERSION_STRING "\(.*\)"/\1/p' include/cio.h)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
SAN ?=
VALGRIND ?=
CIO_CTX ?= asm
BACKENDS ?= epoll poll
T ?=
B ?=

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wno-unused-parameter
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 $(WARN) -Iinclude -fPIC -fvisibility=hidden -pthread
LDLIBS = -lm -pthread

ifeq ($(CIO_CTX),ucontext)
CFLAGS += -DCIO_CTX_UCONTEXT
endif

# OpenSSL is optional: found through pkg-config (libssl-dev), unless TLS=0.
# A cross compiler does not use the build machine's.
TLS ?= $(if $(filter $(CC),gcc clang cc),auto,0)
ifneq ($(TLS),0)
TLS_LIBS := $(shell pkg-config --libs openssl 2>/dev/null)
endif
ifneq ($(TLS_LIBS),)
CFLAGS += -DCIO_HAVE_OPENSSL
LDLIBS += $(TLS_LIBS)
PC_REQUIRES = openssl
endif
# COVERAGE=1: instrumented for gcov (make coverage builds it that way).
ifneq ($(COVERAGE),)
CFLAGS += -O0 --coverage
LDFLAGS += --coverage
endif
# PLANT=lock (semaphore, condition, queue): a build with that primitive's
# hand-off lost on cancellation, which make cancel must catch.
ifneq ($(PLANT),)
CFLAGS += -DCIO_PLANT_BUG_$(shell echo $(PLANT) | tr a-z A-Z)
endif
ifneq ($(SAN),)
CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SAN)
endif

# Each configuration builds in its own directory, so they never mix.
comma := ,
VARIANT := $(notdir $(CC))-$(CIO_CTX)$(if $(SAN),-$(subst $(comma),-,$(SAN)))$(if $(VALGRIND),-vg)$(if $(TLS_LIBS),,-notls)$(if $(PLANT),-plant-$(PLANT))

BUILD_DIR ?= build/$(VARIANT)
B_DIR := $(BUILD_DIR)

SRC := $(wildcard src/*.c)
ASM := $(wildcard src/*.S)
OBJ := $(SRC:src/%.c=$(B_DIR)/obj/%.o) $(ASM:src/%.S=$(B_DIR)/obj/%.o)
TEST_SRC := $(wildcard tests/*.c)
EXAMPLES := $(basename $(notdir $(wildcard examples/*.c)))
HDR := include/cio.h $(wildcard src/*.h)

LIB_A := $(B_DIR)/libcio.a
LIB_SO := $(B_DIR)/libcio.so.$(VERSION)
TEST_BIN := $(B_DIR)/tests/run
EX_BIN := $(EXAMPLES:%=$(B_DIR)/examples/%)
FUZZ := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
REPLAY_BIN := $(FUZZ:%=$(B_DIR)/fuzz/%)
LIBFUZZER_BIN := $(FUZZ:%=$(B_DIR)/libfuzzer/%)
FUZZ_DIR := build/fuzz

all: $(LIB_A) $(LIB_SO) $(EX_BIN)

$(B_DIR)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B_DIR)/obj/%.o: src/%.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_A): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(OBJ)
	$(CC) -shared -Wl,-soname,libcio.so.$(MAJOR) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf libcio.so.$(VERSION) $(B_DIR)/libcio.so.$(MAJOR)
	ln -sf libcio.so.$(MAJOR) $(B_DIR)/libcio.so

$(B_DIR)/examples/%: examples/%.c $(LIB_A) include/cio.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

$(TEST_BIN): $(TEST_SRC) $(wildcard tests/*.h) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(TEST_SRC) $(LIB_A) -o $@ $(LDLIBS)

# Valgrind: memcheck with leak checking; any error fails the test. The
# harness gives slow runs ten times the time and a twentieth of the load.
# --fair-sched=yes: valgrind runs one thread at a time, and its default
# lock lets a thread that never blocks take it back at once, so a loop
# spinning on faulted epoll_waits starved its executor worker for the
# whole 50 s bound (2 of 12 runs of faults_executor_on_a_new_loop hung,
# the rest took 0.9-44 s); with the fair lock, 30 of 30 took 0.5 s.
ifneq ($(VALGRIND),)
RUNNER = valgrind -q --error-exitcode=99 --leak-check=full --fair-sched=yes \
	--errors-for-leak-kinds=definite,indirect --track-fds=no
SLOW = 1
endif
ifneq ($(SAN),)
SLOW = 1
endif

# REPEAT=N runs the whole check N times and stops at the first failure;
# PIN=1 pins it to one core, LOAD=k keeps k cores busy meanwhile
# (tests/repeat.sh). The suite must pass all three ways.
ifneq ($(REPEAT),)
check: $(TEST_BIN) $(EX_BIN)
	@REPEAT=$(REPEAT) PIN=$(PIN) LOAD=$(LOAD) sh tests/repeat.sh $(MAKE) \
	  --no-print-directory check-once $(if $(T),T=$(T))
else
check: check-once
endif

check-once: $(TEST_BIN) $(EX_BIN) $(REPLAY_BIN)
	@status=0; \
	if [ -z "$(T)" ]; then \
	  sh tests/check_header.sh include/cio.h || status=1; \
	  python3 tests/check_layers.py src || status=1; \
	  python3 tests/check_guide.py || status=1; \
	fi; \
	for b in $(BACKENDS); do \
	  CIO_BACKEND=$$b CIO_TEST_SLOW=$(SLOW) $(RUNNER) $(TEST_BIN) $(T) || status=1; \
	done; \
	if [ -z "$(T)" ]; then \
	  CIO_TEST_SLOW=$(SLOW) RUNNER="$(RUNNER)" sh examples/check.sh $(B_DIR)/examples || status=1; \
	  for f in $(FUZZ); do \
	    $(RUNNER) $(B_DIR)/fuzz/$$f tests/fuzz/corpus/$$f || status=1; \
	  done; \
	  RUNNER="$(RUNNER)" bash tests/check_redis.sh $(B_DIR)/examples/mini_redis || status=1; \
	  RUNNER="$(RUNNER)" python3 tests/check_http.py $(B_DIR)/examples/http_server || status=1; \
	  { CIO_TRACE=$(B_DIR)/cake-trace.json $(RUNNER) $(B_DIR)/examples/cake >/dev/null && \
	    python3 tests/check_trace.py --cake $(B_DIR)/cake-trace.json; } || status=1; \
	fi; \
	exit $$status

# Fuzz targets (tests/fuzz/fuzz_*.c): `make check` replays each one's
# corpus (tests/fuzz/corpus/NAME/) through a plain driver, with whatever
# compiler and sanitizer the configuration has; `make fuzz T=600` runs
# each under libFuzzer (clang, address+undefined) for T seconds.

$(B_DIR)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< tests/fuzz/replay.c $(LIB_A) -o $@ $(LDLIBS)

$(B_DIR)/libfuzzer/%: tests/fuzz/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

# A target that fuzzes an example's parser includes the example.
$(B_DIR)/fuzz/fuzz_http $(B_DIR)/libfuzzer/fuzz_http: examples/http_server.c

fuzz-bins: $(LIBFUZZER_BIN)

# The library itself is instrumented too (fuzzer-no-link), so libFuzzer
# steers by cio's branches, not only the target's.
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD_DIR=$(FUZZ_DIR) \
	  SAN=fuzzer-no-link,address,undefined fuzz-bins
	@sh tests/fuzz/run.sh $(FUZZ_DIR)/libfuzzer $(or $(T),60) $(FUZZ)

# Faults at every step (tests/test_faults.c): the short form (as make
# check) or FULL=1 (every N of every scenario); SAN= as for check.
faults: $(TEST_BIN)
	@sh tests/trust/faults.sh $(TEST_BIN) "$(BACKENDS)" "$(FULL)" "$(SLOW)"

# Cancellation at every step (tests/trust/cancel.c), then the same
# against each planted lost hand-off, each of which must be caught.
CANCEL_BIN := $(B_DIR)/cancel
PLANTS := lock semaphore condition queue
$(CANCEL_BIN): tests/trust/cancel.c $(LIB_A)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

cancel-bin: $(CANCEL_BIN)

cancel: $(CANCEL_BIN)
	@for p in $(PLANTS); do \
	  $(MAKE) --no-print-directory -s PLANT=$$p BUILD_DIR=$(B_DIR)-plant-$$p cancel-bin >/dev/null || exit 1; \
	done
	@sh tests/trust/cancel.sh $(CANCEL_BIN) "$(or $(RUNS),1000)" \
	  "$(foreach p,$(PLANTS),$(p)=$(B_DIR)-plant-$(p)/cancel)"

# Line and branch coverage of src/ by everything make check runs (gcovr:
# a summary table, HTML in build/coverage/html/).
coverage:
	@sh tests/trust/coverage.sh "$(MAKE)"

# Heavy and hostile loads (tests/trust/soak.c): SECS of c10k, CONNS
# clients, CYCLES connect/close; RSS and fds before and after.
SOAK_BIN := $(B_DIR)/soak
$(SOAK_BIN): tests/trust/soak.c $(LIB_A)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

soak: $(SOAK_BIN)
	@sh tests/trust/soak.sh $(SOAK_BIN) $(or $(SECS),10) $(or $(CONNS),10000) \
	  $(or $(CYCLES),100000)

demo: $(EX_BIN)
	@sh examples/demo.sh $(B_DIR)/examples

# Benchmarks build optimised, without sanitizers, into bench/build.
BENCH_SRC := $(wildcard bench/cio_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=bench/build/%)
bench/build/%: bench/%.c $(LIB_A)
	@mkdir -p bench/build
	$(CC) $(CFLAGS) -Ibench $< $(LIB_A) -o $@ $(LDLIBS)

# The Redis and HTTP benchmarks' servers are the examples themselves.
bench/build/mini_redis: examples/mini_redis.c $(LIB_A)
	@mkdir -p bench/build
	$(CC) $(CFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

bench/build/http_server: examples/http_server.c $(LIB_A)
	@mkdir -p bench/build
	$(CC) $(CFLAGS) $< $(LIB_A) -o $@ $(LDLIBS)

bench: $(BENCH_BIN) bench/build/mini_redis bench/build/http_server
	@bash bench/run.sh '$(B)'

# make install [PREFIX=/usr/local] [LIBDIR=...] [INCLUDEDIR=...] [DESTDIR=...]
# installs the header, libcio.a, libcio.so.VERSION with its soname and dev
# links, cio.pc and cio-static.pc, and a CMake package (find_package(cio)).
PCDIR = $(LIBDIR)/pkgconfig
CMAKEDIR = $(LIBDIR)/cmake/cio
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	-e 's|@MAJOR@|$(MAJOR)|' -e 's|@REQUIRES@|$(PC_REQUIRES)|' \
	-e 's|@CMAKE_TLS@|$(if $(TLS_LIBS),;ssl;crypto)|' \
	-e "s|@INCLUDE_FROM_LIBDIR@|$$(realpath -m --relative-to=$(LIBDIR) $(INCLUDEDIR))|"
D = $(DESTDIR)

install: $(LIB_A) $(LIB_SO)
	install -d $(D)$(INCLUDEDIR) $(D)$(LIBDIR) $(D)$(PCDIR) $(D)$(CMAKEDIR)
	install -m 644 include/cio.h $(D)$(INCLUDEDIR)/
	install -m 644 $(LIB_A) $(D)$(LIBDIR)/
	install -m 755 $(LIB_SO) $(D)$(LIBDIR)/
	ln -sf libcio.so.$(VERSION) $(D)$(LIBDIR)/libcio.so.$(MAJOR)
	ln -sf libcio.so.$(MAJOR) $(D)$(LIBDIR)/libcio.so
	$(SUBST) pkg/cio.pc.in > $(D)$(PCDIR)/cio.pc
	$(SUBST) pkg/cio-static.pc.in > $(D)$(PCDIR)/cio-static.pc
	$(SUBST) pkg/cioConfig.cmake.in > $(D)$(CMAKEDIR)/cioConfig.cmake
	$(SUBST) pkg/cioConfigVersion.cmake.in > $(D)$(CMAKEDIR)/cioConfigVersion.cmake

uninstall:
	rm -f $(D)$(INCLUDEDIR)/cio.h $(D)$(LIBDIR)/libcio.a \
	  $(D)$(LIBDIR)/libcio.so $(D)$(LIBDIR)/libcio.so.$(MAJOR) \
	  $(D)$(LIBDIR)/libcio.so.$(VERSION) $(D)$(PCDIR)/cio.pc \
	  $(D)$(PCDIR)/cio-static.pc $(D)$(CMAKEDIR)/cioConfig.cmake \
	  $(D)$(CMAKEDIR)/cioConfigVersion.cmake
	-rmdir $(D)$(CMAKEDIR) 2>/dev/null

# An outside program against a staged install: pkg-config (shared and
# static) and CMake builds, the soname, the exported symbols (tests/).
check-install: $(LIB_A) $(LIB_SO)
	@sh tests/check_install.sh "$(MAKE)" "$(CC)"

# The reference manual from cio.h's comments (Doxygen: docs/Doxyfile) and
# the guide (pandoc), with an index page: build/docs/index.html. It fails
# when a public function is undocumented or Doxygen cannot read its comment.
# check-docs renders every page in headless Chromium and checks what shows.
DOCS_DIR ?= build/docs
docs: $(B_DIR)/examples/cake
	@sh docs/build.sh $(DOCS_DIR) $(VERSION) $(B_DIR)/examples/cake

check-docs: docs
	@sh tests/check_docs.sh $(DOCS_DIR)

clean:
	rm -rf build bench/build

.PHONY: all check check-once check-install demo bench install uninstall clean \
	docs check-docs fuzz fuzz-bins faults cancel cancel-bin coverage soak
.SECONDARY:
