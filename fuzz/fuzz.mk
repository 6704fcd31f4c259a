# Fuzz targets (fuzz/fuzz-<target>.c; docs/fuzzing.md). Included by the Makefile.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_RUNS=N] [FUZZ_TARGETS="registry core"]
#       builds each target with clang-14 and libFuzzer, ASan and UBSan (in $(B)/fuzz-clang/)
#       and runs it for FUZZ_SECONDS (or FUZZ_RUNS executions) from fuzz/corpus/<target>,
#       keeping what it finds in $(B)/fuzz-clang/corpus/<target> and crashes in
#       $(B)/fuzz-clang/crashes/<target>/ (make each a regression input: fuzz/regress/).
#   make check   builds each target WITHOUT clang (gcc, fuzz/replay.c as main) and
#       tests/e2e-fuzz-replay.sh replays every seed and regression input through it.

FUZZ_TARGETS ?= registry core elf sigsym
FUZZ_ALL     := registry core elf sigsym
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?=
FUZZ_MAX_LEN ?= 1048576
FUZZ_DEB_PACKAGES := clang-14
FUZZ_B       := $(B)/fuzz-clang
FUZZ_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                 -fno-omit-frame-pointer
# The library as objects of an ordinary archive: a target takes only the objects it needs
# (fuzz-sigsym.c compiles inspect/sigsafe-sym.c into itself to reach its static readers).
FUZZ_LIB_SRC := $(RUNTIME_SRC) $(INSPECT_SRC)
FUZZ_CLANG_OBJ := $(patsubst %.c,$(FUZZ_B)/%.o,$(FUZZ_LIB_SRC)) \
                  $(patsubst %.S,$(FUZZ_B)/%.o,$(RUNTIME_ASM))
FUZZ_INC     := -Iinclude -Iinspect -Iruntime -Ifuzz
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -fvisibility=hidden $(WARN) -Wno-unused-function $(FUZZ_INC) \
                $(DEP_CFLAGS) $(FUZZ_SANFLAGS)

.PHONY: fuzz fuzz-build
fuzz-build: $(patsubst %,$(FUZZ_B)/fuzz-%,$(FUZZ_TARGETS))

# clang is needed here only: `make check` never asks for it.
$(FUZZ_B)/.deps:
	@mkdir -p $(FUZZ_B)
	$(Q)$(DEPS_SH) $(FUZZ_DEB_PACKAGES)
	$(Q)command -v $(FUZZ_CC) >/dev/null || { echo "coroscope: make fuzz needs $(FUZZ_CC)" \
	    "(FUZZ_CC): apt-get install $(FUZZ_DEB_PACKAGES)" >&2; exit 1; }
	@touch $@

$(FUZZ_B)/%.o: %.c | $(FUZZ_B)/.deps
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_B)/%.o: %.S | $(FUZZ_B)/.deps
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_B)/libcoroscope-objs.a: $(FUZZ_CLANG_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_B)/fuzz-%: $(FUZZ_B)/fuzz/fuzz-%.o $(FUZZ_B)/libcoroscope-objs.a
	@$(if $(Q),echo "  FUZZLD  $@")
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SANFLAGS) -o $@ $< $(FUZZ_B)/libcoroscope-objs.a \
	    $(LIB_LIBS)

# Runs one target after the other; a crash stops make with libFuzzer's report.
fuzz: fuzz-build
	$(Q)for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_B)/corpus/$$t $(FUZZ_B)/crashes/$$t && \
	    echo "=== fuzz-$$t: $(if $(FUZZ_RUNS),$(FUZZ_RUNS) runs,$(FUZZ_SECONDS) s)" && \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0 \
	    $(FUZZ_B)/fuzz-$$t -max_len=$(FUZZ_MAX_LEN) -timeout=10 -print_final_stats=1 \
	        $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) \
	        -artifact_prefix=$(FUZZ_B)/crashes/$$t/ \
	        $(FUZZ_B)/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

# ---- without clang: the replay programs `make check` runs (gcc, $(SAN) under check-asan)
$(B)/fuzz/libcoroscope-objs.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/fuzz/replay-%: fuzz/fuzz-%.c fuzz/replay.c fuzz/fuzz-int.h $(B)/fuzz/libcoroscope-objs.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden -MMD -MP,$(ALL_CFLAGS)) -Wno-unused-function \
	    $(FUZZ_INC) -o $@ $< fuzz/replay.c $(ALL_LDFLAGS) -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
	    $(B)/fuzz/libcoroscope-objs.a $(LIB_LIBS)

TEST_HELPERS += $(patsubst %,$(B)/fuzz/replay-%,$(FUZZ_ALL))

# scripts/fuzz-seeds.sh: the registry's memory image of a core.
$(B)/fuzz/seed-image: fuzz/seed-image.c fuzz/fuzz-int.h $(B)/fuzz/libcoroscope-objs.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(filter-out -fvisibility=hidden -MMD -MP,$(ALL_CFLAGS)) $(FUZZ_INC) -o $@ $< \
	    $(ALL_LDFLAGS) $(B)/fuzz/libcoroscope-objs.a $(LIB_LIBS)
.SECONDARY: $(patsubst %,$(FUZZ_B)/fuzz/fuzz-%.o,$(FUZZ_ALL))
