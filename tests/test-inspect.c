/*
 * coro_dump in its three formats: the frames and lines of known call chains (-O0, -O2, a
 * shared library, an inlined function), never-entered and running coroutines, other threads
 * switching meanwhile, bad file descriptors, and the written JSON schema. The leak API, the
 * exit-time leak check, the overflow report and the C++ check are in test-inspect-leaks.c.
 *
 * The chains come from tests/libchain-inspect.c, built at -O0 (suffix o0), -O2 (o2) and into
 * libchain-inspect.so (so); each records the line of each of its calls as it runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <coroscope/cmocka.h>
#include <coroscope/coro.h>
#include <coroscope/inspect.h>

#include "test-inspect-common.h"
#include "test-inspect-json.h"

#define CHAIN_DECL(X)                                                                     \
    extern int line_a_##X, line_b_##X, line_inline_##X, line_c_##X;                       \
    void chain_a_##X(void *opaque);
CHAIN_DECL(o0)
CHAIN_DECL(o2)
CHAIN_DECL(so)

typedef struct Chain {
    const char *suffix;
    CoroutineEntry *entry;
    const int *line_a, *line_b, *line_inline, *line_c;
    const char *module_suffix;   /* the ELF module the chain lives in */
} Chain;

static const Chain chains[] = {
    { "o0", chain_a_o0, &line_a_o0, &line_b_o0, &line_inline_o0, &line_c_o0, "/test-inspect" },
    { "o2", chain_a_o2, &line_a_o2, &line_b_o2, &line_inline_o2, &line_c_o2, "/test-inspect" },
    { "so", chain_a_so, &line_a_so, &line_b_so, &line_inline_so, &line_c_so,
      "/libchain-inspect.so" },
};

/* ---- helpers ---- */

