/* The motor controller's protocol logic, versions 1 and 2. See mc_device.h and docs/protocol.md. */
#include "mc_device.h"

#include <string.h>

#include "mc_robot.h"

/* ------------------------------------------------------------------ sending */

static void host_write(mc_ostream_t *stream, const uint8_t *data, size_t n)
{
    (void)stream;
    hal_host_write(data, n);
}

static void send(mc_device_t *d, mc_msg_t *m, uint8_t version)
{
    uint8_t payload[MC_TX_PAYLOAD];
    mc_ostream_t out;
    size_t n;
    out.write = host_write;
    out.ctx = NULL;
    m->version = version;
    m->seq = d->seq++;
    m->t_us = hal_clock_us();
    n = mc_msg_encode(m, payload, sizeof payload);
    if (n) {
        mc_send_payload(&out, payload, n);
    }
}

/* "<prefix><ms with one decimal> ms<suffix>", cut to MC_FAULT_TEXT_MAX: no printf on the controller. */
static size_t format_ms(char *out, const char *prefix, uint64_t us, const char *suffix)
{
    char digits[12];
    uint32_t tenths = (uint32_t)(us / 100u), nd = 0;
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

static void send_fault(mc_device_t *d, uint8_t version, uint16_t code, const char *text, size_t len)
{
    mc_msg_t m;
    m.type = MC_FAULT;
    m.u.fault.code = code;
    m.u.fault.len = (uint8_t)(len ? len : strlen(text));
    m.u.fault.text = (const uint8_t *)text;
    send(d, &m, version);
}

static uint8_t flags(const mc_device_t *d)
{
    return (uint8_t)((d->sensors.done ? MC_FLAG_DONE : 0) | (d->fault ? MC_FLAG_FAULT : 0) |
                     (d->stopped ? MC_FLAG_STOPPED : 0));
}

static void send_state(mc_device_t *d, uint8_t version, uint16_t cmd_seq)
{
    mc_msg_t m;
    m.type = MC_STATE;
    m.u.state.cmd_seq = cmd_seq;
    m.u.state.flags = flags(d);
    m.u.state.reward = d->sensors.reward;
    m.u.state.n = METACTL_OBS_DIM;
    m.u.state.obs = (const uint8_t *)d->sensors.obs;
    send(d, &m, version);
}

static void send_info(mc_device_t *d, uint8_t version)
{
    mc_msg_t m;
    m.type = MC_INFO;
    m.u.info.obs_dim = METACTL_OBS_DIM;
    m.u.info.act_dim = METACTL_ACT_DIM;
    m.u.info.period_us = MC_PERIOD_US;
    m.u.info.watchdog_us = MC_WATCHDOG_US;
    m.u.info.param_count = METACTL_PARAM_COUNT;
    m.u.info.policy_id = METACTL_POLICY_ID;
    m.u.info.params_crc = d->params_crc;
    m.u.info.max_chunk = MC_MAX_CHUNK;
    m.u.info.caps = 1; /* bit 0: runs its policy on the controller (EPISODE_START) */
    m.u.info.id_len = (uint8_t)(sizeof MC_ROBOT_ID - 1u);
    m.u.info.robot_id = (const uint8_t *)MC_ROBOT_ID;
    send(d, &m, version);
}

static void send_end(mc_device_t *d, uint16_t episode_seq, uint8_t status)
{
    mc_msg_t m;
    m.type = MC_EPISODE_END;
    m.u.end.episode_seq = episode_seq;
    m.u.end.status = status;
    m.u.end.steps = status == MC_END_REFUSED ? 0u : d->ep_step;
    m.u.end.episode_return = status == MC_END_REFUSED ? 0.0 : d->ep_return;
    m.u.end.params_crc = d->params_crc;
    send(d, &m, MC_V2);
}

static void send_ack(mc_device_t *d, uint16_t cmd_seq, uint8_t status)
{
    mc_msg_t m;
    m.type = MC_PARAMS_ACK;
    m.u.ack.cmd_seq = cmd_seq;
    m.u.ack.status = status;
    m.u.ack.staged = d->staged;
    m.u.ack.params_crc = d->params_crc;
    send(d, &m, MC_V2);
}

/* ------------------------------------------------------------------ motors */

static int finite(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7F800000u) != 0x7F800000u;
}

