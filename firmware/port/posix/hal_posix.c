/* POSIX port: the firmware as a process, its two UARTs as pseudo-terminals (system gcc, no hardware).
 *
 * At start it opens two ptys and prints their device paths in the words QEMU uses for -serial pty
 * ("char device redirected to /dev/pts/N (label serial0)"), so one launcher drives this process and
 * the Cortex-M build in QEMU alike: serial0 is the host link, serial1 the motor/sensor bus. The clock
 * is CLOCK_MONOTONIC; idling is one poll() on both lines until the next deadline. SIGTERM/SIGINT end
 * the process (a power cut: the plant keeps the motors' last command, as real drivers would).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mc_device.h"
#include "mc_hal.h"

typedef struct {
    int master, slave; /* we hold the slave open too, so reads never fail with EIO while no peer is there */
    uint8_t buf[256];
    size_t len, pos;
} line_t;

static line_t lines[2];
static volatile sig_atomic_t stop_requested;

static void on_signal(int signum)
{
    (void)signum;
    stop_requested = 1;
}

static void open_line(line_t *line, int index)
{
    struct termios tio;
    const char *name;
    line->master = posix_openpt(O_RDWR | O_NOCTTY);
    if (line->master < 0 || grantpt(line->master) != 0 || unlockpt(line->master) != 0 ||
        (name = ptsname(line->master)) == NULL) {
        perror("metactl-fw: cannot open a pty");
        exit(1);
    }
    line->slave = open(name, O_RDWR | O_NOCTTY);
    if (line->slave < 0 || tcgetattr(line->slave, &tio) != 0) {
        perror("metactl-fw: cannot open the pty's device");
        exit(1);
    }
    /* raw: a byte pipe like a UART, no echo, no line editing, no CR/LF translation */
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag = (tio.c_cflag & ~(tcflag_t)(CSIZE | PARENB)) | CS8;
    tcsetattr(line->slave, TCSANOW, &tio);
    fcntl(line->master, F_SETFL, fcntl(line->master, F_GETFL) | O_NONBLOCK);
    printf("char device redirected to %s (label serial%d)\n", name, index);
    fflush(stdout);
}

static int line_getc(line_t *line, uint8_t *byte)
{
    if (line->pos == line->len) {
        const ssize_t n = read(line->master, line->buf, sizeof line->buf);
        if (n <= 0) {
            return 0; /* EAGAIN: nothing there */
        }
        line->len = (size_t)n;
        line->pos = 0;
    }
    *byte = line->buf[line->pos++];
    return 1;
}

static void line_write(line_t *line, const uint8_t *data, size_t n)
{
    while (n) {
        const ssize_t k = write(line->master, data, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN: nobody reads the line and its buffer is full; a UART drops the bytes too */
        }
        data += k;
        n -= (size_t)k;
    }
}

uint64_t hal_clock_us(void)
{
    static uint64_t t0;
    struct timespec ts;
    uint64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (t0 == 0) t0 = now;
    return now - t0;
}

int hal_host_getc(uint8_t *byte) { return line_getc(&lines[0], byte); }
void hal_host_write(const uint8_t *data, size_t n) { line_write(&lines[0], data, n); }
int hal_bus_getc(uint8_t *byte) { return line_getc(&lines[1], byte); }
void hal_bus_write(const uint8_t *data, size_t n) { line_write(&lines[1], data, n); }

uint32_t hal_stack_used(void)
{
    return 0; /* a process's stack is the OS's business */
}

void hal_idle(uint64_t until_us)
{
    struct pollfd fds[1];
    const uint64_t now = hal_clock_us();
    if (until_us <= now || lines[0].pos < lines[0].len) {
        return;
    }
    fds[0].fd = lines[0].master;
    fds[0].events = POLLIN;
    poll(fds, 1, (int)((until_us - now + 999u) / 1000u));
}

int main(void)
{
    static mc_device_t device; /* static: no big object on the stack, as on the controller */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    open_line(&lines[0], 0);
    open_line(&lines[1], 1);
    mc_device_init(&device);
    while (!stop_requested) {
        mc_device_poll(&device);
    }
    return 0;
}
