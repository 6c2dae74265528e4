/* Message layouts of protocol versions 1 and 2: one table, one decoder, one encoder. See mc_msg.h. */
#include "mc_msg.h"

#include <string.h>

/* Body layout: `fixed` bytes, then (for a tail) items of `item` bytes counted by the u8/u16 at `count_at`. */
typedef struct {
    uint8_t type, versions; /* bit v set: valid in version v */
    uint8_t fixed, item, count_at, count_bytes;
} layout_t;

#define V1V2 ((1u << MC_V1) | (1u << MC_V2))
#define V1 (1u << MC_V1)
#define V2 (1u << MC_V2)

static const layout_t layouts[] = {
    {MC_HELLO, V1V2, 0, 0, 0, 0},          {MC_INFO, V1, 9, 1, 8, 1},
    {MC_INFO, V2, 28, 1, 27, 1},            {MC_STATE, V1V2, 13, 4, 11, 2},
    {MC_COMMAND, V1V2, 2, 4, 0, 2},         {MC_RESET, V1V2, 8, 0, 0, 0},
    {MC_HEARTBEAT, V1V2, 0, 0, 0, 0},       {MC_FAULT, V1V2, 3, 1, 2, 1},
    {MC_SAFE_STOP, V1V2, 0, 0, 0, 0},       {MC_EPISODE_START, V2, 13, 0, 0, 0},
    {MC_STEP, V2, 19, 4, 15, 2}, /* two counts: n_obs at 15, n_act at 17 */
    {MC_EPISODE_END, V2, 19, 0, 0, 0},      {MC_KEEPALIVE, V2, 0, 0, 0, 0},
    {MC_PARAMS, V2, 6, 4, 4, 2},            {MC_PARAMS_COMMIT, V2, 8, 0, 0, 0},
    {MC_PARAMS_ACK, V2, 11, 0, 0, 0},       {MC_STATUS, V2, 0, 0, 0, 0},
    {MC_STATUS_REPORT, V2, 42, 0, 0, 0},
};

static const layout_t *find_layout(uint8_t type, uint8_t version)
{
    size_t i;
    for (i = 0; i < sizeof layouts / sizeof layouts[0]; ++i) {
        if (layouts[i].type == type && (layouts[i].versions & (1u << version))) {
            return &layouts[i];
        }
    }
    return NULL;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static double getf64(const uint8_t *p)
{
    double d;
    memcpy(&d, p, sizeof d); /* bits as they are: NaN payloads survive */
    return d;
}

float mc_f32_at(const uint8_t *le, size_t i)
{
    float f;
    memcpy(&f, le + 4u * i, sizeof f);
    return f;
}

/* Strict UTF-8 as Python's bytes.decode: no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t c = s[i];
        size_t k, more;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c >= 0xE0 && c <= 0xEF) { more = 2; lo = c == 0xE0 ? 0xA0 : 0x80; hi = c == 0xED ? 0x9F : 0xBF; }
        else if (c >= 0xF0 && c <= 0xF4) { more = 3; lo = c == 0xF0 ? 0x90 : 0x80; hi = c == 0xF4 ? 0x8F : 0xBF; }
        else return 0;
        if (i + more >= n) return 0; /* cut short */
        for (k = 1; k <= more; ++k) {
            const uint8_t d = s[i + k];
            if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
        }
        i += more + 1;
    }
    return 1;
}

