// Strict JSON field reading for API request bodies; see json_fields.h.
#include "vmm/api/json_fields.h"

#include <nlohmann/json.hpp>

namespace strata::api {

namespace {

// serde's names for what it found, so messages read like Firecracker's.
std::string describe_type(nlohmann::json const& value)
{
    switch (value.type()) {
    case nlohmann::json::value_t::string: return "string \"" + quote_for_message(value.get_ref<std::string const&>()) + "\"";
    case nlohmann::json::value_t::boolean: return std::string("boolean `") + (value.get<bool>() ? "true" : "false") + "`";
    case nlohmann::json::value_t::number_integer: return "integer `" + std::to_string(value.get<std::int64_t>()) + "`";
    case nlohmann::json::value_t::number_unsigned: return "integer `" + std::to_string(value.get<std::uint64_t>()) + "`";
    case nlohmann::json::value_t::number_float: return "floating point number";
    case nlohmann::json::value_t::object: return "map";
    case nlohmann::json::value_t::array: return "sequence";
    case nlohmann::json::value_t::null: return "null";
    default: return "value";
    }
}

Error type_error(char const* name, nlohmann::json const& found, char const* expected)
{
    return body_error("invalid type for `" + std::string(name) + "`: " + describe_type(found) + ", expected " + expected);
}

} // namespace

Error body_error(std::string const& detail)
{
    return make_error(ErrorKind::Usage, "An error occurred when deserializing the json body of a request: " + detail + ".");
}

std::string quote_for_message(std::string_view text)
{
    constexpr std::size_t limit = 64;
    std::string out;
    for (char c : text.substr(0, limit)) {
        auto const byte = static_cast<unsigned char>(c);
        out += (byte < 0x20 || byte == 0x7f) ? '?' : c;
    }
    if (text.size() > limit)
        out += "...";
    return out;
}

Result<ObjectReader> ObjectReader::open(nlohmann::json const& value, std::initializer_list<char const*> allowed)
{
    if (!value.is_object())
        return body_error("invalid type: " + describe_type(value) + ", expected a JSON object");
    for (auto const& item : value.items()) {
        bool known = false;
        for (char const* name : allowed)
            known = known || item.key() == name;
        if (!known) {
            std::string expected;
            for (char const* name : allowed)
                expected += std::string(expected.empty() ? "" : ", ") + "`" + name + "`";
            return body_error("unknown field `" + quote_for_message(item.key()) + "`, expected one of " + expected);
        }
    }
    return ObjectReader(value);
}

nlohmann::json const* ObjectReader::find(char const* name) const
{
    auto it = m_value->find(name);
    if (it == m_value->end() || it->is_null())
        return nullptr;
    return &*it;
}

Error ObjectReader::missing(char const* name)
{
    return body_error("missing field `" + std::string(name) + "`");
}

Result<std::optional<std::string>> ObjectReader::string(char const* name) const
{
    auto const* field = find(name);
    if (!field)
        return std::optional<std::string> {};
    if (!field->is_string())
        return type_error(name, *field, "a string");
    return std::optional<std::string> { field->get<std::string>() };
}

Result<std::optional<bool>> ObjectReader::boolean(char const* name) const
{
    auto const* field = find(name);
    if (!field)
        return std::optional<bool> {};
    if (!field->is_boolean())
        return type_error(name, *field, "a boolean");
    return std::optional<bool> { field->get<bool>() };
}

Result<std::optional<std::uint64_t>> ObjectReader::unsigned_integer(char const* name) const
{
    auto const* field = find(name);
    if (!field)
        return std::optional<std::uint64_t> {};
    // nlohmann stores non-negative integers as number_unsigned; negative ones and
    // fractions have other types and are refused, as serde refuses them for u64.
    if (!field->is_number_unsigned())
        return type_error(name, *field, "an unsigned integer");
    return std::optional<std::uint64_t> { field->get<std::uint64_t>() };
}

Result<std::optional<nlohmann::json const*>> ObjectReader::object(char const* name) const
{
    auto const* field = find(name);
    if (!field)
        return std::optional<nlohmann::json const*> {};
    if (!field->is_object())
        return type_error(name, *field, "an object");
    return std::optional<nlohmann::json const*> { field };
}

Result<std::optional<std::map<std::string, std::string>>> ObjectReader::string_map(char const* name) const
{
    auto const* field = find(name);
    if (!field)
        return std::optional<std::map<std::string, std::string>> {};
    if (!field->is_object())
        return type_error(name, *field, "a map of strings");
    std::map<std::string, std::string> out;
    for (auto const& item : field->items()) {
        if (!item.value().is_string())
            return body_error("invalid type for `" + std::string(name) + "." + quote_for_message(item.key()) + "`: " + describe_type(item.value()) + ", expected a string");
        out.emplace(item.key(), item.value().get<std::string>());
    }
    return std::optional<std::map<std::string, std::string>> { std::move(out) };
}

} // namespace strata::api
