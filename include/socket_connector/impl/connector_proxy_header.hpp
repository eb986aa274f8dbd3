#pragma once

// basic_connector's members, continued: the PROXY protocol. A server side with `accept_proxy`
// reads a header from each socket before its verifier (in `authenticate`); a socket side with
// `send_proxy` writes one for its partner, before any other byte.

#include <type_traits>

#include <socket_connector/connector.hpp>

namespace socket_connector {

/// Throws `std::invalid_argument` when a side's PROXY options do not fit it: `accept_proxy` on a
/// side that does not listen, `send_proxy` on one that does not dial, or `send_proxy` with a
/// verifier on a side dialed before its partner is known (its header, which names the partner,
/// would have to follow the verifier's bytes).
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::check_proxy_options() const {
    for (auto id : {side_id::a, side_id::b}) {
        const auto& so = side_opts(id);
        bool listens = false;
        bool dials = false;
        switch (mode_) {
        case connector_mode::server_to_server:
            listens = true;
            break;
        case connector_mode::server_to_socket:
            (id == side_id::a ? listens : dials) = true;
            break;
        case connector_mode::socket_to_server:
            (id == side_id::a ? dials : listens) = true;
            break;
        case connector_mode::socket_to_socket:
            dials = true;
            break;
        case connector_mode::one_server:
            listens = id == side_id::a;
            break;
        }
        if (so.accept_proxy && !listens)
            throw std::invalid_argument(fmt::format(
                "side {}: accept_proxy applies to a side that listens ({})", to_string(id),
                dials ? "this one dials" : "one_server: set it on side A, the one port"));
        if (so.send_proxy != proxy_version::none && !dials)
            throw std::invalid_argument(fmt::format(
                "side {}: send_proxy applies to a side the connector dials ({})", to_string(id),
                listens ? "this one listens" : "one_server: both sides come to side A's port"));
        if (so.tls && so.tls->server() && !listens)
            throw std::invalid_argument(fmt::format(
                "side {}: a TLS server (tls_server) applies to a side that listens ({})",
                to_string(id),
                dials ? "this one dials: give it tls_client" : "one_server: side A"));
        if (so.tls && !so.tls->server() && !dials)
            throw std::invalid_argument(fmt::format(
                "side {}: a TLS client (tls_client) applies to a side the connector dials ({})",
                to_string(id),
                listens ? "this one listens: give it tls_server" : "one_server: side A"));
        if (so.tls && so.auth && !so.auth.works_over_tls())
            throw std::invalid_argument(fmt::format(
                "side {}: its auth verifier does not work over TLS: it must take the TLS "
                "stream (a template over the stream, with `using works_over_tls = void;`)",
                to_string(id)));
        if (so.tls && so.send_proxy != proxy_version::none && is_up_front(id))
            throw std::invalid_argument(fmt::format(
                "side {}: send_proxy with TLS needs the partner known when the side is dialed "
                "(server_to_socket with multi); this side's handshake comes before its partner, "
                "and the header, which names the partner, must precede the handshake",
                to_string(id)));
        if (so.send_proxy != proxy_version::none && so.auth && is_up_front(id))
            throw std::invalid_argument(fmt::format(
                "side {}: send_proxy with an auth verifier needs the partner known when the side "
                "is dialed (server_to_socket with multi); this side is dialed before its partner "
                "comes, and the header, which names the partner, must precede the verifier's "
                "bytes",
                to_string(id)));
    }
}

/// Whether side `id` gets its PROXY header when its pair forms (a side dialed up front); a
/// proxy's B gets it as soon as it is connected.
template <class Protocol, class Executor>
bool basic_connector<Protocol, Executor>::sends_proxy_at_join(side_id id) const {
    return side_opts(id).send_proxy != proxy_version::none && is_up_front(id);
}

/// Writes the PROXY header for `partner` to `to`: the client `partner`'s own header named, else
/// `partner`'s peer and the address it reached (TCP), else one naming no address. Nothing has
/// been written to `to` before (its verifier, if any, runs after; `before_joining` runs after),
/// so its send buffer, a few KiB at least, takes the header's 16 to 108 bytes in one
/// non-blocking send. Why it failed, or empty.
template <class Protocol, class Executor>
std::string basic_connector<Protocol, Executor>::send_proxy_header(side_type& to,
                                                                   const side_type& partner) {
    const auto version = side_opts(to.id()).send_proxy;
    std::string header;
    if (const auto* told = partner.proxied(); told && !told->local) {
        header = proxy_header_text(version, told->source, told->destination);
    } else if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
        std::error_code ec;
        const auto source = partner.socket_.remote_endpoint(ec);
        asio::ip::tcp::endpoint destination;
        if (!ec) destination = partner.socket_.local_endpoint(ec);
        if (ec)
            return fmt::format("PROXY header for {}: the addresses of {} {}: {}",
                               to_string(to.id()), to_string(partner.id()), partner.remote(),
                               ec.message());
        header = proxy_header_text(version, source, destination);
    } else {
        header = proxy_header_local(version);
    }
    std::error_code ec;
    const auto sent = to.socket_.send(asio::buffer(header), 0, ec);
    if (ec)
        return fmt::format("sending the PROXY header to {} {}: {}", to_string(to.id()), to.remote(),
                           ec.message());
    if (sent != header.size())
        return fmt::format("sending the PROXY header to {} {}: {} of its {} bytes went",
                           to_string(to.id()), to.remote(), sent, header.size());
    info("{}: PROXY {} header sent to {} for {}", to_string(to.id()),
         version == proxy_version::v1 ? "v1" : "v2", to.remote(), partner.remote());
    return {};
}

} // namespace socket_connector