/* coro_dump into memory. noinline: a dump from a coroutine shows this function as frame 1. */
static __attribute__((noinline)) char *dump_string(int format)
{
    int fd = memfd_create("dump", MFD_CLOEXEC);
    assert_true(fd >= 0);
    int rc = coro_dump(fd, format);
    __asm__ volatile("" ::: "memory");
    assert_int_equal(rc, 0);
    char *s = read_all(fd);
    close(fd);
    return s;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Creates a suspended coroutine running chain c; *line gets the line of the create call. */
static __attribute__((noinline)) Coroutine *park_chain(const Chain *c, const char *name, int *line)
{
    CoroutineOptions o = { .name = name };
    *line = __LINE__; Coroutine *co = coro_create_opts(c->entry, NULL, &o);
    assert_non_null(co);
    coro_enter(co);
    return co;
}

/* ---- text ---- */

/* The text block of coroutine id: from its header to the blank line or end. */
static char *text_block(const char *dump, uint64_t id)
{
    char head[64];
    snprintf(head, sizeof(head), "\ncoroutine %llu ", (unsigned long long)id);
    const char *p = strstr(dump, head);
    if (!p) {
        return NULL;
    }
    p++;
    const char *end = strstr(p, "\n\n");
    size_t len = end ? (size_t)(end - p) + 1 : strlen(p);
    return strndup(p, len);
}

static void check_text_chain(const Chain *c)
{
    uint64_t mark = coro_leak_mark();
    char name[32];
    snprintf(name, sizeof(name), "chain-%s", c->suffix);
    int create_line;
    Coroutine *co = park_chain(c, name, &create_line);
    char *dump = dump_string(CORO_DUMP_TEXT);
    char *block = text_block(dump, coro_id(co));
    assert_non_null(block);

    /* What a person reads: the suspension point, the chain with the line of each call, the
     * inlined function as its own frame, nothing below the entry function, the creator. */
    char pat[2048];
    const char *f = "([^ )]*/)?tests/libchain-inspect\\.c";
    const char *pc = "0x[0-9a-f]{16}";
    snprintf(pat, sizeof(pat),
             "^coroutine %llu \"%s\" \\[suspended, thread %d\\]:\n"
             "  #0  %s coro_yield \\([^ )]+:[0-9]+\\)\n"
             "  #1  %s chain_c_%s \\(%s:%d\\)\n"
             "  #2  %s inline_%s \\(%s:%d\\) \\[inlined\\]\n"
             "  #3  %s chain_b_%s \\(%s:%d\\)\n"
             "  #4  %s chain_a_%s \\(%s:%d\\)\n"
             "  created by park_chain at ([^ ]*/)?tests/test-inspect\\.c:%d\n$",
             (unsigned long long)coro_id(co), name, (int)gettid(), pc, pc, c->suffix, f,
             *c->line_c, pc, c->suffix, f, *c->line_inline, pc, c->suffix, f, *c->line_b, pc,
             c->suffix, f, *c->line_a, create_line);
    regex_t re;
    assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
    if (regexec(&re, block, 0, NULL, 0) != 0) {
        print_error("text block:\n%s\ndoes not match\n%s\n", block, pat);
        fail();
    }
    regfree(&re);
    free(block);
    free(dump);
    coro_enter(co);
    assert_no_coroutine_leaks_since(mark);
}

static void test_text_chain_o0(void **state)
{
    check_text_chain(&chains[0]);
}

static void test_text_chain_o2(void **state)
{
    check_text_chain(&chains[1]);
}

static void test_text_chain_shared_library(void **state)
{
    check_text_chain(&chains[2]);
}

static void test_text_preamble_and_never_entered(void **state)
{
    uint64_t mark = coro_leak_mark();
    int line;
    CoroutineOptions o = { .name = "fresh" };
    line = __LINE__; Coroutine *co = coro_create_opts(chain_a_o0, NULL, &o);
    char *dump = dump_string(CORO_DUMP_TEXT);
    char first[128];
    snprintf(first, sizeof(first), "coroscope: %zu coroutine%s in process %d at ",
             coro_live_count(), coro_live_count() == 1 ? "" : "s", (int)getpid());
    assert_memory_equal(dump, first, strlen(first));
    char *block = text_block(dump, coro_id(co));
    assert_non_null(block);
    /* Only the entry function, at its first line; then the creation site. */
    regex_t re;
    char pat[512];
    snprintf(pat, sizeof(pat),
             "^coroutine %llu \"fresh\" \\[created, thread %d\\]:\n"
             "  #0  0x[0-9a-f]{16} chain_a_o0 \\(([^ )]*/)?tests/libchain-inspect.c:[0-9]+\\)\n"
             "  created by test_text_preamble_and_never_entered at ([^ ]*/)?tests/"
             "test-inspect.c:%d\n$", (unsigned long long)coro_id(co), (int)gettid(), line);
    assert_int_equal(regcomp(&re, pat, REG_EXTENDED), 0);
    if (regexec(&re, block, 0, NULL, 0) != 0) {
        print_error("block:\n%s\ndoes not match\n%s\n", block, pat);
        fail();
    }
    regfree(&re);
    free(block);
    free(dump);
    coro_enter(co);     /* runs to the yield in chain_c */
    coro_enter(co);
    assert_no_coroutine_leaks_since(mark);
}

/* ---- JSON ---- */

static void check_frame_object(const Json *f)
{
    static const char *const keys[] = { "pc", "function", "offset", "file", "line", "module",
                                        "inlined" };
    assert_non_null(f);
    assert_int_equal(f->type, J_OBJ);
    assert_int_equal(f->n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(f->keys[i], keys[i]);
    }
    const Json *pc = jget(f, "pc");
    assert_int_equal(pc->type, J_STR);
    assert_memory_equal(pc->s, "0x", 2);
    assert_true(strtoull(pc->s, NULL, 16) != 0);
    const Json *fn = jget(f, "function"), *off = jget(f, "offset"), *file = jget(f, "file"),
               *line = jget(f, "line"), *mod = jget(f, "module"), *inl = jget(f, "inlined");
    assert_true(fn->type == J_STR || fn->type == J_NULL);
    assert_true((off->type == J_NUM && off->is_int && off->i >= 0) || off->type == J_NULL);
    assert_true(file->type == J_STR || file->type == J_NULL);
    assert_true((line->type == J_NUM && line->is_int && line->i > 0) || line->type == J_NULL);
    assert_true(mod->type == J_STR || mod->type == J_NULL);
    assert_int_equal(inl->type, J_BOOL);
}

static const Json *find_coroutine(const Json *doc, uint64_t id)
{
    const Json *list = jget(doc, "coroutines");
    for (size_t i = 0; list && i < list->n; i++) {
        const Json *c = list->items[i];
        if (jget(c, "id")->i == (long long)id) {
            return c;
        }
    }
    return NULL;
}

static Json *parse_dump_json(const char *text)
{
    char err[128];
    Json *doc = jparse_document(text, err, sizeof(err));
    if (!doc) {
        print_error("dump is not one JSON document and a newline: %s\n", err);
        fail();
    }
    /* The top level and every coroutine object, exactly as schema version 1 says. */
    static const char *const top[] = { "format", "version", "pid", "time", "partial",
                                       "deadlocks", "warnings", "coroutines" };
    assert_int_equal(doc->type, J_OBJ);
    assert_int_equal(doc->n, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(doc->keys[i], top[i]);
    }
    /* This process's own registry reads whole: nothing partial to report. */
    const Json *partial = jget(doc, "partial");
    assert_int_equal(partial->type, J_OBJ);
    assert_int_equal(jget(partial, "unreadable")->i, 0);
    assert_int_equal(jget(partial, "truncated")->type, J_BOOL);
    assert_false(jget(partial, "truncated")->b);
    /* Coroutines listed without all their frames say why (other threads may move them). */
    long long with_error = 0;
    const Json *all = jget(doc, "coroutines");
    for (size_t i = 0; i < all->n; i++) {
        with_error += jget(all->items[i], "error")->type == J_STR;
    }
    assert_true(jget(partial, "incomplete")->i <= with_error);
    assert_string_equal(jget(doc, "format")->s, "coroscope");
    assert_int_equal(jget(doc, "version")->i, 1);
    assert_int_equal(jget(doc, "pid")->i, getpid());
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{3}Z$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, jget(doc, "time")->s, 0, NULL, 0), 0);
    regfree(&re);
    const Json *list = jget(doc, "coroutines");
    assert_int_equal(list->type, J_ARR);
    static const char *const ckeys[] = { "id", "name", "state", "thread", "entry", "created_at",
                                         "stack", "wait", "frames", "error" };
    for (size_t i = 0; i < list->n; i++) {
        const Json *c = list->items[i];
        assert_int_equal(c->type, J_OBJ);
        assert_int_equal(c->n, 10);
        for (size_t k = 0; k < 10; k++) {
            assert_string_equal(c->keys[k], ckeys[k]);
        }
        assert_true(jget(c, "id")->is_int && jget(c, "id")->i > 0);
        assert_true(jget(c, "name")->type == J_STR || jget(c, "name")->type == J_NULL);
        const char *st = jget(c, "state")->s;
        assert_true(strcmp(st, "created") == 0 || strcmp(st, "running") == 0 ||
                    strcmp(st, "suspended") == 0);
        assert_true(jget(c, "thread")->type == J_NUM || jget(c, "thread")->type == J_NULL);
        check_frame_object(jget(c, "entry"));
        if (jget(c, "created_at")->type != J_NULL) {
            check_frame_object(jget(c, "created_at"));
        }
        const Json *stack = jget(c, "stack");
        assert_int_equal(stack->n, 3);
        assert_memory_equal(jget(stack, "base")->s, "0x", 2);
        assert_true(jget(stack, "size")->is_int && jget(stack, "size")->i > 0);
        assert_true(jget(stack, "used_max")->type == J_NUM ||
                    jget(stack, "used_max")->type == J_NULL);
        const Json *frames = jget(c, "frames");
        assert_int_equal(frames->type, J_ARR);
        for (size_t k = 0; k < frames->n; k++) {
            check_frame_object(frames->items[k]);
        }
    }
    return doc;
}

