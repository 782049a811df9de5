#include "vmm/machine_state.h"

#include "imaging/layer/crc32c.h"

#include <cpuid.h>
#include <cstring>
#include <type_traits>

namespace strata {

namespace {

constexpr char magic[8] = { 'S', 'T', 'R', 'A', 'T', 'A', 'S', 'T' };
constexpr std::size_t header_bytes = 32;
// No real machine comes near these; they bound what a corrupt count can make a
// reader allocate.
constexpr std::uint64_t max_count = 1u << 20;
constexpr std::uint64_t max_bytes = 64u << 20;

class Writer {
public:
    template <typename T>
    void put(T const& value)
    {
        static_assert(std::is_trivially_copyable_v<T>);
        auto const* p = reinterpret_cast<std::byte const*>(&value); // SAFETY: T is trivially copyable
        m_out.insert(m_out.end(), p, p + sizeof(T));
    }
    void put_bytes(std::span<std::byte const> bytes)
    {
        put<std::uint64_t>(bytes.size());
        m_out.insert(m_out.end(), bytes.begin(), bytes.end());
    }
    void put_string(std::string const& s) { put_bytes(std::as_bytes(std::span(s.data(), s.size()))); }
    template <typename T>
    void put_vector(std::vector<T> const& v)
    {
        put_bytes(std::as_bytes(std::span(v.data(), v.size())));
    }
    void put_bool(bool b) { put<std::uint8_t>(b ? 1 : 0); }
    // A list of records: their count, then each as put_one(writer, record) writes it.
    template <typename T, typename PutOne>
    void put_list(std::vector<T> const& v, PutOne put_one)
    {
        put<std::uint64_t>(v.size());
        for (auto const& e : v)
            put_one(*this, e);
    }
    std::vector<std::byte> take() { return std::move(m_out); }

private:
    std::vector<std::byte> m_out;
};

class Reader {
public:
    explicit Reader(std::span<std::byte const> in)
        : m_in(in)
    {
    }
    bool failed() const { return m_failed; }
    bool at_end() const { return m_at == m_in.size(); }

