/*
 * Shared by the fuzz targets (fuzz/fuzz-*.c): handing an input to readers that want a file,
 * and the memory-image format of fuzz-registry.c.
 *
 * Each target defines LLVMFuzzerTestOneInput. `make fuzz` links it with libFuzzer (clang-14,
 * ASan, UBSan); `make check` links it with fuzz/replay.c (gcc) and feeds it every seed and
 * regression input (tests/e2e-fuzz-replay.sh), so a fixed crash stays fixed without clang.
 */
#ifndef COROSCOPE_FUZZ_INT_H
#define COROSCOPE_FUZZ_INT_H

/* Includers define _GNU_SOURCE first (memfd_create). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The input as a file: one memfd per process, rewritten for every input (its size is the
 * input's), named by path ("/proc/self/fd/N") for readers that open by name. Returns the fd
 * (owned here: do not close it) or -1.
 */
static inline int fuzz_input_file(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("coroscope-fuzz", MFD_CLOEXEC);
        if (fd < 0) {
            return -1;
        }
    }
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
        return -1;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) {
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/*
 * A memory image (fuzz-registry.c, scripts/fuzz-seeds.sh): a little-endian u64 address of the
 * debug ABI descriptor, then chunks, each a u64 address, a u32 length and that many bytes (a
 * last chunk cut short by the end of the input keeps what is there). Bytes outside every
 * chunk are unreadable. At most FUZZ_IMAGE_MAX_CHUNKS chunks are used.
 */
#define FUZZ_IMAGE_MAX_CHUNKS 256

typedef struct FuzzChunk {
    uint64_t addr;
    uint64_t len;
    const uint8_t *bytes;
} FuzzChunk;

typedef struct FuzzImage {
    uint64_t abi_addr;
    FuzzChunk chunks[FUZZ_IMAGE_MAX_CHUNKS];
    size_t nchunks;
} FuzzImage;

/* 0, or -1 when the input is too short to name a descriptor. */
static inline int fuzz_image_parse(const uint8_t *data, size_t size, FuzzImage *img)
{
    if (size < 8) {
        return -1;
    }
    memcpy(&img->abi_addr, data, 8);
    img->nchunks = 0;
    size_t at = 8;
    while (size - at >= 12 && img->nchunks < FUZZ_IMAGE_MAX_CHUNKS) {
        FuzzChunk *c = &img->chunks[img->nchunks++];
        uint32_t len;
        memcpy(&c->addr, data + at, 8);
        memcpy(&len, data + at + 8, 4);
        at += 12;
        c->len = len < size - at ? len : size - at;
        c->bytes = data + at;
        at += c->len;
    }
    return 0;
}

/* Reads [addr, addr + len) from the chunks (a read may span adjacent chunks; a later chunk
 * does not override an earlier one). 0 or -EFAULT, as CoroTargetOps.read. */
static inline int fuzz_image_read(const FuzzImage *img, uint64_t addr, void *buf, size_t len)
{
    uint8_t *out = buf;
    while (len > 0) {
        const FuzzChunk *c = NULL;
        for (size_t i = 0; i < img->nchunks; i++) {
            if (addr >= img->chunks[i].addr && addr - img->chunks[i].addr < img->chunks[i].len) {
                c = &img->chunks[i];
                break;
            }
        }
        if (!c) {
            return -EFAULT;
        }
        uint64_t avail = c->len - (addr - c->addr);
        size_t n = len < avail ? len : (size_t)avail;
        memcpy(out, c->bytes + (addr - c->addr), n);
        out += n;
        addr += n;
        len -= n;
    }
    return 0;
}

#endif /* COROSCOPE_FUZZ_INT_H */