static void expect_frame(const Json *f, const char *function, const char *file_suffix, int line,
                         const char *module_suffix, bool inlined)
{
    const Json *fn = jget(f, "function");
    if (fn->type != J_STR || strcmp(fn->s, function) != 0) {
        print_error("frame function %s, expected %s\n", fn->type == J_STR ? fn->s : "null",
                    function);
        fail();
    }
    if (file_suffix) {
        assert_int_equal(jget(f, "file")->type, J_STR);
        assert_true(ends_with(jget(f, "file")->s, file_suffix));
    }
    if (line) {
        assert_int_equal(jget(f, "line")->i, line);
    }
    if (module_suffix) {
        assert_true(ends_with(jget(f, "module")->s, module_suffix));
    }
    assert_int_equal(jget(f, "inlined")->b, inlined);
    /* Inlined instances have no symbol offset; real frames do. */
    assert_int_equal(jget(f, "offset")->type, inlined ? J_NULL : J_NUM);
}

static void test_json_document_and_chains(void **state)
{
    uint64_t mark = coro_leak_mark();
    Coroutine *cos[3];
    int lines[3];
    for (int i = 0; i < 3; i++) {
        cos[i] = park_chain(&chains[i], NULL, &lines[i]);
    }
    Coroutine *fresh = coro_create(chain_a_o2, NULL);
    char *text = dump_string(CORO_DUMP_JSON);
    Json *doc = parse_dump_json(text);

    for (int i = 0; i < 3; i++) {
        const Chain *ch = &chains[i];
        const Json *c = find_coroutine(doc, coro_id(cos[i]));
        assert_non_null(c);
        assert_int_equal(jget(c, "name")->type, J_NULL);
        assert_string_equal(jget(c, "state")->s, "suspended");
        assert_int_equal(jget(c, "thread")->i, gettid());
        assert_int_equal(jget(jget(c, "stack"), "size")->i, CORO_DEFAULT_STACK_SIZE);
        char fn[32];
        snprintf(fn, sizeof(fn), "chain_a_%s", ch->suffix);
        expect_frame(jget(c, "entry"), fn, "tests/libchain-inspect.c", 0, ch->module_suffix,
                     false);
        assert_int_equal(jget(jget(c, "entry"), "offset")->i, 0);
        expect_frame(jget(c, "created_at"), "park_chain", "tests/test-inspect.c", lines[i],
                     "/test-inspect", false);
        const Json *fr = jget(c, "frames");
        assert_int_equal(fr->n, 5);
        expect_frame(fr->items[0], "coro_yield", NULL, 0, "/libcoroscope.so.0", false);
        snprintf(fn, sizeof(fn), "chain_c_%s", ch->suffix);
        expect_frame(fr->items[1], fn, "tests/libchain-inspect.c", *ch->line_c,
                     ch->module_suffix, false);
        snprintf(fn, sizeof(fn), "inline_%s", ch->suffix);
        expect_frame(fr->items[2], fn, "tests/libchain-inspect.c", *ch->line_inline,
                     ch->module_suffix, true);
        snprintf(fn, sizeof(fn), "chain_b_%s", ch->suffix);
        expect_frame(fr->items[3], fn, "tests/libchain-inspect.c", *ch->line_b,
                     ch->module_suffix, false);
        /* The inlined frame and its caller share the pc. */
        assert_string_equal(jget(fr->items[2], "pc")->s, jget(fr->items[3], "pc")->s);
        snprintf(fn, sizeof(fn), "chain_a_%s", ch->suffix);
        expect_frame(fr->items[4], fn, "tests/libchain-inspect.c", *ch->line_a,
                     ch->module_suffix, false);
    }
    /* A never-entered coroutine: its entry function is its only frame. */
    const Json *c = find_coroutine(doc, coro_id(fresh));
    assert_non_null(c);
    assert_string_equal(jget(c, "state")->s, "created");
    assert_int_equal(jget(c, "frames")->n, 1);
    expect_frame(jget(c, "frames")->items[0], "chain_a_o2", NULL, 0, NULL, false);
    assert_string_equal(jget(jget(c, "frames")->items[0], "pc")->s,
                        jget(jget(c, "entry"), "pc")->s);
    jfree(doc);
    free(text);
    coro_enter(fresh);
    coro_enter(fresh);
    for (int i = 0; i < 3; i++) {
        coro_enter(cos[i]);
    }
    assert_no_coroutine_leaks_since(mark);
}

