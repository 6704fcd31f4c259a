# coroscope — one plain Makefile. `make help` lists the targets.
#
# User CFLAGS/LDFLAGS are respected (appended after ours); dependency flags come from
# pkg-config. Quiet unless V=1. Objects go to $(B) (build/, or build-asan/ for check-asan).

VERSION      := 0.1.0
SOVERSION    := 0
PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
BINDIR       ?= $(PREFIX)/bin
DATADIR      ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR      ?=

CC           ?= cc
CXX          ?= c++
PKG_CONFIG   ?= pkg-config
B            ?= build
SAN          ?=

# Debian packages the build, the tests, the benchmarks and the demo need (make deps).
DEB_PACKAGES := build-essential pkg-config libdw-dev libelf-dev libunwind-dev libcmocka-dev \
                libboost-context-dev elfutils gdb valgrind python3 python3-jsonschema g++

ifeq ($(V),1)
Q :=
else
Q := @
endif

DEP_PKGS     := libdw libelf
DEP_CFLAGS   := $(shell $(PKG_CONFIG) --cflags $(DEP_PKGS) 2>/dev/null)
DEP_LIBS     := $(shell $(PKG_CONFIG) --libs $(DEP_PKGS) 2>/dev/null)
CMOCKA_CFLAGS:= $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS  := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARN         := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASE_CFLAGS  := -std=gnu11 -O2 -g -fPIC -fvisibility=hidden $(WARN) -Iinclude -Iruntime -Iinspect \
                -MMD -MP $(SAN) $(DEP_CFLAGS)
ALL_CFLAGS   := $(BASE_CFLAGS) $(CFLAGS)
ALL_LDFLAGS  := $(SAN) $(LDFLAGS)

