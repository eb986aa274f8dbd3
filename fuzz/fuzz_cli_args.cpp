// Fuzzes the command line of socket-connector (examples/cli_args.hpp) and the address and port
// parsers it uses (include/socket_connector/address.hpp).
//
// The input is cut at each NUL into argv words (as a shell would pass them: no word holds a
// NUL) and parsed; the whole input is also given to parse_address, parse_port and the value
// parsers. Checked: nothing throws or crashes; parsing is deterministic; a message is one line
// of printable ASCII of bounded length; a configuration is within every documented range and
// make_options carries it; an address read back from to_string is the same address.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <socket_connector/address.hpp>

#include "cli_args.hpp"
#include "fuzz_check.hpp"

namespace sc = socket_connector;
using namespace std::chrono_literals;

namespace {

constexpr std::chrono::milliseconds max_ms{static_cast<std::int64_t>(cli::max_seconds * 1000)};

bool printable_ascii(std::string_view text) {
    for (char c : text)
        if (c < 0x20 || c > 0x7e) return false;
    return true;
}

void check_address(std::string_view text) {
    std::string why;
    auto a = sc::parse_address(text, &why);
    FUZZ_CHECK(a.has_value() == why.empty());
    if (!a) {
        FUZZ_CHECK(printable_ascii(why));
        return;
    }
    FUZZ_CHECK(a->host.size() <= sc::max_host_length);
    FUZZ_CHECK(a->host.find('\0') == std::string::npos);
    // What to_string writes, parse_address reads back as the same address.
    auto again = sc::parse_address(sc::to_string(*a));
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(*again == *a);
    // A side that connects needs a host and a port other than 0; one that binds takes any.
    auto socket_side = sc::socket_side_options(*a);
    FUZZ_CHECK(socket_side.has_value() == (!a->host.empty() && a->port != 0));
    auto server_side = sc::server_side_options(*a);
    FUZZ_CHECK(server_side.host.empty() ? server_side.endpoint.port() == a->port
                                        : server_side.port == std::to_string(a->port));
}

void check_port(std::string_view text) {
    std::string why;
    auto port = sc::parse_port(text, &why);
    FUZZ_CHECK(port.has_value() == why.empty());
    bool digits = !text.empty() && text.size() <= 5 && cli::all_digits(text);
    if (!digits) {
        FUZZ_CHECK(!port);
        return;
    }
    std::uint32_t value = 0;
    for (char c : text)
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    FUZZ_CHECK(port.has_value() == (value <= 65535));
    if (port) FUZZ_CHECK(*port == value);
}

void check_values(std::string_view text) {
    if (auto n = cli::parse_count(text, 0, cli::max_limit)) {
        FUZZ_CHECK(*n <= cli::max_limit);
        FUZZ_CHECK(cli::parse_count(std::to_string(*n), 0, cli::max_limit) == n);
    }
    if (auto ms = cli::parse_seconds(text)) {
        FUZZ_CHECK(*ms >= 0ms && *ms <= max_ms);
        auto written = fmt::format("{}.{:03}", ms->count() / 1000, ms->count() % 1000);
        FUZZ_CHECK(cli::parse_seconds(written) == ms);
    }
    if (auto k = cli::parse_keep_alive(text)) {
        FUZZ_CHECK(k->enabled);
        FUZZ_CHECK(k->idle >= 1s && k->idle <= 32767s);
        FUZZ_CHECK(k->interval >= 1s && k->interval <= 32767s);
        FUZZ_CHECK(k->count >= 1 && k->count <= 127);
    }
    auto q = cli::quoted(text);
    FUZZ_CHECK(printable_ascii(q));
    FUZZ_CHECK(q.size() >= 2 && q.front() == '"' && q.back() == '"');
    FUZZ_CHECK(q.size() <= 2 + 60 * 4 + 3);
}

/// A side as parse_args leaves it: what can be bound or connected to.
void check_side(const sc::side_options& side, bool server, bool auth_given) {
    if (!side.host.empty()) {
        FUZZ_CHECK(side.host.size() <= sc::max_host_length);
        auto port = sc::parse_port(side.port.str());
        FUZZ_CHECK(port.has_value());
        FUZZ_CHECK(server || *port != 0);
    } else {
        FUZZ_CHECK(side.port.empty());
        FUZZ_CHECK(server || side.endpoint.port() != 0);
    }
    // A side has a verifier only when --auth-X was given: a server side checks the token, a
    // dialed side sends it.
    FUZZ_CHECK(!side.auth || auth_given);
    FUZZ_CHECK(!side.transform);
    // A PROXY header is read by a side that listens and sent by one that dials.
    FUZZ_CHECK(!side.accept_proxy || server);
    FUZZ_CHECK(side.send_proxy == sc::proxy_version::none || !server);
}

/// A server side's TLS is a certificate and its key (and maybe a client CA); a socket side's is
/// --tls-X with a name to verify (and maybe a CA file); never a mix.
void check_tls(const cli::config::tls_files& t, bool server) {
    if (server) {
        FUZZ_CHECK(!t.client && t.ca.empty() && t.name.empty());
        FUZZ_CHECK(t.certificate.empty() == t.key.empty());
        FUZZ_CHECK(t.client_ca.empty() || !t.certificate.empty());
    } else {
        FUZZ_CHECK(t.certificate.empty() && t.key.empty() && t.client_ca.empty());
        FUZZ_CHECK(t.client || (t.ca.empty() && t.name.empty()));
        FUZZ_CHECK(!t.client || !t.name.empty());
    }
}

void check_config(const cli::config& cfg, const std::vector<std::string>& words) {
    if (cfg.help || cfg.version) return; // the rest of the words are not checked
    FUZZ_CHECK(cfg.threads >= 1 && cfg.threads <= cli::max_threads);
    FUZZ_CHECK(cfg.timeout == sc::no_timeout || (cfg.timeout > 0ms && cfg.timeout <= max_ms));
    FUZZ_CHECK(cfg.idle_timeout == sc::no_timeout ||
               (cfg.idle_timeout > 0ms && cfg.idle_timeout <= max_ms));
    FUZZ_CHECK(cfg.auth_timeout > 0ms && cfg.auth_timeout <= max_ms);
    FUZZ_CHECK(cfg.connect_timeout > 0ms && cfg.connect_timeout <= max_ms);
    FUZZ_CHECK(cfg.drain_timeout >= 0ms && cfg.drain_timeout <= max_ms);
    FUZZ_CHECK(cfg.max_pending <= cli::max_limit);
    FUZZ_CHECK(cfg.max_connections <= cli::max_limit);
    if (cfg.keepalive.enabled) {
        FUZZ_CHECK(cfg.keepalive.idle >= 1s && cfg.keepalive.idle <= 32767s);
        FUZZ_CHECK(cfg.keepalive.interval >= 1s && cfg.keepalive.interval <= 32767s);
        FUZZ_CHECK(cfg.keepalive.count >= 1 && cfg.keepalive.count <= 127);
    }
    FUZZ_CHECK(!cfg.multi || cfg.mode == sc::connector_mode::server_to_socket);

    bool mode_given = false;
    bool rendezvous_given = false;
    bool listen_b_given = false;
    bool auth_a_given = false;
    bool auth_b_given = false;
    for (const auto& w : words) {
        if (auto mode = cli::parse_mode(w); mode && *mode == cfg.mode) mode_given = true;
        if (w == "rendezvous") rendezvous_given = true;
        if (w.starts_with("--listen-b")) listen_b_given = true;
        if (w.starts_with("--auth-a")) auth_a_given = true;
        if (w.starts_with("--auth-b")) auth_b_given = true;
    }
    if (cfg.rendezvous) {
        // Its sides are servers without a verifier (the program sets the token verifier).
        FUZZ_CHECK(rendezvous_given && !cfg.secret_file.empty());
        FUZZ_CHECK(cfg.mode == (listen_b_given ? sc::connector_mode::server_to_server
                                               : sc::connector_mode::one_server));
        FUZZ_CHECK(!cfg.multi);
        check_side(cfg.a, true, false);
        if (listen_b_given) check_side(cfg.b, true, false);
        FUZZ_CHECK(!cfg.b.accept_proxy || listen_b_given);
        check_tls(cfg.tls[0], true);
        check_tls(cfg.tls[1], true);
        FUZZ_CHECK(!cfg.tls[1].any() || listen_b_given);
        FUZZ_CHECK(cfg.pending_timeout == sc::no_timeout ||
                   (cfg.pending_timeout > 0ms && cfg.pending_timeout <= max_ms));
        FUZZ_CHECK(cfg.max_sessions <= cli::max_limit);
        auto o = cli::make_options(cfg);
        FUZZ_CHECK(o.pending_timeout == cfg.pending_timeout && o.max_sessions == cfg.max_sessions);
        return;
    }
    FUZZ_CHECK(mode_given);
    FUZZ_CHECK(cfg.secret_file.empty() && cfg.max_sessions == 0);
    check_side(cfg.a, cli::is_server(cfg.mode, 'A'), auth_a_given);
    check_side(cfg.b, cli::is_server(cfg.mode, 'B'), auth_b_given);
    FUZZ_CHECK(cfg.a.keepalive == cfg.keepalive);
    FUZZ_CHECK(cfg.b.keepalive == cfg.keepalive);
    // A header sent before a verifier's exchange must know the partner: only a proxy's B does.
    FUZZ_CHECK(cfg.a.send_proxy == sc::proxy_version::none || !cfg.a.auth);
    FUZZ_CHECK(cfg.b.send_proxy == sc::proxy_version::none || !cfg.b.auth || cfg.multi);

    auto o = cli::make_options(cfg);
    FUZZ_CHECK(o.verbose == cfg.verbose && o.log_traffic == cfg.log_traffic);
    FUZZ_CHECK(o.multi == cfg.multi);
    FUZZ_CHECK(o.timeout == cfg.timeout && o.auth_timeout == cfg.auth_timeout &&
               o.connect_timeout == cfg.connect_timeout && o.idle_timeout == cfg.idle_timeout);
    FUZZ_CHECK(o.max_pending == cfg.max_pending && o.max_connections == cfg.max_connections);
    FUZZ_CHECK(o.a.endpoint == cfg.a.endpoint && o.a.host == cfg.a.host && o.a.port == cfg.a.port);
    FUZZ_CHECK(o.b.endpoint == cfg.b.endpoint && o.b.host == cfg.b.host && o.b.port == cfg.b.port);
    FUZZ_CHECK(o.a.accept_proxy == cfg.a.accept_proxy && o.b.accept_proxy == cfg.b.accept_proxy);
    FUZZ_CHECK(o.a.send_proxy == cfg.a.send_proxy && o.b.send_proxy == cfg.b.send_proxy);
    check_tls(cfg.tls[0], cli::is_server(cfg.mode, 'A'));
    check_tls(cfg.tls[1], cli::is_server(cfg.mode, 'B'));
    // A PROXY header goes before the handshake, so it needs the partner known: a proxy's B.
    FUZZ_CHECK(!cfg.tls[0].client || cfg.a.send_proxy == sc::proxy_version::none);
    FUZZ_CHECK(!cfg.tls[1].client || cfg.b.send_proxy == sc::proxy_version::none || cfg.multi);
}

cli::parse_result parse(std::vector<std::string>& words) {
    std::vector<char*> argv;
    for (auto& w : words)
        argv.push_back(w.data());
    return cli::parse_args(argv);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto text = fuzz::as_text(data, size);
    check_address(text);
    check_port(text);
    check_values(text);

    std::vector<std::string> words;
    for (std::size_t start = 0; start <= text.size();) {
        auto nul = text.find('\0', start);
        if (nul == std::string_view::npos) nul = text.size();
        words.emplace_back(text.substr(start, nul - start));
        start = nul + 1;
    }
    if (text.empty()) words.clear(); // no input: no arguments at all

    auto result = parse(words);
    if (auto* why = std::get_if<std::string>(&result)) {
        FUZZ_CHECK(!why->empty());
        FUZZ_CHECK(why->size() <= 400); // a sentence and at most one quoted argument
        FUZZ_CHECK(printable_ascii(*why));
        auto again = parse(words);
        FUZZ_CHECK(std::holds_alternative<std::string>(again));
        FUZZ_CHECK(std::get<std::string>(again) == *why);
        return 0;
    }
    check_config(std::get<cli::config>(result), words);
    return 0;
}
