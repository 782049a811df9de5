// The cli/ folder: the strata command, a thin layer over vmm/ and store/ that
// parses arguments (CLI11) and turns errors into messages and exit codes. Nothing
// here is needed to run a VM in-process; as Firecracker keeps its binary apart
// from its VMM crate, the VMM library never depends on this folder.
//
// The strata CLI's subcommand groups. Each group registers its subcommands on the
// top-level CLI11 app; when one runs, it stores its exit code in exit_code.
// strata's own failures use the sysexits.h codes from base/sysexits.h.
// Threading: the CLI runs on the main thread only.
#pragma once

namespace CLI {
class App;
}

namespace strata::cli {

void register_run(CLI::App& app, int& exit_code);
// `vmm`: one VM's VMM process with its REST API (vmm_command.cpp).
void register_vmm(CLI::App& app, int& exit_code);
// `img create|info|check|map|resize|bench`; img_group() returns the `img` subcommand (creating it once) for other img verbs.
void register_img(CLI::App& app, int& exit_code);
CLI::App* img_group(CLI::App& app);
// `disks`, `snapshots`, `images` (store_commands.cpp); `img convert|compare` (convert_commands.cpp).
void register_store(CLI::App& app, int& exit_code);
void register_convert(CLI::App& app, int& exit_code);
// `vms` (vm_commands.cpp), `instance-templates` (template_commands.cpp), `machine-images` (machine_image_commands.cpp).
void register_vms(CLI::App& app, int& exit_code);
void register_templates(CLI::App& app, int& exit_code);
void register_machine_images(CLI::App& app, int& exit_code);
// `images push|pull` and `machine-images push|pull` (registry_commands.cpp): after
// register_store and register_machine_images, which make the groups.
void register_registry(CLI::App& app, int& exit_code);

} // namespace strata::cli
