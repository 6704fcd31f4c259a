/*
 * The registry as readers outside the runtime see it: the debug ABI descriptor (by symbol
 * and by ELF section), record contents and state transitions, shards. Every field is read
 * through the descriptor's offsets (coro-test.h), never through the runtime's structs.
 */
#include "coro-test.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* The return address of a call to this function: a point inside the function calling it.
 * noipa keeps the compiler from treating it as pure and moving the call. */
static __attribute__((noipa)) uintptr_t here(void)
{
    return (uintptr_t)__builtin_return_address(0);
}

static uint64_t page(void)
{
    return (uint64_t)sysconf(_SC_PAGESIZE);
}

/* dladdr of a code address: the shared object and the nearest exported symbol. */
static bool in_library(uint64_t pc, const char **sym)
{
    Dl_info info;
    if (!dladdr((void *)(uintptr_t)pc, &info) || !info.dli_fname) {
        return false;
    }
    if (sym) {
        *sym = info.dli_sname;
    }
    return strstr(info.dli_fname, "libcoroscope.so") != NULL;
}

/* ---- the descriptor ---- */

static void test_debug_abi_header(void **state)
{
    const struct coro_debug_abi *d = abi();
    assert_memory_equal(d->magic, CORO_DEBUG_ABI_MAGIC, 8);
    assert_int_equal(d->version, CORO_DEBUG_ABI_VERSION);
    assert_true(d->size >= sizeof(struct coro_debug_abi));
    assert_int_equal(d->ptr_size, 8);
    assert_int_equal(d->arch, EM_X86_64);
    assert_int_equal(d->name_size, CORO_NAME_SIZE);

    /* Every field a reader uses lies inside the record / shard it describes. */
    uint32_t rec_fields[] = {
        d->off_next, d->off_id, d->off_state, d->off_seq, d->off_name, d->off_stack_base,
        d->off_stack_size, d->off_entry, d->off_opaque, d->off_create_site, d->off_tid,
        d->off_caller, d->off_switch_count, d->off_generation,
        d->off_regs + d->regs.rsp, d->off_regs + d->regs.rip, d->off_regs + d->regs.rbp,
        d->off_regs + d->regs.rbx, d->off_regs + d->regs.r12, d->off_regs + d->regs.r13,
        d->off_regs + d->regs.r14, d->off_regs + d->regs.r15,
    };
    for (size_t i = 0; i < sizeof(rec_fields) / sizeof(rec_fields[0]); i++) {
        assert_true(rec_fields[i] + 8 <= d->record_size);
    }
    assert_true(d->off_name + d->name_size <= d->record_size);
    uint32_t shard_fields[] = { d->shard_off_next, d->shard_off_tid, d->shard_off_current,
                                d->shard_off_created, d->shard_off_terminated };
    for (size_t i = 0; i < sizeof(shard_fields) / sizeof(shard_fields[0]); i++) {
        assert_true(shard_fields[i] + 8 <= d->shard_size);
    }
    /* Reserved fields are marked absent until their issues land, or lie in the record. */
    uint32_t later[] = { d->off_wait_reason, d->off_wait_object, d->off_wait_since,
                         d->off_stack_used_max };
    for (size_t i = 0; i < 4; i++) {
        assert_true(later[i] == CORO_DEBUG_ABSENT || later[i] + 8 <= d->record_size);
    }

    /* Code ranges: the trampoline and the switch are inside the library. */
    assert_true(d->trampoline_start < d->trampoline_end);
    assert_true(d->switch_start < d->switch_end);
    assert_true(in_library(d->trampoline_start, NULL));
    assert_true(in_library(d->switch_start, NULL));
}

struct phdr_arg {
    uintptr_t want;
    uintptr_t base;
    const char *path;
};

static int find_module(struct dl_phdr_info *info, size_t size, void *data)
{
    struct phdr_arg *a = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && a->want >= lo && a->want < lo + ph->p_memsz) {
            a->base = info->dlpi_addr;
            a->path = info->dlpi_name;
            return 1;
        }
    }
    return 0;
}

/* The descriptor is also the whole of the named ELF section, which survives strip: read the
 * library's section headers from its file, as a reader without symbols does. */
