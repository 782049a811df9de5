/* fwagent: a minimal guest agent for firmware test programs, speaking the line-JSON
 * protocol of guest-tools/agent (ping, freeze {timeout_s}, thaw, generalize) over
 * the virtio-console, so the VMM's agent client and machine-image --guest-flush
 * can be tested under KVM without Linux.
 *
 * Modes (the program's `agent=` option): "1" answers; "silent" reads requests and
 * never answers (an agent that hangs). With `agent_freeze_max_ms=N` a freeze ends
 * by itself after N ms at most (an agent whose auto-thaw fires early), so the
 * following thaw reports auto_thawed. At start it signals boot-complete (byte 123
 * to port 0x3f0), as strata-agent does.
 *
 * The program calls fwagent_poll() between units of work (seqwriter: between
 * rounds, when every write has completed and every disk is flushed). While a
 * freeze holds, fwagent_poll() does not return: it keeps serving the console until
 * thaw or the freeze's timeout, so the program writes nothing meanwhile.
 * generalize replies and then resets the VM through the i8042 (port 0x64, 0xfe).
 * Threading: BSP only. */
#pragma once

#include "console.h"

#include <stdbool.h>
#include <stdint.h>

struct fwagent {
    struct vcon con;
    bool enabled;
    bool silent;
    bool auto_thawed;        /* the last freeze ended by its timeout */
    uint64_t freeze_max_ms;  /* 0: no cap */
    uint64_t requests;
};

/* Reads `agent=` and `agent_freeze_max_ms=`; opens the console when enabled
 * (failing the program with code 3 if there is none). Returns whether enabled. */
bool fwagent_init(struct fwagent* a);
/* Serves every complete request line; blocks while frozen (see above). */
void fwagent_poll(struct fwagent* a);
