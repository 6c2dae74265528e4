/* The motor controller: framing, replies, host-driven version 1, the watchdog and the main loop.
 * Version 2's episodes and PARAMS are in mc_controller.c. See mc_device.h and docs/protocol.md. */
#include "mc_device.h"

#include <string.h>

#include "mc_robot.h"

/* ------------------------------------------------------------------ sending */

static void host_write(mc_ostream_t *stream, const uint8_t *data, size_t n)
{
    (void)stream;
    hal_host_write(data, n);
}

void mc_send(mc_device_t *d, mc_msg_t *m, uint8_t version)
{
    static uint8_t frame[MC_TX_PAYLOAD + MC_CRC_BYTES]; /* static: the stack stays small (and measured) */
    mc_ostream_t out;
    size_t n;
    out.write = host_write;
    out.ctx = NULL;
    m->version = version;
    m->seq = d->seq++;
    m->t_us = hal_clock_us();
    n = mc_msg_encode(m, frame, MC_TX_PAYLOAD);
    if (n) {
        mc_send_payload(&out, frame, n);
    }
}

/* "<prefix><ms with one decimal> ms<suffix>", cut to MC_FAULT_TEXT_MAX: no printf on the controller. */
static size_t format_ms(char *out, const char *prefix, uint64_t us, const char *suffix)
{
    char digits[12];
    uint32_t tenths = (us > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)us) / 100u, nd = 0; /* 32-bit: no 64-bit divide */
    size_t n = 0;
    const char *s;
    for (s = prefix; *s && n < MC_FAULT_TEXT_MAX; ++s) out[n++] = *s;
    do {
        digits[nd++] = (char)('0' + tenths % 10u);
        tenths /= 10u;
    } while (tenths && nd < sizeof digits);
    if (nd == 1) digits[nd++] = '0';
    while (nd && n < MC_FAULT_TEXT_MAX) {
        out[n++] = digits[--nd];
        if (nd == 1 && n < MC_FAULT_TEXT_MAX) out[n++] = '.';
    }
    for (s = " ms"; *s && n < MC_FAULT_TEXT_MAX; ++s) out[n++] = *s;
    for (s = suffix; *s && n < MC_FAULT_TEXT_MAX; ++s) out[n++] = *s;
    return n;
}

void mc_send_fault(mc_device_t *d, uint8_t version, uint16_t code, const char *text, size_t len)
{
    mc_msg_t *m = &d->out; /* in the device, not on the stack */
    m->type = MC_FAULT;
    m->u.fault.code = code;
    m->u.fault.len = (uint8_t)(len ? len : strlen(text));
    m->u.fault.text = (const uint8_t *)text;
    mc_send(d, m, version);
}

uint8_t mc_flags(const mc_device_t *d)
{
    return (uint8_t)((d->sensors.done ? MC_FLAG_DONE : 0) | (d->fault ? MC_FLAG_FAULT : 0) |
                     (d->stopped ? MC_FLAG_STOPPED : 0));
}

static void send_state(mc_device_t *d, uint8_t version, uint16_t cmd_seq)
{
    mc_msg_t *m = &d->out; /* in the device, not on the stack */
    m->type = MC_STATE;
    m->u.state.cmd_seq = cmd_seq;
    m->u.state.flags = mc_flags(d);
    m->u.state.reward = d->sensors.reward;
    m->u.state.n = METACTL_OBS_DIM;
    m->u.state.obs = (const uint8_t *)d->sensors.obs;
    mc_send(d, m, version);
}

static void send_info(mc_device_t *d, uint8_t version)
{
    mc_msg_t *m = &d->out; /* in the device, not on the stack */
    m->type = MC_INFO;
    m->u.info.obs_dim = METACTL_OBS_DIM;
    m->u.info.act_dim = METACTL_ACT_DIM;
    m->u.info.period_us = MC_PERIOD_US;
    m->u.info.watchdog_us = MC_WATCHDOG_US;
    m->u.info.param_count = METACTL_PARAM_COUNT;
    m->u.info.policy_id = METACTL_POLICY_ID;
    m->u.info.params_crc = d->params_crc;
    m->u.info.max_chunk = MC_MAX_CHUNK;
    m->u.info.caps = 1; /* bit 0: runs its policy on the controller (EPISODE_START) */
    m->u.info.id_len = (uint8_t)(sizeof MC_ROBOT_ID - 1u);
    m->u.info.robot_id = (const uint8_t *)MC_ROBOT_ID;
    mc_send(d, m, version);
}