    template <typename T>
    T get()
    {
        static_assert(std::is_trivially_copyable_v<T>);
        T value {};
        if (m_failed || m_in.size() - m_at < sizeof(T)) {
            m_failed = true;
            return value;
        }
        std::memcpy(&value, m_in.data() + m_at, sizeof(T));
        m_at += sizeof(T);
        return value;
    }
    std::span<std::byte const> get_bytes()
    {
        auto const n = get<std::uint64_t>();
        if (m_failed || n > max_bytes || m_in.size() - m_at < n) {
            m_failed = true;
            return {};
        }
        auto out = m_in.subspan(m_at, n);
        m_at += n;
        return out;
    }
    std::string get_string()
    {
        auto b = get_bytes();
        return std::string(reinterpret_cast<char const*>(b.data()), b.size()); // SAFETY: bytes as chars
    }
    template <typename T>
    std::vector<T> get_vector()
    {
        auto b = get_bytes();
        if (b.size() % sizeof(T) != 0) {
            m_failed = true;
            return {};
        }
        std::vector<T> v(b.size() / sizeof(T));
        std::memcpy(v.data(), b.data(), b.size());
        return v;
    }
    std::uint64_t get_count()
    {
        auto n = get<std::uint64_t>();
        if (n > max_count)
            m_failed = true;
        return m_failed ? 0 : n;
    }
    bool get_bool() { return get<std::uint8_t>() != 0; }
    // What put_list wrote: a count (at most max_count), then as many records as
    // get_one(reader) reads; it stops at the first failure.
    template <typename GetOne>
    auto get_list(GetOne get_one)
    {
        std::vector<decltype(get_one(*this))> out;
        auto const n = get_count();
        for (std::uint64_t i = 0; i < n && !m_failed; ++i)
            out.push_back(get_one(*this));
        return out;
    }

private:
    std::span<std::byte const> m_in;
    std::size_t m_at { 0 };
    bool m_failed { false };
};

void put_optional(Writer& w, std::optional<std::uint8_t> const& v)
{
    w.put_bool(v.has_value());
    w.put<std::uint8_t>(v.value_or(0));
}

std::optional<std::uint8_t> get_optional(Reader& r)
{
    bool const has = r.get_bool();
    auto v = r.get<std::uint8_t>();
    return has ? std::optional<std::uint8_t>(v) : std::nullopt;
}

void put_transport(Writer& w, virtio::TransportSnapshot const& t)
{
    w.put(t.device_features_sel);
    w.put(t.driver_features_sel);
    w.put(t.driver_features);
    w.put(t.status);
    w.put_bool(t.needs_reset);
    w.put(t.queue_sel);
    w.put(t.interrupt_status);
    w.put(t.config_generation);
    w.put_list(t.queues, [](Writer& qw, virtio::QueueSnapshot const& q) {
        qw.put(q.config.size);
        qw.put_bool(q.config.ready);
        qw.put(q.config.desc);
        qw.put(q.config.driver);
        qw.put(q.config.device);
        qw.put(q.index);
    });
}

virtio::TransportSnapshot get_transport(Reader& r)
{
    virtio::TransportSnapshot t;
    t.device_features_sel = r.get<std::uint32_t>();
    t.driver_features_sel = r.get<std::uint32_t>();
    t.driver_features = r.get<std::uint64_t>();
    t.status = r.get<std::uint8_t>();
    t.needs_reset = r.get_bool();
    t.queue_sel = r.get<std::uint16_t>();
    t.interrupt_status = r.get<std::uint32_t>();
    t.config_generation = r.get<std::uint32_t>();
    t.queues = r.get_list([](Reader& qr) {
        virtio::QueueSnapshot q;
        q.config.size = qr.get<std::uint16_t>();
        q.config.ready = qr.get_bool();
        q.config.desc = qr.get<std::uint64_t>();
        q.config.driver = qr.get<std::uint64_t>();
        q.config.device = qr.get<std::uint64_t>();
        q.index = qr.get<std::uint16_t>();
        return q;
    });
    return t;
}

void put_pci(Writer& w, virtio::PciTransportSnapshot const& p)
{
    w.put(p.config);
    w.put(p.bars);
    w.put_bool(p.msix.enabled);
    w.put_bool(p.msix.function_mask);
    w.put_list(p.msix.vectors, [](Writer& vw, pci::MsixVectorSnapshot const& v) {
        vw.put(v.address_lo);
        vw.put(v.address_hi);
        vw.put(v.data);
        vw.put(v.control);
        vw.put_bool(v.pending);
    });
    w.put(p.config_vector);
    w.put_vector(p.queue_vectors);
}

virtio::PciTransportSnapshot get_pci(Reader& r)
{
    virtio::PciTransportSnapshot p;
    p.config = r.get<std::array<std::byte, pci::ConfigSize>>();
    p.bars = r.get<std::array<std::uint64_t, 6>>();
    p.msix.enabled = r.get_bool();
    p.msix.function_mask = r.get_bool();
    p.msix.vectors = r.get_list([](Reader& vr) {
        pci::MsixVectorSnapshot v;
        v.address_lo = vr.get<std::uint32_t>();
        v.address_hi = vr.get<std::uint32_t>();
        v.data = vr.get<std::uint32_t>();
        v.control = vr.get<std::uint32_t>();
        v.pending = vr.get_bool();
        return v;
    });
    p.config_vector = r.get<std::uint16_t>();
    p.queue_vectors = r.get_vector<std::uint16_t>();
    return p;
}

void put_limiter(Writer& w, RateLimiter::State const& s)
{
    w.put(s.config.bandwidth);
    w.put(s.config.ops);
    w.put(s.bandwidth);
    w.put(s.ops);
}

RateLimiter::State get_limiter(Reader& r)
{
    RateLimiter::State s;
    s.config.bandwidth = r.get<TokenBucketConfig>();
    s.config.ops = r.get<TokenBucketConfig>();
    s.bandwidth = r.get<TokenBucket::Level>();
    s.ops = r.get<TokenBucket::Level>();
    return s;
}

void put_vcpu(Writer& w, VcpuState const& v)
{
    w.put(v.mp_state);
    w.put(v.regs);
    w.put(v.sregs);
    w.put_vector(v.xsave);
    w.put(v.xcrs);
    w.put(v.debugregs);
    w.put(v.lapic);
    w.put_vector(v.msrs);
    w.put(v.events);
}

VcpuState get_vcpu(Reader& r)
{
    VcpuState v;
    v.mp_state = r.get<kvm_mp_state>();
    v.regs = r.get<kvm_regs>();
    v.sregs = r.get<kvm_sregs>();
    v.xsave = r.get_vector<std::byte>();
    v.xcrs = r.get<kvm_xcrs>();
    v.debugregs = r.get<kvm_debugregs>();
    v.lapic = r.get<kvm_lapic_state>();
    v.msrs = r.get_vector<kvm_msr_entry>();
    v.events = r.get<kvm_vcpu_events>();
    return v;
}

} // namespace

std::string host_cpu_signature(std::size_t xsave_bytes)
{
    unsigned a = 0, b = 0, c = 0, d = 0;
    char vendor[13] = {};
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        std::memcpy(vendor, &b, 4);
        std::memcpy(vendor + 4, &d, 4);
        std::memcpy(vendor + 8, &c, 4);
    }
    unsigned family = 0, model = 0, stepping = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        family = (a >> 8) & 0xf;
        model = (a >> 4) & 0xf;
        stepping = a & 0xf;
        if (family == 0xf)
            family += (a >> 20) & 0xff;
        if (family == 0x6 || family >= 0xf)
            model |= ((a >> 16) & 0xf) << 4;
    }
    return std::string(vendor) + " " + std::to_string(family) + "/" + std::to_string(model) + "/" + std::to_string(stepping)
        + " xsave " + std::to_string(xsave_bytes);
}

