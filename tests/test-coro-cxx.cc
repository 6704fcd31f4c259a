// C++ exceptions and coroutines. The C++ runtime keeps the stack of caught exceptions and the
// count of uncaught ones per thread (__cxa_get_globals(), Itanium C++ ABI 2.2.2); coroscope
// gives every coroutine, and every thread's own stack, its own copy of them. So a coroutine
// that yields inside a `catch` rethrows its own exception when it resumes, whatever the other
// coroutines of the thread caught meanwhile, and std::uncaught_exceptions() counts only the
// exceptions in flight in the calling coroutine, also after it moved to another thread.
//
// The coroutines only record what they see; the tests assert on the thread's own stack
// (a failing cmocka assertion longjmps, which must not happen inside a coroutine).
#include <coroscope/coro.h>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include <cmocka.h> // cmocka 1.1 declares most of its functions without extern "C"
}

namespace {

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What the current exception of the calling context is: its what(), "none", or "other".
std::string current_what()
{
    std::exception_ptr p = std::current_exception();
    if (!p) {
        return "none";
    }
    try {
        std::rethrow_exception(p);
    } catch (const std::exception &e) {
        return e.what();
    } catch (...) {
        return "other";
    }
}

// What `throw;` rethrows here (call only inside a catch block).
std::string rethrown_what()
{
    try {
        throw;
    } catch (const std::exception &e) {
        return e.what();
    } catch (...) {
        return "other";
    }
}

std::vector<std::string> seen; // every observation, in order: "who:what"

void see(const char *who, const std::string &what)
{
    seen.push_back(std::string(who) + ":" + what);
}

int setup(void **)
{
    seen.clear();
    return 0;
}

// Every coroutine finished, and the thread's own stack has nothing caught or in flight.
int teardown(void **)
{
    assert_int_equal(coro_live_count(), 0);
    assert_string_equal(current_what().c_str(), "none");
    assert_int_equal(std::uncaught_exceptions(), 0);
    return 0;
}

void expect_seen(const std::vector<std::string> &want)
{
    for (size_t i = 0; i < want.size() || i < seen.size(); i++) {
        const char *w = i < want.size() ? want[i].c_str() : "(nothing)";
        const char *s = i < seen.size() ? seen[i].c_str() : "(nothing)";
        if (std::string(w) != s) {
            print_error("observation %zu: expected \"%s\", got \"%s\"\n", i, w, s);
            for (size_t k = 0; k < seen.size(); k++) {
                print_error("  seen[%zu] = %s\n", k, seen[k].c_str());
            }
            fail();
        }
    }
}

// ---- rethrow after a yield inside catch ----

void catch_and_yield(void *opaque)
{
    const char *name = static_cast<const char *>(opaque);
    try {
        throw Failure(name);
    } catch (const std::exception &) {
        coro_yield(); // the other coroutine throws and catches while we are in here
        see(name, current_what());
        see(name, rethrown_what());
    }
    see(name, current_what());
}

void test_cxx_rethrow_after_yield_in_catch(void **)
{
    Coroutine *a = coro_create(catch_and_yield, const_cast<char *>("A"));
    Coroutine *b = coro_create(catch_and_yield, const_cast<char *>("B"));
    coro_enter(a); // A is inside its catch block, suspended
    coro_enter(b); // so is B, whose exception is the newer one on this thread
    see("thread", current_what());
    coro_enter(a);
    coro_enter(b);
    expect_seen({ "thread:none", "A:A", "A:A", "A:none", "B:B", "B:B", "B:none" });
}

// ---- nested catches across yields, nesting of coroutines, the thread's own catch ----

void inner_coroutine(void *)
{
    see("C", current_what()); // entered from inside A's catch: A's exception is not C's
    try {
        throw Failure("C1");
    } catch (const std::exception &) {
        coro_yield();
        see("C", rethrown_what());
    }
}

void nested_catches(void *opaque)
{
    const char *name = static_cast<const char *>(opaque);
    std::string outer = std::string(name) + "1", inner = std::string(name) + "2";
    try {
        throw Failure(outer);
    } catch (const std::exception &) {
        coro_yield();
        see(name, current_what());
        try {
            throw Failure(inner);
        } catch (const std::exception &) {
            coro_yield();
            see(name, current_what());
            if (name[0] == 'A') {
                // A enters C, which yields back to A inside its own catch block.
                Coroutine *c = coro_create(inner_coroutine, nullptr);
                coro_enter(c);
                see(name, current_what());
                coro_yield();
                coro_enter(c);
            }
            see(name, rethrown_what());
        }
        coro_yield();
        see(name, rethrown_what());
    }
}

void test_cxx_nested_catches_across_yields(void **)
{
    Coroutine *a = coro_create(nested_catches, const_cast<char *>("A"));
    Coroutine *b = coro_create(nested_catches, const_cast<char *>("B"));
    try {
        throw Failure("T");
    } catch (const std::exception &) {
        // The thread's own stack is inside a catch block too, while they run.
        coro_enter(a); // both yield inside their outer catch
        coro_enter(b);
        see("thread", current_what());
        coro_enter(a); // both yield inside their inner catch
        coro_enter(b);
        see("thread", current_what());
        coro_enter(a); // A enters C, C yields inside its catch, A yields inside its inner one
        coro_enter(b); // B leaves its inner catch, yields inside its outer one
        see("thread", current_what());
        coro_enter(a); // A resumes C, which finishes; A yields inside its outer catch
        coro_enter(b); // B finishes
        see("thread", current_what());
        coro_enter(a); // A finishes
        see("thread", rethrown_what());
    }
    expect_seen({
        "thread:T",
        "A:A1", "B:B1", "thread:T",
        "A:A2", "C:none", "A:A2", "B:B2", "B:B2", "thread:T",
        "C:C1", "A:A2", "B:B1", "thread:T",
        "A:A1", "thread:T",
    });
}

// ---- std::uncaught_exceptions() in a destructor during unwinding, across a migration ----

struct UnwindLog {
    int dtor_before = -1, dtor_after = -1, in_catch = -1, at_end = -1;
    pid_t dtor_tid_before = 0, dtor_tid_after = 0;
    std::string caught;
    int b_start = -1, b_dtor = -1, b_in_catch = -1;
    int thread_own_before = -1, thread_own_after = -1;
    std::string thread_current_after;
    pid_t other_tid = 0;
};

UnwindLog ulog;

// Destroyed while its coroutine's exception unwinds the stack: yields in the middle of that.
struct YieldingProbe {
    ~YieldingProbe()
    {
        ulog.dtor_before = std::uncaught_exceptions();
        ulog.dtor_tid_before = gettid();
        coro_yield(); // another coroutine throws here; then another thread resumes us
        ulog.dtor_after = std::uncaught_exceptions();
        ulog.dtor_tid_after = gettid();
    }
};

struct Probe {
    int *out;
    ~Probe() { *out = std::uncaught_exceptions(); }
};

void unwinding_coroutine(void *)
{
    try {
        YieldingProbe p;
        throw Failure("A");
    } catch (const std::exception &e) {
        ulog.in_catch = std::uncaught_exceptions();
        ulog.caught = e.what();
    }
    ulog.at_end = std::uncaught_exceptions();
}

void throwing_coroutine(void *)
{
    ulog.b_start = std::uncaught_exceptions();
    try {
        Probe p{ &ulog.b_dtor };
        throw Failure("B");
    } catch (const std::exception &) {
        ulog.b_in_catch = std::uncaught_exceptions();
    }
}

void *resume_on_other_thread(void *opaque)
{
    ulog.other_tid = gettid();
    ulog.thread_own_before = std::uncaught_exceptions();
    coro_enter(static_cast<Coroutine *>(opaque)); // finishes the unwinding, and the coroutine
    ulog.thread_own_after = std::uncaught_exceptions();
    ulog.thread_current_after = current_what();
    return nullptr;
}

void test_cxx_uncaught_exceptions_across_migration(void **)
{
    ulog = UnwindLog();
    Coroutine *a = coro_create(unwinding_coroutine, nullptr);
    coro_enter(a); // A's exception is in flight; A is suspended inside a destructor
    assert_int_equal(ulog.dtor_before, 1);
    assert_int_equal(std::uncaught_exceptions(), 0); // A's exception is not this stack's

    coro_enter(coro_create(throwing_coroutine, nullptr)); // B throws and catches, on this thread
    assert_int_equal(ulog.b_start, 0);
    assert_int_equal(ulog.b_dtor, 1);
    assert_int_equal(ulog.b_in_catch, 0);
    assert_int_equal(std::uncaught_exceptions(), 0);

    pthread_t t;
    assert_int_equal(pthread_create(&t, nullptr, resume_on_other_thread, a), 0);
    assert_int_equal(pthread_join(t, nullptr), 0);
    assert_int_equal(ulog.dtor_tid_before, gettid());
    assert_int_equal(ulog.dtor_tid_after, ulog.other_tid); // it did move
    assert_int_equal(ulog.dtor_after, 1);                  // still its own exception in flight
    assert_int_equal(ulog.in_catch, 0);
    assert_string_equal(ulog.caught.c_str(), "A");
    assert_int_equal(ulog.at_end, 0);
    assert_int_equal(ulog.thread_own_before, 0);
    assert_int_equal(ulog.thread_own_after, 0); // the other thread's own count is untouched
    assert_string_equal(ulog.thread_current_after.c_str(), "none");
}

// ---- many coroutines handed between two threads, each yielding inside its catch ----

struct Worker {
    Coroutine *co;
    int id, rounds, wrong; // wrong: observations that were not this coroutine's own state
    bool done;
};

void worker_coroutine(void *opaque)
{
    Worker *w = static_cast<Worker *>(opaque);
    std::string mine = "w" + std::to_string(w->id);
    for (int r = 0; r < w->rounds; r++) {
        try {
            throw Failure(mine);
        } catch (const std::exception &) {
            coro_yield(); // resumed by whichever thread takes it next
            if (current_what() != mine || rethrown_what() != mine ||
                std::uncaught_exceptions() != 0) {
                w->wrong++;
            }
        }
    }
    w->done = true;
}

struct RunQueue {
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    std::vector<Worker *> ready;
    size_t left = 0;
};

void *run_queue(void *opaque)
{
    RunQueue *q = static_cast<RunQueue *>(opaque);
    for (;;) {
        pthread_mutex_lock(&q->lock);
        if (q->left == 0) {
            pthread_mutex_unlock(&q->lock);
            return nullptr;
        }
        Worker *w = nullptr;
        if (!q->ready.empty()) {
            w = q->ready.front();
            q->ready.erase(q->ready.begin());
        }
        pthread_mutex_unlock(&q->lock);
        if (!w) {
            sched_yield();
            continue;
        }
        coro_enter(w->co);
        pthread_mutex_lock(&q->lock);
        if (w->done) {
            q->left--;
        } else {
            q->ready.push_back(w);
        }
        pthread_mutex_unlock(&q->lock);
    }
}

void test_cxx_exception_state_migrates_with_coroutines(void **)
{
    std::vector<Worker> workers(16);
    RunQueue q;
    for (size_t i = 0; i < workers.size(); i++) {
        workers[i] = Worker{ coro_create(worker_coroutine, &workers[i]), (int)i, 200, 0, false };
        q.ready.push_back(&workers[i]);
    }
    q.left = workers.size();
    pthread_t t;
    assert_int_equal(pthread_create(&t, nullptr, run_queue, &q), 0);
    run_queue(&q);
    assert_int_equal(pthread_join(t, nullptr), 0);
    for (const Worker &w : workers) {
        assert_true(w.done);
        assert_int_equal(w.wrong, 0);
    }
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cxx_rethrow_after_yield_in_catch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cxx_nested_catches_across_yields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cxx_uncaught_exceptions_across_migration, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cxx_exception_state_migrates_with_coroutines, setup,
                                        teardown),
    };
    const char *f = getenv("CORO_TEST_FILTER");
    if (f && *f) {
        cmocka_set_test_filter(f);
    }
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
