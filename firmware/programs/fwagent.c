/* fwagent: see fwagent.h. Requests come from the VMM and are treated as untrusted:
 * fields are found by a bounded scan, numbers are parsed with limits, and
 * anything unexpected gets an ok=false reply. */
#include "fwagent.h"
#include "io.h"
#include "runtime.h"

#define FREEZE_DEFAULT_S 10
#define FREEZE_MAX_S 300

/* The value after "key": in a JSON line, or 0. */
static const char* field(const char* line, const char* key)
{
    size_t klen = strlen(key);
    for (const char* p = line; *p; ++p) {
        if (*p != '"' || strncmp(p + 1, key, klen) != 0 || p[1 + klen] != '"')
            continue;
        const char* v = p + 2 + klen;
        while (*v == ' ')
            ++v;
        if (*v != ':')
            continue;
        ++v;
        while (*v == ' ')
            ++v;
        return v;
    }
    return 0;
}

/* A JSON string value into out (no escapes accepted); false if it is not one. */
static bool string_value(const char* v, char* out, size_t cap)
{
    if (!v || *v != '"')
        return false;
    size_t n = 0;
    for (++v; *v && *v != '"'; ++v) {
        if (*v == '\\' || n + 1 >= cap)
            return false;
        out[n++] = *v;
    }
    out[n] = 0;
    return *v == '"';
}

static bool number_value(const char* v, uint64_t* out)
{
    if (!v)
        return false;
    size_t n = 0;
    while (v[n] >= '0' && v[n] <= '9' && n < 18)
        ++n;
    return n > 0 && parse_u64(v, n, out) == n;
}

static void reply(struct fwagent* a, const char* text)
{
    if (vcon_write(&a->con, text, strlen(text)) != 0)
        printf("fwagent: a reply was not taken by the device\n");
}

static bool g_frozen;
static uint64_t g_thaw_at;

static void handle(struct fwagent* a, const char* line)
{
    char buf[512];
    char cmd[32];
    uint64_t id = 0;
    ++a->requests;
    if (a->silent)
        return;
    bool has_id = number_value(field(line, "id"), &id);
    if (!has_id || !string_value(field(line, "cmd"), cmd, sizeof cmd)) {
        reply(a, "{\"id\":null,\"ok\":false,\"error\":\"the request has no numeric id or no cmd string\"}\n");
        return;
    }
    if (strncmp(cmd, "ping", 5) == 0) {
        snprintf(buf, sizeof buf,
                 "{\"id\":%lu,\"ok\":true,\"result\":{\"agent\":\"strata-fw-agent\",\"version\":1,\"instance_id\":\"\",\"frozen\":%s}}\n",
                 (unsigned long)id, g_frozen ? "true" : "false");
        reply(a, buf);
    } else if (strncmp(cmd, "freeze", 7) == 0) {
        uint64_t timeout = FREEZE_DEFAULT_S;
        const char* t = field(line, "timeout_s");
        if (t && (!number_value(t, &timeout) || timeout < 1 || timeout > FREEZE_MAX_S)) {
            snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":false,\"error\":\"timeout_s must be an integer from 1 to 300\"}\n",
                     (unsigned long)id);
            reply(a, buf);
            return;
        }
        if (g_frozen) {
            snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":false,\"error\":\"already frozen; thaw first\"}\n", (unsigned long)id);
            reply(a, buf);
            return;
        }
        uint64_t ms = timeout * 1000;
        if (a->freeze_max_ms && a->freeze_max_ms < ms)
            ms = a->freeze_max_ms;
        g_frozen = true;
        a->auto_thawed = false;
        g_thaw_at = rdtsc() + ms * rt_tsc_khz();
        printf("fwagent: frozen (thaw within %lu ms)\n", (unsigned long)ms);
        snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":true,\"result\":{\"frozen\":[\"/\"],\"timeout_s\":%lu}}\n",
                 (unsigned long)id, (unsigned long)timeout);
        reply(a, buf);
    } else if (strncmp(cmd, "thaw", 5) == 0) {
        bool was_auto = a->auto_thawed && !g_frozen;
        bool was_frozen = g_frozen;
        g_frozen = false;
        a->auto_thawed = false;
        if (was_frozen)
            printf("fwagent: thawed\n");
        snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":true,\"result\":{\"thawed\":[%s],\"auto_thawed\":%s}}\n", (unsigned long)id,
                 was_frozen ? "\"/\"" : "", was_auto ? "true" : "false");
        reply(a, buf);
    } else if (strncmp(cmd, "generalize", 11) == 0) {
        snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":true,\"result\":{\"removed\":[],\"power_off\":true}}\n", (unsigned long)id);
        reply(a, buf);
        printf("fwagent: generalized; resetting through the i8042\n");
        outb(0x64, 0xfe);
        for (;;)
            __asm__ volatile("hlt");
    } else {
        snprintf(buf, sizeof buf, "{\"id\":%lu,\"ok\":false,\"error\":\"unknown command (ping, freeze, thaw, generalize)\"}\n",
                 (unsigned long)id);
        reply(a, buf);
    }
}

bool fwagent_init(struct fwagent* a)
{
    memset(a, 0, sizeof(*a));
    const char* mode;
    size_t len;
    if (!cmdline_get("agent", &mode, &len) || (len == 1 && mode[0] == '0'))
        return false;
    a->silent = len == 6 && strncmp(mode, "silent", 6) == 0;
    a->freeze_max_ms = cmdline_u64("agent_freeze_max_ms", 0);
    if (vcon_open(&a->con) != 0)
        rt_fail(3, "agent=%.*s but no virtio-console was found", (int)len, mode);
    a->enabled = true;
    /* Boot-complete, as strata-agent signals it once the system is up. */
    outb(0x3f0, 123);
    printf("fwagent: serving on %s%s\n", a->con.dev.name, a->silent ? " (silent: never answers)" : "");
    return true;
}

void fwagent_poll(struct fwagent* a)
{
    static char line[VCON_LINE_MAX];
    if (!a->enabled)
        return;
    do {
        while (vcon_poll_line(&a->con, line, sizeof line) >= 0)
            handle(a, line);
        if (g_frozen && rdtsc() > g_thaw_at) {
            g_frozen = false;
            a->auto_thawed = true;
            printf("fwagent: freeze timed out; thawed by itself\n");
        }
        if (g_frozen)
            cpu_relax();
    } while (g_frozen);
}
