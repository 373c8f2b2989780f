// Brotli (RFC 7932) decompression of Bilibili's protocol-version-3 bodies,
// by Google's reference decoder: `fetch-brotli` unpacks the pinned Brotli
// release into brotli/, and apiary-plugin.toml's [c] section builds it in.

#ifndef BILIBILI_UNBROTLI_H
#define BILIBILI_UNBROTLI_H

#include <stddef.h>
#include <stdint.h>

// Decompresses the brotli stream `in` into a malloc'd buffer of at most
// `max` bytes. Returns NULL with `*error` set to a reason when the stream
// is malformed, truncated, followed by other bytes, or would exceed `max`.
uint8_t *brotli_decompress(const uint8_t *in, size_t len, size_t max, size_t *out_len,
                           const char **error);

#endif
