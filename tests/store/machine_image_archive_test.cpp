// Machine-image archives: the round trip into a second store, and a corrupted copy
// that imports nothing.
#include "tests/store/machine_image_util.h"

using namespace strata;
using namespace strata::test;

TEST_CASE("export and import into another store, and a corrupted archive imports nothing")
{
    TempDir dir;
    auto a = open_store(dir / "a");
    auto b = open_store(dir / "b");
    VmRecord vm = make_vm(*a, dir);
    write_block(*a, "vm-data", 0, 'A');
    write_block(*a, "vm-data", 4096, 'X');
    capture(*a, vm, "first");
    // The second layer hides the first's blocks, with a zero block between two
    // data blocks (one archive chunk): the zeros must hide 'X' after import too.
    write_block(*a, "vm-data", 0, 'B');
    write_block(*a, "vm-data", 4096, '\0');
    write_block(*a, "vm-data", 8192, 'D');
    auto img = capture(*a, vm, "img");
    REQUIRE(img.disks[0].layers.size() == 2);
    REQUIRE(export_machine_image(*a, "img", dir / "img.strata"));

    // A corrupted copy: one byte flipped in the middle.
    REQUIRE(strata::test::sh("cp '" + dir / "img.strata" + "' '" + dir / "bad.strata" + "'") == 0);
    {
        std::fstream f(dir / "bad.strata", std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(0, std::ios::end);
        auto size = static_cast<std::streamoff>(f.tellg());
        f.seekp(size / 2);
        char c = 0;
        f.seekg(size / 2);
        f.read(&c, 1);
        c = static_cast<char>(c ^ 0x5a);
        f.seekp(size / 2);
        f.write(&c, 1);
    }
    auto layers_before = files_in(dir / "b/layers");
    auto bad = import_machine_image(*b, "img", dir / "bad.strata");
    CHECK_FALSE(bad);
    CHECK(files_in(dir / "b/layers") == layers_before);
    CHECK(files_in(dir / "b/machine-images").empty());
    CHECK(files_in(dir / "b/artifacts").empty());

    auto got = import_machine_image(*b, "img", dir / "img.strata");
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    CHECK(got.value().disks.size() == 2);
    CHECK(got.value().disks[0].layers.size() == 2);
    CHECK(got.value().disks[0].layers[0] != img.disks[0].layers[0]); // new IDs in the new store
    CHECK(got.value().spec.boot.firmware == vm.spec.boot.firmware);
    CHECK(::access(artifact_path(b->root(), vm.spec.boot.firmware).c_str(), F_OK) == 0);
    CHECK(got.value().source_vm.metadata.at("startup") == "echo hi");
    CHECK(import_machine_image(*b, "img", dir / "img.strata").error().kind == ErrorKind::Exists);
    auto c = create_vm_from_machine_image(*b, "copy", "img", {});
    REQUIRE(c);
    CHECK(read_block(*b, "copy-disk-data", 0) == 'B');
    CHECK(read_block(*b, "copy-disk-data", 4096) == '\0');
    CHECK(read_block(*b, "copy-disk-data", 8192) == 'D');
    CHECK(read_block(*b, "copy-disk-tmp", 0) == '\0');
}