/* A coroutine that dumps while it runs, entered by another coroutine. */
static char *inner_dump;

static void dumping_entry(void *opaque)
{
    inner_dump = dump_string(CORO_DUMP_JSON);
    coro_yield();
}

static void outer_entry(void *opaque)
{
    coro_enter(opaque);
    coro_yield();
}

static void test_json_running_chain_from_live_stack(void **state)
{
    uint64_t mark = coro_leak_mark();
    CoroutineOptions oi = { .name = "inner" }, oo = { .name = "outer" };
    Coroutine *inner = coro_create_opts(dumping_entry, NULL, &oi);
    Coroutine *outer = coro_create_opts(outer_entry, inner, &oo);
    coro_enter(outer);
    Json *doc = parse_dump_json(inner_dump);
    const Json *ci = find_coroutine(doc, coro_id(inner));
    const Json *co = find_coroutine(doc, coro_id(outer));
    assert_non_null(ci);
    assert_non_null(co);
    assert_string_equal(jget(ci, "state")->s, "running");
    assert_string_equal(jget(co, "state")->s, "running");
    const Json *fi = jget(ci, "frames"), *fo = jget(co, "frames");
    /* The dumping coroutine, from the live stack: coro_dump, our helper, its entry. */
    assert_int_equal(fi->n, 3);
    expect_frame(fi->items[0], "coro_dump", NULL, 0, "/libcoroscope.so.0", false);
    expect_frame(fi->items[1], "dump_string", "tests/test-inspect.c", 0, NULL, false);
    expect_frame(fi->items[2], "dumping_entry", "tests/test-inspect.c", 0, NULL, false);
    /* The coroutine that entered it, from its saved registers: suspended in coro_enter. */
    assert_int_equal(fo->n, 2);
    expect_frame(fo->items[0], "coro_enter", NULL, 0, "/libcoroscope.so.0", false);
    expect_frame(fo->items[1], "outer_entry", "tests/test-inspect.c", 0, NULL, false);
    jfree(doc);
    free(inner_dump);
    inner_dump = NULL;
    coro_enter(inner);
    coro_enter(outer);
    assert_no_coroutine_leaks_since(mark);
}

