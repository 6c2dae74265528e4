/* Protocol v2 on the controller: the policy's control tick, episodes and PARAMS uploads. See mc_device.h. */
#include <string.h>

#include "mc_device.h"
#include "mc_robot.h"

static void send_end(mc_device_t *d, uint16_t episode_seq, uint8_t status)
{
    mc_msg_t *m = &d->out; /* in the device, not on the stack */
    m->type = MC_EPISODE_END;
    m->u.end.episode_seq = episode_seq;
    m->u.end.status = status;
    m->u.end.steps = status == MC_END_REFUSED ? 0u : d->ep_step;
    m->u.end.episode_return = status == MC_END_REFUSED ? 0.0 : d->ep_return;
    m->u.end.params_crc = d->params_crc;
    mc_send(d, m, MC_V2);
}

static void send_ack(mc_device_t *d, uint16_t cmd_seq, uint8_t status)
{
    mc_msg_t *m = &d->out; /* in the device, not on the stack */
    m->type = MC_PARAMS_ACK;
    m->u.ack.cmd_seq = cmd_seq;
    m->u.ack.status = status;
    m->u.ack.staged = d->staged;
    m->u.ack.params_crc = d->params_crc;
    mc_send(d, m, MC_V2);
}

/* The controller's safety layer, as deploy/safety.py: a non-finite command becomes the safe command, the
 * rest is clipped to the command limits, then to the allowed change from the previous command. */
static void guard(mc_device_t *d, const float *in, float *out)
{
    int i;
    for (i = 0; i < METACTL_ACT_DIM; ++i) {
        if (!mc_finite(in[i])) {
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

void mc_end_episode(mc_device_t *d, uint8_t status)
{
    d->ep_running = 0;
    d->wd_armed = 0;
    if (status != MC_END_BUS && status != MC_END_WATCHDOG) {
        (void)mc_apply(d, mc_safe_command); /* hold still between episodes */
    }
    d->stopped = 1;
    send_end(d, d->ep_seq, status);
}

void mc_tick(mc_device_t *d, uint64_t now)
{
    float *obs = d->tick_obs, *action = d->tick_action, *cmd = d->tick_cmd;
    memcpy(obs, d->sensors.obs, sizeof d->tick_obs);
    metactl_policy(obs, action);
    guard(d, action, cmd);
    if (mc_apply(d, cmd) != 0) {
        mc_end_episode(d, MC_END_BUS);
        return;
    }
    d->ep_return += d->sensors.reward;
    if (d->ep_flags & MC_START_STREAM) {
        mc_msg_t *m = &d->out; /* in the device, not on the stack */
        m->type = MC_STEP;
        m->u.step.episode_seq = d->ep_seq;
        m->u.step.step = d->ep_step;
        m->u.step.flags = mc_flags(d);
        m->u.step.reward = d->sensors.reward;
        m->u.step.n_obs = METACTL_OBS_DIM;
        m->u.step.n_act = METACTL_ACT_DIM;
        m->u.step.obs = (const uint8_t *)obs;
        m->u.step.act = (const uint8_t *)cmd;
        mc_send(d, m, MC_V2);
    }
    d->ep_step++;
    if (d->sensors.done || d->ep_step >= d->ep_steps) {
        mc_end_episode(d, d->sensors.done ? MC_END_DONE : MC_END_COMPLETED);
        return;
    }
    d->ep_next_us += MC_PERIOD_US;
    if (d->ep_next_us + MC_PERIOD_US <= now) { /* more than a period late: count it, do not burst */
        d->overruns++;
        d->ep_next_us = now;
    }
}

void mc_on_start(mc_device_t *d, const mc_msg_t *m)
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
        mc_bus_failure(d);
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

void mc_on_params(mc_device_t *d, const mc_msg_t *m)
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

void mc_on_commit(mc_device_t *d, const mc_msg_t *m)
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
            if (!mc_finite(d->staging[i])) {
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
