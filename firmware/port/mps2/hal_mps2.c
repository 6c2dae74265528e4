/* MPS2 port (QEMU mps2-an386 / an385): CMSDK UART0 = host link, UART1 = motor/sensor bus, Timer0 = clock.
 *
 * The main loop polls: a motor controller's loop never sleeps between control ticks, and with QEMU's
 * -icount the device clock then counts executed instructions (2^shift ns each), independent of how
 * busy the workstation is. The firmware sends nothing before the host's first frame, so no byte is
 * lost to a pty that is not open yet (QEMU drops those).
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

static int uart_getc(uint32_t base, uint8_t *byte)
{
    if (!(UART_STATE(base) & 2u)) {
        return 0;
    }
    *byte = (uint8_t)UART_DATA(base);
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

int hal_host_getc(uint8_t *byte) { return uart_getc(MPS2_UART0, byte); }
void hal_host_write(const uint8_t *data, size_t n) { uart_write(MPS2_UART0, data, n); }
int hal_bus_getc(uint8_t *byte) { return uart_getc(MPS2_UART1, byte); }
void hal_bus_write(const uint8_t *data, size_t n) { uart_write(MPS2_UART1, data, n); }

void hal_idle(uint64_t until_us)
{
    (void)until_us; /* poll */
}

int main(void)
{
    static mc_device_t device;
    mps2_uart_init(MPS2_UART0);
    mps2_uart_init(MPS2_UART1);
    mps2_timer_start();
    clock_last = TIMER_VALUE(MPS2_TIMER0);
    mc_device_init(&device);
    for (;;) {
        mc_device_poll(&device);
    }
}