static void test_debug_abi_elf_section(void **state)
{
    struct phdr_arg a = { (uintptr_t)abi(), 0, NULL };
    assert_int_equal(dl_iterate_phdr(find_module, &a), 1);
    assert_non_null(a.path);
    assert_non_null(strstr(a.path, "libcoroscope.so"));
    int fd = open(a.path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char *file = malloc((size_t)st.st_size);
    assert_non_null(file);
    assert_int_equal(pread(fd, file, (size_t)st.st_size, 0), st.st_size);
    close(fd);

    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)file;
    assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
    assert_true(eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) <= (uint64_t)st.st_size);
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(file + eh->e_shoff);
    assert_true(eh->e_shstrndx < eh->e_shnum);
    const char *names = (const char *)file + sh[eh->e_shstrndx].sh_offset;
    int found = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_name < sh[eh->e_shstrndx].sh_size &&
            strcmp(names + sh[i].sh_name, CORO_DEBUG_ABI_SECTION) == 0) {
            found++;
            assert_int_equal(a.base + sh[i].sh_addr, (uintptr_t)abi());
            assert_int_equal(sh[i].sh_size, sizeof(struct coro_debug_abi));
            assert_true(sh[i].sh_flags & SHF_ALLOC);
        }
    }
    assert_int_equal(found, 1);
    free(file);
}

/* ---- records through a coroutine's life ---- */

struct life {
    Coroutine *a, *b;
    uint64_t a_id, b_id;
    int32_t tid;
    int step;
};

static void check_stack_regs(const RecView *v, const char *suspended_in)
{
    const char *sym = NULL;
    assert_int_equal(v->seq % 2, 0);
    assert_true(v->rsp >= v->stack_base && v->rsp < v->stack_base + v->stack_size);
    assert_true(in_library(v->rip, &sym));
    assert_non_null(sym);
    assert_string_equal(sym, suspended_in);
    /* The ABI makes these callee-saved: the saved values are what the process runs with. */
    assert_int_equal(v->mxcsr & 0xffc0, 0x1f80);
    assert_int_equal(v->fpucw & 0x0f3f, 0x033f);
}

static void life_b(void *opaque)
{
    struct life *l = opaque;
    const struct coro_debug_abi *d = abi();
    RecView a = rec_get(l->a_id), b = rec_get(l->b_id);

    /* a entered b: a is nested, with valid saved registers inside coro_enter. */
    assert_int_equal(a.state, CORO_STATE_NESTED);
    check_stack_regs(&a, "coro_enter");
    assert_int_equal(b.state, CORO_STATE_RUNNING);
    assert_int_equal(b.caller, a.addr);
    assert_int_equal(b.switch_count, 1);
    assert_int_equal(b.tid, l->tid);
    uint64_t sh = shard_of(l->tid);
    assert_int_equal(rd64(sh, d->shard_off_current), b.addr);
    l->step = 2;
    coro_yield();
    /* Entered again from the thread's own stack this time. */
    b = rec_get(l->b_id);
    assert_int_equal(b.state, CORO_STATE_RUNNING);
    assert_int_equal(b.caller, 0);
    assert_int_equal(b.switch_count, 2);
    l->step = 4;
}

static void life_a(void *opaque)
{
    struct life *l = opaque;
    const struct coro_debug_abi *d = abi();
    RecView a = rec_get(l->a_id);
    assert_int_equal(a.state, CORO_STATE_RUNNING);
    assert_int_equal(a.caller, 0);
    assert_int_equal(a.switch_count, 1);
    assert_int_equal(a.tid, l->tid);
    assert_int_equal(rd64(shard_of(l->tid), d->shard_off_current), a.addr);
    l->step = 1;
    coro_enter(l->b);
    assert_int_equal(l->step, 2);
    /* b yielded back to us: suspended, valid registers inside coro_yield, no caller. */
    RecView b = rec_get(l->b_id);
    assert_int_equal(b.state, CORO_STATE_SUSPENDED);
    check_stack_regs(&b, "coro_yield");
    assert_int_equal(b.caller, 0);
    a = rec_get(l->a_id);
    assert_int_equal(a.state, CORO_STATE_RUNNING);
    coro_yield();
    l->step = 5;
}

