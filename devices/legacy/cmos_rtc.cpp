#include "devices/legacy/cmos_rtc.h"

namespace strata {

namespace {
constexpr std::uint8_t regb_binary = 0x04;
constexpr std::uint8_t regb_24h = 0x02;
constexpr std::uint8_t regd_valid = 0x80;
} // namespace

CmosRtc::CmosRtc(std::function<std::time_t()> now)
    : m_now(std::move(now))
{
    m_ram[RegA] = 0x26; // 32.768 kHz time base, 1024 Hz rate: what PC firmware leaves
    m_ram[RegB] = regb_24h;
    // glibc's gmtime_r reads the time zone (opens /etc/localtime) on its first
    // call in the process. That call must happen here, on the thread that builds
    // the machine, not on the vCPU thread reading the clock: a vCPU's seccomp
    // filter (vmm/isolation/seccomp.h) has no openat.
    std::time_t const first = m_now();
    std::tm t {};
    ::gmtime_r(&first, &t);
}

std::uint8_t CmosRtc::encode(unsigned value) const
{
    if (m_ram[RegB] & regb_binary)
        return static_cast<std::uint8_t>(value);
    return static_cast<std::uint8_t>(((value / 10) << 4) | (value % 10));
}

std::uint8_t CmosRtc::read_reg(std::uint8_t reg)
{
    std::tm t {};
    switch (reg) {
    case Seconds:
    case Minutes:
    case Hours:
    case Weekday:
    case Day:
    case Month:
    case Year:
    case Century: {
        std::time_t now = m_now();
        ::gmtime_r(&now, &t);
        break;
    }
    default:
        break;
    }
    switch (reg) {
    case Seconds:
        return encode(static_cast<unsigned>(t.tm_sec > 59 ? 59 : t.tm_sec));
    case Minutes:
        return encode(static_cast<unsigned>(t.tm_min));
    case Hours: {
        auto h = static_cast<unsigned>(t.tm_hour);
        if (m_ram[RegB] & regb_24h)
            return encode(h);
        bool pm = h >= 12;
        unsigned h12 = h % 12 == 0 ? 12 : h % 12;
        return static_cast<std::uint8_t>(encode(h12) | (pm ? 0x80 : 0));
    }
    case Weekday:
        return encode(static_cast<unsigned>(t.tm_wday + 1));
    case Day:
        return encode(static_cast<unsigned>(t.tm_mday));
    case Month:
        return encode(static_cast<unsigned>(t.tm_mon + 1));
    case Year:
        return encode(static_cast<unsigned>((t.tm_year + 1900) % 100));
    case Century:
        return encode(static_cast<unsigned>((t.tm_year + 1900) / 100));
    case RegA:
        return static_cast<std::uint8_t>(m_ram[RegA] & 0x7f); // never updating
    case RegC:
        return 0;
    case RegD:
        return regd_valid;
    default:
        return m_ram[reg & 0x7f];
    }
}

void CmosRtc::read(std::uint64_t offset, std::span<std::byte> data)
{
    if (data.empty())
        return;
    std::uint8_t value = 0xff;
    {
        std::lock_guard guard(m_lock);
        if (offset == 1)
            value = read_reg(m_index);
        else if (offset == 0)
            value = m_index;
    }
    data[0] = static_cast<std::byte>(value);
    for (std::size_t i = 1; i < data.size(); ++i)
        data[i] = std::byte { 0xff };
}

void CmosRtc::write(std::uint64_t offset, std::span<std::byte const> data)
{
    if (data.empty())
        return;
    auto value = static_cast<std::uint8_t>(data[0]);
    std::lock_guard guard(m_lock);
    if (offset == 0) {
        m_index = value & 0x7f;
        return;
    }
    if (offset != 1)
        return;
    switch (m_index) {
    case Seconds:
    case Minutes:
    case Hours:
    case Weekday:
    case Day:
    case Month:
    case Year:
    case Century:
    case RegC:
    case RegD:
        return; // the guest keeps the host's clock; C and D are read-only
    case RegA:
        m_ram[RegA] = value & 0x7f;
        return;
    default:
        m_ram[m_index] = value;
        return;
    }
}

} // namespace strata
