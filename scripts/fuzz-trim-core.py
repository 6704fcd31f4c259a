#!/usr/bin/env python3
"""fuzz-trim-core.py CORE IMAGE OUT: a small copy of an x86_64 ELF core for fuzz seeds.

Keeps the ELF header, the notes and every PT_LOAD segment of at most KEEP_WHOLE bytes (module
headers, .data, .bss: what libdwfl needs to find the modules and their link map); of larger
segments (heap, stacks) only the pages that hold bytes of IMAGE (a memory image made by
build/fuzz/seed-image: the registry's descriptor, records and shards) or a thread's stack
pointer. A segment is split into one PT_LOAD per kept run of pages and one per dropped run
(file size 0, as the kernel writes read-only file pages it leaves out).
"""
import struct
import sys

PAGE = 4096
KEEP_WHOLE = 16 * 1024


def image_ranges(path):
    data = open(path, "rb").read()
    at, out = 8, []
    while len(data) - at >= 12:
        addr, n = struct.unpack_from("<QI", data, at)
        at += 12
        n = min(n, len(data) - at)
        out.append((addr, addr + n))
        at += n
    return out


def main():
    core, image, out_path = sys.argv[1:4]
    data = open(core, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    phdrs = [list(struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize))
             for i in range(phnum)]
    keep = image_ranges(image)
    # Stack pointers of the threads (NT_PRSTATUS: pr_reg at 112, rsp is its 20th register).
    for p in phdrs:
        if p[0] != 4:  # PT_NOTE
            continue
        off, end = p[2], p[2] + p[5]
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name_at = off + 12
            desc_at = name_at + (namesz + 3 & ~3)
            if ntype == 1 and descsz >= 112 + 27 * 8:
                rsp, = struct.unpack_from("<Q", data, desc_at + 112 + 19 * 8)
                keep.append((rsp - 512, rsp + 2048))
            off = desc_at + (descsz + 3 & ~3)

    def wanted(lo, hi):
        return any(a < hi and b > lo for a, b in keep)

    notes, loads = [], []
    for p in phdrs:
        ptype, flags, off, vaddr, paddr, filesz, memsz, align = p
        if ptype == 4:
            notes.append((p, data[off:off + filesz]))
        elif ptype != 1:
            continue
        elif filesz <= KEEP_WHOLE:
            loads.append(([1, flags, 0, vaddr, 0, filesz, memsz, align],
                          data[off:off + filesz]))
        else:
            # Runs of pages, each kept (its bytes) or dropped (file size 0).
            runs = []
            for page in range(0, memsz, PAGE):
                size = min(PAGE, memsz - page)
                kept = page < filesz and wanted(vaddr + page, vaddr + page + size)
                if runs and runs[-1][0] == kept:
                    runs[-1][2] += size
                else:
                    runs.append([kept, page, size])
            for kept, page, size in runs:
                body = data[off + page:off + page + size] if kept else b""
                loads.append(([1, flags, 0, vaddr + page, 0, len(body), size, align], body))
    segs = notes + loads
    header = bytearray(data[:64])
    struct.pack_into("<QH", header, 0x20, 64, 0)
    struct.pack_into("<HHH", header, 0x36, 56, len(segs), 0)
    struct.pack_into("<HHH", header, 0x3a, 0, 0, 0)  # no section headers
    struct.pack_into("<Q", header, 0x28, 0)
    at = 64 + 56 * len(segs)
    table, bodies = b"", b""
    for p, body in segs:
        p[2] = at + len(bodies)
        p[5] = len(body)
        table += struct.pack("<IIQQQQQQ", *p)
        bodies += body
        if p[0] == 4:
            bodies += b"\0" * (-len(bodies) % 8)
    with open(out_path, "wb") as f:
        f.write(bytes(header) + table + bodies)


if __name__ == "__main__":
    main()
