// libFuzzer target: the store manifest parser and name check (store/manifest.cpp).
#include "store/manifest.h"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // SAFETY: the fuzzer's bytes, viewed as chars.
    std::string_view text(reinterpret_cast<char const*>(data), size);
    for (auto kind : { strata::ObjectKind::Disk, strata::ObjectKind::Snapshot, strata::ObjectKind::Image }) {
        auto m = strata::parse_object(text, kind);
        if (m) {
            // What parses must encode and parse back to the same manifest.
            auto again = strata::parse_object(strata::encode_object(m.value()), kind);
            if (!again || again.value().layers != m.value().layers || again.value().size != m.value().size)
                __builtin_trap();
        }
    }
    (void)strata::check_object_name(text);
    return 0;
}
