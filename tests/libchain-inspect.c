/*
 * Known call chains for tests/test-inspect.c, compiled three times by the Makefile: at -O0
 * (CHAIN=o0) and -O2 (CHAIN=o2) into the test, and at -O2 into libchain-inspect.so (CHAIN=so),
 * so that frames and lines are checked across optimisation levels and a shared library.
 *
 *   chain_a_X (entry) -> chain_b_X -> inline_X (always inlined) -> chain_c_X -> coro_yield
 *
 * Each call sits on one line with a store of __LINE__ before it, so the test knows the line
 * every frame must show without hard-coding it.
 */
#include <coroscope/coro.h>

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(name, CHAIN)

void F(chain_c_)(int depth);
void F(chain_b_)(int depth);
void F(chain_a_)(void *opaque);

/* Lines of the calls, filled as the chain runs. */
int F(line_a_) = 0, F(line_b_) = 0, F(line_inline_) = 0, F(line_c_) = 0;
volatile int F(sink_);

__attribute__((noinline)) void F(chain_c_)(int depth)
{
    F(line_c_) = __LINE__; coro_yield();
    F(sink_) += depth;
}

static inline __attribute__((always_inline)) void F(inline_)(int depth)
{
    F(line_inline_) = __LINE__; F(chain_c_)(depth + 1);
    F(sink_) += depth;
}

__attribute__((noinline)) void F(chain_b_)(int depth)
{
    F(line_b_) = __LINE__; F(inline_)(depth + 1);
    F(sink_) += depth;
}

void F(chain_a_)(void *opaque)
{
    F(line_a_) = __LINE__; F(chain_b_)(1);
    F(sink_) += 1;
}
