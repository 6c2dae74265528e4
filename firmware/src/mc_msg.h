/* Messages of metactl's serial protocol, versions 1 and 2 (docs/protocol.md): layouts, decode, encode.
 *
 * Version 1 is the host-driven protocol (the host sends every COMMAND). Version 2 keeps every v1
 * message and its layout, gives INFO a longer layout and adds on-controller control: EPISODE_START,
 * STEP, EPISODE_END, KEEPALIVE, PARAMS, PARAMS_COMMIT, PARAMS_ACK, STATUS and STATUS_REPORT. A frame
 * is answered in the version it came in.
 *
 * Decoded messages point into the receive buffer: float arrays stay little-endian bytes (read them
 * with mc_f32_at), so NaN payloads, -0 and denormals pass bit for bit and no alignment is assumed.
 * Encoding takes the same byte view; a float array on this little-endian target is such a view.
 */
#ifndef MC_MSG_H
#define MC_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "mc_wire.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "metactl firmware assumes a little-endian target (floats are copied to the wire as they sit in memory)"
#endif

enum { MC_V1 = 1, MC_V2 = 2 };

typedef enum {
    MC_HELLO = 0x01, MC_INFO = 0x02,
    MC_STATE = 0x10, MC_COMMAND = 0x11, MC_RESET = 0x12, MC_HEARTBEAT = 0x13,
    MC_FAULT = 0x20, MC_SAFE_STOP = 0x21,
    /* version 2 only */
    MC_EPISODE_START = 0x30, MC_STEP = 0x31, MC_EPISODE_END = 0x32, MC_KEEPALIVE = 0x33,
    MC_PARAMS = 0x34, MC_PARAMS_COMMIT = 0x35, MC_PARAMS_ACK = 0x36, MC_STATUS = 0x37, MC_STATUS_REPORT = 0x38
} mc_type_t;

enum { MC_FLAG_DONE = 1, MC_FLAG_FAULT = 2, MC_FLAG_STOPPED = 4 }; /* STATE / STEP flags */
enum { MC_START_STREAM = 1, MC_START_UNPACED = 2 };                 /* EPISODE_START flags */

typedef enum {
    MC_FAULT_WATCHDOG = 1, MC_FAULT_BAD_COMMAND = 2, MC_FAULT_NOT_RESET = 3, MC_FAULT_VERSION = 4,
    MC_FAULT_SAFE_STOP = 5, MC_FAULT_LIMIT = 6, MC_FAULT_BUS = 7, MC_FAULT_BUSY = 8
} mc_fault_code_t;

typedef enum { /* EPISODE_END status */
    MC_END_COMPLETED = 0, MC_END_DONE = 1, MC_END_STOPPED = 2, MC_END_WATCHDOG = 3, MC_END_BUS = 4,
    MC_END_REFUSED = 5
} mc_end_status_t;

typedef enum { /* PARAMS_ACK status */
    MC_ACK_STAGED = 0, MC_ACK_APPLIED = 1, MC_ACK_BUSY = 2, MC_ACK_BAD_OFFSET = 3, MC_ACK_BAD_SIZE = 4,
    MC_ACK_BAD_CRC = 5, MC_ACK_INCOMPLETE = 6, MC_ACK_NON_FINITE = 7
} mc_ack_status_t;

typedef struct {
    uint16_t obs_dim, act_dim;
    uint32_t period_us;
    uint32_t watchdog_us, param_count, policy_id, params_crc; /* version 2 */
    uint16_t max_chunk;                                          /* version 2: floats per PARAMS */
    uint8_t caps;                                                /* version 2: bit 0 on-controller policy */
    uint8_t id_len;
    const uint8_t *robot_id; /* UTF-8, not terminated */
} mc_info_t;

typedef struct { uint16_t cmd_seq; uint8_t flags; double reward; uint16_t n; const uint8_t *obs; } mc_state_t;
typedef struct { uint16_t n; const uint8_t *cmd; } mc_command_t;
typedef struct { uint64_t seed; } mc_reset_t;
typedef struct { uint16_t code; uint8_t len; const uint8_t *text; } mc_fault_t;
typedef struct { uint64_t seed; uint32_t steps; uint8_t flags; } mc_episode_start_t;
typedef struct {
    uint16_t episode_seq; uint32_t step; uint8_t flags; double reward;
    uint16_t n_obs, n_act; const uint8_t *obs, *act; /* the observation the policy saw, the command written */
} mc_step_t;
typedef struct {
    uint16_t episode_seq; uint8_t status; uint32_t steps; double episode_return; uint32_t params_crc;
} mc_episode_end_t;
typedef struct { uint32_t offset; uint16_t n; const uint8_t *values; } mc_params_t;
typedef struct { uint32_t count, crc; } mc_params_commit_t;
typedef struct { uint16_t cmd_seq; uint8_t status; uint32_t staged, params_crc; } mc_params_ack_t;
typedef struct {
    uint16_t cmd_seq; uint32_t episodes, watchdog_trips, params_applied, bad_frames;
    uint64_t feed_us, trip_us; /* the last watchdog trip: the last feed before it and the trip [device clock] */
    uint32_t stack_bytes;      /* the stack's high-water mark since reset (0: the port cannot tell) */
    uint32_t overruns;         /* control ticks that started more than a period late */
} mc_status_report_t;

typedef struct {
    uint8_t version, type;
    uint16_t seq;
    uint64_t t_us;
    union {
        mc_info_t info;
        mc_state_t state;
        mc_command_t command;
        mc_reset_t reset;
        mc_fault_t fault;
        mc_episode_start_t start;
        mc_step_t step;
        mc_episode_end_t end;
        mc_params_t params;
        mc_params_commit_t commit;
        mc_params_ack_t ack;
        mc_status_report_t status;
    } u;
} mc_msg_t;

typedef enum { MC_DECODE_OK = 0, MC_DECODE_SHORT, MC_DECODE_VERSION, MC_DECODE_TYPE, MC_DECODE_LENGTH,
               MC_DECODE_UTF8 } mc_decode_t;

/* Decode a CRC-checked payload; `m` points into `payload`. MC_DECODE_VERSION leaves m->version/seq set. */
mc_decode_t mc_msg_decode(const uint8_t *payload, size_t n, mc_msg_t *m);

/* Encode `m` into `payload` (header + body); its length, or 0 if it does not fit `cap` or is malformed. */
size_t mc_msg_encode(const mc_msg_t *m, uint8_t *payload, size_t cap);

float mc_f32_at(const uint8_t *le, size_t i); /* element i of a little-endian float32 array, bit for bit */

#endif /* MC_MSG_H */
