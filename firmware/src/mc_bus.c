/* Motor outputs and sensor inputs over a serial bus to an emulated plant (both ports here use it).
 *
 * On the bus the firmware is the host and the plant a protocol-v1 robot: HELLO/INFO once (its sizes and
 * period must be this firmware's), RESET(seed) to start an episode, and one COMMAND per control period
 * answered by the STATE after it. The plant (metactl.emulator.plant: MuJoCo, the emulator's physics)
 * steps once per motor write, so the closed loop is the same whatever the bus latency. Every exchange
 * waits at most MC_BUS_TIMEOUT_US of the device clock; the caller safe-stops on a failure.
 */
#include <string.h>

#include "mc_hal.h"
#include "mc_msg.h"
#include "mc_robot.h"

#define BUS_ID_MAX 64u
#define BUS_RX_DECODED_A (MC_HEADER_BYTES + 13u + 4u * METACTL_OBS_DIM + MC_CRC_BYTES)
#define BUS_RX_DECODED_B (MC_HEADER_BYTES + 9u + BUS_ID_MAX + MC_CRC_BYTES)
#define BUS_RX_DECODED (BUS_RX_DECODED_A > BUS_RX_DECODED_B ? BUS_RX_DECODED_A : BUS_RX_DECODED_B)
#define BUS_TX_PAYLOAD (MC_HEADER_BYTES + 2u + 4u * METACTL_ACT_DIM)
#define BUS_HELLO_ATTEMPTS 3

static uint8_t bus_rx_buf[MC_WIRE_BYTES(BUS_RX_DECODED)];
static mc_rx_t bus_rx;
static uint16_t bus_seq;
static int bus_ready; /* the plant answered HELLO with our sizes */
static const char *bus_error = "";
static mc_msg_t bus_out, bus_in; /* static: the stack stays small */

static void bus_write(mc_ostream_t *s, const uint8_t *data, size_t n)
{
    (void)s;
    hal_bus_write(data, n);
}

static uint16_t bus_send(mc_msg_t *m)
{
    static uint8_t frame[(BUS_TX_PAYLOAD > 24u ? BUS_TX_PAYLOAD : 24u) + MC_CRC_BYTES];
    mc_ostream_t out;
    size_t n;
    out.write = bus_write;
    out.ctx = NULL;
    m->version = MC_V1;
    m->seq = bus_seq++;
    m->t_us = hal_clock_us();
    n = mc_msg_encode(m, frame, sizeof frame - MC_CRC_BYTES);
    mc_send_payload(&out, frame, n);
    return m->seq;
}

/* Wait for a reply of `type` (a STATE answering `seq`, or any INFO); 1 with `reply` set, 0 on timeout. */
static int bus_await(uint8_t type, uint16_t seq, mc_msg_t *reply)
{
    const uint64_t deadline = hal_clock_us() + MC_BUS_TIMEOUT_US;
    uint8_t byte;
    while (hal_clock_us() < deadline) {
        if (!hal_bus_getc(&byte)) {
            continue; /* busy-wait: the plant answers within a bus round trip */
        }
        if (mc_rx_push(&bus_rx, byte) != MC_RX_FRAME) {
            continue;
        }
        if (mc_msg_decode(bus_rx.payload, bus_rx.payload_len, reply) != MC_DECODE_OK) {
            mc_rx_reject(&bus_rx);
            continue;
        }
        if (reply->type == type && (type != MC_STATE || reply->u.state.cmd_seq == seq)) {
            return 1;
        }
    }
    return 0;
}

static int bus_handshake(void)
{
    int attempt;
    if (!bus_rx.buf) {
        mc_rx_init(&bus_rx, bus_rx_buf, sizeof bus_rx_buf);
    }
    for (attempt = 0; attempt < BUS_HELLO_ATTEMPTS; ++attempt) {
        bus_out.type = MC_HELLO;
        bus_send(&bus_out);
        if (bus_await(MC_INFO, 0, &bus_in)) {
            const mc_info_t *info = &bus_in.u.info;
            if (info->obs_dim != METACTL_OBS_DIM || info->act_dim != METACTL_ACT_DIM ||
                info->period_us != MC_PERIOD_US) {
                bus_error = "motor bus: the plant's sizes or period differ from this firmware's";
                return -1;
            }
            bus_ready = 1;
            return 0;
        }
    }
    bus_error = "motor bus: no answer to HELLO from the plant";
    return -1;
}

static int bus_state(uint16_t seq, hal_sensors_t *sensors)
{
    if (!bus_await(MC_STATE, seq, &bus_in)) {
        bus_error = "motor bus: no sensor reading within the bus timeout";
        bus_ready = 0; /* handshake again before the next use */
        return -1;
    }
    if (bus_in.u.state.n != METACTL_OBS_DIM) {
        bus_error = "motor bus: a sensor reading of the wrong size";
        return -1;
    }
    memcpy(sensors->obs, bus_in.u.state.obs, sizeof sensors->obs);
    sensors->reward = bus_in.u.state.reward;
    sensors->done = (bus_in.u.state.flags & MC_FLAG_DONE) != 0;
    return 0;
}

int hal_robot_reset(uint64_t seed, hal_sensors_t *sensors)
{
    if (!bus_ready && bus_handshake() != 0) {
        return -1;
    }
    bus_out.type = MC_RESET;
    bus_out.u.reset.seed = seed;
    return bus_state(bus_send(&bus_out), sensors);
}

int hal_motors_write(const float *cmd, hal_sensors_t *sensors)
{
    if (!bus_ready && bus_handshake() != 0) {
        return -1;
    }
    bus_out.type = MC_COMMAND;
    bus_out.u.command.n = METACTL_ACT_DIM;
    bus_out.u.command.cmd = (const uint8_t *)cmd;
    return bus_state(bus_send(&bus_out), sensors);
}

const char *hal_motors_error(void)
{
    return bus_error;
}