static void test_registry_record_life(void **state)
{
    const struct coro_debug_abi *d = abi();
    struct life l = { .tid = (int32_t)gettid() };
    const char *long_name = "conn-reader-with-a-very-long-name-indeed";
    CoroutineOptions o = { .name = long_name, .stack_size = 64 * 1024 };
    uintptr_t fn_start = (uintptr_t)test_registry_record_life;
    l.a = coro_create(life_a, &l);
    uintptr_t after_a = here();
    l.b = coro_create_opts(life_b, &l, &o);
    uintptr_t after_b = here();
    l.a_id = coro_id(l.a);
    l.b_id = coro_id(l.b);
    coro_set_name(l.a, "a");

    /* Created: never entered, registers aimed at the trampoline's entry at the stack top. */
    RecView a = rec_get(l.a_id), b = rec_get(l.b_id);
    assert_int_equal(a.id, l.a_id);
    assert_string_equal(a.name, "a");
    assert_int_equal(strlen(b.name), 31);
    assert_memory_equal(b.name, long_name, 31);
    assert_int_equal(a.state, CORO_STATE_CREATED);
    assert_int_equal(a.seq % 2, 0);
    assert_true(a.rip > d->trampoline_start && a.rip < d->trampoline_end);
    assert_int_equal(a.rsp, a.stack_base + a.stack_size);
    assert_int_equal(a.stack_size, CORO_DEFAULT_STACK_SIZE);
    assert_int_equal(b.stack_size, 64 * 1024);
    assert_int_equal(a.stack_base % page(), 0);
    assert_int_equal(d->guard_size, page());
    assert_int_equal(a.entry, (uintptr_t)life_a);
    assert_int_equal(b.entry, (uintptr_t)life_b);
    assert_int_equal(a.opaque, (uintptr_t)&l);
    assert_int_equal(a.switch_count, 0);
    assert_int_equal(a.caller, 0);
    assert_int_equal(a.tid, l.tid);
    assert_int_equal(a.generation, d->leak_generation);
    /* Creation site: the return address of each coro_create call, inside this function,
     * just before the next call to here(). */
    assert_true(a.create_site > fn_start && a.create_site < after_a);
    assert_true(after_a - a.create_site < 128);
    assert_true(b.create_site > after_a && b.create_site < after_b);
    assert_true(after_b - b.create_site < 128);
    assert_int_equal(rd64(shard_of(l.tid), d->shard_off_current), 0);

    uint64_t sh = shard_of(l.tid);
    assert_int_not_equal(sh, 0);
    uint64_t created = rd64(sh, d->shard_off_created);
    uint64_t terminated = rd64(sh, d->shard_off_terminated);

    coro_enter(l.a);   /* a runs, enters b, b yields to a, a yields to us */
    assert_int_equal(l.step, 2);
    a = rec_get(l.a_id);
    assert_int_equal(a.state, CORO_STATE_SUSPENDED);
    check_stack_regs(&a, "coro_yield");
    assert_int_equal(rd64(sh, d->shard_off_current), 0);

    coro_enter(l.b);   /* from the thread's own stack */
    assert_int_equal(l.step, 4);
    assert_false(rec_find(l.b_id, &b));  /* terminated: its record is free again */
    assert_int_equal(rd64(sh, d->shard_off_terminated), terminated + 1);
    assert_int_equal(registry_live(), 1);
    coro_enter(l.a);
    assert_int_equal(l.step, 5);
    assert_false(rec_find(l.a_id, &a));
    assert_int_equal(rd64(sh, d->shard_off_created), created);
    assert_int_equal(rd64(sh, d->shard_off_terminated), terminated + 2);
}

/* A record's switch count is the number of times it was entered. */
static void yield_forever(void *opaque)
{
    bool *stop = opaque;
    while (!*stop) {
        coro_yield();
    }
}

static void test_registry_switch_count(void **state)
{
    bool stop = false;
    Coroutine *co = coro_create(yield_forever, &stop);
    for (unsigned i = 1; i <= 10; i++) {
        coro_enter(co);
        RecView v = rec_get(coro_id(co));
        assert_int_equal(v.switch_count, i);
        assert_int_equal(v.state, CORO_STATE_SUSPENDED);
    }
    stop = true;
    coro_enter(co);
}

/* The registry's live records agree with coro_live_count() and the shards' counters; the
 * list grows in whole slabs only and pooled records keep their place. */