static void test_dump_rejects_bad_format_fd_and_broken_pipe(void **state)
{
    assert_int_equal(coro_dump(STDOUT_FILENO, 99), -EINVAL);
    assert_int_equal(coro_dump(STDOUT_FILENO, -1), -EINVAL);
    /* CORO_DUMP_GROUPED (3) is a format: identical stacks once, with a count. */
    uint64_t gmark = coro_leak_mark();
    Coroutine *same[3];
    for (int i = 0; i < 3; i++) {
        same[i] = coro_create(chain_a_o2, NULL);
    }
    int gfd = memfd_create("grouped", 0);
    assert_int_equal(coro_dump(gfd, CORO_DUMP_GROUPED), 0);
    char *grouped = read_all(gfd);
    close(gfd);
    char want[64];
    snprintf(want, sizeof(want), "coroutines [created]: %llu-%llu\n",
             (unsigned long long)coro_id(same[0]), (unsigned long long)coro_id(same[2]));
    if (!strstr(grouped, want)) {
        print_error("%s", grouped);
        fail_msg("no group \"%s\" in the grouped dump", want);
    }
    free(grouped);
    for (int i = 0; i < 3; i++) {
        coro_enter(same[i]); /* runs to its yield */
        coro_enter(same[i]); /* returns */
    }
    assert_int_equal(coro_leak_check_since(gmark, -1), 0);
    uint64_t mark = coro_leak_mark();
    Coroutine *co = coro_create(chain_a_o2, NULL);    /* something to write */
    assert_int_equal(coro_dump(-1, CORO_DUMP_JSON), -EBADF);
    int rd = open("/dev/null", O_RDONLY);
    assert_int_equal(coro_dump(rd, CORO_DUMP_TEXT), -EBADF);
    close(rd);
    /* A reader that went away: -EPIPE, and the program is not killed by SIGPIPE. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    assert_int_equal(coro_dump(p[1], CORO_DUMP_JSON), -EPIPE);
    close(p[1]);
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
    coro_enter(co);
    coro_enter(co);
    assert_no_coroutine_leaks_since(mark);
}

/* ---- other threads switching while we dump ---- */

#define SPIN_THREADS 2
#define SPIN_COROS 40

static _Atomic int spin_stop;
static _Atomic uint64_t spin_ids[SPIN_THREADS][SPIN_COROS];
static _Atomic int spin_ready;

__attribute__((noinline)) static void spin_park(void)
{
    coro_yield();
    __asm__ volatile("" ::: "memory");
}

static void spin_entry(void *opaque)
{
    const int *done = opaque;       /* set by its thread only between rounds */
    while (!*(const volatile int *)done) {
        spin_park();
    }
}

static void *spin_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    Coroutine *cos[SPIN_COROS];
    int done = 0;
    for (int i = 0; i < SPIN_COROS; i++) {
        cos[i] = coro_create(spin_entry, &done);
        spin_ids[t][i] = coro_id(cos[i]);
        coro_enter(cos[i]);
    }
    spin_ready++;
    while (!spin_stop) {
        for (int i = 0; i < SPIN_COROS; i++) {
            coro_enter(cos[i]);
        }
    }
    done = 1;
    for (int i = 0; i < SPIN_COROS; i++) {
        coro_enter(cos[i]);     /* sees done and returns */
    }
    return NULL;
}

