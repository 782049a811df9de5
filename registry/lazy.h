// Lazily pulled layers (REGISTRY.md, "Lazy pull"): a layer whose data is still in
// a registry blob. `images pull --lazy` builds, for each layer it lacks, an
// ordinary frozen layer file whose mapping is complete (every chunk of the blob
// has its place in the file) but whose data blocks are holes, and next to it, in
// $STRATA_HOME/registry/lazy/, the layer's remote description (<id>.json: the
// registry, repository and blob, and the blob's chunk index, verified against
// the manifest's annotation) and a presence file (<id>.present: one byte per
// chunk, 1 once the chunk's bytes are in the layer file and synced). While the
// description exists the layer is incomplete and must only be read through a
// LazyDisk; when every chunk is present the description and presence file are
// removed and the layer is an ordinary local layer.
//
// LazyDisk: the BlockBackend a VMM serves a disk through when some of its layers
// are incomplete. It wraps the disk's Chain: a request that would read a block
// whose data lies in a missing chunk (the chain's merged map says which layer
// serves each block) is held while worker threads fetch that chunk with an HTTP
// Range request, decompress it, check its SHA-256 and write it into the layer
// file; then it goes to the chain. A fetch that fails (the registry is gone)
// completes the requests waiting on it with an Io error, which the guest sees as
// an I/O error; a later read tries again. A background fill thread fetches the
// remaining chunks (after fill_delay_ms), in large Range requests.
//
// Threading: submit/kick/reap/completion_fd from the thread that drives the
// disk (BlockBackend's contract); the fetch workers and the fill thread share
// the chunk states under one mutex and wake the driving thread through an
// eventfd that completion_fd() (an epoll descriptor) also watches.
#pragma once

#include "base/result.h"
#include "imaging/block_backend.h"
#include "imaging/chain.h"
#include "imaging/layer/layer_format.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace strata::registry {

struct LazyChunk {
    std::uint64_t offset { 0 };      // in the layer
    std::uint64_t length { 0 };
    std::uint64_t at { 0 };          // in the blob
    std::uint64_t stored { 0 };
    std::uint64_t file_offset { 0 }; // of its data in the layer file
    Sha256 digest;                   // of the uncompressed bytes
    std::uint32_t blob { 0 };        // which of the layer's blobs (parts) holds it
};

struct LazyBlob {
    std::string digest; // sha256:...
    std::uint64_t size { 0 };
};

struct LazyLayerInfo {
    LayerId id;
    std::string registry, repository; // where the blob is
    bool plain_http { false };
    std::string ca_cert;
    bool tls_verify { true };
    std::vector<LazyBlob> blobs;      // the layer's blobs (one per part)
    std::uint64_t layer_size { 0 };
    std::string content;              // the layer's content digest (the manifest's annotation)
    std::vector<LazyChunk> chunks;
};

std::string lazy_dir(std::string const& store_root);
// The description of an incomplete layer, or nothing when the layer is local.
[[nodiscard]] Result<std::optional<LazyLayerInfo>> load_lazy(std::string const& store_root, LayerId const& id);
bool layer_is_lazy(std::string const& store_root, LayerId const& id);
// Writes <id>.json and an all-absent <id>.present (durably).
[[nodiscard]] Status save_lazy(std::string const& store_root, LazyLayerInfo const& info);
void remove_lazy(std::string const& store_root, LayerId const& id);

struct LazyOptions {
    unsigned workers { 4 };              // on-demand fetch threads (a guest queue's misses at once)
    unsigned fill_delay_ms { 2000 };     // before the background fill starts (0: at once)
    bool fill { true };
    std::uint64_t fill_request_bytes { 16 << 20 }; // stored bytes per Range request of the fill
    // The chunks under the disk's first prefetch_bytes (partition table, boot
    // sector, a file system's superblock: what nearly every guest reads first)
    // are queued for the fetch workers as soon as the disk opens, so they
    // arrive while the VMM and the guest start. 0: none.
    std::uint64_t prefetch_bytes { 1 << 20 };
};

// Counters, for tests and benchmarks (GET /metrics could show them).
struct LazyStats {
    std::uint64_t demand_fetches { 0 };  // Range requests made for held guest requests
    std::uint64_t demand_bytes { 0 };
    std::uint64_t fill_fetches { 0 };
    std::uint64_t fill_bytes { 0 };
    std::uint64_t failed_fetches { 0 };
    std::uint64_t held_requests { 0 };   // guest requests that waited for a chunk
    std::uint64_t eio_requests { 0 };    // ... and completed with an I/O error
};

// How far an incomplete layer is: chunks present (synced and marked) of all,
// and the bytes they hold, of the layer's data and of its blobs.
struct LazyProgress {
    std::uint64_t chunks_present { 0 }, chunks_total { 0 };
    std::uint64_t bytes_present { 0 }, bytes_total { 0 };
    std::uint64_t blob_bytes_present { 0 }, blob_bytes_total { 0 };
};
// From the layer's description and presence file; nothing when it is local.
[[nodiscard]] Result<std::optional<LazyProgress>> lazy_progress(std::string const& store_root, LayerId const& id);

// A running lazy disk's state (any thread): its incomplete layers' progress as
// it serves them (chunks fetched but not yet synced count as present) and its
// counters. Nothing when the backend is not a LazyDisk.
struct LazyDiskState {
    LazyProgress progress;
    LazyStats stats;
};
std::optional<LazyDiskState> lazy_disk_state(BlockBackend& backend);

// The options from the environment: STRATA_LAZY_FILL_DELAY_MS, STRATA_LAZY_FILL=0,
// STRATA_LAZY_PREFETCH_KB.
LazyOptions lazy_options_from_env();

// The chain itself when none of its layers is incomplete, else a LazyDisk over it.
// chain_out is set to the chain either way (it stays owned by the result).
[[nodiscard]] Result<std::unique_ptr<BlockBackend>> wrap_lazy(std::string const& store_root, std::unique_ptr<Chain> chain,
    Chain*& chain_out, LazyOptions const& options = lazy_options_from_env());

// Fetches every missing chunk of an incomplete layer in the foreground (`strata
// images fill`); the layer is local afterwards. Returns the blob bytes fetched.
[[nodiscard]] Result<std::uint64_t> fill_layer(std::string const& store_root, LayerId const& id);

} // namespace strata::registry