static void test_registry_counts_agree(void **state)
{
    enum { N = 500 };
    static Coroutine *cos[N];
    const struct coro_debug_abi *d = abi();
    bool stop = false;
    for (unsigned i = 0; i < N; i++) {
        cos[i] = coro_create(yield_forever, &stop);
        if (i % 3) {
            coro_enter(cos[i]);
        }
    }
    struct count_arg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(rec_walk(count_visit, &c), d->nrecords);
    assert_int_equal(c.live, N);
    assert_int_equal(c.by_state[CORO_STATE_CREATED], (N + 2) / 3);
    assert_int_equal(c.by_state[CORO_STATE_SUSPENDED], N - (N + 2) / 3);
    assert_int_equal(c.by_state[CORO_STATE_FREE], d->nrecords - N);
    assert_int_equal(coro_live_count(), N);

    uint64_t created = 0, terminated = 0, p = d->shards;
    for (uint64_t n = 0; p && n < d->nshards; n++, p = rd64(p, d->shard_off_next)) {
        created += rd64(p, d->shard_off_created);
        terminated += rd64(p, d->shard_off_terminated);
    }
    assert_int_equal(created - terminated, N);

    stop = true;
    for (unsigned i = 0; i < N; i++) {
        coro_enter(cos[i]);
    }
    assert_int_equal(registry_live(), 0);
}

/*
 * nrecords is an upper bound of the reachable records at every instant, so a reader racing a
 * thread that creates coroutines (a new slab every 64) never walks more records than counted.
 * The runtime once linked a slab before counting it: a core or a `ps` taken in between read
 * "64 records of 0" and called the registry corrupt. Readers load `records` and then
 * `nrecords` (docs/debug-abi.md); the writer counts, then links.
 */
enum { RACE_N = 16384 };
static Coroutine *race_cos[RACE_N];
static _Atomic bool race_done;

static void *race_creator(void *arg)
{
    CoroutineOptions o = { .name = "race", .stack_size = 16 * 1024 };
    for (unsigned i = 0; i < RACE_N; i++) {
        race_cos[i] = coro_create_opts(yield_forever, arg, &o);
        assert_non_null(race_cos[i]);
    }
    atomic_store(&race_done, true);
    return NULL;
}

static void test_registry_count_bounds_list_while_creating(void **state)
{
    const struct coro_debug_abi *d = abi();
    bool stop = false;
    pthread_t t;
    atomic_store(&race_done, false);
    assert_int_equal(pthread_create(&t, NULL, race_creator, &stop), 0);
    uint64_t checks = 0, over = 0, last_head = 0;
    while (!atomic_load(&race_done)) {
        uint64_t head = __atomic_load_n(&d->records, __ATOMIC_ACQUIRE);
        uint64_t bound = __atomic_load_n(&d->nrecords, __ATOMIC_ACQUIRE);
        if (head == last_head) {
            continue;
        }
        last_head = head;
        uint64_t n = 0;
        for (uint64_t p = head; p && n <= bound; p = rd64(p, d->off_next)) {
            n++;
        }
        checks++;
        over += n > bound;
    }
    pthread_join(t, NULL);
    printf("# %llu walks while creating, %llu saw more records than nrecords\n",
           (unsigned long long)checks, (unsigned long long)over);
    assert_int_equal(over, 0);
    stop = true;
    for (unsigned i = 0; i < RACE_N; i++) {
        coro_enter(race_cos[i]);
    }
}

/* Live coroutines have distinct ids and separate stacks, each with its guard below. */
static void test_registry_ids_distinct_among_live(void **state)
{
    enum { N = 200 };
    static Coroutine *cos[N];
    bool stop = false;
    for (unsigned i = 0; i < N; i++) {
        cos[i] = coro_create(yield_forever, &stop);
    }
    for (unsigned i = 0; i < N; i++) {
        RecView v = rec_get(coro_id(cos[i]));
        assert_int_equal(v.id, coro_id(cos[i]));
        for (unsigned j = 0; j < i; j++) {
            assert_int_not_equal(coro_id(cos[i]), coro_id(cos[j]));
        }
        /* Distinct stacks that do not overlap their guard pages. */
        if (i) {
            RecView w = rec_get(coro_id(cos[i - 1]));
            assert_true(v.stack_base + v.stack_size <= w.stack_base - abi()->guard_size ||
                        w.stack_base + w.stack_size <= v.stack_base - abi()->guard_size);
        }
    }
    stop = true;
    for (unsigned i = 0; i < N; i++) {
        coro_enter(cos[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_debug_abi_header, no_leftovers),
        cmocka_unit_test_teardown(test_debug_abi_elf_section, no_leftovers),
        cmocka_unit_test_teardown(test_registry_record_life, no_leftovers),
        cmocka_unit_test_teardown(test_registry_switch_count, no_leftovers),
        cmocka_unit_test_teardown(test_registry_counts_agree, no_leftovers),
        cmocka_unit_test_teardown(test_registry_ids_distinct_among_live, no_leftovers),
        cmocka_unit_test_teardown(test_registry_count_bounds_list_while_creating, no_leftovers),
    };
    apply_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