/* The motors failed to answer: they are in an unknown state; latch, say so. */
static void bus_failure(mc_device_t *d)
{
    const char *why = hal_motors_error();
    d->stopped = d->fault = 1;
    d->wd_armed = 0;
    send_fault(d, d->version, MC_FAULT_BUS, why, 0);
}

static int apply(mc_device_t *d, const float *cmd)
{
    if (hal_motors_write(cmd, &d->sensors) != 0) {
        bus_failure(d);
        return -1;
    }
    return 0;
}

/* The controller's safety layer, as deploy/safety.py: a non-finite command becomes the safe command, the
 * rest is clipped to the command limits, then to the allowed change from the previous command. */
static void guard(mc_device_t *d, const float *in, float *out)
{
    int i;
    for (i = 0; i < METACTL_ACT_DIM; ++i) {
        if (!finite(in[i])) {
            memcpy(out, mc_safe_command, sizeof d->prev_cmd);
            memcpy(d->prev_cmd, out, sizeof d->prev_cmd);
            return;
        }
    }
    for (i = 0; i < METACTL_ACT_DIM; ++i) {
        float v = in[i] < mc_command_low[i] ? mc_command_low[i] : in[i];
        v = v > mc_command_high[i] ? mc_command_high[i] : v;
#if MC_HAS_MAX_CHANGE
        {
            const float lo = d->prev_cmd[i] - mc_max_change[i], hi = d->prev_cmd[i] + mc_max_change[i];
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
        }
#endif
        out[i] = v;
    }
    memcpy(d->prev_cmd, out, sizeof d->prev_cmd);
}

/* ------------------------------------------------------------------ episodes */

static void end_episode(mc_device_t *d, uint8_t status)
{
    d->ep_running = 0;
    d->wd_armed = 0;
    if (status != MC_END_BUS && status != MC_END_WATCHDOG) {
        (void)apply(d, mc_safe_command); /* hold still between episodes */
    }
    d->stopped = 1;
    send_end(d, d->ep_seq, status);
}

static void tick(mc_device_t *d, uint64_t now)
{
    float obs[METACTL_OBS_DIM], action[METACTL_ACT_DIM], cmd[METACTL_ACT_DIM];
    memcpy(obs, d->sensors.obs, sizeof obs);
    metactl_policy(obs, action);
    guard(d, action, cmd);
    if (apply(d, cmd) != 0) {
        end_episode(d, MC_END_BUS);
        return;
    }
    d->ep_return += d->sensors.reward;
    if (d->ep_flags & MC_START_STREAM) {
        mc_msg_t m;
        m.type = MC_STEP;
        m.u.step.episode_seq = d->ep_seq;
        m.u.step.step = d->ep_step;
        m.u.step.flags = flags(d);
        m.u.step.reward = d->sensors.reward;
        m.u.step.n_obs = METACTL_OBS_DIM;
        m.u.step.n_act = METACTL_ACT_DIM;
        m.u.step.obs = (const uint8_t *)obs;
        m.u.step.act = (const uint8_t *)cmd;
        send(d, &m, MC_V2);
    }
    d->ep_step++;
    if (d->sensors.done || d->ep_step >= d->ep_steps) {
        end_episode(d, d->sensors.done ? MC_END_DONE : MC_END_COMPLETED);
        return;
    }
    d->ep_next_us += MC_PERIOD_US;
    if (d->ep_next_us + MC_PERIOD_US <= now) { /* more than a period late: count it, do not burst */
        d->overruns++;
        d->ep_next_us = now;
    }
}

static void on_start(mc_device_t *d, const mc_msg_t *m)
{
    const mc_episode_start_t *s = &m->u.start;
    if (d->ep_running || s->steps == 0 || ((s->flags & MC_START_UNPACED) && !MC_ALLOW_UNPACED)) {
        send_end(d, m->seq, MC_END_REFUSED);
        return;
    }
    d->ep_seq = m->seq;
    d->ep_step = 0;
    d->ep_return = 0.0;
    if (hal_robot_reset(s->seed, &d->sensors) != 0) {
        bus_failure(d);
        send_end(d, m->seq, MC_END_BUS);
        return;
    }
    d->stopped = d->fault = 0;
    d->ep_running = 1;
    d->ep_steps = s->steps;
    d->ep_flags = s->flags;
    memcpy(d->prev_cmd, mc_safe_command, sizeof d->prev_cmd);
    d->wd_armed = 1;
    d->wd_fed_us = d->ep_next_us = hal_clock_us();
    d->episodes++;
}

