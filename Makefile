# cellgate - a Jupyter kernel written in C.
#
#   make          install missing Debian packages, build build/cellgate
#   make run      build, install the kernelspecs for this user, run examples/hello.ipynb
#   make test     every test: C units, fuzz corpus replay, style checks, Jupyter clients
#   make bench    the Speed figures: kernelbench (cellgate-python against ipykernel),
#                 readiness, box creation against bwrap, every language's first cell
#                 against its bare toolchain, the tools
#   make fuzz     run the libFuzzer targets for FUZZ_SECONDS each
#   make valgrind the C tests, every fuzz replay and kernels under valgrind
#   make SANITIZE=address,undefined test   everything built with sanitizers
#   make sanitize-unit   the C tests and fuzz replays under ASan+UBSan (part of test)
#
# Every Jupyter tool, test and in-box Python runtime uses Debian's
# /usr/bin/python3: the `python3` first on PATH may be a pyenv build without
# jupyter_client and friends.
PYTHON := /usr/bin/python3

CC ?= cc
PKGS := libzmq libsodium nettle jansson libseccomp
# pkg-config's answer for a variable, asked the first time a recipe needs
# it and kept: on a fresh machine `deps` installs the packages first (asked
# with :=, pkg-config would run before them, find nothing, and the first
# link would fail).
pkg-config = $(eval $1 := $(shell pkg-config $2 2>/dev/null))$($1)
PKG_CFLAGS = $(call pkg-config,PKG_CFLAGS,--cflags $(PKGS) libcurl)
PKG_LIBS = $(call pkg-config,PKG_LIBS,--libs $(PKGS))
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wvla -Wwrite-strings -Wno-unused-result
CFLAGS ?= -O2 -g
CFLAGS += -std=c17 -D_GNU_SOURCE -I. $(WARN) $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread
# libcurl (and the TLS library it brings) is linked into cellgate-fetch only:
# the kernel does not map it.
CURL_LIBS = $(call pkg-config,CURL_LIBS,--libs libcurl)
MHD_LIBS = $(call pkg-config,MHD_LIBS,--libs libmicrohttpd)
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer $(SANITIZE_FLAGS)
LDFLAGS += -fsanitize=$(SANITIZE) $(SANITIZE_FLAGS)
endif

# Sanitizer builds live apart, so switching never mixes objects.
comma := ,
B := build
ifneq ($(SANITIZE),)
B := build-$(subst $(comma),-,$(SANITIZE))
endif
# One object list per program; folders say which programs link them
# (README, "Layout"). scripts/layers.py checks that includes and calls only
# go down: cli -> kernel -> sandbox -> common, fetch -> common.
COMMON := common/buf.c common/cgerr.c common/clock.c common/connfile.c common/langs.c \
          common/listen.c common/statedir.c \
          common/log.c common/msg.c common/sibling.c common/size.c common/utf8.c common/wire.c
SANDBOX := sandbox/box.c sandbox/boxfs.c sandbox/boxinit.c sandbox/limits.c sandbox/seccomp_run.c \
           sandbox/spawn.c
KERNEL := kernel/kernel.c kernel/handlers.c kernel/cell.c kernel/chan.c kernel/site.c kernel/egress.c \
          kernel/runtime.c kernel/drivers.c kernel/history.c kernel/display.c kernel/displayd.c \
          kernel/image.c kernel/procs.c kernel/terminal.c kernel/tools/tools.c kernel/tools/tool.c \
          kernel/tools/exec.c kernel/tools/session.c kernel/tools/download.c \
          kernel/tools/open_image.c kernel/tools/marker.c
CLI := cli/main.c cli/doctor.c cli/kernelspec.c cli/display_cmd.c cli/heavy_run.c cli/kernel_args.c
# `cellgate` itself: the same commands, but kernel and doctor exec
# cellgate-kernel (cli/heavy.h), so the others start without ZeroMQ & co.
CLI_LIGHT := cli/main.c cli/kernelspec.c cli/display_cmd.c cli/heavy_exec.c cli/kernel_args.c
LIGHT_COMMON := common/cgerr.c common/connfile.c common/langs.c common/listen.c common/log.c \
                common/sibling.c common/size.c common/utf8.c
