/*
 * Opening a module's ELF file for the in-process readers without mapping it.
 *
 * libdwfl's own find_elf maps each file with mmap (MAP_PRIVATE, read-write). In a process
 * that inspects itself those mappings stay behind, and every outside reader that lists
 * modules from /proc/PID/maps or a core's NT_FILE note (coroscope itself, eu-stack) then sees
 * a second "module" of the same name at the wrong load bias. Reading with ELF_C_READ (headers
 * at once, sections on demand with pread) leaves the process's mappings as the loader made
 * them.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "target-int.h"

int coro__find_elf_unmapped(Dwfl_Module *mod, void **userdata, const char *modname,
                            Dwarf_Addr base, char **file_name, Elf **elfp)
{
    if (modname && modname[0] == '/') {
        int fd = open(modname, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
            char *name = elf && elf_kind(elf) == ELF_K_ELF ? strdup(modname) : NULL;
            if (name) {
                *elfp = elf;
                *file_name = name;
                return fd; /* libdwfl owns it from here and closes it */
            }
            if (elf) {
                elf_end(elf);
            }
            close(fd);
        }
    }
    /* The vdso, deleted files and the like: libdwfl knows how. */
    return dwfl_linux_proc_find_elf(mod, userdata, modname, base, file_name, elfp);
}
