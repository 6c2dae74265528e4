/* Wire framing: CRC-32, COBS and the byte-at-a-time receiver. See mc_wire.h. */
#include "mc_wire.h"

#include <string.h>

/* CRC-32 (reflected 0x04C11DB7) four bits at a time: a 64-byte table instead of 1 KB, ~2x the work. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
    0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu, 0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};

uint32_t mc_crc32(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

long mc_cobs_decode(uint8_t *buf, size_t n)
{
    size_t in = 0, out = 0;
    while (in < n) {
        const size_t code = buf[in];
        if (code == 0 || in + code > n) {
            return -1;
        }
        memmove(buf + out, buf + in + 1, code - 1);
        out += code - 1;
        in += code;
        if (code != 0xFFu && in < n) {
            buf[out++] = 0; /* the zero a short block implies; the last block's is not data */
        }
    }
    return (long)out;
}

void mc_send_payload(mc_ostream_t *out, uint8_t *frame, size_t n)
{
    static const uint8_t zero = 0;
    const uint32_t crc = mc_crc32(0, frame, n);
    const size_t end = n + MC_CRC_BYTES;
    size_t start = 0;
    frame[n] = (uint8_t)crc;
    frame[n + 1] = (uint8_t)(crc >> 8);
    frame[n + 2] = (uint8_t)(crc >> 16);
    frame[n + 3] = (uint8_t)(crc >> 24);
    out->write(out, &zero, 1);
    /* COBS straight from the buffer, block by block: a code byte, then the block's bytes as they are. A block
     * below 254 bytes implies the zero after it; the last block always has a code below 0xFF. */
    for (;;) {
        size_t run = 0;
        uint8_t code;
        while (start + run < end && run < 254u && frame[start + run] != 0) {
            run++;
        }
        code = (uint8_t)(run + 1u);
        out->write(out, &code, 1);
        if (run) {
            out->write(out, frame + start, run);
        }
        start += run;
        if (run == 254u) {
            continue; /* a full block implies no zero; another block follows, empty if need be */
        }
        if (start == end) {
            break;
        }
        start++; /* the zero this block stands for */
    }
    out->write(out, &zero, 1);
}

void mc_rx_init(mc_rx_t *rx, uint8_t *buf, size_t cap)
{
    memset(rx, 0, sizeof *rx);
    rx->buf = buf;
    rx->cap = cap;
}

static mc_rx_result_t rx_drop(mc_rx_t *rx, size_t wire_len, int oversized)
{
    rx->bytes_discarded += (uint32_t)wire_len;
    if (oversized) {
        rx->oversized_frames++;
        return MC_RX_OVERSIZED;
    }
    rx->bad_frames++;
    return MC_RX_BAD;
}

static mc_rx_result_t rx_segment(mc_rx_t *rx)
{
    const size_t wire_len = rx->len;
    long n;
    uint32_t want;
    rx->len = 0;
    n = mc_cobs_decode(rx->buf, wire_len);
    if (n < 0) {
        return rx_drop(rx, wire_len, 0);
    }
    if ((size_t)n > MC_MAX_FRAME_BYTES) {
        return rx_drop(rx, wire_len, 1);
    }
    if (n < (long)MC_CRC_BYTES) {
        return rx_drop(rx, wire_len, 0);
    }
    n -= (long)MC_CRC_BYTES;
    want = (uint32_t)rx->buf[n] | (uint32_t)rx->buf[n + 1] << 8 | (uint32_t)rx->buf[n + 2] << 16 |
           (uint32_t)rx->buf[n + 3] << 24;
    if (mc_crc32(0, rx->buf, (size_t)n) != want) {
        return rx_drop(rx, wire_len, 0);
    }
    rx->frames_ok++;
    rx->payload = rx->buf;
    rx->payload_len = (size_t)n;
    rx->len = wire_len; /* remembered for mc_rx_reject; cleared by the next byte */
    return MC_RX_FRAME;
}

mc_rx_result_t mc_rx_push(mc_rx_t *rx, uint8_t byte)
{
    if (rx->payload != NULL) { /* the last frame was handed out: its bytes are free again */
        rx->payload = NULL;
        rx->len = 0;
    }
    if (byte == 0) {
        if (rx->skipping) {
            rx->skipping = 0;
            return MC_RX_NONE;
        }
        return rx->len ? rx_segment(rx) : MC_RX_NONE; /* two zeros in a row: an empty frame, ignored */
    }
    if (rx->skipping) {
        rx->bytes_discarded++;
        return MC_RX_NONE;
    }
    if (rx->len == rx->cap) { /* no delimiter within `cap` bytes: oversized, skip to the next zero */
        rx->skipping = 1;
        rx->len = 0;
        return rx_drop(rx, rx->cap + 1u, 1);
    }
    rx->buf[rx->len++] = byte;
    return MC_RX_NONE;
}

void mc_rx_reject(mc_rx_t *rx)
{
    if (rx->payload == NULL) {
        return;
    }
    rx->frames_ok--;
    (void)rx_drop(rx, rx->len, 0);
    rx->payload = NULL;
    rx->len = 0;
}
