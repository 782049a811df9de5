#include "base/sha256.h"

// OpenSSL 3 marks the SHA256_Init family deprecated in favour of EVP. strata
// keeps them on purpose: EVP's first use loads the configuration file and the
// provider tables (about a millisecond and over a megabyte of private memory in
// every process, measured in `strata vms create` and in each VMM), and statically
// linked it pulls all of OpenSSL's algorithms into the binary. The low-level
// functions are the same assembly-optimised SHA-256 without any of that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace strata {

Sha256Hasher::Sha256Hasher()
{
    SHA256_Init(&m_ctx);
}

void Sha256Hasher::update(void const* data, std::size_t length)
{
    SHA256_Update(&m_ctx, data, length);
}

void Sha256Hasher::update(std::span<std::byte const> bytes)
{
    update(bytes.data(), bytes.size());
}

Sha256Bytes Sha256Hasher::finish()
{
    Sha256Bytes out {};
    SHA256_Final(out.data(), &m_ctx);
    return out;
}

#pragma GCC diagnostic pop

Sha256Bytes sha256_bytes(std::span<std::byte const> bytes)
{
    Sha256Hasher h;
    h.update(bytes);
    return h.finish();
}

std::string sha256_hex(Sha256Bytes const& digest, std::size_t bytes)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < bytes && i < digest.size(); ++i) {
        out += digits[digest[i] >> 4];
        out += digits[digest[i] & 15];
    }
    return out;
}

} // namespace strata
