# `make bench` runs this file (after `make all`) as: $(MAKE) -f bench/bench.mk B=$(B)
#
# It installs coroscope into a scratch prefix under $(B)/bench/, builds the benchmark against
# that installed copy exactly as a user would (`pkg-config --cflags --libs coroscope` through
# PKG_CONFIG_PATH, the shared library, an rpath to it), links the baselines into the same
# program and runs it once. Two programs: `bench`, a C program (Boost.Context comes from
# bench-boost.so, loaded with RTLD_LOCAL so that its libstdc++ stays out of the program's
# global scope), then `bench-cxx`, a C++ program, for coroscope's C++ round trip against
# Boost in the same process. The markdown tables go to stdout and to $(B)/bench/results.md.
#
# BENCH_ARGS is passed to the program, e.g. make bench BENCH_ARGS="--samples 51".

B          ?= build
CC         ?= cc
CXX        ?= c++
PKG_CONFIG ?= pkg-config
BENCH_ARGS ?=
Q          := $(if $(filter 1,$(V)),,@)

BD         := $(B)/bench
PREFIX_DIR := $(abspath $(BD)/prefix)
PC         := PKG_CONFIG_PATH=$(PREFIX_DIR)/lib/pkgconfig $(PKG_CONFIG)
BFLAGS     := -O2 -g -Wall -Wextra -Ibench
CMD        := make bench$(if $(strip $(BENCH_ARGS)), BENCH_ARGS='$(strip $(BENCH_ARGS))')

OBJ := $(BD)/bench.o $(BD)/cpuinfo.o $(BD)/stack-alloc.o $(BD)/impl-coroscope.o \
       $(BD)/impl-bare.o $(BD)/bare-switch-x86_64.o $(BD)/impl-sjlj.o
CXX_OBJ := $(BD)/bench-cxx.o $(BD)/cpuinfo.o $(BD)/stack-alloc.o $(BD)/impl-coroscope.o \
           $(BD)/impl-boost.o

.PHONY: run install-scratch introspection gdb
run: $(BD)/bench $(BD)/bench-cxx $(BD)/bench-boost.so
	$(Q)$(BD)/bench --command "$(CMD)" $(BENCH_ARGS) > $(BD)/results.md.tmp
	$(Q)$(BD)/bench-cxx --command "$(CMD)" $(BENCH_ARGS) >> $(BD)/results.md.tmp
	$(Q)mv $(BD)/results.md.tmp $(BD)/results.md && cat $(BD)/results.md
	$(Q)$(MAKE) --no-print-directory -f bench/bench.mk B=$(B) introspection

# The readers' side: the in-process dump (issue 3), the CLI against eu-stack (issue 4) and on
# a live process with 100,001 coroutines (issue 13), the gdb extension at 100,000 coroutines;
# then waiting: the primitives, dumps of waiting coroutines, and echo against libuv.
introspection: $(BD)/dump-bench $(BD)/gdb-bench-prog $(BD)/wait-bench $(BD)/echo-bench \
               $(BD)/watch-target
	@echo
	@echo '### coro_dump of 10,000 suspended coroutines parked 8 calls deep (bench/dump-bench.c)'
	$(Q)$(BD)/dump-bench
	@echo
	@echo '### coroscope bt --json on kernel cores, against eu-stack on threads (bench/cli-bench.sh)'
	$(Q)$(MAKE) --no-print-directory -f Makefile B=$(B) $(B)/tests/prog-cli >/dev/null
	$(Q)sh bench/cli-bench.sh $(B)
	@echo
	@echo '### coroscope ps, bt of one, top on a live process with 100,001 coroutines (bench/reader-bench.sh)'
	$(Q)sh bench/reader-bench.sh $(B)
	@echo
	@echo '### gdb extension at 100,000 coroutines, live (bench/gdb-bench.sh)'
	$(Q)sh bench/gdb-bench.sh $(BD)/gdb-bench-prog $(PREFIX_DIR)/share/coroscope 100000
	@echo
	@echo '### Waiting: CoMutex, CoQueue hand-off, dumps of waiting coroutines (bench/wait-bench.c)'
	$(Q)CORO_LEAK_CHECK=0 $(BD)/wait-bench
	@echo
	@echo '### Echo over loopback against libuv (bench/echo-bench.c, bench/echo-bench.sh)'
	$(Q)sh bench/echo-bench.sh $(BD)/echo-bench
	@echo
	@echo '### Watching: the target switching alone, with coroscope top attached, with the stall watchdog (bench/watch-bench.sh)'
	$(Q)sh bench/watch-bench.sh $(BD)/watch-target $(B)/coroscope

