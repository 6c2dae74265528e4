/* A test shim (not firmware): the codec behind a flat C API for ctypes, to fuzz it against the Python codec.
 *
 * One receiver with the protocol's full frame size. Every good frame is decoded into typed fields
 * (mc_msg_decode) and encoded again from them (mc_msg_encode + mc_send_payload); the tests decode those
 * bytes with the Python codec and compare them with what the Python decoder made of the same input.
 */
#include <string.h>

#include "mc_msg.h"
#include "mc_wire.h"

static uint8_t rx_buf[MC_WIRE_BYTES(MC_MAX_FRAME_BYTES)];
static mc_rx_t rx;
static int ready;

typedef struct {
    mc_ostream_t base;
    uint8_t *out;
    size_t len, cap;
    int overflow;
} buffer_stream_t;

static void buffer_write(mc_ostream_t *s, const uint8_t *data, size_t n)
{
    buffer_stream_t *b = (buffer_stream_t *)s;
    if (n > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->out + b->len, data, n);
    b->len += n;
}

void shim_reset(void)
{
    mc_rx_init(&rx, rx_buf, sizeof rx_buf);
    ready = 1;
}

/* Feed `n` bytes; the re-encoded good frames go to `out`. Bytes written, or -1 if `out` was too small, -2 if a
 * decoded frame could not be encoded again. */
long shim_feed(const uint8_t *data, size_t n, uint8_t *out, size_t cap)
{
    static uint8_t payload[MC_MAX_FRAME_BYTES];
    buffer_stream_t b;
    size_t i;
    if (!ready) shim_reset();
    b.base.write = buffer_write;
    b.base.ctx = NULL;
    b.out = out;
    b.len = 0;
    b.cap = cap;
    b.overflow = 0;
    for (i = 0; i < n; ++i) {
        mc_msg_t m;
        size_t k;
        if (mc_rx_push(&rx, data[i]) != MC_RX_FRAME) continue;
        if (mc_msg_decode(rx.payload, rx.payload_len, &m) != MC_DECODE_OK) {
            mc_rx_reject(&rx);
            continue;
        }
        k = mc_msg_encode(&m, payload, sizeof payload - MC_CRC_BYTES);
        if (k == 0) return -2;
        mc_send_payload(&b.base, payload, k);
    }
    return b.overflow ? -1 : (long)b.len;
}

/* frames_ok, bad_frames, oversized_frames, bytes_discarded, bytes held of an unfinished frame */
void shim_counters(uint32_t *out)
{
    out[0] = rx.frames_ok;
    out[1] = rx.bad_frames;
    out[2] = rx.oversized_frames;
    out[3] = rx.bytes_discarded;
    out[4] = rx.payload != NULL ? 0u : (uint32_t)rx.len; /* a handed-out frame is no longer held */
}
