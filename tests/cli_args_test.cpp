// The command line of socket-connector (examples/cli_args.hpp): defaults, each flag's value and
// the message for each bad value, without starting the program (tests/cli_test.cpp runs it).
#include "../examples/cli_args.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

namespace sc = socket_connector;
using namespace std::chrono_literals;

namespace {

/// Parses `words` as the arguments after the program's name.
cli::parse_result parse(std::vector<std::string> words) {
    std::vector<char*> argv;
    for (auto& word : words)
        argv.push_back(word.data());
    return cli::parse_args(argv);
}

/// The arguments every test needs, then `more`.
std::vector<std::string> with(std::vector<std::string> more) {
    std::vector<std::string> words = {"server-to-server", "--a", ":0", "--b", ":0"};
    words.insert(words.end(), more.begin(), more.end());
    return words;
}

/// Parses `words`, requiring success.
cli::config accepted(std::vector<std::string> words) {
    auto result = parse(std::move(words));
    if (auto* why = std::get_if<std::string>(&result)) FAIL("rejected: " << *why);
    return std::get<cli::config>(result);
}

/// Parses `words`, requiring failure; the message.
std::string rejected(std::vector<std::string> words) {
    auto result = parse(std::move(words));
    REQUIRE(std::holds_alternative<std::string>(result));
    return std::get<std::string>(result);
}

} // namespace

TEST_CASE("the command line defaults match the library's options", "[cli_args]") {
    auto cfg = accepted(with({}));
    sc::options library;
    CHECK(cfg.max_pending == 4096);
    CHECK(cfg.max_pending == library.max_pending);
    CHECK(cfg.max_connections == 0);
    CHECK(cfg.max_connections == library.max_connections);
    CHECK(cfg.idle_timeout == sc::no_timeout);
    CHECK(cfg.idle_timeout == library.idle_timeout);
    CHECK(cfg.drain_timeout == 0ms);
    CHECK(cfg.timeout == 30s);
    CHECK(cfg.auth_timeout == 5s);
    CHECK(cfg.connect_timeout == 10s);
    CHECK_FALSE(cfg.help);
    CHECK_FALSE(cfg.multi);
    CHECK_FALSE(cfg.stats);
}

TEST_CASE("parse_args: --threads defaults to one per core, at least 1", "[cli_args]") {
    auto cfg = accepted(with({}));
    unsigned cores = std::thread::hardware_concurrency();
    CHECK(cfg.threads == std::clamp(cores, 1u, cli::max_threads));
    CHECK(cfg.threads >= 1);
    CHECK(accepted(with({"--threads", "1"})).threads == 1);
    CHECK(accepted(with({"--threads=256"})).threads == 256);
    CHECK(rejected(with({"--threads", "0"})) ==
          R"(--threads needs a whole number from 1 to 256 (got "0"))");
    CHECK(rejected(with({"--threads", "257"})) ==
          R"(--threads needs a whole number from 1 to 256 (got "257"))");
}

TEST_CASE("parse_args: --spin defaults to 50 microseconds, 0 turns it off, at most 10000",
          "[cli_args]") {
    CHECK(accepted(with({})).spin == 50us);
    CHECK(accepted(with({"--spin", "0"})).spin == 0us);
    CHECK(accepted(with({"--spin=10000"})).spin == 10ms);
    CHECK(rejected(with({"--spin", "10001"})) ==
          R"(--spin needs a whole number of microseconds from 0 to 10000 (got "10001"))");
    CHECK(rejected(with({"--spin", "-1"})) ==
          R"(--spin needs a whole number of microseconds from 0 to 10000 (got "-1"))");
    CHECK(rejected(with({"--spin", "5.5"})) ==
          R"(--spin needs a whole number of microseconds from 0 to 10000 (got "5.5"))");
}

