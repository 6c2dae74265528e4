/* MPS2 board support shared by the firmware and the benchmark: peripherals as QEMU's mps2-an385/386 map them. */
#ifndef MPS2_H
#define MPS2_H

#include <stdint.h>

#define MPS2_UART0 0x40004000u /* CMSDK APB UART: the host link */
#define MPS2_UART1 0x40005000u /* the motor/sensor bus */
#define MPS2_TIMER0 0x40000000u /* CMSDK APB timer, 25 MHz, counting down */
#define MPS2_TIMER_HZ 25000000u
#define MPS2_STACK_PAINT 0xC0FFEE11u

#define MPS2_REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))
#define UART_DATA(b) MPS2_REG(b, 0x0u)
#define UART_STATE(b) MPS2_REG(b, 0x4u) /* bit 0: TX full, bit 1: RX full */
#define UART_CTRL(b) MPS2_REG(b, 0x8u)  /* bit 0: TX enable, bit 1: RX enable */
#define UART_INT(b) MPS2_REG(b, 0xCu)   /* read: status, write 1s: clear; bit 1: RX */
#define UART_BAUDDIV(b) MPS2_REG(b, 0x10u)
#define UART_CTRL_TX 1u
#define UART_CTRL_RX 2u
#define UART_CTRL_RX_IRQ 8u
#define MPS2_IRQ_UART0_RX 0u /* NVIC lines as QEMU's mps2 board wires them (external interrupt n = vector 16 + n) */
#define MPS2_IRQ_UART1_RX 2u
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u) /* set-enable */
#define NVIC_ISPR0 (*(volatile uint32_t *)0xE000E200u) /* set-pending */
#define TIMER_CTRL(b) MPS2_REG(b, 0x0u)
#define TIMER_VALUE(b) MPS2_REG(b, 0x4u)
#define TIMER_RELOAD(b) MPS2_REG(b, 0x8u)

void mps2_exit(int status);       /* end the QEMU run (semihosting SYS_EXIT): 0 success, else failure */
uint32_t mps2_stack_used(void);   /* bytes of the stack ever written since reset (high-water mark) */

static inline void mps2_uart_init(uint32_t base, uint32_t ctrl)
{
    UART_BAUDDIV(base) = 16u; /* QEMU ignores the rate but wants a valid divisor */
    UART_CTRL(base) = ctrl;
}

static inline void mps2_timer_start(void)
{
    TIMER_RELOAD(MPS2_TIMER0) = 0xFFFFFFFFu;
    TIMER_VALUE(MPS2_TIMER0) = 0xFFFFFFFFu;
    TIMER_CTRL(MPS2_TIMER0) = 1u;
}

#endif /* MPS2_H */