std::vector<std::byte> encode_machine_state(MachineState const& s)
{
    Writer w;
    w.put_string(s.cpu);
    w.put(s.memory_bytes);
    w.put(s.memory_crc);
    for (auto const& chip : s.vm.irqchips)
        w.put(chip);
    w.put(s.vm.pit);
    w.put(s.vm.clock);
    w.put_list(s.vcpus, put_vcpu);
    w.put(s.serial.ier);
    w.put(s.serial.lcr);
    w.put(s.serial.mcr);
    w.put(s.serial.scr);
    w.put(s.serial.dll);
    w.put(s.serial.dlm);
    w.put_bool(s.serial.thr_empty_pending);
    w.put_vector(s.serial.input);
    put_optional(w, s.i8042.output);
    w.put(s.i8042.command_byte);
    put_optional(w, s.i8042.pending_command);
    w.put_vector(s.i8042.keys);
    w.put_list(s.virtio, put_transport);
    // Version 2 from here on.
    w.put_list(s.pci, put_pci);
    w.put(s.pci_config_address);
    w.put(s.pci_host_bridge);
    w.put_list(s.nets, [](Writer& nw, NetInterfaceState const& n) {
        nw.put_string(n.id);
        nw.put(n.mac);
        put_limiter(nw, n.rx);
        put_limiter(nw, n.tx);
    });
    w.put_bool(s.mmds_data.has_value());
    w.put_string(s.mmds_data.value_or(""));
    auto payload = w.take();

    std::vector<std::byte> file(header_bytes);
    std::memcpy(file.data(), magic, sizeof magic);
    std::uint32_t const version = MachineState::format_version;
    std::uint32_t const crc = crc32c(payload);
    std::uint64_t const length = payload.size();
    std::memcpy(file.data() + 8, &version, 4);
    std::memcpy(file.data() + 12, &crc, 4);
    std::memcpy(file.data() + 16, &length, 8);
    file.insert(file.end(), payload.begin(), payload.end());
    return file;
}

Result<MachineState> decode_machine_state(std::span<std::byte const> file)
{
    if (file.size() < header_bytes || std::memcmp(file.data(), magic, sizeof magic) != 0)
        return make_error(ErrorKind::BadInput, "not a strata machine state file (bad magic or shorter than its header)");
    std::uint32_t version = 0, crc = 0;
    std::uint64_t length = 0;
    std::memcpy(&version, file.data() + 8, 4);
    std::memcpy(&crc, file.data() + 12, 4);
    std::memcpy(&length, file.data() + 16, 8);
    if (version < MachineState::oldest_readable_version || version > MachineState::format_version)
        return make_error(ErrorKind::Unsupported, "machine state format version " + std::to_string(version) + " is not one this strata reads ("
            + std::to_string(MachineState::oldest_readable_version) + " to " + std::to_string(MachineState::format_version) + ")");
    if (length != file.size() - header_bytes)
        return make_error(ErrorKind::BadInput, "machine state file is truncated or has trailing bytes (payload of "
            + std::to_string(file.size() - header_bytes) + " bytes, header says " + std::to_string(length) + ")");
    auto payload = file.subspan(header_bytes);
    if (crc32c(payload) != crc)
        return make_error(ErrorKind::BadInput, "machine state file is corrupt (CRC mismatch)");

    Reader r(payload);
    MachineState s;
    s.cpu = r.get_string();
    s.memory_bytes = r.get<std::uint64_t>();
    s.memory_crc = r.get<std::uint32_t>();
    for (auto& chip : s.vm.irqchips)
        chip = r.get<kvm_irqchip>();
    s.vm.pit = r.get<kvm_pit_state2>();
    s.vm.clock = r.get<kvm_clock_data>();
    s.vcpus = r.get_list(get_vcpu);
    s.serial.ier = r.get<std::uint8_t>();
    s.serial.lcr = r.get<std::uint8_t>();
    s.serial.mcr = r.get<std::uint8_t>();
    s.serial.scr = r.get<std::uint8_t>();
    s.serial.dll = r.get<std::uint8_t>();
    s.serial.dlm = r.get<std::uint8_t>();
    s.serial.thr_empty_pending = r.get_bool();
    s.serial.input = r.get_vector<std::uint8_t>();
    s.i8042.output = get_optional(r);
    s.i8042.command_byte = r.get<std::uint8_t>();
    s.i8042.pending_command = get_optional(r);
    s.i8042.keys = r.get_vector<std::uint8_t>();
    s.virtio = r.get_list(get_transport);
    if (version >= 2) {
        s.pci = r.get_list(get_pci);
        s.pci_config_address = r.get<std::uint32_t>();
        s.pci_host_bridge = r.get<std::array<std::byte, pci::ConfigSize>>();
        s.nets = r.get_list([](Reader& nr) {
            NetInterfaceState n;
            n.id = nr.get_string();
            n.mac = nr.get<std::array<std::uint8_t, 6>>();
            n.rx = get_limiter(nr);
            n.tx = get_limiter(nr);
            return n;
        });
        bool const has_mmds = r.get_bool();
        auto data = r.get_string();
        if (has_mmds)
            s.mmds_data = std::move(data);
    }
    if (r.failed() || !r.at_end())
        return make_error(ErrorKind::BadInput, "machine state file is malformed (its CRC matches but its contents do not parse)");
    return s;
}

} // namespace strata