TEST_CASE("parse_args: --max-pending and --max-connections take 0 (no limit) to 1048576",
          "[cli_args]") {
    auto cfg = accepted(with({"--max-pending", "10", "--max-connections=5"}));
    CHECK(cfg.max_pending == 10);
    CHECK(cfg.max_connections == 5);
    auto options = cli::make_options(cfg);
    CHECK(options.max_pending == 10);
    CHECK(options.max_connections == 5);

    auto none = accepted(with({"--max-pending=0", "--max-connections", "0"}));
    CHECK(none.max_pending == 0);
    CHECK(none.max_connections == 0);
    auto most = accepted(with({"--max-pending=1048576", "--max-connections", "001048576"}));
    CHECK(most.max_pending == 1048576);
    CHECK(most.max_connections == 1048576);

    CHECK(rejected(with({"--max-pending", "1048577"})) ==
          R"(--max-pending needs a whole number from 0 (no limit) to 1048576 (got "1048577"))");
    CHECK(rejected(with({"--max-connections=-1"})) ==
          R"(--max-connections needs a whole number from 0 (no limit) to 1048576 (got "-1"))");
    CHECK(rejected(with({"--max-pending", "99999999999999999999"})) ==
          "--max-pending needs a whole number from 0 (no limit) to 1048576 "
          R"((got "99999999999999999999"))");
    CHECK(rejected(with({"--max-connections", ""})) ==
          R"(--max-connections needs a whole number from 0 (no limit) to 1048576 (got ""))");
    CHECK(rejected(with({"--max-pending"})) == "--max-pending needs a value");
    CHECK(rejected(with({"--max-pending", "1", "--max-pending", "2"})) ==
          "--max-pending is given more than once");
}

TEST_CASE("parse_args: --idle-timeout takes seconds, 0 means never", "[cli_args]") {
    auto cfg = accepted(with({"--idle-timeout", "2.5"}));
    CHECK(cfg.idle_timeout == 2500ms);
    CHECK(cli::make_options(cfg).idle_timeout == 2500ms);
    CHECK(accepted(with({"--idle-timeout=0"})).idle_timeout == sc::no_timeout);
    CHECK(accepted(with({"--idle-timeout=0.001"})).idle_timeout == 1ms);
    CHECK(rejected(with({"--idle-timeout", "-1"})) ==
          "--idle-timeout needs seconds from 0 to 1000000 with at most 3 decimals, like 30 or "
          R"(0.5 (got "-1"))");
    CHECK(rejected(with({"--idle-timeout", "1000000.001"})) ==
          "--idle-timeout needs seconds from 0 to 1000000 with at most 3 decimals, like 30 or "
          R"(0.5 (got "1000000.001"))");
}

TEST_CASE("parse_args: --drain-timeout takes seconds, 0 included, and stays out of the options",
          "[cli_args]") {
    auto cfg = accepted(with({"--drain-timeout", "0.25"}));
    CHECK(cfg.drain_timeout == 250ms);
    CHECK(accepted(with({"--drain-timeout=0"})).drain_timeout == 0ms);
    CHECK(accepted(with({"--drain-timeout=1000000"})).drain_timeout == 1'000'000s);
    CHECK(rejected(with({"--drain-timeout", "1.2345"})) ==
          "--drain-timeout needs seconds from 0 to 1000000 with at most 3 decimals, like 30 or "
          R"(0.5 (got "1.2345"))");
    CHECK(rejected(with({"--drain-timeout=1e3"})) ==
          "--drain-timeout needs seconds from 0 to 1000000 with at most 3 decimals, like 30 or "
          R"(0.5 (got "1e3"))");
}

TEST_CASE("make_options carries every connector option of the command line", "[cli_args]") {
    auto cfg = accepted({"server-to-socket",  "--a",     "127.0.0.1:0",    "--b",
                         "127.0.0.1:9",       "--multi", "--verbose",      "--log-traffic",
                         "--timeout",         "0",       "--auth-timeout", "1",
                         "--connect-timeout", "2",       "--max-pending",  "3",
                         "--max-connections", "4",       "--idle-timeout", "5",
                         "--auth-a",          "s3cret"});
    CHECK(cfg.mode == sc::connector_mode::server_to_socket);
    auto o = cli::make_options(cfg);
    CHECK(o.multi);
    CHECK(o.verbose);
    CHECK(o.log_traffic);
    CHECK(o.timeout == sc::no_timeout);
    CHECK(o.auth_timeout == 1s);
    CHECK(o.connect_timeout == 2s);
    CHECK(o.max_pending == 3);
    CHECK(o.max_connections == 4);
    CHECK(o.idle_timeout == 5s);
    CHECK(o.a.endpoint.port() == 0);
    CHECK(o.a.auth);
    CHECK_FALSE(o.b.auth);
    CHECK(o.b.endpoint.port() == 9);
}