LIGHT_LIBS = $(call pkg-config,LIGHT_PKG_LIBS,--libs --static jansson libsodium) -lpthread
# ... linked statically, its addresses still random (static-pie): no loader
# mapping and relocating libraries, so it starts in ~1 ms of CPU instead of
# ~2, and a box's init (a copy of it) has fewer pages to copy on write.
# Sanitizer runtimes need the loader: those builds link it as the others.
# `make LIGHT_LDFLAGS=` links it dynamically.
ifeq ($(SANITIZE),)
LIGHT_LDFLAGS ?= -static-pie
endif
FETCH := fetch/main.c fetch/download.c
GATEWAY := gateway/main.c gateway/loop.c gateway/http.c gateway/channels.c gateway/ws.c \
           gateway/kernels.c gateway/convert.c gateway/specs.c
REGISTRY := registry/main.c registry/serve.c registry/upstream.c registry/cache.c \
            registry/regpath.c registry/regpolicy.c registry/rewrite.c
DRIVERS := kernel/drivers/python.py kernel/drivers/python_boot.py kernel/drivers/bash.sh \
           kernel/drivers/javascript.js kernel/drivers/ruby.rb kernel/drivers/perl.pl \
           kernel/drivers/php.php kernel/drivers/compiled.py \
           $(B)/kernel/drivers/python.bin $(B)/kernel/drivers/compiled.bin
LOGOS := kernelspecs/logo-32x32.png kernelspecs/logo-64x64.png kernelspecs/logo-svg.svg
COMMON_OBJ := $(COMMON:%.c=$(B)/%.o)
# with the box's seccomp program, made when cellgate is built (below)
SANDBOX_OBJ := $(SANDBOX:%.c=$(B)/%.o) $(B)/sandbox/seccomp_prog.o
KERNEL_OBJ := $(KERNEL:%.c=$(B)/%.o)
CLI_OBJ := $(CLI:%.c=$(B)/%.o)
FETCH_OBJ := $(FETCH:%.c=$(B)/%.o)
REGISTRY_OBJ := $(REGISTRY:%.c=$(B)/%.o)
GATEWAY_OBJ := $(GATEWAY:%.c=$(B)/%.o)
# the kernel's modules under its loop (kernel.c), for C tests that drive
# them against the channel module on inproc:// sockets
KERNEL_MODULES_OBJ := $(filter-out $(B)/kernel/kernel.o,$(KERNEL_OBJ))
# the gateway's modules without its main, for the fuzz targets
GATEWAY_MODULES := $(filter-out gateway/main.c,$(GATEWAY))
GATEWAY_MODULES_OBJ := $(GATEWAY_MODULES:%.c=$(B)/%.o)
# cellgate-kernel: the kernel, the box, every subcommand
CELLGATE_KERNEL_OBJ := $(CLI_OBJ) $(KERNEL_OBJ) $(SANDBOX_OBJ) $(COMMON_OBJ)
# the `cellgate` command: the box, install, display (its checks of a file
# are the kernel's), serve; kernel and doctor run cellgate-kernel
CELLGATE_OBJ := $(CLI_LIGHT:%.c=$(B)/%.o) $(SANDBOX_OBJ) $(B)/kernel/display.o \
                $(B)/kernel/image.o $(LIGHT_COMMON:%.c=$(B)/%.o)
# cellgate-fetch: libcurl lives here, never in the kernel
CELLGATE_FETCH_OBJ := $(FETCH_OBJ) $(COMMON_OBJ)
# cellgate-registry, the package registry gateway: libcurl and
# libmicrohttpd, never in the kernel
CELLGATE_REGISTRY_OBJ := $(REGISTRY_OBJ) $(COMMON_OBJ)
# cellgate-gateway, what `cellgate serve` runs: libmicrohttpd and libwslay,
# never in the kernel
CELLGATE_GATEWAY_OBJ := $(GATEWAY_OBJ) $(COMMON_OBJ)
UNITS := tests/unit/test_wire.c tests/unit/test_connfile.c tests/unit/test_utf8.c tests/unit/test_buf.c \
         tests/unit/test_history.c tests/unit/test_limits.c tests/unit/test_seccomp.c \
         tests/unit/test_boxfs.c tests/unit/test_download.c tests/unit/test_chan.c \
         tests/unit/test_kernel_modules.c tests/unit/test_regpath.c tests/unit/test_rewrite.c \
         tests/unit/test_regpolicy.c tests/unit/test_box.c tests/unit/test_listen.c \
         tests/unit/test_kernel_args.c
