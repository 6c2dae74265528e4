/* Wire framing of metactl's serial protocol (docs/protocol.md sections 1, 5 and 6), device side.
 *
 *   wire frame = 0x00 COBS(payload || crc32_le(payload)) 0x00
 *
 * CRC-32 is zlib's (CRC-32/ISO-HDLC). COBS is Cheshire & Baker (1999). The receiver takes one byte
 * at a time from a UART, keeps at most `cap` bytes of an unfinished frame in a buffer the caller
 * owns, and counts bad and oversized frames exactly as the Python FrameDecoder does, so the two can
 * be fuzzed against each other. Output goes through a small stream struct (the HAL seam): no frame
 * is ever built twice in RAM. No heap; C99.
 */
#ifndef MC_WIRE_H
#define MC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MC_HEADER_BYTES 12u
#define MC_CRC_BYTES 4u
#define MC_MAX_FRAME_BYTES 4096u /* the protocol's largest decoded payload + CRC */
#define MC_WIRE_BYTES(decoded) ((decoded) + (decoded) / 254u + 1u) /* COBS worst case, delimiters excluded */

uint32_t mc_crc32(uint32_t crc, const uint8_t *data, size_t n); /* zlib.crc32(data, crc) */

/* COBS-decode `n` bytes in place; the decoded length, or -1 if a block runs past the end / a code is 0. */
long mc_cobs_decode(uint8_t *buf, size_t n);

/* Where encoded bytes go: a UART, a buffer. `write` must take every byte (a UART without a listener drops). */
typedef struct mc_ostream {
    void (*write)(struct mc_ostream *stream, const uint8_t *data, size_t n);
    void *ctx;
} mc_ostream_t;

/* Send the `n`-byte payload (header + body) at `frame` as one wire frame: leading zero, COBS(payload || CRC),
 * trailing zero. The CRC is written into `frame[n .. n + 3]`, so the buffer needs 4 bytes past the payload;
 * the encoding streams from it block by block, with no second buffer. */
void mc_send_payload(mc_ostream_t *out, uint8_t *frame, size_t n);

typedef enum {
    MC_RX_NONE = 0,  /* no frame completed by this byte */
    MC_RX_FRAME,     /* a frame with a good CRC: mc_rx_t.payload / payload_len */
    MC_RX_BAD,       /* a bad segment (COBS error, short, CRC mismatch); counted */
    MC_RX_OVERSIZED  /* more than `cap` wire bytes or MC_MAX_FRAME_BYTES decoded; counted */
} mc_rx_result_t;

typedef struct {
    uint8_t *buf;      /* caller-owned, `cap` bytes: the largest wire frame this receiver accepts */
    size_t cap;
    size_t len;        /* bytes of the open segment held so far */
    uint8_t skipping;  /* inside an oversized segment: drop everything up to the next zero */
    const uint8_t *payload; /* valid after MC_RX_FRAME until the next mc_rx_push */
    size_t payload_len;
    uint32_t frames_ok, bad_frames, oversized_frames, bytes_discarded; /* as FrameDecoder's counters */
} mc_rx_t;

void mc_rx_init(mc_rx_t *rx, uint8_t *buf, size_t cap);

/* Take one received byte. MC_RX_FRAME hands out a CRC-checked payload; the caller validates its header and
 * body (mc_msg_decode) and reports a layout error back with mc_rx_reject so the counters stay exact. */
mc_rx_result_t mc_rx_push(mc_rx_t *rx, uint8_t byte);

/* The payload handed out by the last MC_RX_FRAME did not decode: count it as a bad frame instead. */
void mc_rx_reject(mc_rx_t *rx);

#endif /* MC_WIRE_H */