/* ------------------------------------------------------------------ parameters */

static void on_params(mc_device_t *d, const mc_msg_t *m)
{
    const mc_params_t *p = &m->u.params;
    if (d->ep_running) {
        send_ack(d, m->seq, MC_ACK_BUSY);
        return;
    }
    if (p->offset == 0) {
        d->staged = 0; /* a new upload */
    }
    if (p->offset != d->staged) {
        send_ack(d, m->seq, MC_ACK_BAD_OFFSET);
        return;
    }
    if ((uint32_t)p->n > METACTL_PARAM_COUNT - p->offset) {
        send_ack(d, m->seq, MC_ACK_BAD_SIZE);
        return;
    }
    memcpy(d->staging + p->offset, p->values, 4u * p->n);
    d->staged += p->n;
    send_ack(d, m->seq, MC_ACK_STAGED);
}

static void on_commit(mc_device_t *d, const mc_msg_t *m)
{
    const mc_params_commit_t *c = &m->u.commit;
    uint8_t status = MC_ACK_APPLIED;
    uint32_t i;
    if (d->ep_running) {
        status = MC_ACK_BUSY; /* only between episodes: an episode never sees two parameter vectors */
    } else if (c->count != METACTL_PARAM_COUNT) {
        status = MC_ACK_BAD_SIZE;
    } else if (d->staged != c->count) {
        status = MC_ACK_INCOMPLETE;
    } else if (mc_crc32(0, (const uint8_t *)d->staging, 4u * c->count) != c->crc) {
        status = MC_ACK_BAD_CRC;
    } else {
        for (i = 0; i < c->count; ++i) {
            if (!finite(d->staging[i])) {
                status = MC_ACK_NON_FINITE;
                break;
            }
        }
    }
    if (status == MC_ACK_APPLIED) {
        memcpy(metactl_params, d->staging, sizeof d->staging);
        d->params_crc = c->crc;
        d->applied++;
    }
    if (status != MC_ACK_BUSY) {
        d->staged = 0;
    }
    send_ack(d, m->seq, status);
}

/* ------------------------------------------------------------------ host-driven (v1) */

static void on_command(mc_device_t *d, const mc_msg_t *m)
{
    float cmd[METACTL_ACT_DIM];
    int i, ok = m->u.command.n == METACTL_ACT_DIM;
    if (d->ep_running) {
        send_fault(d, m->version, MC_FAULT_BUSY, "an on-controller episode is running; COMMAND ignored", 0);
        send_state(d, m->version, m->seq);
        return;
    }
    for (i = 0; ok && i < METACTL_ACT_DIM; ++i) {
        cmd[i] = mc_f32_at(m->u.command.cmd, (size_t)i);
        ok = finite(cmd[i]);
    }
    if (!ok) {
        d->fault = 1;
        if (apply(d, mc_safe_command) == 0) {
            send_fault(d, m->version, MC_FAULT_BAD_COMMAND,
                       m->u.command.n == METACTL_ACT_DIM ? "command rejected (non-finite values); safe command applied"
                                                         : "command rejected (wrong size); safe command applied",
                       0);
        }
        send_state(d, m->version, m->seq);
        return;
    }
    if (d->stopped) { /* latched until RESET: the motors stay safe whatever the host sends */
        (void)apply(d, mc_safe_command);
        send_state(d, m->version, m->seq);
        return;
    }
    d->wd_armed = 1;
    d->wd_fed_us = hal_clock_us();
    for (i = 0; i < METACTL_ACT_DIM; ++i) {
        cmd[i] = cmd[i] < mc_command_low[i] ? mc_command_low[i] : cmd[i];
        cmd[i] = cmd[i] > mc_command_high[i] ? mc_command_high[i] : cmd[i];
    }
    (void)apply(d, cmd);
    send_state(d, m->version, m->seq);
}