UNIT_BINS := $(UNITS:tests/unit/%.c=$(B)/tests/%)
FUZZERS := wire connfile listen image marker download display regpath rewrite gwconvert gwhttp ws
REPLAYS := $(FUZZERS:%=$(B)/tests/replay_%)
FUZZ_SECONDS ?= 60

.PHONY: all deps run test unit run-unit sanitize-unit fuzz-replay check-style check-layers pytest bench fuzz valgrind \
        clean install-kernelspecs

all: deps $(B)/cellgate $(B)/cellgate-kernel $(B)/cellgate-fetch $(B)/cellgate-registry $(B)/cellgate-gateway

deps:
	@bash scripts/deps.sh

# Order-only on deps, so `make -j` never compiles before the headers exist.
$(B)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The box's seccomp program: libseccomp compiles sandbox/seccomp.c's table
# here, once, and seccomp_gen writes it out as C for the programs.
$(B)/sandbox/seccomp_gen: sandbox/seccomp_gen.c $(B)/sandbox/seccomp.o $(B)/common/cgerr.o
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -o $@
$(B)/sandbox/seccomp_prog.c: $(B)/sandbox/seccomp_gen
	$< > $@.tmp && mv $@.tmp $@
$(B)/sandbox/seccomp_prog.o: $(B)/sandbox/seccomp_prog.c
	$(CC) $(CFLAGS) -c $< -o $@

# The drivers written in Python are also embedded compiled (python_boot.py
# says why), by the same /usr/bin/python3 that will run them.
$(B)/kernel/drivers/%.bin: kernel/drivers/%.py scripts/pycompile.py
	@mkdir -p $(dir $@)
	$(PYTHON) scripts/pycompile.py $< $@

# The drivers and logos are embedded with .incbin: rebuild when they change.
$(B)/kernel/drivers.o: $(DRIVERS)
$(B)/kernel/drivers.o: CFLAGS += -DCG_PYTHON_COMPILED='"$(B)/kernel/drivers/python.bin"' \
    -DCG_COMPILED_COMPILED='"$(B)/kernel/drivers/compiled.bin"'
$(B)/cli/kernelspec.o: $(LOGOS)

$(B)/cellgate: $(CELLGATE_OBJ)
	$(CC) $(LDFLAGS) $(LIGHT_LDFLAGS) $^ $(LIGHT_LIBS) -o $@