$(BD)/watch-target: bench/watch-target.c install-scratch
	$(Q)$(CC) -O2 -g $$($(PC) --cflags coroscope) $(CFLAGS) -o $@ $< $(LDFLAGS) \
	    $$($(PC) --libs coroscope) -Wl,-rpath,$$($(PC) --variable=libdir coroscope)

$(BD)/wait-bench: bench/wait-bench.c install-scratch
	$(Q)$(CC) -O2 -g $$($(PC) --cflags coroscope) $(CFLAGS) -o $@ $< $(LDFLAGS) \
	    $$($(PC) --libs coroscope) -Wl,-rpath,$$($(PC) --variable=libdir coroscope)

$(BD)/echo-bench: bench/echo-bench.c install-scratch
	$(Q)$(CC) -O2 -g $$($(PC) --cflags coroscope) $$($(PKG_CONFIG) --cflags libuv) $(CFLAGS) \
	    -o $@ $< $(LDFLAGS) $$($(PC) --libs coroscope) $$($(PKG_CONFIG) --libs libuv) \
	    -Wl,-rpath,$$($(PC) --variable=libdir coroscope)

$(BD)/dump-bench: bench/dump-bench.c install-scratch
	$(Q)$(CC) -O2 -g $$($(PC) --cflags coroscope) $(CFLAGS) -o $@ $< $(LDFLAGS) \
	    $$($(PC) --libs coroscope) -Wl,-rpath,$$($(PC) --variable=libdir coroscope)

# The gdb part alone: make -f bench/bench.mk B=build gdb
gdb: $(BD)/gdb-bench-prog
	$(Q)sh bench/gdb-bench.sh $(BD)/gdb-bench-prog $(PREFIX_DIR)/share/coroscope 100000

$(BD)/gdb-bench-prog: bench/gdb-bench-prog.c install-scratch
	$(Q)$(CC) -O2 -g $$($(PC) --cflags coroscope) $(CFLAGS) -o $@ $< $(LDFLAGS) \
	    $$($(PC) --libs coroscope) -Wl,-rpath,$$($(PC) --variable=libdir coroscope)

# Always reinstall: cheap, and the benchmark must see the library `make all` just built.
install-scratch:
	@mkdir -p $(BD)
	@rm -rf $(PREFIX_DIR)
	$(Q)$(MAKE) --no-print-directory -f Makefile install B=$(B) PREFIX=$(PREFIX_DIR) \
	    > $(BD)/install.log 2>&1 || { cat $(BD)/install.log; exit 1; }

$(BD)/impl-coroscope.o: bench/impl-coroscope.c bench/bench.h install-scratch
	$(Q)$(CC) $(BFLAGS) $$($(PC) --cflags coroscope) $(CFLAGS) -c $< -o $@

$(BD)/impl-boost.o: bench/impl-boost.cc bench/bench.h
	@mkdir -p $(BD)
	$(Q)$(CXX) $(BFLAGS) -fPIC $(CXXFLAGS) -c $< -o $@

$(BD)/bench-boost.so: $(BD)/impl-boost.o $(BD)/stack-alloc.o
	$(Q)$(CXX) -shared $(LDFLAGS) -o $@ $^ -lboost_context

$(BD)/bench-cxx.o: bench/bench.c bench/bench.h
	@mkdir -p $(BD)
	$(Q)$(CC) $(BFLAGS) -DBENCH_CXX $(CFLAGS) -c $< -o $@

# The QEMU-style baseline jumps between stacks: glibc's fortified longjmp would reject that.
$(BD)/impl-sjlj.o: bench/impl-sjlj.c bench/bench.h
	@mkdir -p $(BD)
	$(Q)$(CC) $(BFLAGS) $(CFLAGS) -U_FORTIFY_SOURCE -c $< -o $@

$(BD)/%.o: bench/%.c bench/bench.h
	@mkdir -p $(BD)
	$(Q)$(CC) $(BFLAGS) -fPIC $(CFLAGS) -c $< -o $@

$(BD)/%.o: bench/%.S
	@mkdir -p $(BD)
	$(Q)$(CC) $(BFLAGS) $(CFLAGS) -c $< -o $@

$(BD)/bench: $(OBJ) install-scratch
	@$(if $(Q),echo "  LD      $@ (against $(PREFIX_DIR))")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(OBJ) $$($(PC) --libs coroscope) \
	    -Wl,-rpath,$$($(PC) --variable=libdir coroscope) -ldl

$(BD)/bench-cxx: $(CXX_OBJ) install-scratch
	@$(if $(Q),echo "  LD      $@ (against $(PREFIX_DIR))")
	$(Q)$(CXX) $(LDFLAGS) -o $@ $(CXX_OBJ) $$($(PC) --libs coroscope) \
	    -Wl,-rpath,$$($(PC) --variable=libdir coroscope) -lboost_context
