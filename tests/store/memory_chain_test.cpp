// The memory chain of a running-state image's folder (store/memory_chain.h):
// what is written reads back, and malformed chains are refused as BadInput.
#include "store/memory_chain.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <fstream>

using namespace strata;

namespace {

std::vector<MemoryChainLayer> sample()
{
    return { MemoryChainLayer { "0123456789abcdef", "memory-0123456789abcdef", 7, false, {} },
        MemoryChainLayer { "fedcba9876543210", "memory", 9, true, { { 1, 2 }, { 5, 1 } } } };
}

} // namespace

TEST_CASE("memory chain: encode, parse, and a folder's files")
{
    auto const chain = sample();
    auto parsed = parse_memory_chain(encode_memory_chain(chain));
    REQUIRE(parsed.has_value());
    CHECK(parsed.value() == chain);

    strata::test::TempDir dir("strata-chain");
    auto none = read_memory_chain(dir.path());
    REQUIRE(none.has_value());
    CHECK_FALSE(none.value().has_value());
    REQUIRE(write_memory_chain(dir.path(), chain));
    CHECK_FALSE(write_memory_chain(dir.path(), chain)); // never overwritten
    auto files = state_folder_files(dir.path());
    REQUIRE(files.has_value());
    CHECK(files.value() == std::vector<std::string> { "state", "memory.json", "memory-0123456789abcdef", "memory" });
    auto id = new_memory_layer_id();
    REQUIRE(id.has_value());
    CHECK(id.value().size() == 16);
}

TEST_CASE("memory chain: malformed chains are refused")
{
    auto refused = [](std::vector<MemoryChainLayer> const& chain) {
        auto r = parse_memory_chain(encode_memory_chain(chain));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().kind == ErrorKind::BadInput);
        return r.error().message;
    };
    CHECK(refused({}).find("no layers") != std::string::npos);
    auto c = sample();
    c[0].diff = true;
    refused(c);
    c = sample();
    c[1].diff = false;
    c[1].runs.clear();
    refused(c);
    c = sample();
    c[1].file = "../state";
    refused(c);
    c = sample();
    c[1].runs = { { 5, 1 }, { 1, 2 } }; // not ascending
    refused(c);
    c = sample();
    c[1].runs = { { 1, 0 } };
    refused(c);
    c = sample();
    c[1].id = "xyz";
    refused(c);
    c = sample();
    c[1].id = c[0].id;
    c[1].file = c[0].file;
    refused(c);
    CHECK_FALSE(parse_memory_chain("not json").has_value());
    auto other = parse_memory_chain(R"({"format": 2, "layers": []})");
    REQUIRE_FALSE(other.has_value());
    CHECK(other.error().kind == ErrorKind::Unsupported);
}
