// SHA-256, the one digest strata uses (layer and archive digests, boot artifacts'
// names, the kernel cache key, runtime directory names). One place wraps
// OpenSSL, so every caller gets the same light implementation.
// Threading: a Sha256Hasher belongs to one thread; sha256_bytes is reentrant.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <openssl/sha.h>

namespace strata {

using Sha256Bytes = std::array<std::uint8_t, 32>;

// Fed in pieces; finish() once.
class Sha256Hasher {
public:
    Sha256Hasher();
    void update(std::span<std::byte const> bytes);
    void update(void const* data, std::size_t length);
    Sha256Bytes finish();

private:
    SHA256_CTX m_ctx;
};

Sha256Bytes sha256_bytes(std::span<std::byte const> bytes);
// Lower-case hex of the first `bytes` bytes of a digest.
std::string sha256_hex(Sha256Bytes const& digest, std::size_t bytes = 32);

} // namespace strata
