/* Cortex-M start-up for the MPS2 boards QEMU models (AN385 Cortex-M3, AN386 Cortex-M4F).
 *
 * The vector table holds the initial stack pointer and the reset handler. Reset enables the FPU
 * (CPACR bits 20-23: without it the first float instruction faults), copies .data from flash, clears
 * .bss, paints the stack (for measuring its high-water mark) and calls main. A fault ends a QEMU
 * run with a failing exit status through semihosting instead of hanging.
 */
#include <stdint.h>

#include "mps2.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack;
extern void _estack(void); /* a linker symbol, declared as a function so it fits the table below */
int main(void);

void mps2_exit(int status)
{
    /* Semihosting SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit (0x20026) or RunTimeErrorUnknown (0x20023). */
    register uint32_t op __asm__("r0") = 0x18u;
    register uint32_t reason __asm__("r1") = status == 0 ? 0x20026u : 0x20023u;
    __asm__ volatile("bkpt 0xab" : : "r"(op), "r"(reason) : "memory");
    for (;;) {
    }
}

uint32_t mps2_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < (const uint32_t *)(uintptr_t)_estack && *p == MPS2_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)_estack - (uintptr_t)p);
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10 and CP11 full access */
    __asm__ volatile("dsb\n\tisb" : : : "memory");
#endif
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    {
        uint32_t sp;
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        for (dst = &_sstack; (uintptr_t)dst < sp - 64u;) { /* below the live frame */
            *dst++ = MPS2_STACK_PAINT;
        }
    }
    mps2_exit(main());
}

static void Fault_Handler(void)
{
    mps2_exit(1);
}

/* The UART receive interrupts; a program that uses them defines these (the firmware does, the benchmark not). */
void mps2_uart0_rx_isr(void) __attribute__((weak, alias("Fault_Handler")));
void mps2_uart1_rx_isr(void) __attribute__((weak, alias("Fault_Handler")));

__attribute__((section(".isr_vector"), used)) void (*const mps2_vectors[16 + 3])(void) = {
    _estack,       Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0,             0,             0,             0,             Fault_Handler,
    Fault_Handler, 0,             Fault_Handler, Fault_Handler,
    /* external interrupts 0..2 */
    mps2_uart0_rx_isr, Fault_Handler, mps2_uart1_rx_isr,
};