mc_decode_t mc_msg_decode(const uint8_t *p, size_t n, mc_msg_t *m)
{
    const layout_t *L;
    const uint8_t *b = p + MC_HEADER_BYTES;
    size_t body, want;
    if (n < MC_HEADER_BYTES) return MC_DECODE_SHORT;
    m->version = p[0];
    m->type = p[1];
    m->seq = get16(p + 2);
    m->t_us = get64(p + 4);
    if (m->version != MC_V1 && m->version != MC_V2) return MC_DECODE_VERSION;
    L = find_layout(m->type, m->version);
    if (L == NULL) return MC_DECODE_TYPE;
    body = n - MC_HEADER_BYTES;
    if (body < L->fixed) return MC_DECODE_LENGTH;
    want = L->fixed;
    if (L->item) {
        size_t count = L->count_bytes == 1 ? b[L->count_at] : get16(b + L->count_at);
        if (m->type == MC_STEP) count += get16(b + 17);
        want += count * L->item;
    }
    if (body != want) return MC_DECODE_LENGTH;
    switch (m->type) {
    case MC_INFO:
        m->u.info.obs_dim = get16(b);
        m->u.info.act_dim = get16(b + 2);
        m->u.info.period_us = get32(b + 4);
        if (m->version == MC_V1) {
            m->u.info.watchdog_us = m->u.info.param_count = m->u.info.policy_id = m->u.info.params_crc = 0;
            m->u.info.max_chunk = 0;
            m->u.info.caps = 0;
        } else {
            m->u.info.watchdog_us = get32(b + 8);
            m->u.info.param_count = get32(b + 12);
            m->u.info.policy_id = get32(b + 16);
            m->u.info.params_crc = get32(b + 20);
            m->u.info.max_chunk = get16(b + 24);
            m->u.info.caps = b[26];
        }
        m->u.info.id_len = b[L->count_at];
        m->u.info.robot_id = b + L->fixed;
        if (!utf8_ok(m->u.info.robot_id, m->u.info.id_len)) return MC_DECODE_UTF8;
        break;
    case MC_STATE:
        m->u.state.cmd_seq = get16(b);
        m->u.state.flags = b[2];
        m->u.state.reward = getf64(b + 3);
        m->u.state.n = get16(b + 11);
        m->u.state.obs = b + 13;
        break;
    case MC_COMMAND:
        m->u.command.n = get16(b);
        m->u.command.cmd = b + 2;
        break;
    case MC_RESET:
        m->u.reset.seed = get64(b);
        break;
    case MC_FAULT: /* the text stays as bytes: a fault must arrive even if its text is damaged */
        m->u.fault.code = get16(b);
        m->u.fault.len = b[2];
        m->u.fault.text = b + 3;
        break;
    case MC_EPISODE_START:
        m->u.start.seed = get64(b);
        m->u.start.steps = get32(b + 8);
        m->u.start.flags = b[12];
        break;
    case MC_STEP:
        m->u.step.episode_seq = get16(b);
        m->u.step.step = get32(b + 2);
        m->u.step.flags = b[6];
        m->u.step.reward = getf64(b + 7);
        m->u.step.n_obs = get16(b + 15);
        m->u.step.n_act = get16(b + 17);
        m->u.step.obs = b + 19;
        m->u.step.act = b + 19 + 4u * m->u.step.n_obs;
        break;
    case MC_EPISODE_END:
        m->u.end.episode_seq = get16(b);
        m->u.end.status = b[2];
        m->u.end.steps = get32(b + 3);
        m->u.end.episode_return = getf64(b + 7);
        m->u.end.params_crc = get32(b + 15);
        break;
    case MC_PARAMS:
        m->u.params.offset = get32(b);
        m->u.params.n = get16(b + 4);
        m->u.params.values = b + 6;
        break;
    case MC_PARAMS_COMMIT:
        m->u.commit.count = get32(b);
        m->u.commit.crc = get32(b + 4);
        break;
    case MC_PARAMS_ACK:
        m->u.ack.cmd_seq = get16(b);
        m->u.ack.status = b[2];
        m->u.ack.staged = get32(b + 3);
        m->u.ack.params_crc = get32(b + 7);
        break;
    case MC_STATUS_REPORT:
        m->u.status.cmd_seq = get16(b);
        m->u.status.episodes = get32(b + 2);
        m->u.status.watchdog_trips = get32(b + 6);
        m->u.status.params_applied = get32(b + 10);
        m->u.status.bad_frames = get32(b + 14);
        m->u.status.feed_us = get64(b + 18);
        m->u.status.trip_us = get64(b + 26);
        m->u.status.stack_bytes = get32(b + 34);
        m->u.status.overruns = get32(b + 38);
        break;
    default: /* HELLO, HEARTBEAT, SAFE_STOP, KEEPALIVE, STATUS: empty bodies */
        break;
    }
    return MC_DECODE_OK;
}

/* A bounded little-endian writer: `ok` turns 0 at the first write past `cap`. */
typedef struct { uint8_t *p; size_t len, cap; int ok; } writer_t;

