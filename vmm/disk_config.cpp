#include "vmm/disk_config.h"

#include <cctype>
#include <set>
#include <sstream>

namespace strata {

namespace {

Error usage(std::string const& spec, std::string const& why)
{
    return make_error(ErrorKind::Usage, "--disk '" + spec + "': " + why);
}

Result<bool> on_off(std::string const& spec, std::string const& key, std::string const& value)
{
    if (value == "on" || value == "true" || value == "1")
        return true;
    if (value == "off" || value == "false" || value == "0")
        return false;
    return usage(spec, key + " must be on or off, not '" + value + "'");
}

bool valid_id(std::string const& id)
{
    // GET_ID returns at most 20 bytes; ids are also path-free names in manifests.
    if (id.empty() || id.size() > 20)
        return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return id != "." && id != "..";
}

} // namespace

Result<DiskConfig> parse_disk_spec(std::string const& spec, unsigned index)
{
    DiskConfig disk;
    std::stringstream in(spec);
    std::string item;
    bool first = true;
    bool has_format = false;
    while (std::getline(in, item, ',')) {
        auto eq = item.find('=');
        if (eq == std::string::npos) {
            if (!first)
                return usage(spec, "'" + item + "' is not key=value");
            disk.store_disk = item;
            first = false;
            continue;
        }
        first = false;
        std::string key = item.substr(0, eq);
        std::string value = item.substr(eq + 1);
        if (key == "path") {
            disk.path = value;
        } else if (key == "format") {
            if (value != "raw" && value != "strata")
                return usage(spec, "format must be raw or strata, not '" + value + "'");
            disk.format = value;
            has_format = true;
        } else if (key == "id") {
            disk.id = value;
        } else if (key == "readonly") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.read_only = v;
        } else if (key == "boot") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.boot = v;
        } else if (key == "scratch") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.scratch = v;
        } else if (key == "cache") {
            if (value == "none")
                disk.cache = DiskCache::None;
            else if (value == "writeback")
                disk.cache = DiskCache::Writeback;
            else if (value == "unsafe")
                disk.cache = DiskCache::Unsafe;
            else
                return usage(spec, "cache must be none, writeback or unsafe, not '" + value + "'");
        } else {
            return usage(spec, "unknown key '" + key + "'");
        }
    }
    if (disk.store_disk.empty() == disk.path.empty())
        return usage(spec, "give either a store disk name or path=FILE");
    if (!disk.store_disk.empty() && has_format)
        return usage(spec, "format= applies to path= disks only");
    if (disk.id.empty())
        disk.id = disk.store_disk.empty() ? "disk" + std::to_string(index) : disk.store_disk.substr(0, 20);
    if (!valid_id(disk.id))
        return usage(spec, "id '" + disk.id + "' must be 1-20 letters, digits, '-', '_' or '.'");
    return disk;
}

Status check_disks(std::vector<DiskConfig> const& disks)
{
    std::set<std::string> ids;
    unsigned boot = 0;
    for (auto const& d : disks) {
        if (!ids.insert(d.id).second)
            return make_error(ErrorKind::Usage, "two disks have the id '" + d.id + "'");
        boot += d.boot ? 1 : 0;
    }
    if (boot > 1)
        return make_error(ErrorKind::Usage, "at most one disk may have boot=on");
    return ok();
}

std::string disk_spec(DiskConfig const& disk)
{
    std::string s = disk.store_disk.empty() ? "path=" + disk.path + ",format=" + disk.format : disk.store_disk;
    s += ",id=" + disk.id;
    if (disk.read_only)
        s += ",readonly=on";
    if (disk.boot)
        s += ",boot=on";
    if (disk.scratch)
        s += ",scratch=on";
    if (disk.cache == DiskCache::Writeback)
        s += ",cache=writeback";
    if (disk.cache == DiskCache::Unsafe)
        s += ",cache=unsafe";
    return s;
}

} // namespace strata
