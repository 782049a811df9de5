// The one way the tests open a store in a temporary directory: Store::open on a
// root inside a TempDir, failing the test with the store's message, and with the
// record folders (VMs, templates, machine images) made when the test needs them.
// Threading: test main thread only.
#pragma once

#include "store/record_files.h"
#include "store/store.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>

namespace strata::test {

inline std::unique_ptr<Store> open_store(std::string const& root, bool with_records = true)
{
    auto s = Store::open(root);
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
    if (with_records)
        REQUIRE(ensure_record_dirs(root));
    return std::move(s.value());
}

} // namespace strata::test