# What `cellgate kernel` (the kernelspecs' command) and `cellgate doctor` exec.
$(B)/cellgate-kernel: $(CELLGATE_KERNEL_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# What carries out cellgate.download, beside the kernel's binary.
$(B)/cellgate-fetch: $(CELLGATE_FETCH_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CURL_LIBS) -o $@

# The registry gateway each kernel starts for its box, beside the binary.
$(B)/cellgate-registry: $(CELLGATE_REGISTRY_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CURL_LIBS) $(MHD_LIBS) -o $@

# `cellgate serve` execs this program beside the binary.
$(B)/cellgate-gateway: $(CELLGATE_GATEWAY_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(MHD_LIBS) -lwslay -o $@

# The box's cost inside one process (bench/boxbench.py runs it).
$(B)/bench/boxloop: bench/boxloop.c $(SANDBOX_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -o $@

# ---- run --------------------------------------------------------------------

install-kernelspecs: all
	$(B)/cellgate install --user

run: install-kernelspecs
	@mkdir -p $(B)/examples
	$(PYTHON) -m nbconvert --to notebook --execute examples/hello.ipynb \
	    --ExecutePreprocessor.kernel_name=cellgate --output-dir $(B)/examples --output hello.ipynb
	$(PYTHON) -m nbconvert --to html $(B)/examples/hello.ipynb --output-dir $(B)/examples
	@echo
	@echo "ran examples/hello.ipynb through the cellgate kernel:"
	@echo "  notebook with outputs: $(B)/examples/hello.ipynb"
	@echo "  HTML:                  $(B)/examples/hello.html"
	@echo
	@echo "an agent driving a kernel: code, download, open_image, exec sessions, feed"
	$(PYTHON) examples/agent.py --workdir $(B)/agent

# ---- tests ------------------------------------------------------------------

$(B)/tests/%: tests/unit/%.c $(SANDBOX_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -lcmocka -o $@
# The calls the seccomp tests make, shared with seccomp_probe.
$(B)/tests/test_seccomp: $(B)/tests/seccomp_calls.o $(B)/sandbox/seccomp.o
$(B)/tests/test_history: $(B)/kernel/history.o
$(B)/tests/test_download: $(B)/fetch/download.o
$(B)/tests/test_regpath: $(B)/registry/regpath.o
$(B)/tests/test_rewrite: $(B)/registry/rewrite.o $(B)/registry/regpath.o
$(B)/tests/test_regpolicy: $(B)/registry/regpolicy.o
$(B)/tests/test_chan: $(KERNEL_MODULES_OBJ)
$(B)/tests/test_kernel_modules: $(KERNEL_MODULES_OBJ)
$(B)/tests/test_kernel_args: $(B)/cli/kernel_args.o

# Each fuzz target also builds as a plain program that replays its corpus.
$(B)/tests/replay_image: $(B)/kernel/image.o
$(B)/tests/replay_marker: $(B)/kernel/tools/marker.o
$(B)/tests/replay_download: $(B)/fetch/download.o
$(B)/tests/replay_download $(B)/tests/test_download: LDLIBS += $(CURL_LIBS)
$(B)/tests/replay_display: $(B)/kernel/display.o $(B)/kernel/image.o
$(B)/tests/replay_regpath: $(B)/registry/regpath.o
$(B)/tests/replay_rewrite: $(B)/registry/rewrite.o $(B)/registry/regpath.o
$(B)/tests/replay_gwconvert: $(B)/gateway/convert.o
$(B)/tests/replay_gwhttp: $(GATEWAY_MODULES_OBJ)
$(B)/tests/replay_gwhttp: LDLIBS += $(MHD_LIBS) -lwslay
$(B)/tests/replay_ws: $(B)/gateway/ws.o
$(B)/tests/replay_ws: LDLIBS += -lwslay
$(B)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -o $@

# The seccomp probe: loads the box's filter, calls each refused syscall with
# harmless bad arguments and checks every errno (and that normal work goes on).
$(B)/tests/seccomp_probe: tests/seccomp_probe.c $(B)/tests/seccomp_calls.o $(B)/sandbox/seccomp.o \
                          $(B)/sandbox/seccomp_run.o $(B)/sandbox/seccomp_prog.o $(B)/common/cgerr.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -o $@

unit: all run-unit

run-unit: $(UNIT_BINS) $(B)/tests/seccomp_probe
	@set -e; for t in $(UNIT_BINS); do $$t; done
	@$(B)/tests/seccomp_probe > $(B)/tests/seccomp_probe.out || \
	    { cat $(B)/tests/seccomp_probe.out; echo "seccomp_probe: a call was not refused as the policy says"; exit 1; }
	@echo "seccomp_probe: $$(wc -l < $(B)/tests/seccomp_probe.out) calls as the policy says"

fuzz-replay: $(REPLAYS)
	@set -e; for f in $(FUZZERS); do $(B)/tests/replay_$$f tests/fuzz/corpus/$$f; done

# The C tests and every corpus replay again under ASan and UBSan, any report
# fatal, in a build folder of their own (the programs and kernels are not
# built there: the full sanitizer run is `make SANITIZE=address,undefined test`).
sanitize-unit: deps
	@$(MAKE) --no-print-directory SANITIZE=address,undefined B=build-sanitize-unit \
	    SANITIZE_FLAGS=-fno-sanitize-recover=all run-unit fuzz-replay

check-style:
	@bash scripts/checksrc.sh

# Includes and calls go down the layers, never in a circle (scripts/layers.py).
check-layers: all
	@$(PYTHON) scripts/layers.py --build $(B)

# Under sanitizers, kernels write reports to files (pytest would swallow a
# passing test's stderr); any report fails the run.
SAN_LOG := $(abspath $(B))/sanitizer
ifneq ($(SANITIZE),)
SAN_ENV := ASAN_OPTIONS=log_path=$(SAN_LOG) UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOG)
endif

pytest: all
	@rm -f "$(SAN_LOG)".*
	CELLGATE_BIN=$(B)/cellgate CELLGATE_REGISTRY_BIN=$(B)/cellgate-registry $(SAN_ENV) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests
	@if ls "$(SAN_LOG)".* >/dev/null 2>&1; then \
	    cat "$(SAN_LOG)".*; echo "sanitizer reports above"; exit 1; fi

# The sanitizer run before pytest: CI reads pytest's summary as the last line.
ifeq ($(SANITIZE),)
SANITIZE_UNIT := sanitize-unit
endif
test: all check-style check-layers unit fuzz-replay $(SANITIZE_UNIT) pytest

VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
# The C tests, then real kernels under valgrind through jupyter_client and
# jupyter_kernel_test (timing tests are left out: valgrind is slow). Those
# kernels run without the box: valgrind cannot follow it (no handler for
# seccomp(2), and its log files vanish behind pivot_root); the box's code is
# covered by the sanitizer run (make SANITIZE=address,undefined test).
# `cellgate kernel` execs cellgate-kernel: valgrind follows that exec, and
# no other (the runtimes, the helpers beside cellgate).
VALGRIND_SKIP := /usr/*,/bin/*,/sbin/*,*/cellgate-fetch,*/cellgate-registry,*/cellgate-display
valgrind: all $(UNIT_BINS) $(REPLAYS)
	@set -e; for t in $(UNIT_BINS); do $(VALGRIND) $$t; done
	@set -e; for f in $(FUZZERS); do $(VALGRIND) $(B)/tests/replay_$$f tests/fuzz/corpus/$$f; done
	@rm -f $(B)/valgrind.*
	CELLGATE_SANDBOX=0 CELLGATE_BIN=$(B)/cellgate \
	    CELLGATE_WRAPPER="$(VALGRIND) --trace-children=yes --trace-children-skip=$(VALGRIND_SKIP) --log-file=$(abspath $(B))/valgrind.%p" \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_kernel_test.py tests/test_hostile.py
	@if grep -l . $(B)/valgrind.* 2>/dev/null; then cat $(B)/valgrind.*; \
	    echo "valgrind reports above"; exit 1; fi

# libFuzzer needs clang; the same sources are the replay programs above.
# New inputs land in build/fuzz/NAME; those that add coverage are then merged
# into tests/fuzz/corpus/NAME (-merge=1). FUZZ_TARGETS picks targets;
# tests/fuzz/seed_corpora.py writes seeds from real traffic to merge the same way.
FUZZ_TARGETS ?= $(FUZZERS)
FUZZ_MAX_LEN ?= 16384
fuzz: deps
	@set -e; for f in $(FUZZ_TARGETS); do \
	    mkdir -p $(B)/fuzz/$$f; \
	    clang -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
	        $(PKG_CFLAGS) \
	        tests/fuzz/fuzz_$$f.c $(COMMON) kernel/image.c kernel/tools/marker.c fetch/download.c \
	        kernel/display.c registry/regpath.c registry/rewrite.c $(GATEWAY_MODULES) \
	        $(LDLIBS) $(CURL_LIBS) $(MHD_LIBS) -lwslay -o $(B)/fuzz/fuzz_$$f; \
	    $(B)/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
	        $(B)/fuzz/$$f tests/fuzz/corpus/$$f; \
	    $(B)/fuzz/fuzz_$$f -merge=1 -max_len=$(FUZZ_MAX_LEN) tests/fuzz/corpus/$$f $(B)/fuzz/$$f; \
	done

# kernelbench.py is the workplace's shared benchmark, beside this checkout,
# not part of it: KERNELBENCH=PATH names another copy; without one that row
# is skipped, with a line saying so.
KERNELBENCH ?= ../shared/bench/kernelbench.py
bench: install-kernelspecs $(B)/bench/boxloop
	@if [ -f $(KERNELBENCH) ]; then \
	    echo "$(PYTHON) $(KERNELBENCH) cellgate-python --vs python3 --rounds 5"; \
	    $(PYTHON) $(KERNELBENCH) cellgate-python --vs python3 --rounds 5; \
	else echo "bench: no $(KERNELBENCH) (set KERNELBENCH=PATH): kernelbench skipped"; fi
	$(PYTHON) bench/ready.py cellgate-python python3
	$(PYTHON) bench/clientcpu.py cellgate-python python3
	$(PYTHON) bench/boxbench.py --cellgate $(B)/cellgate
	$(PYTHON) bench/langbench.py --rounds 5 --n 3
	$(PYTHON) bench/toolbench.py

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
