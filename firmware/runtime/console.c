/* Serial console on COM1 (a 16550 at 0x3f8, polled, no interrupts), the printf
 * subset the programs use (%d %i %u %x %X %p %s %c %%, the l/ll/z length
 * modifiers, a field width with optional 0 or - flag, a precision for %s), and the exit port.
 * Each port access may cost a VM exit, so the transmitter is polled once per
 * character and the line is never reprogrammed: QEMU and strata both present a
 * ready 16550 after reset. */
#include "io.h"
#include "runtime.h"

#define COM1 0x3f8
#define UART_RBR 0
#define UART_THR 0
#define UART_LSR 5
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20
#define EXIT_PORT 0xf4

void rt_putc(char c)
{
    /* Bounded wait: a missing UART reads 0xff, which looks ready, so this only
     * spins when a real UART is busy. */
    for (int i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & LSR_THR_EMPTY); ++i)
        cpu_relax();
    outb(COM1 + UART_THR, (uint8_t)c);
}

void rt_puts(const char* s)
{
    while (*s)
        rt_putc(*s++);
}

int rt_getc(void)
{
    uint8_t lsr = inb(COM1 + UART_LSR);
    if (lsr == 0xff || !(lsr & LSR_DATA_READY))
        return -1;
    return inb(COM1 + UART_RBR);
}

__attribute__((noreturn)) void rt_exit(uint32_t value)
{
    outl(EXIT_PORT, value);
    for (;;)
        __asm__ volatile("cli; hlt");
}

__attribute__((noreturn)) void rt_fail(int code, const char* fmt, ...)
{
    va_list ap;
    printf("%s: FAIL: ", rt_program_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    rt_putc('\n');
    rt_exit((uint32_t)(code > 0 && code < 64 ? code : 63));
}

/* A sink is either the console or a bounded buffer. */
struct sink {
    char* buf;
    size_t size;
    size_t len;
};

static void emit(struct sink* s, char c)
{
    if (!s->buf)
        rt_putc(c);
    else if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void emit_number(struct sink* s, uint64_t v, unsigned base, bool upper, bool negative, int width, char pad,
                        bool left)
{
    char digits[24];
    int n = 0;
    const char* set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[n++] = set[v % base];
        v /= base;
    } while (v);
    int len = n + (negative ? 1 : 0);
    if (negative && pad == '0')
        emit(s, '-');
    for (int i = len; !left && i < width; ++i)
        emit(s, pad);
    if (negative && pad != '0')
        emit(s, '-');
    while (n)
        emit(s, digits[--n]);
    for (int i = len; left && i < width; ++i)
        emit(s, ' ');
}

static void format(struct sink* s, const char* fmt, va_list ap)
{
    for (; *fmt; ++fmt) {
        if (*fmt != '%') {
            emit(s, *fmt);
            continue;
        }
        ++fmt;
        bool left = false;
        char pad = ' ';
        for (; *fmt == '-' || *fmt == '0'; ++fmt) {
            if (*fmt == '-')
                left = true;
            else
                pad = '0';
        }
        int width = 0;
        for (; *fmt >= '0' && *fmt <= '9'; ++fmt)
            width = width * 10 + (*fmt - '0');
        int precision = -1;
        if (*fmt == '.') {
            ++fmt;
            precision = 0;
            if (*fmt == '*') {
                precision = va_arg(ap, int);
                ++fmt;
            }
            for (; *fmt >= '0' && *fmt <= '9'; ++fmt)
                precision = precision * 10 + (*fmt - '0');
        }
        int longs = 0;
        for (; *fmt == 'l' || *fmt == 'z'; ++fmt)
            longs = *fmt == 'z' ? 2 : longs + 1;
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
            emit_number(s, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, false, v < 0, width, pad, left);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            emit_number(s, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, pad, left);
            break;
        }
        case 'p':
            emit(s, '0');
            emit(s, 'x');
            emit_number(s, (uint64_t)va_arg(ap, void*), 16, false, false, width, pad, left);
            break;
        case 'c':
            emit(s, (char)va_arg(ap, int));
            break;
        case 's': {
            const char* str = va_arg(ap, const char*);
            if (!str)
                str = "(null)";
            int len = 0;
            while (str[len] && (precision < 0 || len < precision))
                ++len;
            for (int i = len; !left && i < width; ++i)
                emit(s, ' ');
            for (int i = 0; i < len; ++i)
                emit(s, str[i]);
            for (int i = len; left && i < width; ++i)
                emit(s, ' ');
            break;
        }
        case '%':
            emit(s, '%');
            break;
        case '\0':
            return;
        default:
            emit(s, '%');
            emit(s, *fmt);
            break;
        }
    }
}

int vprintf(const char* fmt, va_list ap)
{
    struct sink s = { 0, 0, 0 };
    format(&s, fmt, ap);
    return (int)s.len;
}

int printf(const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int snprintf(char* buf, size_t size, const char* fmt, ...)
{
    struct sink s = { buf, size, 0 };
    va_list ap;
    va_start(ap, fmt);
    format(&s, fmt, ap);
    va_end(ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return (int)s.len;
}