TEST_CASE("the usage text lists every option the parser knows", "[cli_args]") {
    for (const char* flag : {"--a ADDR",
                             "--b ADDR",
                             "--multi",
                             "--timeout SECS",
                             "--verbose",
                             "--log-traffic",
                             "--keepalive IDLE,INTERVAL,COUNT",
                             "--no-keepalive",
                             "--auth-a TOKEN",
                             "--auth-b TOKEN",
                             "--auth-timeout SECS",
                             "--connect-timeout SECS",
                             "--threads N",
                             "--spin USEC",
                             "--max-pending N",
                             "--max-connections N",
                             "--idle-timeout SECS",
                             "--drain-timeout SECS",
                             "--stats",
                             "--metrics ADDR",
                             "--accept-proxy-a",
                             "--accept-proxy-b",
                             "--send-proxy-a v1|v2",
                             "--send-proxy-b v1|v2",
                             "--tls-cert-X FILE",
                             "--tls-key-X FILE",
                             "--tls-client-ca-X FILE",
                             "--tls-X",
                             "--tls-ca-X FILE",
                             "--tls-name-X NAME",
                             "-h, --help",
                             "--version"}) {
        INFO(flag);
        CHECK(cli::usage_text.find(flag) != std::string_view::npos);
    }
    CHECK(cli::usage_text.find("default: one per core") != std::string_view::npos);
}

