// The API's request parser: a pure function from (method, target, body) to a typed,
// validated request, or an Error (ErrorKind::Usage, i.e. 400) whose message is the
// fault_message. It checks everything that can be checked without the VM: the
// method and path, the JSON syntax, field names and types (json_fields.h), required
// fields, ranges (vcpu_count 1..254, mem_size_mib >= 8), names, host paths, labels
// and the body size. Whether the request fits the VM's state (pre-boot only, post-boot
// only) is the dispatcher's question (dispatch.h), and whether it can be done is the
// controller's.
//
// Paths and field names are Firecracker's (PUT /boot-source, /machine-config,
// /drives/{id}, /actions, PATCH /vm, GET /vm/config, GET /) plus strata's
// PUT /network-interfaces/{id}, PUT /snapshot/disks, PUT /machine-images, PUT /agent,
// PUT /vm/suspend and GET /metrics, Firecracker's metadata service (GET, PUT and
// PATCH /mmds, PUT /mmds/config) and its PUT /snapshot/create and
// PUT /snapshot/load; the list is in
// request.cpp's route table. It has a fuzz target (tests/fuzz/fuzz_api_request.cpp).
// Threading: pure functions.
#pragma once

#include "base/result.h"
#include "vmm/api/controller.h"

#include <cstddef>
#include <string_view>
#include <variant>

namespace strata::api {

struct GetInstanceInfo { };
struct GetVmConfig { };
struct GetMetrics { };
// PUT /vm/suspend, body {} (or empty): strata's own; see VmController::suspend.
struct SuspendRequest { };
struct MmdsGet { };

enum class ActionType {
    InstanceStart,
    SendCtrlAltDel,
};
struct InstanceAction {
    ActionType type { ActionType::InstanceStart };
};

// PATCH /vm.
struct VmStateChange {
    bool pause { false }; // "Paused" -> true, "Resumed" -> false
};

using ApiRequest = std::variant<GetInstanceInfo, GetVmConfig, GetMetrics, BootSource, MachineSettings, DriveConfig,
    DriveUpdate, InstanceAction, VmStateChange, SnapshotDisksRequest, MachineImageRequest, AgentCommand, SuspendRequest,
    NetworkInterfaceConfig, NetworkInterfaceUpdate, MmdsGet, MmdsPut, MmdsPatch, MmdsConfigRequest,
    SnapshotCreateRequest, SnapshotLoadRequest>;

// Bodies are small JSON objects; anything larger is refused before parsing.
constexpr std::size_t max_body_bytes = 64 * 1024;

// Limits shared with the CLI, which checks the same names before sending them.
constexpr std::size_t max_name_bytes = 64;
constexpr std::size_t max_path_bytes = 4096;
constexpr std::size_t max_boot_args_bytes = 4096;
constexpr std::size_t max_description_bytes = 2048;
constexpr std::size_t max_labels = 64;
constexpr std::uint64_t min_mem_size_mib = 8;
constexpr std::uint64_t max_agent_wait_ms = 60000;
constexpr std::uint64_t max_agent_freeze_s = 300; // the agent's own limit
constexpr std::uint64_t max_mem_size_mib = std::uint64_t { 1 } << 24; // 16 TiB keeps MiB << 20 far from overflow

[[nodiscard]] Result<ApiRequest> parse_request(std::string_view method, std::string_view target, std::string_view body);

// When a request may run relative to InstanceStart.
enum class Phase {
    Any,
    PreBoot,  // refused once the VM has started
    PostBoot, // refused before it has
};
Phase phase_of(ApiRequest const& request);

// A snapshot or machine-image name: 1..64 bytes, no '/', no "..", no control
// characters, not "." — safe as one file name in the store.
[[nodiscard]] Status check_name(std::string_view what, std::string_view name);
// A drive ID: 1..64 bytes of [A-Za-z0-9_.-] (Firecracker's alphanumerics and
// underscore, plus '-' and '.'), not "." or "..".
[[nodiscard]] Status check_drive_id(std::string_view id);
// A label, with GCP's rules: the key 1..63 bytes of [a-z0-9_-] starting with a
// lowercase letter; the value 0..63 bytes of [a-z0-9_-].
[[nodiscard]] Status check_label(std::string_view key, std::string_view value);

} // namespace strata::api