# ---------------------------------------------------------------- library
RUNTIME_SRC  := runtime/coro.c runtime/registry.c runtime/stack.c
RUNTIME_ASM  := runtime/switch-x86_64.S
INSPECT_SRC  := $(wildcard inspect/*.c)
LIB_OBJ      := $(patsubst %.c,$(B)/%.o,$(RUNTIME_SRC) $(INSPECT_SRC)) \
                $(patsubst %.S,$(B)/%.o,$(RUNTIME_ASM))
LIB_LIBS     := $(DEP_LIBS) -lpthread
SONAME       := libcoroscope.so.$(SOVERSION)

.PHONY: all lib install uninstall clean check check-asan check-valgrind bench demo deps help
all: lib cli

lib: $(B)/$(SONAME) $(B)/libcoroscope.so $(B)/libcoroscope.a $(B)/coroscope.pc

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/%.o: %.S
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/$(SONAME): $(LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,-z,defs $(ALL_LDFLAGS) -o $@ $(LIB_OBJ) $(LIB_LIBS)

$(B)/libcoroscope.so: $(B)/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

$(B)/libcoroscope.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $(LIB_OBJ)

# Regenerated on every run: it records PREFIX/LIBDIR, and `make install PREFIX=...` after a
# plain `make` must not install a .pc that points at the old prefix.
.PHONY: $(B)/coroscope.pc
$(B)/coroscope.pc:
	@mkdir -p $(B)
	$(Q)printf '%s\n' \
	  'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: coroscope' \
	  'Description: instrumented stackful coroutines with introspection' \
	  'Version: $(VERSION)' \
	  'Requires.private: $(DEP_PKGS)' \
	  'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lcoroscope' \
	  'Libs.private: -lpthread' > $@

# ---------------------------------------------------------------- cli
CLI_SRC      := $(wildcard cli/*.c)
CLI_BIN      := $(if $(CLI_SRC),$(B)/coroscope)
.PHONY: cli
cli: $(CLI_BIN)
$(B)/cli/%.o: ALL_CFLAGS += -DCORO_VERSION='"$(VERSION)"'
$(B)/coroscope: $(patsubst %.c,$(B)/%.o,$(CLI_SRC)) $(B)/libcoroscope.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(B)/libcoroscope.a $(LIB_LIBS)

# ---------------------------------------------------------------- gdb extension
# gdb/coroscope-gdb.py (what `source` loads) and its package go to $(DATADIR)/coroscope; the
# auto-load hook goes where gdb looks for it: <auto-load dir>/<real path of the library>-gdb.py
# (docs/gdb.md). The hook finds the package by a path relative to itself. The build tree gets
# its own hook next to $(B)/$(SONAME), pointing at gdb/ in the source tree.
GDB_PYDIR    := $(DATADIR)/coroscope
GDB_HOOKDIR  := $(DATADIR)/gdb/auto-load$(shell realpath -m '$(LIBDIR)')
GDB_PY       := $(wildcard gdb/coroscope/*.py)
.PHONY: install-gdb uninstall-gdb
all: $(B)/$(SONAME)-gdb.py
$(B)/$(SONAME)-gdb.py: gdb/libcoroscope-gdb.py.in
	@mkdir -p $(B)
	$(Q)sed 's|@COROSCOPE_PYDIR@|$(CURDIR)/gdb|' $< > $@

install: install-gdb
install-gdb:
	install -d $(DESTDIR)$(GDB_PYDIR)/coroscope $(DESTDIR)$(GDB_HOOKDIR)
	install -m 644 gdb/coroscope-gdb.py $(DESTDIR)$(GDB_PYDIR)/
	install -m 644 $(GDB_PY) $(DESTDIR)$(GDB_PYDIR)/coroscope/
	sed 's|@COROSCOPE_PYDIR@|$(shell realpath -m --relative-to='$(GDB_HOOKDIR)' '$(GDB_PYDIR)')|' \
	    gdb/libcoroscope-gdb.py.in > $(DESTDIR)$(GDB_HOOKDIR)/$(SONAME)-gdb.py

uninstall: uninstall-gdb
uninstall-gdb:
	rm -rf $(DESTDIR)$(GDB_PYDIR)
	rm -f $(DESTDIR)$(GDB_HOOKDIR)/$(SONAME)-gdb.py

# ---------------------------------------------------------------- install
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/coroscope $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/coroscope/*.h $(DESTDIR)$(INCLUDEDIR)/coroscope/
	install -m 755 $(B)/$(SONAME) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcoroscope.so
	install -m 644 $(B)/libcoroscope.a $(DESTDIR)$(LIBDIR)/
	install -m 644 $(B)/coroscope.pc $(DESTDIR)$(PKGCONFIGDIR)/
	$(if $(CLI_BIN),install -d $(DESTDIR)$(BINDIR) && install -m 755 $(CLI_BIN) $(DESTDIR)$(BINDIR)/)

uninstall:
	rm -rf $(DESTDIR)$(INCLUDEDIR)/coroscope
	rm -f $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libcoroscope.so \
	      $(DESTDIR)$(LIBDIR)/libcoroscope.a $(DESTDIR)$(PKGCONFIGDIR)/coroscope.pc \
	      $(DESTDIR)$(BINDIR)/coroscope

# ---------------------------------------------------------------- tests
# One cmocka binary per module (tests/test-<module>.c), linked against the shared library
# with an rpath into the build tree; end-to-end scripts are tests/e2e-*.sh. They depend on
# the libcoroscope.so symlink: without it -lcoroscope would pick the static library (make -j).
TEST_SRC     := $(wildcard tests/test-*.c)
TEST_BIN     := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRC))
TEST_SCRIPTS := $(wildcard tests/e2e-*.sh)
TEST_HELPERS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/prog-*.c))

$(B)/tests/test-%: tests/test-%.c $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) $(CMOCKA_CFLAGS) -o $@ $< \
	    $(ALL_LDFLAGS) -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lcoroscope $(CMOCKA_LIBS) -lpthread

$(B)/tests/prog-%: tests/prog-%.c $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -o $@ $< \
	    $(ALL_LDFLAGS) -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lcoroscope -lpthread

# The gdb end-to-end test also needs its helper linked against the static library.
ifneq ($(wildcard tests/prog-gdb.c),)
TEST_HELPERS += $(B)/tests/prog-gdb-static
endif
$(B)/tests/prog-gdb-static: tests/prog-gdb.c $(B)/libcoroscope.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -o $@ $< \
	    $(ALL_LDFLAGS) $(B)/libcoroscope.a $(LIB_LIBS)

# test-inspect: known call chains at -O0 and -O2 linked in, and one in a shared library;
# helpers for the leak exit code (shared and static library) and the C++ exception check.
INSPECT_FIX  := $(B)/tests/chain-inspect-o0.o $(B)/tests/chain-inspect-o2.o \
                $(B)/tests/libchain-inspect.so
TEST_HELPERS += $(B)/tests/prog-inspect-leak-static $(B)/tests/prog-inspect-overflow-static \
                $(B)/tests/prog-inspect-cxx
$(B)/tests/chain-inspect-o0.o: tests/libchain-inspect.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -O0 -DCHAIN=o0 -c $< -o $@
$(B)/tests/chain-inspect-o2.o: tests/libchain-inspect.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -DCHAIN=o2 -c $< -o $@
$(B)/tests/libchain-inspect.so: tests/libchain-inspect.c $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -DCHAIN=so -shared -o $@ $< \
	    $(ALL_LDFLAGS) -L$(B) -lcoroscope
$(B)/tests/test-inspect: tests/test-inspect.c $(INSPECT_FIX) $(B)/libcoroscope.so
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) $(CMOCKA_CFLAGS) -o $@ $< \
	    $(filter %.o,$^) $(ALL_LDFLAGS) -L$(B)/tests -lchain-inspect -L$(B) \
	    -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..' -lcoroscope $(CMOCKA_LIBS) -lpthread
# Internals (hidden in the .so) from the static library; libunwind only as a cross-check.
$(B)/tests/test-inspect-internals: tests/test-inspect-internals.c $(B)/tests/chain-inspect-o2.o \
                                   $(B)/libcoroscope.a
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) $(CMOCKA_CFLAGS) \
	    $(shell $(PKG_CONFIG) --cflags libunwind 2>/dev/null) -o $@ $< $(filter %.o,$^) \
	    $(ALL_LDFLAGS) $(B)/libcoroscope.a $(LIB_LIBS) $(CMOCKA_LIBS) \
	    $(shell $(PKG_CONFIG) --libs libunwind 2>/dev/null || echo -lunwind)
$(B)/tests/prog-inspect-%-static: tests/prog-inspect-%.c $(B)/libcoroscope.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -o $@ $< \
	    $(ALL_LDFLAGS) $(B)/libcoroscope.a $(LIB_LIBS)
$(B)/tests/prog-inspect-cxx: tests/prog-inspect-cxx.cc $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXXLD   $@")
	$(Q)$(CXX) -O2 -g -Iinclude $(SAN) $(CXXFLAGS) -o $@ $< $(ALL_LDFLAGS) -L$(B) \
	    -Wl,-rpath,'$$ORIGIN/..' -lcoroscope

TEST_WRAP    ?=
check: deps all $(TEST_BIN) $(TEST_HELPERS)
	$(Q)B=$(B) TEST_WRAP="$(TEST_WRAP)" ./tests/run-tests.sh $(TEST_BIN) $(TEST_SCRIPTS)

check-asan: deps
	$(Q)$(MAKE) --no-print-directory B=build-asan \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    check

check-valgrind: deps all $(TEST_BIN) $(TEST_HELPERS)
	$(Q)B=$(B) TEST_WRAP="valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect" \
	    ./tests/run-tests.sh $(TEST_BIN)

# ---------------------------------------------------------------- bench, demo
.PHONY: bench
bench: deps all
	$(Q)$(MAKE) --no-print-directory -f bench/bench.mk B=$(B)

demo: deps all
	$(Q)$(MAKE) --no-print-directory -f examples/demo.mk B=$(B)

# ---------------------------------------------------------------- deps
deps:
	$(Q)./scripts/deps.sh $(DEB_PACKAGES)

clean:
	rm -rf build build-asan

help:
	@echo "make            build libcoroscope.so/.a, coroscope.pc and the coroscope CLI"
	@echo "make demo       build and run the demo"
	@echo "make check      run every test (check-asan: under ASan+UBSan; check-valgrind)"
	@echo "make bench      run the benchmarks"
	@echo "make deps       install missing Debian packages (as root) or print the apt-get line"
	@echo "make install    PREFIX=/usr/local DESTDIR="

-include $(shell find build build-asan -name '*.d' 2>/dev/null)
