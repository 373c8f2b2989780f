#include "unbrotli.h"

#include <stdlib.h>

#include <brotli/decode.h>

uint8_t *brotli_decompress(const uint8_t *in, size_t len, size_t max, size_t *out_len,
                           const char **error) {
    BrotliDecoderState *state = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    // Danmaku bodies compress about 4:1; the buffer doubles when short.
    size_t capacity = len < max / 4 ? (len < 1024 ? 4096 : len * 4) : max;
    uint8_t *out = state ? malloc(capacity) : NULL;
    if (!out) {
        if (state) BrotliDecoderDestroyInstance(state);
        *error = "out of memory";
        return NULL;
    }
    size_t avail_in = len, total = 0;
    const uint8_t *next_in = in;
    BrotliDecoderResult result;
    *error = NULL;
    for (;;) {
        size_t avail_out = capacity - total;
        uint8_t *next_out = out + total;
        result = BrotliDecoderDecompressStream(state, &avail_in, &next_in, &avail_out, &next_out,
                                               NULL);
        total = (size_t)(next_out - out);
        if (result != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) break;
        if (capacity == max) {
            *error = "decompressed body exceeds its limit";
            break;
        }
        capacity = capacity > max / 2 ? max : capacity * 2;
        uint8_t *grown = realloc(out, capacity);
        if (!grown) {
            *error = "out of memory";
            break;
        }
        out = grown;
    }
    if (!*error) {
        if (result == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
            *error = "brotli stream ends early";
        else if (result == BROTLI_DECODER_RESULT_ERROR)
            *error = "not a valid brotli stream";
        else if (avail_in != 0)
            *error = "bytes after the end of the brotli stream";
    }
    BrotliDecoderDestroyInstance(state);
    if (*error) {
        free(out);
        return NULL;
    }
    *out_len = total;
    return out;
}
