/*
 * Why the kernel refused to let coroscope trace a process (PTRACE_SEIZE answered EPERM), and
 * what to do about it, as one clause of the error line. The rules (ptrace(2), "Ptrace access
 * mode checking"; Documentation/admin-guide/LSM/Yama.rst):
 *   - a zombie cannot be traced, nor a process another tracer (a debugger) holds;
 *   - without CAP_SYS_PTRACE, a process may trace only processes whose real, effective and
 *     saved user and group ids are all its own, and only while they are dumpable (a set-user-ID
 *     program, or one that called prctl(PR_SET_DUMPABLE, 0), is not);
 *   - Yama (kernel.yama.ptrace_scope) narrows that: 1 lets a process trace only its own
 *     descendants, 2 only with CAP_SYS_PTRACE, 3 nobody (until reboot);
 *   - a security module (SELinux, AppArmor) or a container may refuse even then.
 * Reads /proc only; never fails (an empty clause when nothing is known). Reading memory
 * without stopping (process_vm_readv, coroscope top) meets the same access check but not the
 * other tracer: attach says which of the two was refused.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf-target-int.h"

#define CAP_SYS_PTRACE_BIT 19

typedef struct ProcStatus {
    char state;
    int tracer;
    long uid[4], gid[4];      /* real, effective, saved, filesystem; -1 unknown */
    unsigned long long cap_eff;
    bool have_caps;
} ProcStatus;

static void read_status(const char *path, ProcStatus *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < 4; i++) {
        st->uid[i] = st->gid[i] = -1;
    }
    FILE *f = fopen(path, "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "State: %c", &st->state) == 1 ||
            sscanf(line, "TracerPid: %d", &st->tracer) == 1 ||
            sscanf(line, "Uid: %ld %ld %ld %ld", &st->uid[0], &st->uid[1], &st->uid[2],
                   &st->uid[3]) == 4 ||
            sscanf(line, "Gid: %ld %ld %ld %ld", &st->gid[0], &st->gid[1], &st->gid[2],
                   &st->gid[3]) == 4) {
            continue;
        }
        if (sscanf(line, "CapEff: %llx", &st->cap_eff) == 1) {
            st->have_caps = true;
        }
    }
    if (f) {
        fclose(f);
    }
}

static int yama_scope(void)
{
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
    int scope = -1;
    if (f) {
        if (fscanf(f, "%d", &scope) != 1) {
            scope = -1;
        }
        fclose(f);
    }
    return scope;
}

/* Whether the process's user and group ids are all ours (the rule without CAP_SYS_PTRACE). */
static bool same_ids(const ProcStatus *t)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) {
        return true; /* unknown: say nothing about ids */
    }
    for (int i = 0; i < 3; i++) {
        if (t->uid[i] >= 0 && t->uid[i] != (long)ruid) {
            return false;
        }
        if (t->gid[i] >= 0 && t->gid[i] != (long)rgid) {
            return false;
        }
    }
    return true;
}

void coro__ptrace_refusal(pid_t pid, bool attach, char *buf, size_t len)
{
    const char *verb = attach ? "trace" : "read";
    char path[64];
    ProcStatus t, self;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    read_status(path, &t);
    read_status("/proc/self/status", &self);
    buf[0] = '\0';
    /* The reasons root meets too. */
    if (t.state == 'Z' || t.state == 'X') {
        snprintf(buf, len, ": it has exited and is a zombie (not reaped by its parent yet)");
        return;
    }
    if (attach && t.tracer > 0 && t.tracer != (int)getpid()) {
        snprintf(buf, len, ": it is already traced by process %d (a debugger?); detach that "
                 "first", t.tracer);
        return;
    }
    int scope = yama_scope();
    bool cap = self.have_caps && (self.cap_eff >> CAP_SYS_PTRACE_BIT & 1);
    if (scope == 3) {
        snprintf(buf, len, ": not allowed to %s it: kernel.yama.ptrace_scope is 3, which "
                 "forbids tracing any process until the next reboot", verb);
        return;
    }
    if (cap) {
        snprintf(buf, len, ": not allowed to %s it although coroscope has CAP_SYS_PTRACE: "
                 "a security module (SELinux, AppArmor) or the process's user namespace "
                 "forbids it; ask that policy's administrator", verb);
        return;
    }
    const char *todo = geteuid() == 0
        ? "coroscope runs as root but without CAP_SYS_PTRACE (a container? give it that "
          "capability, e.g. docker run --cap-add=SYS_PTRACE)"
        : "run coroscope as root, or give it CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep)";
    if (scope == 2) {
        snprintf(buf, len, ": not allowed to %s it: kernel.yama.ptrace_scope is 2, so "
                 "only a tracer with CAP_SYS_PTRACE may; %s", verb, todo);
        return;
    }
    if (!same_ids(&t)) {
        snprintf(buf, len, ": not allowed to %s it: it runs as uid %ld (gid %ld) and "
                 "coroscope as uid %ld (gid %ld), and ptrace lets a process trace only "
                 "processes of its own user and group unless it has CAP_SYS_PTRACE; %s, or "
                 "as uid %ld", verb, t.uid[1], t.gid[1], (long)getuid(), (long)getgid(), todo,
                 t.uid[1]);
        return;
    }
    /* Same ids: the files of /proc/PID belong to root while the process is not dumpable. */
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (stat(path, &st) == 0 && st.st_uid == 0 && t.uid[1] != 0) {
        snprintf(buf, len, ": not allowed to %s it: it is not dumpable (a set-user-ID "
                 "program, or it called prctl(PR_SET_DUMPABLE, 0)), and tracing such a "
                 "process needs CAP_SYS_PTRACE; %s", verb, todo);
        return;
    }
    if (scope == 1) {
        snprintf(buf, len, ": not allowed to %s it: kernel.yama.ptrace_scope is 1, so a "
                 "process may trace only its own descendants unless it has CAP_SYS_PTRACE; "
                 "%s, or as root set kernel.yama.ptrace_scope to 0 (sysctl -w "
                 "kernel.yama.ptrace_scope=0)", verb, todo);
        return;
    }
    snprintf(buf, len, ": not allowed to %s it, although it runs as coroscope's user: a "
             "security module (SELinux, AppArmor) or a seccomp filter forbids it; %s", verb,
             todo);
}
