/* Inference benchmark on the MPS2 board, for QEMU with -icount shift=0 (one instruction = 1 ns of guest time).
 *
 * For every candidate policy function of bench_data.h (metactl's, and emlearn's where it can express the
 * network) it times BENCH_CALLS calls on the recorded observations with CMSDK Timer0 (25 MHz: one tick =
 * 40 instructions), after an empty function through the same call path (its count is the loop's overhead),
 * then prints every candidate's actions for every observation as float bits, so the host checks parity with
 * onnxruntime on the exact binary that was timed. Output goes to UART0; the run ends with semihosting exit.
 */
#include <stdint.h>

#include "bench_data.h"
#include "mps2.h"
#include "policy.h"

static void put_char(char c)
{
    while (UART_STATE(MPS2_UART0) & 1u) {
    }
    UART_DATA(MPS2_UART0) = (uint8_t)c;
}

static void put_str(const char *s)
{
    while (*s) put_char(*s++);
}

static void put_hex(uint32_t v)
{
    int shift;
    for (shift = 28; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(v >> shift) & 15u]);
}

static void nop_policy(const float *obs, float *action)
{
    (void)obs;
    (void)action;
    __asm__ volatile("" : : : "memory");
}

static uint32_t measure(bench_policy_fn fn)
{
    float action[METACTL_ACT_DIM];
    uint32_t i, t0, t1;
    fn(bench_obs[0], action); /* warm-up: the same path the timed calls take */
    t0 = TIMER_VALUE(MPS2_TIMER0);
    for (i = 0; i < BENCH_CALLS; ++i) {
        fn(bench_obs[i % BENCH_SAMPLES], action);
    }
    t1 = TIMER_VALUE(MPS2_TIMER0);
    return t0 - t1; /* the timer counts down */
}

static void report(const char *name, bench_policy_fn fn)
{
    float action[METACTL_ACT_DIM];
    uint32_t i, j, bits;
    put_str("time ");
    put_str(name);
    put_char(' ');
    put_hex(measure(fn));
    put_char('\n');
    for (i = 0; i < BENCH_SAMPLES; ++i) {
        fn(bench_obs[i], action);
        put_str("out ");
        put_str(name);
        for (j = 0; j < METACTL_ACT_DIM; ++j) {
            __builtin_memcpy(&bits, &action[j], sizeof bits);
            put_char(' ');
            put_hex(bits);
        }
        put_char('\n');
    }
}

int main(void)
{
    static const struct {
        const char *name;
        bench_policy_fn fn;
    } candidates[] = BENCH_CANDIDATES;
    size_t k;
    mps2_uart_init(MPS2_UART0, UART_CTRL_TX);
    mps2_timer_start();
    report("nop", nop_policy);
    for (k = 0; k < sizeof candidates / sizeof candidates[0]; ++k) {
        report(candidates[k].name, candidates[k].fn);
    }
    put_str("stack ");
    put_hex(mps2_stack_used());
    put_str("\ncalls ");
    put_hex(BENCH_CALLS);
    put_str("\nend\n");
    return 0;
}
