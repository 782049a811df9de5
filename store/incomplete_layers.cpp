// Layers pulled lazily from a registry whose data is not all here yet
// (registry/lazy.h): the store refuses to read them itself.
#include "store/store.h"

#include <unistd.h>

namespace strata {

std::string Store::lazy_description_path(std::string const& root, LayerId const& id)
{
    return root + "/registry/lazy/" + id.to_string() + ".json";
}

Status Store::require_complete(std::vector<LayerId> const& layers, std::string const& what) const
{
    for (auto const& id : layers)
        if (::access(lazy_description_path(m_root, id).c_str(), F_OK) == 0)
            return make_error(ErrorKind::Busy, "cannot " + what + ": its layer " + id.to_string()
                    + " is still being pulled lazily from a registry (`strata images fill`, or a VM's background fill, completes it)");
    return ok();
}

} // namespace strata
