/*
 * Fuzz target: the registry reader (inspect/registry-read.c) and what the collect driver does
 * with its records without unwinding — the `coroscope top` path: descriptor checks, both list
 * walks, record decoding, mutex-holder lookups, sorting, deadlock search — then every output
 * format over those records, written to /dev/null.
 *
 * The input is a memory image (fuzz-int.h): the target's memory is nothing but its chunks, as
 * a core or a live process whose registry was scribbled on would look to the reader.
 * scripts/fuzz-seeds.sh records the bytes a real reader read from real cores as seeds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>

#include "fuzz-int.h"
#include "inspect-int.h"

typedef struct ImageTarget {
    CoroTarget base;
    FuzzImage img;
} ImageTarget;

static int image_read(CoroTarget *t, uint64_t addr, void *buf, size_t len)
{
    return fuzz_image_read(&((ImageTarget *)t)->img, addr, buf, len);
}

static int image_thread_regs(CoroTarget *t, int32_t tid, CoroMachineRegs *out)
{
    return -ESRCH;
}

static int image_report_modules(CoroTarget *t, Dwfl *dwfl)
{
    return 0;
}

static void image_close(CoroTarget *t)
{
}

static const CoroTargetOps image_ops = {
    .read = image_read,
    .thread_regs = image_thread_regs,
    .report_modules = image_report_modules,
    .close = image_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ImageTarget t;
    static int devnull = -2;
    if (devnull == -2) {
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    memset(&t.base, 0, sizeof(t.base));
    t.base.ops = &image_ops;
    t.base.frozen_clock = true;
    if (fuzz_image_parse(data, size, &t.img) < 0) {
        return 0;
    }
    CoroCollectOptions opts = { .records_only = true };
    CoroCollection c;
    if (coro__collect(&t.base, t.img.abi_addr, &opts, &c) < 0) {
        return 0;
    }
    /* Each record again on its own, as `coroscope top` refreshes one. */
    for (size_t i = 0; i < c.n && i < 16; i++) {
        CoroInfo one;
        (void)coro__registry_read_one(&t.base, &c.reg.abi, c.bts[i].info->record, &one);
    }
    CoroDumpMeta meta = { .pid = 1 };
    coro__collection_meta(&c, &meta);
    static const int formats[] = { CORO_DUMP_TEXT, CORO_DUMP_JSON, CORO_DUMP_FOLDED,
                                   CORO_DUMP_GROUPED, CORO_DUMP_PPROF };
    for (size_t f = 0; devnull >= 0 && f < sizeof(formats) / sizeof(formats[0]); f++) {
        (void)coro__format_dump(devnull, formats[f], &meta, c.bts, c.n, CORO_FORMAT_GROUPS,
                                NULL);
    }
    coro__collection_free(&c);
    return 0;
}
