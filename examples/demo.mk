# make demo: builds examples/demo.c against the freshly built library and shows coroscope at
# work on it — the in-process dump, then the CLI and gdb on the live process.
B      ?= build
CC     ?= cc
DEMO   := $(B)/examples/demo

.PHONY: demo
demo: $(DEMO) $(B)/examples/hello-server
	@echo '### 1. The demo dumps its own coroutines (coro_dump, in-process):'
	@$(DEMO)
	@echo
	@sh examples/demo-outside.sh $(DEMO) $(B)
	@echo
	@sh examples/demo-waits.sh $(B)/examples/hello-server $(B)

$(DEMO): examples/demo.c $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Iinclude -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lcoroscope

$(B)/examples/hello-server: examples/hello-server.c $(B)/libcoroscope.so
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Iinclude -o $@ $< -L$(B) -Wl,-rpath,'$$ORIGIN/..' -lcoroscope
