/*
 * What the benchmark table must say about the CPU it ran on. The same `make bench` has given
 * coroscope 0.99x Boost on one 2-vCPU EPYC VM and 1.16x on another (shared/FIELD-NOTES.md),
 * so the model name alone ("AMD EPYC") is not enough: print the family/model (which core
 * generation), the microcode, whether it is a VM, and the features and speculation controls
 * that change what a user-space stack switch costs (docs/benchmarks.md says why each one).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* Flags of /proc/cpuinfo worth printing when present: see docs/benchmarks.md. */
static const char *const interesting_flags[] = {
    "hypervisor", "avx512f", "fsrm", "erms", "ibpb", "ibrs", "ibrs_enhanced", "stibp",
    "ssbd", "amd_ssbd", "virt_ssbd", "user_shstk", "ibt", NULL,
};

/* The value of "key : value" in the first processor block of /proc/cpuinfo, or "". */
static void cpuinfo_field(const char *key, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) {
        return;
    }
    size_t klen = strlen(key);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '\n') {
            break; /* end of the first processor */
        }
        if (strncmp(line, key, klen) == 0 && (line[klen] == ' ' || line[klen] == '\t' ||
                                              line[klen] == ':')) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + strspn(v + 1, " \t");
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, size, "%s", v);
            }
            break;
        }
    }
    free(line);
    fclose(f);
}

/* The first line of a small file (sysfs, procfs), or "" when it cannot be read. */
static void first_line(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(buf, (int)size, f)) {
            buf[strcspn(buf, "\n")] = '\0';
        }
        fclose(f);
    }
}

/* This process's "Speculation_Store_Bypass:" line of /proc/self/status. */
static void ssb_state(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) {
        return;
    }
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Speculation_Store_Bypass:", 25) == 0) {
            char *v = line + 25 + strspn(line + 25, " \t");
            v[strcspn(v, "\n")] = '\0';
            snprintf(buf, size, "%s", v);
            break;
        }
    }
    fclose(f);
}

/* AMD's core generation from family and model, for the families this project has met. */
static const char *amd_core(long family, long model)
{
    if (family == 0x17) {
        return model >= 0x30 ? "Zen 2" : "Zen/Zen+";
    }
    if (family == 0x19) {
        if ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) ||
            (model >= 0xa0 && model <= 0xaf)) {
            return "Zen 4";
        }
        return "Zen 3";
    }
    if (family == 0x1a) {
        return "Zen 5";
    }
    return NULL;
}

void bench_cpu_model(char *buf, size_t size)
{
    cpuinfo_field("model name", buf, size);
    if (!buf[0]) {
        snprintf(buf, size, "unknown");
    }
}

void bench_print_cpu(FILE *out)
{
    char model[256], vendor[64], family[32], modelno[32], stepping[32], microcode[64];
    char flags[4096];
    bench_cpu_model(model, sizeof(model));
    cpuinfo_field("vendor_id", vendor, sizeof(vendor));
    cpuinfo_field("cpu family", family, sizeof(family));
    cpuinfo_field("model", modelno, sizeof(modelno));
    cpuinfo_field("stepping", stepping, sizeof(stepping));
    cpuinfo_field("microcode", microcode, sizeof(microcode));
    cpuinfo_field("flags", flags, sizeof(flags));
    long fam = strtol(family, NULL, 10), mod = strtol(modelno, NULL, 10);
    const char *core = strcmp(vendor, "AuthenticAMD") == 0 ? amd_core(fam, mod) : NULL;

    fprintf(out, "CPU: %s; family %s model %s stepping %s%s%s%s; microcode %s; %ld CPUs online.\n",
            model, family[0] ? family : "?", modelno[0] ? modelno : "?",
            stepping[0] ? stepping : "?", core ? " (" : "", core ? core : "", core ? ")" : "",
            microcode[0] ? microcode : "?", sysconf(_SC_NPROCESSORS_ONLN));

    /* Flags are matched as whole words. */
    char present[512] = "", absent[512] = "";
    for (const char *const *f = interesting_flags; *f; f++) {
        size_t n = strlen(*f);
        int found = 0;
        for (const char *p = flags; (p = strstr(p, *f)) != NULL; p += n) {
            if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
                found = 1;
                break;
            }
        }
        char *dst = found ? present : absent;
        size_t len = strlen(dst);
        snprintf(dst + len, 512 - len, "%s%s", len ? " " : "", *f);
    }
    char v2[512], ssb[256], self_ssb[128];
    first_line("/sys/devices/system/cpu/vulnerabilities/spectre_v2", v2, sizeof(v2));
    first_line("/sys/devices/system/cpu/vulnerabilities/spec_store_bypass", ssb, sizeof(ssb));
    ssb_state(self_ssb, sizeof(self_ssb));
    fprintf(out, "CPU flags that matter here: %s (absent: %s); spectre_v2: %s; "
            "spec_store_bypass: %s; this process: store bypass %s.\n",
            present[0] ? present : "none", absent[0] ? absent : "none", v2[0] ? v2 : "?",
            ssb[0] ? ssb : "?", self_ssb);
}