TEST_CASE("counts, seconds and keep-alive values are read strictly", "[cli_args]") {
    CHECK(cli::parse_count("0", 0, 5) == 0u);
    CHECK(cli::parse_count("005", 0, 5) == 5u);
    CHECK(cli::parse_count("999999999", 0, 1'000'000'000) == 999'999'999u);
    CHECK_FALSE(cli::parse_count("1000000000", 0, 4'000'000'000u)); // 10 digits
    CHECK_FALSE(cli::parse_count("6", 0, 5));
    CHECK_FALSE(cli::parse_count("+1", 0, 5));
    CHECK_FALSE(cli::parse_count(" 1", 0, 5));

    CHECK(cli::parse_seconds("0.5") == 500ms);
    CHECK(cli::parse_seconds("30") == 30s);
    CHECK_FALSE(cli::parse_seconds("1."));
    CHECK_FALSE(cli::parse_seconds(""));
    CHECK_FALSE(cli::parse_seconds(".5"));
    CHECK_FALSE(cli::parse_seconds("1.2.3"));

    auto k = cli::parse_keep_alive("60,10,5");
    REQUIRE(k);
    CHECK(k->idle == 60s);
    CHECK(k->interval == 10s);
    CHECK(k->count == 5);
    CHECK_FALSE(cli::parse_keep_alive("60,10"));
    CHECK_FALSE(cli::parse_keep_alive("60,10,128"));
    CHECK_FALSE(cli::parse_keep_alive("0,10,5"));
}

TEST_CASE("messages quote arguments with control bytes escaped and long ones cut", "[cli_args]") {
    CHECK(rejected({"bad\x1b[2Jmode", "--a", ":0", "--b", ":0"}) ==
          R"(unknown MODE "bad\x1b[2Jmode" (one of server-to-server, server-to-socket, )"
          R"(socket-to-server, socket-to-socket))");
    auto message = rejected(with({"--" + std::string(100, 'x')}));
    CHECK(message == "unknown option \"--" + std::string(58, 'x') + "...\"");
}

TEST_CASE("help, version and the messages a newcomer meets first", "[cli_args]") {
    CHECK(accepted({"-h"}).help);
    CHECK(accepted({"server-to-server", "-h"}).help);
    CHECK(accepted({"--help"}).help);
    CHECK(accepted({"--version"}).version);
    CHECK_FALSE(accepted(with({})).version);
    CHECK(rejected({"--version=1"}) == "--version takes no value");
    // A trailing option without its value says so, even when the option was given before.
    CHECK(rejected(with({"--a"})) == "--a needs a value");
    CHECK(rejected({"server-to-server", "--b", ":0", "--a"}) == "--a needs a value");
    CHECK(rejected(with({"--a", ":1"})) == "--a is given more than once");
    // A mode written with underscores or capitals gets a hint.
    CHECK(rejected({"server_to_server", "--a", ":0", "--b", ":0"}) ==
          R"(unknown MODE "server_to_server" (did you mean server-to-server?))");
    CHECK(rejected({"Socket-To-Server", "--a", ":0", "--b", ":0"}) ==
          R"(unknown MODE "Socket-To-Server" (did you mean socket-to-server?))");
    // A port out of range names the range.
    CHECK(rejected({"server-to-server", "--a", ":-1", "--b", ":0"}) ==
          R"(--a ":-1": the port must be a number from 0 to 65535)");
    CHECK(rejected({"server-to-server", "--a", ":65536", "--b", ":0"}) ==
          R"(--a ":65536": the port must be a number from 0 to 65535)");
}

TEST_CASE("auth tokens apply to socket sides as well as server sides", "[cli_args]") {
    auto dialed =
        accepted({"socket-to-server", "--a", "127.0.0.1:1", "--b", ":0", "--auth-a", "t"});
    CHECK(static_cast<bool>(dialed.a.auth));
    CHECK_FALSE(static_cast<bool>(dialed.b.auth));
    auto both = accepted({"socket-to-socket", "--a", "127.0.0.1:1", "--b", "127.0.0.1:2",
                          "--auth-a", "t", "--auth-b", "u"});
    CHECK(static_cast<bool>(both.a.auth));
    CHECK(static_cast<bool>(both.b.auth));
}

TEST_CASE("parse_args: rendezvous takes --listen, --secret-file and its own options",
          "[cli_args][rendezvous]") {
    auto one = accepted({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", "s"});
    CHECK(one.rendezvous);
    CHECK(one.mode == sc::connector_mode::one_server);
    CHECK(one.secret_file == "s");
    CHECK(one.timeout == sc::no_timeout); // serves until a signal unless --timeout is given
    CHECK(one.pending_timeout == 60s);
    CHECK(one.max_sessions == 0);
    CHECK(one.a.endpoint.port() == 0);
    auto two =
        accepted({"rendezvous", "--listen", ":7000", "--listen-b", ":7001", "--secret-file", "s",
                  "--pending-timeout", "2.5", "--max-sessions", "10", "--timeout", "30"});
    CHECK(two.mode == sc::connector_mode::server_to_server);
    CHECK(two.a.endpoint.port() == 7000);
    CHECK(two.b.endpoint.port() == 7001);
    CHECK(two.timeout == 30s);
    auto o = cli::make_options(two);
    CHECK(o.pending_timeout == 2500ms);
    CHECK(o.max_sessions == 10);
    CHECK(cli::make_options(accepted({"rendezvous", "--listen", ":0", "--secret-file", "s",
                                      "--pending-timeout", "0"}))
              .pending_timeout == sc::no_timeout);
    // The relay modes leave the rendezvous options alone.
    CHECK(cli::make_options(accepted(with({}))).pending_timeout == sc::no_timeout);

    CHECK(rejected({"rendezvous", "--secret-file", "s"}) == "rendezvous needs --listen ADDR");
    CHECK(rejected({"rendezvous", "--listen", ":0"}) == "rendezvous needs --secret-file FILE");
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--a", ":1"})
              .starts_with("--a does not apply to rendezvous"));
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--auth-b", "t"})
              .starts_with("--auth-b does not apply to rendezvous"));
    CHECK(rejected({"rendezvous", "--listen", "host", "--secret-file", "s"})
              .starts_with("--listen \"host\": "));
    CHECK(rejected(with({"--listen", ":0"})) == "--listen applies only to rendezvous");
    CHECK(rejected(with({"--max-sessions", "3"})) == "--max-sessions applies only to rendezvous");
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--max-sessions", "-1"})
              .starts_with("--max-sessions needs a whole number"));
    for (const char* flag : {"--listen ADDR", "--listen-b ADDR", "--secret-file FILE",
                             "--pending-timeout SECS", "--max-sessions N"}) {
        INFO(flag);
        CHECK(cli::usage_text.find(flag) != std::string_view::npos);
    }
}

TEST_CASE("parse_args: --metrics takes an address in every mode and rendezvous", "[cli_args]") {
    CHECK(!accepted(with({})).metrics);
    auto cfg = accepted(with({"--metrics", "127.0.0.1:9100"}));
    REQUIRE(cfg.metrics);
    CHECK(cfg.metrics->host == "127.0.0.1");
    CHECK(cfg.metrics->port == 9100);
    auto any = accepted(with({"--metrics=:0"}));
    REQUIRE(any.metrics);
    CHECK(any.metrics->host.empty());
    CHECK(any.metrics->port == 0);
    auto rv =
        accepted({"rendezvous", "--listen", ":0", "--secret-file", "s", "--metrics", "[::1]:0"});
    REQUIRE(rv.metrics);
    CHECK(rv.metrics->host == "::1");
    CHECK(rejected(with({"--metrics", "nowhere"})).starts_with("--metrics \"nowhere\": "));
    CHECK(rejected(with({"--metrics", ":99999"})).starts_with("--metrics \":99999\": "));
    CHECK(rejected(with({"--metrics"})) == "--metrics needs a value");
    CHECK(rejected(with({"--metrics", ":1", "--metrics", ":2"})) ==
          "--metrics is given more than once");
}

TEST_CASE("parse_args: --accept-proxy-X on server sides, --send-proxy-X v1|v2 on socket sides",
          "[cli_args]") {
    auto none = accepted(with({}));
    CHECK(!none.a.accept_proxy);
    CHECK(none.b.send_proxy == sc::proxy_version::none);
    auto both = accepted(with({"--accept-proxy-a", "--accept-proxy-b"}));
    CHECK(both.a.accept_proxy);
    CHECK(both.b.accept_proxy);
    auto proxy = accepted({"server-to-socket", "--a", ":0", "--b", "127.0.0.1:9", "--multi",
                           "--accept-proxy-a", "--send-proxy-b", "v2", "--auth-b", "t"});
    CHECK(proxy.a.accept_proxy);
    CHECK(proxy.b.send_proxy == sc::proxy_version::v2);
    auto o = cli::make_options(proxy);
    CHECK(o.a.accept_proxy);
    CHECK(o.b.send_proxy == sc::proxy_version::v2);
    auto dialed = accepted({"socket-to-socket", "--a", "127.0.0.1:1", "--b", "127.0.0.1:2",
                            "--send-proxy-a=v1", "--send-proxy-b=v2"});
    CHECK(dialed.a.send_proxy == sc::proxy_version::v1);
    CHECK(dialed.b.send_proxy == sc::proxy_version::v2);

    CHECK(rejected(with({"--send-proxy-a", "v1"})) ==
          "--send-proxy-a applies to a socket side (side A listens in server-to-server)");
    CHECK(rejected({"server-to-socket", "--a", ":0", "--b", "127.0.0.1:9", "--accept-proxy-b"}) ==
          "--accept-proxy-b applies to a server side (side B connects out in server-to-socket)");
    CHECK(rejected({"server-to-socket", "--a", ":0", "--b", "127.0.0.1:9", "--send-proxy-b",
                    "v3"}) == "--send-proxy-b needs v1 or v2 (got \"v3\")");
    CHECK(rejected({"server-to-socket", "--a", ":0", "--b", "127.0.0.1:9", "--send-proxy-b"}) ==
          "--send-proxy-b needs a value");
    CHECK(rejected(with({"--accept-proxy-a=yes"})) == "--accept-proxy-a takes no value");
    // A side dialed before its partner exists cannot put the header before its token line.
    CHECK(rejected({"socket-to-server", "--a", "127.0.0.1:9", "--b", ":0", "--send-proxy-a", "v1",
                    "--auth-a", "t"})
              .starts_with("--send-proxy-a with --auth-a needs server-to-socket --multi"));
    CHECK(rejected({"server-to-socket", "--a", ":0", "--b", "127.0.0.1:9", "--send-proxy-b", "v1",
                    "--auth-b", "t"})
              .starts_with("--send-proxy-b with --auth-b needs server-to-socket --multi"));

    // rendezvous: --accept-proxy-a for --listen, --accept-proxy-b for --listen-b.
    auto one = accepted({"rendezvous", "--listen", ":0", "--secret-file", "s", "--accept-proxy-a"});
    CHECK(one.a.accept_proxy);
    auto two = accepted({"rendezvous", "--listen", ":0", "--listen-b", ":0", "--secret-file", "s",
                         "--accept-proxy-b"});
    CHECK(!two.a.accept_proxy);
    CHECK(two.b.accept_proxy);
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--accept-proxy-b"})
              .starts_with("--accept-proxy-b needs --listen-b"));
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--send-proxy-b", "v1"})
              .starts_with("--send-proxy-b does not apply to rendezvous"));
}

TEST_CASE("parse_args: TLS files on server sides, --tls-X on socket sides", "[cli_args]") {
    auto server =
        accepted(with({"--tls-cert-a", "c.pem", "--tls-key-a", "k.pem", "--tls-client-ca-a",
                       "ca.pem", "--tls-cert-b=c2", "--tls-key-b=k2"}));
    CHECK(server.tls[0].certificate == "c.pem");
    CHECK(server.tls[0].key == "k.pem");
    CHECK(server.tls[0].client_ca == "ca.pem");
    CHECK(server.tls[1].certificate == "c2");
    CHECK_FALSE(server.tls[0].client);
    auto client = accepted({"server-to-socket", "--a", ":0", "--b", "example.com:443", "--tls-b"});
    CHECK(client.tls[1].client);
    CHECK(client.tls[1].name == "example.com"); // the host of --b
    CHECK(client.tls[1].ca.empty());            // the system's store
    auto named = accepted({"socket-to-socket", "--a", "127.0.0.1:9", "--b", "[::1]:9", "--tls-a",
                           "--tls-name-a", "service.internal", "--tls-b", "--tls-ca-b", "ca.pem"});
    CHECK(named.tls[0].name == "service.internal");
    CHECK(named.tls[1].name == "::1");
    CHECK(named.tls[1].ca == "ca.pem");
    // Misfits: exit 2 with the reason.
    CHECK(rejected(with({"--tls-a"}))
              .starts_with("--tls-a, --tls-ca-a and --tls-name-a apply to a "
                           "socket side (side A listens"));
    CHECK(
        rejected({"server-to-socket", "--a", ":0", "--b", "h:1", "--tls-cert-b", "c", "--tls-key-b",
                  "k"})
            .starts_with("--tls-cert-b, --tls-key-b and --tls-client-ca-b apply to a server side"));
    CHECK(rejected(with({"--tls-cert-a", "c"})) == "--tls-cert-a needs --tls-key-a");
    CHECK(rejected(with({"--tls-key-b", "k"})) == "--tls-key-b needs --tls-cert-b");
    CHECK(rejected(with({"--tls-client-ca-a", "ca"})) ==
          "--tls-client-ca-a needs --tls-cert-a and --tls-key-a");
    CHECK(rejected({"server-to-socket", "--a", ":0", "--b", "h:1", "--tls-name-b", "n"}) ==
          "--tls-ca-b and --tls-name-b need --tls-b");
    CHECK(rejected(with({"--tls-cert-a", ""})) == "--tls-cert-a needs a non-empty value");
    CHECK(
        rejected({"server-to-socket", "--a", ":0", "--b", "h:1", "--tls-b", "--send-proxy-b", "v1"})
            .starts_with("--send-proxy-b with --tls-b needs server-to-socket --multi"));
    auto proxied = accepted({"server-to-socket", "--a", ":0", "--b", "h:1", "--multi", "--tls-b",
                             "--send-proxy-b", "v2"});
    CHECK(proxied.tls[1].client);
    // rendezvous: the server flags, -a for --listen, -b for --listen-b.
    auto rv = accepted({"rendezvous", "--listen", ":0", "--secret-file", "s", "--tls-cert-a", "c",
                        "--tls-key-a", "k"});
    CHECK(rv.tls[0].certificate == "c");
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--tls-cert-b", "c",
                    "--tls-key-b", "k"})
              .starts_with("--tls-cert-b needs --listen-b"));
    CHECK(rejected({"rendezvous", "--listen", ":0", "--secret-file", "s", "--tls-a"})
              .starts_with("--tls-a does not apply to rendezvous"));
}
