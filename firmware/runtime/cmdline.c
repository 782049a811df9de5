/* Command-line parsing: the words are separated by spaces; a word `key=value`
 * gives a value. Nothing is copied; values are (pointer, length) into the
 * runtime's copy of the command line. */
#include "runtime.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

bool cmdline_next(const char* key, size_t* cursor, const char** value, size_t* len)
{
    const char* s = rt_cmdline();
    size_t klen = strlen(key);
    size_t i = *cursor;
    while (s[i]) {
        while (is_space(s[i]))
            ++i;
        size_t start = i;
        while (s[i] && !is_space(s[i]))
            ++i;
        if (i - start > klen && strncmp(s + start, key, klen) == 0 && s[start + klen] == '=') {
            *value = s + start + klen + 1;
            *len = i - start - klen - 1;
            *cursor = i;
            return true;
        }
    }
    *cursor = i;
    return false;
}

bool cmdline_get(const char* key, const char** value, size_t* len)
{
    size_t cursor = 0;
    return cmdline_next(key, &cursor, value, len);
}

bool cmdline_is(const char* key, const char* value)
{
    const char* v;
    size_t len;
    return cmdline_get(key, &v, &len) && len == strlen(value) && strncmp(v, value, len) == 0;
}

size_t parse_u64(const char* s, size_t len, uint64_t* out)
{
    size_t i = 0;
    uint64_t v = 0;
    unsigned base = 10;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    size_t digits_start = i;
    for (; i < len; ++i) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            break;
        v = v * base + d;
    }
    if (i == digits_start)
        return 0;
    if (i < len) {
        switch (s[i]) {
        case 'k': case 'K': v <<= 10; ++i; break;
        case 'm': case 'M': v <<= 20; ++i; break;
        case 'g': case 'G': v <<= 30; ++i; break;
        default: break;
        }
    }
    *out = v;
    return i;
}

uint64_t cmdline_u64(const char* key, uint64_t fallback)
{
    const char* v;
    size_t len;
    uint64_t out;
    if (cmdline_get(key, &v, &len) && parse_u64(v, len, &out) == len)
        return out;
    return fallback;
}
