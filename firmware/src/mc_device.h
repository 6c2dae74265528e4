/* The motor controller: protocol v1 and v2 device side over the HAL (docs/protocol.md).
 *
 * Version 1, host-driven: each COMMAND is written to the motors and answered by the STATE after one
 * control period; a watchdog fed only by valid COMMANDs safe-stops the motors when they stop coming.
 * Version 2, on-controller: EPISODE_START runs the exported policy (policy.c) at the control rate on
 * the controller itself, streams a STEP per control period and ends with EPISODE_END; KEEPALIVEs feed
 * the watchdog meanwhile. PARAMS chunks and a CRC-checked PARAMS_COMMIT replace the policy parameters
 * atomically between episodes (refused during one).
 *
 * One static instance, no heap: every buffer is sized at compile time from policy.h and mc_robot.h.
 */
#ifndef MC_DEVICE_H
#define MC_DEVICE_H

#include <stdint.h>

#include "mc_hal.h"
#include "mc_msg.h"
#include "policy.h"

#ifndef MC_MAX_CHUNK
#define MC_MAX_CHUNK 32 /* floats per PARAMS frame this controller accepts (reported in INFO v2) */
#endif
#define MC_FAULT_TEXT_MAX 80
#define MC_HOST_RX_A (MC_HEADER_BYTES + 6u + 4u * MC_MAX_CHUNK + MC_CRC_BYTES)
#define MC_HOST_RX_B (MC_HEADER_BYTES + 2u + 4u * METACTL_ACT_DIM + MC_CRC_BYTES)
#define MC_HOST_RX_DECODED (MC_HOST_RX_A > MC_HOST_RX_B ? MC_HOST_RX_A : MC_HOST_RX_B)
#define MC_TX_A (MC_HEADER_BYTES + 19u + 4u * (METACTL_OBS_DIM + METACTL_ACT_DIM))
#define MC_TX_B (MC_HEADER_BYTES + 28u + 64u)
#define MC_TX_PAYLOAD (MC_TX_A > MC_TX_B ? MC_TX_A : MC_TX_B)

typedef struct {
    mc_rx_t rx;
    uint8_t rx_buf[MC_WIRE_BYTES(MC_HOST_RX_DECODED)];
    uint16_t seq;           /* our frame counter towards the host */
    uint8_t version;        /* of the host's last good frame: unsolicited frames go out in it */
    uint8_t stopped, fault; /* latched until RESET / EPISODE_START */
    uint8_t wd_armed;
    uint64_t wd_fed_us;
    hal_sensors_t sensors; /* the latest reading */
    mc_msg_t in, out;      /* the frame being handled and the one being sent: here rather than on the stack */
    float tick_obs[METACTL_OBS_DIM], tick_action[METACTL_ACT_DIM], tick_cmd[METACTL_ACT_DIM];
    float prev_cmd[METACTL_ACT_DIM];
    /* the on-controller episode */
    uint8_t ep_running, ep_flags;
    uint16_t ep_seq;
    uint32_t ep_steps, ep_step;
    double ep_return;
    uint64_t ep_next_us;
    /* PARAMS staging: the active vector is metactl_params */
    float staging[METACTL_PARAM_COUNT];
    uint32_t staged, params_crc;
    /* STATUS */
    uint32_t episodes, trips, applied, overruns;
    uint64_t trip_feed_us, trip_us;
} mc_device_t;

void mc_device_init(mc_device_t *d);

/* One pass of the main loop: take the host's bytes, run the watchdog and the control tick, idle. */
void mc_device_poll(mc_device_t *d);

/* Shared by mc_device.c (framing, replies, version 1, the loop) and mc_controller.c (version 2). */
void mc_send(mc_device_t *d, mc_msg_t *m, uint8_t version);
void mc_send_fault(mc_device_t *d, uint8_t version, uint16_t code, const char *text, size_t len);
uint8_t mc_flags(const mc_device_t *d);
int mc_finite(float x);
int mc_apply(mc_device_t *d, const float *cmd); /* write the motors, read the sensors; on failure latch and FAULT */
void mc_bus_failure(mc_device_t *d);
void mc_end_episode(mc_device_t *d, uint8_t status);
void mc_tick(mc_device_t *d, uint64_t now);
void mc_on_start(mc_device_t *d, const mc_msg_t *m);
void mc_on_params(mc_device_t *d, const mc_msg_t *m);
void mc_on_commit(mc_device_t *d, const mc_msg_t *m);

#endif /* MC_DEVICE_H */