static void test_dump_while_other_threads_switch(void **state)
{
    uint64_t mark = coro_leak_mark();
    pthread_t th[SPIN_THREADS];
    spin_stop = 0;
    spin_ready = 0;
    for (int t = 0; t < SPIN_THREADS; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, spin_thread, (void *)(intptr_t)t), 0);
    }
    while (spin_ready < SPIN_THREADS) {
        usleep(1000);
    }
    size_t complete = 0, listed = 0;
    for (int round = 0; round < 10; round++) {
        char *text = dump_string(CORO_DUMP_JSON);
        Json *doc = parse_dump_json(text);
        /* Every coroutine of the spinning threads, each exactly once; frames either complete
         * and right, or none (it moved while being read), never wrong ones. */
        for (int t = 0; t < SPIN_THREADS; t++) {
            for (int i = 0; i < SPIN_COROS; i++) {
                const Json *c = find_coroutine(doc, spin_ids[t][i]);
                assert_non_null(c);
                listed++;
                const Json *fr = jget(c, "frames");
                if (strcmp(jget(c, "state")->s, "suspended") != 0 || fr->n == 0) {
                    continue;
                }
                assert_int_equal(fr->n, 3);
                expect_frame(fr->items[0], "coro_yield", NULL, 0, NULL, false);
                expect_frame(fr->items[1], "spin_park", "tests/test-inspect.c", 0, NULL, false);
                expect_frame(fr->items[2], "spin_entry", "tests/test-inspect.c", 0, NULL, false);
                complete++;
            }
        }
        const Json *list = jget(doc, "coroutines");
        for (size_t i = 1; i < list->n; i++) {
            assert_true(jget(list->items[i - 1], "id")->i < jget(list->items[i], "id")->i);
        }
        jfree(doc);
        free(text);
    }
    spin_stop = 1;
    for (int t = 0; t < SPIN_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    assert_int_equal(listed, 10 * SPIN_THREADS * SPIN_COROS);
    print_message("  %zu of %zu suspended-and-unwound while their threads switched\n", complete,
                  listed);
    assert_no_coroutine_leaks_since(mark);
}

/* ---- folded ---- */