static void put(writer_t *w, const void *data, size_t n)
{
    if (!w->ok || n > w->cap - w->len) { w->ok = 0; return; }
    if (n) memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void put8(writer_t *w, uint8_t v) { put(w, &v, 1); }
static void put16(writer_t *w, uint16_t v) { uint8_t b[2]; b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); put(w, b, 2); }
static void put32(writer_t *w, uint32_t v) { put16(w, (uint16_t)v); put16(w, (uint16_t)(v >> 16)); }
static void put64(writer_t *w, uint64_t v) { put32(w, (uint32_t)v); put32(w, (uint32_t)(v >> 32)); }
static void putf64(writer_t *w, double d) { put(w, &d, sizeof d); }

size_t mc_msg_encode(const mc_msg_t *m, uint8_t *payload, size_t cap)
{
    writer_t w;
    w.p = payload;
    w.len = 0;
    w.cap = cap;
    w.ok = find_layout(m->type, m->version) != NULL;
    put8(&w, m->version);
    put8(&w, m->type);
    put16(&w, m->seq);
    put64(&w, m->t_us);
    switch (m->type) {
    case MC_INFO:
        put16(&w, m->u.info.obs_dim);
        put16(&w, m->u.info.act_dim);
        put32(&w, m->u.info.period_us);
        if (m->version == MC_V2) {
            put32(&w, m->u.info.watchdog_us);
            put32(&w, m->u.info.param_count);
            put32(&w, m->u.info.policy_id);
            put32(&w, m->u.info.params_crc);
            put16(&w, m->u.info.max_chunk);
            put8(&w, m->u.info.caps);
        }
        put8(&w, m->u.info.id_len);
        put(&w, m->u.info.robot_id, m->u.info.id_len);
        break;
    case MC_STATE:
        put16(&w, m->u.state.cmd_seq);
        put8(&w, m->u.state.flags);
        putf64(&w, m->u.state.reward);
        put16(&w, m->u.state.n);
        put(&w, m->u.state.obs, 4u * m->u.state.n);
        break;
    case MC_COMMAND:
        put16(&w, m->u.command.n);
        put(&w, m->u.command.cmd, 4u * m->u.command.n);
        break;
    case MC_RESET:
        put64(&w, m->u.reset.seed);
        break;
    case MC_FAULT:
        put16(&w, m->u.fault.code);
        put8(&w, m->u.fault.len);
        put(&w, m->u.fault.text, m->u.fault.len);
        break;
    case MC_EPISODE_START:
        put64(&w, m->u.start.seed);
        put32(&w, m->u.start.steps);
        put8(&w, m->u.start.flags);
        break;
    case MC_STEP:
        put16(&w, m->u.step.episode_seq);
        put32(&w, m->u.step.step);
        put8(&w, m->u.step.flags);
        putf64(&w, m->u.step.reward);
        put16(&w, m->u.step.n_obs);
        put16(&w, m->u.step.n_act);
        put(&w, m->u.step.obs, 4u * m->u.step.n_obs);
        put(&w, m->u.step.act, 4u * m->u.step.n_act);
        break;
    case MC_EPISODE_END:
        put16(&w, m->u.end.episode_seq);
        put8(&w, m->u.end.status);
        put32(&w, m->u.end.steps);
        putf64(&w, m->u.end.episode_return);
        put32(&w, m->u.end.params_crc);
        break;
    case MC_PARAMS:
        put32(&w, m->u.params.offset);
        put16(&w, m->u.params.n);
        put(&w, m->u.params.values, 4u * m->u.params.n);
        break;
    case MC_PARAMS_COMMIT:
        put32(&w, m->u.commit.count);
        put32(&w, m->u.commit.crc);
        break;
    case MC_PARAMS_ACK:
        put16(&w, m->u.ack.cmd_seq);
        put8(&w, m->u.ack.status);
        put32(&w, m->u.ack.staged);
        put32(&w, m->u.ack.params_crc);
        break;
    case MC_STATUS_REPORT:
        put16(&w, m->u.status.cmd_seq);
        put32(&w, m->u.status.episodes);
        put32(&w, m->u.status.watchdog_trips);
        put32(&w, m->u.status.params_applied);
        put32(&w, m->u.status.bad_frames);
        put64(&w, m->u.status.feed_us);
        put64(&w, m->u.status.trip_us);
        put32(&w, m->u.status.stack_bytes);
        put32(&w, m->u.status.overruns);
        break;
    default:
        break;
    }
    return w.ok && w.len + MC_CRC_BYTES <= MC_MAX_FRAME_BYTES ? w.len : 0;
}
