// libFuzzer target: the API's request handling from raw (method, target, body)
// through the parser and the dispatcher to the JSON reply, against a fake
// controller. The input is a client; handling must never crash or throw, and every
// reply must be valid JSON (or empty for 204) with a 2xx/4xx status: the fake never
// fails, so a 5xx would mean the API blamed itself for the client's bytes.
#include "tests/vmm/api_fake_controller.h"
#include "vmm/api/dispatch.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace strata::api;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // Layout: one byte picks the method (or, past the list, takes the method from
    // the input), then the target up to the first '\n', then the body.
    if (size < 1)
        return 0;
    static constexpr std::string_view methods[] = { "GET", "PUT", "PATCH", "DELETE" };
    // SAFETY: libFuzzer's bytes viewed as chars; same size, no alignment needs.
    std::string_view input(reinterpret_cast<char const*>(data + 1), size - 1);
    std::string_view method;
    if (data[0] < std::size(methods) * 60) {
        method = methods[data[0] % std::size(methods)];
    } else {
        auto const space = input.find(' ');
        method = input.substr(0, space);
        input = space == std::string_view::npos ? std::string_view {} : input.substr(space + 1);
    }
    auto const newline = input.find('\n');
    std::string_view target = input.substr(0, newline);
    std::string_view body = newline == std::string_view::npos ? std::string_view {} : input.substr(newline + 1);

    fake::FakeController vm;
    // Half the inputs run against a started VM so post-boot paths are reached.
    if (data[0] & 1)
        vm.set_state(VmState::Running);
    auto reply = handle_request(vm, method, target, body);
    if (reply.status >= 500 || reply.status < 200)
        std::abort();
    if (reply.status == 204) {
        if (!reply.body.empty())
            std::abort();
    } else if (!nlohmann::json::accept(reply.body)) {
        std::abort();
    }
    return 0;
}