static void test_folded_aggregates_identical_stacks(void **state)
{
    uint64_t mark = coro_leak_mark();
    Coroutine *cos[5];
    int line;
    for (int i = 0; i < 3; i++) {
        cos[i] = park_chain(&chains[1], "same", &line);
    }
    for (int i = 3; i < 5; i++) {
        cos[i] = park_chain(&chains[0], "other;name with space", &line);
    }
    char *text = dump_string(CORO_DUMP_FOLDED);
    regex_t re;
    assert_int_equal(regcomp(&re, "^[^ ;]+(;[^ ;]+)* [1-9][0-9]*$", REG_EXTENDED | REG_NOSUB), 0);
    size_t total = 0;
    bool seen_same = false, seen_other = false;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (regexec(&re, l, 0, NULL, 0) != 0) {
            print_error("not a folded line: \"%s\"\n", l);
            fail();
        }
        total += strtoul(strrchr(l, ' ') + 1, NULL, 10);
        if (strcmp(l, "same;chain_a_o2;chain_b_o2;inline_o2;chain_c_o2;coro_yield 3") == 0) {
            seen_same = true;
        }
        if (strcmp(l, "other:name_with_space;chain_a_o0;chain_b_o0;inline_o0;chain_c_o0;"
                   "coro_yield 2") == 0) {
            seen_other = true;
        }
    }
    regfree(&re);
    assert_true(seen_same);
    assert_true(seen_other);
    assert_int_equal(total, coro_live_count());
    free(text);
    for (int i = 0; i < 5; i++) {
        coro_enter(cos[i]);
    }
    assert_no_coroutine_leaks_since(mark);
}

/* The written schema and the output agree: a dump validated against
 * docs/coroscope-dump.schema.json by the python3 on PATH with its jsonschema module (Debian:
 * python3-jsonschema); skipped where there is none. Names with a quote and a control byte. */
static void test_json_matches_the_schema_file(void **state)
{
    char schema[PATH_MAX + 64];
    snprintf(schema, sizeof(schema), "%s/../../docs/coroscope-dump.schema.json", helper_dir);
    if (access(schema, R_OK) != 0) {
        skip();
    }
    uint64_t mark = coro_leak_mark();
    int line;
    Coroutine *a = park_chain(&chains[2], "schema\"check\x01", &line);
    Coroutine *b = coro_create(chain_a_o0, NULL);
    int fd = memfd_create("dump.json", 0);
    assert_int_equal(coro_dump(fd, CORO_DUMP_JSON), 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", getpid(), fd);
    int out = memfd_create("out", MFD_CLOEXEC), err = memfd_create("err", MFD_CLOEXEC);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        /* Debian's own python3 first: that is where python3-jsonschema installs. */
        static const char code[] =
               "import json, sys\n"
               "try:\n"
               "    import jsonschema\n"
               "except ImportError:\n"
               "    print('no jsonschema'); sys.exit(77)\n"
               "schema = json.load(open(sys.argv[1]))\n"
               "doc = json.load(open(sys.argv[2]))\n"
               "jsonschema.validate(doc, schema)\n"
               "print('valid', len(doc['coroutines']))\n";
        execl("/usr/bin/python3", "python3", "-c", code, schema, path, (char *)NULL);
        execlp("python3", "python3", "-c", code, schema, path, (char *)NULL);
        _exit(77);                          /* no python3: nothing to validate with */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char *o = read_all(out), *e = read_all(err);
    close(out);
    close(err);
    close(fd);
    coro_enter(a);
    coro_enter(b);
    coro_enter(b);
    assert_no_coroutine_leaks_since(mark);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        free(o);
        free(e);
        skip();
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("schema validation failed:\n%s%s\n", o, e);
        fail();
    }
    assert_memory_equal(o, "valid ", 6);
    free(o);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_chain_o0),
        cmocka_unit_test(test_text_chain_o2),
        cmocka_unit_test(test_text_chain_shared_library),
        cmocka_unit_test(test_text_preamble_and_never_entered),
        cmocka_unit_test(test_json_document_and_chains),
        cmocka_unit_test(test_json_running_chain_from_live_stack),
        cmocka_unit_test(test_dump_rejects_bad_format_fd_and_broken_pipe),
        cmocka_unit_test(test_dump_while_other_threads_switch),
        cmocka_unit_test(test_folded_aggregates_identical_stacks),
        cmocka_unit_test(test_json_matches_the_schema_file),
    };
    return cmocka_run_group_tests(tests, setup_paths, NULL);
}