/* ------------------------------------------------------------------ motors */

int mc_finite(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7F800000u) != 0x7F800000u;
}

/* The motors failed to answer: they are in an unknown state; latch, say so. */
void mc_bus_failure(mc_device_t *d)
{
    const char *why = hal_motors_error();
    d->stopped = d->fault = 1;
    d->wd_armed = 0;
    mc_send_fault(d, d->version, MC_FAULT_BUS, why, 0);
}

int mc_apply(mc_device_t *d, const float *cmd)
{
    if (hal_motors_write(cmd, &d->sensors) != 0) {
        mc_bus_failure(d);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ host-driven (v1) */

static void on_command(mc_device_t *d, const mc_msg_t *m)
{
    float cmd[METACTL_ACT_DIM];
    int i, ok = m->u.command.n == METACTL_ACT_DIM;
    if (d->ep_running) {
        mc_send_fault(d, m->version, MC_FAULT_BUSY, "an on-controller episode is running; COMMAND ignored", 0);
        send_state(d, m->version, m->seq);
        return;
    }
    for (i = 0; ok && i < METACTL_ACT_DIM; ++i) {
        cmd[i] = mc_f32_at(m->u.command.cmd, (size_t)i);
        ok = mc_finite(cmd[i]);
    }
    if (!ok) {
        d->fault = 1;
        if (mc_apply(d, mc_safe_command) == 0) {
            mc_send_fault(d, m->version, MC_FAULT_BAD_COMMAND,
                          m->u.command.n == METACTL_ACT_DIM
                              ? "command rejected (non-finite values); safe command applied"
                              : "command rejected (wrong size); safe command applied",
                          0);
        }
        send_state(d, m->version, m->seq);
        return;
    }
    if (d->stopped) { /* latched until RESET: the motors stay safe whatever the host sends */
        (void)mc_apply(d, mc_safe_command);
        send_state(d, m->version, m->seq);
        return;
    }
    d->wd_armed = 1;
    d->wd_fed_us = hal_clock_us();
    for (i = 0; i < METACTL_ACT_DIM; ++i) {
        cmd[i] = cmd[i] < mc_command_low[i] ? mc_command_low[i] : cmd[i];
        cmd[i] = cmd[i] > mc_command_high[i] ? mc_command_high[i] : cmd[i];
    }
    (void)mc_apply(d, cmd);
    send_state(d, m->version, m->seq);
}

static void on_reset(mc_device_t *d, const mc_msg_t *m)
{
    if (d->ep_running) {
        mc_send_fault(d, m->version, MC_FAULT_BUSY, "an on-controller episode is running; RESET ignored", 0);
    } else if (hal_robot_reset(m->u.reset.seed, &d->sensors) != 0) {
        mc_bus_failure(d);
    } else {
        d->stopped = d->fault = 0;
        d->wd_armed = 0;
    }
    send_state(d, m->version, m->seq);
}

static void on_safe_stop(mc_device_t *d, const mc_msg_t *m)
{
    if (d->ep_running) {
        mc_end_episode(d, MC_END_STOPPED);
    } else {
        (void)mc_apply(d, mc_safe_command);
    }
    d->stopped = 1;
    d->wd_armed = 0;
    send_state(d, m->version, m->seq);
}

static void on_status(mc_device_t *d, const mc_msg_t *m)
{
    mc_msg_t *r = &d->out;
    r->type = MC_STATUS_REPORT;
    r->u.status.cmd_seq = m->seq;
    r->u.status.episodes = d->episodes;
    r->u.status.watchdog_trips = d->trips;
    r->u.status.params_applied = d->applied;
    r->u.status.bad_frames = d->rx.bad_frames + d->rx.oversized_frames;
    r->u.status.feed_us = d->trip_feed_us;
    r->u.status.trip_us = d->trip_us;
    r->u.status.stack_bytes = hal_stack_used();
    r->u.status.overruns = d->overruns;
    mc_send(d, r, MC_V2);
}

static void handle_frame(mc_device_t *d)
{
    mc_msg_t *m = &d->in;
    const mc_decode_t r = mc_msg_decode(d->rx.payload, d->rx.payload_len, m);
    if (r != MC_DECODE_OK) {
        mc_rx_reject(&d->rx);
        if (r == MC_DECODE_VERSION) {
            mc_send_fault(d, MC_V2, MC_FAULT_VERSION, "this controller speaks protocol versions 1 and 2", 0);
        }
        return;
    }
    d->version = m->version;
    switch (m->type) {
    case MC_HELLO: send_info(d, m->version); break;
    case MC_HEARTBEAT: mc_send(d, m, m->version); break;
    case MC_COMMAND: on_command(d, m); break;
    case MC_RESET: on_reset(d, m); break;
    case MC_SAFE_STOP: on_safe_stop(d, m); break;
    case MC_EPISODE_START: mc_on_start(d, m); break;
    case MC_KEEPALIVE:
        if (d->ep_running) d->wd_fed_us = hal_clock_us();
        break;
    case MC_PARAMS: mc_on_params(d, m); break;
    case MC_PARAMS_COMMIT: mc_on_commit(d, m); break;
    case MC_STATUS: on_status(d, m); break;
    default: break; /* robot-to-host types coming from the host are ignored */
    }
}

/* ------------------------------------------------------------------ main loop */

static void watchdog(mc_device_t *d, uint64_t now)
{
    static char text[MC_FAULT_TEXT_MAX];
    size_t n;
    if (!d->wd_armed || now - d->wd_fed_us < MC_WATCHDOG_US) {
        return;
    }
    d->trips++;
    d->trip_feed_us = d->wd_fed_us;
    d->trip_us = now;
    d->wd_armed = 0;
    (void)mc_apply(d, mc_safe_command); /* the motors first, the messages after */
    d->stopped = d->fault = 1;
    n = format_ms(text, d->ep_running ? "no keepalive for " : "no valid command for ", now - d->wd_fed_us,
                  "; motors safe-stopped");
    mc_send_fault(d, d->ep_running ? MC_V2 : d->version, MC_FAULT_WATCHDOG, text, n);
    if (d->ep_running) {
        mc_end_episode(d, MC_END_WATCHDOG);
    }
}

void mc_device_init(mc_device_t *d)
{
    memset(d, 0, sizeof *d);
    mc_rx_init(&d->rx, d->rx_buf, sizeof d->rx_buf);
    d->version = MC_V1;
    d->params_crc = METACTL_PARAMS_CRC;
    memcpy(d->prev_cmd, mc_safe_command, sizeof d->prev_cmd);
}

void mc_device_poll(mc_device_t *d)
{
    int budget = 256; /* bytes per pass, so a flood on the line cannot starve the control tick */
    uint8_t byte;
    uint64_t now, next;
    while (budget > 0 && hal_host_getc(&byte)) {
        budget--;
        if (mc_rx_push(&d->rx, byte) == MC_RX_FRAME) {
            handle_frame(d);
        }
    }
    now = hal_clock_us();
    watchdog(d, now);
    if (d->ep_running && ((d->ep_flags & MC_START_UNPACED) || now >= d->ep_next_us)) {
        mc_tick(d, now);
    }
    if (budget == 0 || (d->ep_running && (d->ep_flags & MC_START_UNPACED))) {
        return; /* more to do at once */
    }
    next = now + 1000u;
    if (d->wd_armed && d->wd_fed_us + MC_WATCHDOG_US < next) next = d->wd_fed_us + MC_WATCHDOG_US;
    if (d->ep_running && d->ep_next_us < next) next = d->ep_next_us;
    hal_idle(next);
}
