// Strict reading of one JSON request object, with Firecracker's rules: a field
// outside the endpoint's list is an error (serde's deny_unknown_fields), a field of
// the wrong type is an error (no coercion: "1" is not a number, 1.0 is not an
// integer, -1 is not unsigned), and null means absent (serde's Option). Messages
// name the field in serde's words ("unknown field `x`, expected one of ...").
//
// Nothing here throws: the reader only inspects nlohmann::json values with type
// predicates before reading them.
// Threading: plain values over a json the caller owns.
#pragma once

#include "base/result.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::api {

// Every body error starts with Firecracker's prefix so clients can match it.
[[nodiscard]] Error body_error(std::string const& detail);

// Shortens a client-supplied string for an error message: at most 64 bytes, with
// control characters shown as '?'. (Invalid UTF-8 is replaced when the reply is
// serialized.)
std::string quote_for_message(std::string_view text);

class ObjectReader {
public:
    // Fails when `value` is not an object or holds a field not in `allowed`.
    [[nodiscard]] static Result<ObjectReader> open(nlohmann::json const& value, std::initializer_list<char const*> allowed);

    // Each getter returns nullopt when the field is absent or null, and an error
    // when it is present with another type.
    [[nodiscard]] Result<std::optional<std::string>> string(char const* name) const;
    [[nodiscard]] Result<std::optional<bool>> boolean(char const* name) const;
    [[nodiscard]] Result<std::optional<std::uint64_t>> unsigned_integer(char const* name) const;
    // An object whose values are all strings (labels).
    [[nodiscard]] Result<std::optional<std::map<std::string, std::string>>> string_map(char const* name) const;

    // A nested object (the pointer stays valid as long as the json does).
    [[nodiscard]] Result<std::optional<nlohmann::json const*>> object(char const* name) const;

    // The "missing field `x`" error, for required fields the getters found absent.
    [[nodiscard]] static Error missing(char const* name);

private:
    explicit ObjectReader(nlohmann::json const& value) : m_value(&value) { }
    nlohmann::json const* find(char const* name) const;

    nlohmann::json const* m_value;
};

} // namespace strata::api