static void on_reset(mc_device_t *d, const mc_msg_t *m)
{
    if (d->ep_running) {
        send_fault(d, m->version, MC_FAULT_BUSY, "an on-controller episode is running; RESET ignored", 0);
    } else if (hal_robot_reset(m->u.reset.seed, &d->sensors) != 0) {
        bus_failure(d);
    } else {
        d->stopped = d->fault = 0;
        d->wd_armed = 0;
    }
    send_state(d, m->version, m->seq);
}

static void on_safe_stop(mc_device_t *d, const mc_msg_t *m)
{
    if (d->ep_running) {
        end_episode(d, MC_END_STOPPED);
    } else {
        (void)apply(d, mc_safe_command);
    }
    d->stopped = 1;
    d->wd_armed = 0;
    send_state(d, m->version, m->seq);
}

static void on_status(mc_device_t *d, const mc_msg_t *m)
{
    mc_msg_t r;
    r.type = MC_STATUS_REPORT;
    r.u.status.cmd_seq = m->seq;
    r.u.status.episodes = d->episodes;
    r.u.status.watchdog_trips = d->trips;
    r.u.status.params_applied = d->applied;
    r.u.status.bad_frames = d->rx.bad_frames + d->rx.oversized_frames;
    r.u.status.feed_us = d->trip_feed_us;
    r.u.status.trip_us = d->trip_us;
    send(d, &r, MC_V2);
}

static void handle_frame(mc_device_t *d)
{
    mc_msg_t m;
    const mc_decode_t r = mc_msg_decode(d->rx.payload, d->rx.payload_len, &m);
    if (r != MC_DECODE_OK) {
        mc_rx_reject(&d->rx);
        if (r == MC_DECODE_VERSION) {
            send_fault(d, MC_V2, MC_FAULT_VERSION, "this controller speaks protocol versions 1 and 2", 0);
        }
        return;
    }
    d->version = m.version;
    switch (m.type) {
    case MC_HELLO: send_info(d, m.version); break;
    case MC_HEARTBEAT: send(d, &m, m.version); break;
    case MC_COMMAND: on_command(d, &m); break;
    case MC_RESET: on_reset(d, &m); break;
    case MC_SAFE_STOP: on_safe_stop(d, &m); break;
    case MC_EPISODE_START: on_start(d, &m); break;
    case MC_KEEPALIVE:
        if (d->ep_running) d->wd_fed_us = hal_clock_us();
        break;
    case MC_PARAMS: on_params(d, &m); break;
    case MC_PARAMS_COMMIT: on_commit(d, &m); break;
    case MC_STATUS: on_status(d, &m); break;
    default: break; /* robot-to-host types coming from the host are ignored */
    }
}

/* ------------------------------------------------------------------ main loop */

static void watchdog(mc_device_t *d, uint64_t now)
{
    char text[MC_FAULT_TEXT_MAX];
    size_t n;
    if (!d->wd_armed || now - d->wd_fed_us < MC_WATCHDOG_US) {
        return;
    }
    d->trips++;
    d->trip_feed_us = d->wd_fed_us;
    d->trip_us = now;
    d->wd_armed = 0;
    (void)apply(d, mc_safe_command); /* the motors first, the messages after */
    d->stopped = d->fault = 1;
    n = format_ms(text, d->ep_running ? "no keepalive for " : "no valid command for ", now - d->wd_fed_us,
                  "; motors safe-stopped");
    send_fault(d, d->ep_running ? MC_V2 : d->version, MC_FAULT_WATCHDOG, text, n);
    if (d->ep_running) {
        end_episode(d, MC_END_WATCHDOG);
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
        tick(d, now);
    }
    if (budget == 0 || (d->ep_running && (d->ep_flags & MC_START_UNPACED))) {
        return; /* more to do at once */
    }
    next = now + 1000u;
    if (d->wd_armed && d->wd_fed_us + MC_WATCHDOG_US < next) next = d->wd_fed_us + MC_WATCHDOG_US;
    if (d->ep_running && d->ep_next_us < next) next = d->ep_next_us;
    hal_idle(next);
}
