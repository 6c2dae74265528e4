/* MPS2 port (QEMU mps2-an386 / an385): CMSDK UART0 = host link, UART1 = motor/sensor bus, Timer0 = clock.
 *
 * Received bytes are taken by the UARTs' RX interrupts into ring buffers, as real firmware does, so bytes
 * keep arriving while the CPU waits on the bus or runs the policy (a CMSDK UART holds one byte). A full
 * ring masks its interrupt and leaves the byte in the UART until the loop drains the ring (QEMU then
 * holds the line back; silicon would flag an overrun). The main loop polls: a motor controller's loop
 * never sleeps between control ticks, and with QEMU's -icount the device clock then counts executed
 * instructions (2^shift ns each), independent of how busy the workstation is. The firmware sends nothing
 * before the host's first frame, so no byte is lost to a pty that is not open yet (QEMU drops those).
 */
#include "mc_device.h"
#include "mc_hal.h"
#include "mps2.h"

static uint64_t clock_us;
static uint32_t clock_last, clock_rem;

uint64_t hal_clock_us(void)
{
    /* Timer0 counts down at 25 MHz and wraps every 171 s; the loop reads it far more often. */
    const uint32_t now = TIMER_VALUE(MPS2_TIMER0);
    const uint32_t ticks = (clock_last - now) + clock_rem;
    clock_last = now;
    clock_us += ticks / (MPS2_TIMER_HZ / 1000000u);
    clock_rem = ticks % (MPS2_TIMER_HZ / 1000000u);
    return clock_us;
}

#define RING_BYTES 256u /* a power of two */
#define UART_CTRL_ON (UART_CTRL_TX | UART_CTRL_RX | UART_CTRL_RX_IRQ)

typedef struct {
    uint32_t base, irq;
    volatile uint16_t head, tail; /* head: written by the interrupt, tail: by the loop */
    uint8_t data[RING_BYTES];
} ring_t;

static ring_t rings[2]; /* in .bss: no copy of 512 zeros in flash */

static void uart_rx_isr(ring_t *r)
{
    /* Clear first, then drain: a byte that lands after the last check raises the interrupt again. (Draining first
     * and clearing last would lose that interrupt and leave the byte stuck in the UART.) */
    UART_INT(r->base) = 2u;
    while (UART_STATE(r->base) & 2u) {
        const uint16_t head = r->head;
        if ((uint16_t)(head - r->tail) == RING_BYTES) {
            UART_CTRL(r->base) = UART_CTRL_TX | UART_CTRL_RX; /* full: leave the byte, mask until drained */
            break;
        }
        r->data[head % RING_BYTES] = (uint8_t)UART_DATA(r->base);
        r->head = (uint16_t)(head + 1u);
    }
}

void mps2_uart0_rx_isr(void) { uart_rx_isr(&rings[0]); }
void mps2_uart1_rx_isr(void) { uart_rx_isr(&rings[1]); }

static int uart_getc(ring_t *r, uint8_t *byte)
{
    const uint16_t tail = r->tail;
    if (tail == r->head) {
        if (UART_CTRL(r->base) != UART_CTRL_ON) { /* drained after a full ring: take interrupts again, and */
            UART_CTRL(r->base) = UART_CTRL_ON;   /* pend one for the byte left waiting in the UART (it raised none) */
            NVIC_ISPR0 = 1u << r->irq;
        }
        return 0;
    }
    *byte = r->data[tail % RING_BYTES];
    r->tail = (uint16_t)(tail + 1u);
    return 1;
}

static void uart_write(uint32_t base, const uint8_t *data, size_t n)
{
    while (n--) {
        while (UART_STATE(base) & 1u) {
        }
        UART_DATA(base) = *data++;
    }
}

int hal_host_getc(uint8_t *byte) { return uart_getc(&rings[0], byte); }
void hal_host_write(const uint8_t *data, size_t n) { uart_write(MPS2_UART0, data, n); }
int hal_bus_getc(uint8_t *byte) { return uart_getc(&rings[1], byte); }
void hal_bus_write(const uint8_t *data, size_t n) { uart_write(MPS2_UART1, data, n); }

uint32_t hal_stack_used(void)
{
    return mps2_stack_used();
}

void hal_idle(uint64_t until_us)
{
    (void)until_us; /* poll */
}

int main(void)
{
    static mc_device_t device;
    rings[0].base = MPS2_UART0;
    rings[0].irq = MPS2_IRQ_UART0_RX;
    rings[1].base = MPS2_UART1;
    rings[1].irq = MPS2_IRQ_UART1_RX;
    mps2_uart_init(MPS2_UART0, UART_CTRL_ON);
    mps2_uart_init(MPS2_UART1, UART_CTRL_ON);
    NVIC_ISER0 = 1u << MPS2_IRQ_UART0_RX | 1u << MPS2_IRQ_UART1_RX;
    mps2_timer_start();
    clock_last = TIMER_VALUE(MPS2_TIMER0);
    mc_device_init(&device);
    for (;;) {
        mc_device_poll(&device);
    }
}
