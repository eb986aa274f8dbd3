#include <socket_connector/concepts.hpp>

#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <socket_connector/auth.hpp>
#include <socket_connector/connector.hpp>

namespace sc = socket_connector;
using tcp = asio::ip::tcp;

namespace {

// ---- transformer models and non-models ----------------------------------------------------------

/// A custom model: appends every byte twice.
struct doubling {
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.insert(out.end(), 2, c);
    }
    void finish(std::vector<char>&) {}
};

/// A model that cannot be copied (so it cannot be a factory's prototype).
struct move_only_transformer {
    std::unique_ptr<int> state = std::make_unique<int>(0);
    void transform(std::span<const char> in, std::vector<char>& out) {
        out.insert(out.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>&) {}
};

struct missing_finish {
    void transform(std::span<const char> in, std::vector<char>& out) {
        out.insert(out.end(), in.begin(), in.end());
    }
};

struct missing_transform {
    void finish(std::vector<char>&) {}
};

struct transform_takes_one_argument {
    void transform(std::span<const char>) {}
    void finish(std::vector<char>&) {}
};

struct transform_takes_mutable_span {
    void transform(std::span<char>, std::vector<char>&) {}
    void finish(std::vector<char>&) {}
};

struct finish_takes_nothing {
    void transform(std::span<const char>, std::vector<char>&) {}
    void finish() {}
};

// A lambda returning a model, and callables returning non-models.
inline const auto make_identity = [] { return sc::identity_transformer{}; };
struct make_doubling {
    doubling operator()() const { return {}; }
};
struct make_int {
    int operator()() const { return 42; }
};
struct make_missing_finish {
    missing_finish operator()() const { return {}; }
};

static_assert(sc::transformer<sc::identity_transformer>);
static_assert(sc::transformer<sc::any_transformer>);
static_assert(sc::transformer<doubling>);
static_assert(sc::transformer<move_only_transformer>);
static_assert(!sc::transformer<missing_finish>);
static_assert(!sc::transformer<missing_transform>);
static_assert(!sc::transformer<transform_takes_one_argument>);
static_assert(!sc::transformer<transform_takes_mutable_span>);
static_assert(!sc::transformer<finish_takes_nothing>);
static_assert(!sc::transformer<int>);
static_assert(!sc::transformer<decltype(make_identity)>);

// any_transformer holds any model, and nothing else.
static_assert(std::is_constructible_v<sc::any_transformer, sc::identity_transformer>);
static_assert(std::is_constructible_v<sc::any_transformer, doubling>);
static_assert(std::is_constructible_v<sc::any_transformer, move_only_transformer>);
static_assert(!std::is_constructible_v<sc::any_transformer, missing_finish>);
static_assert(!std::is_constructible_v<sc::any_transformer, int>);
static_assert(std::is_convertible_v<doubling, sc::any_transformer>);

// transformer_factory: from a copyable prototype or from a callable returning a model.
static_assert(std::is_constructible_v<sc::transformer_factory, sc::identity_transformer>);
static_assert(std::is_constructible_v<sc::transformer_factory, doubling>);
static_assert(std::is_convertible_v<doubling, sc::transformer_factory>);
static_assert(std::is_constructible_v<sc::transformer_factory, decltype(make_identity)>);
static_assert(std::is_constructible_v<sc::transformer_factory, make_doubling>);
static_assert(std::is_convertible_v<make_doubling, sc::transformer_factory>);
static_assert(!std::is_constructible_v<sc::transformer_factory, missing_finish>);
static_assert(!std::is_constructible_v<sc::transformer_factory, finish_takes_nothing>);
static_assert(!std::is_constructible_v<sc::transformer_factory, int>);
static_assert(!std::is_constructible_v<sc::transformer_factory, make_int>);
static_assert(!std::is_constructible_v<sc::transformer_factory, make_missing_finish>);
static_assert(!std::is_constructible_v<sc::transformer_factory, move_only_transformer>);
static_assert(!std::is_constructible_v<sc::transformer_factory, sc::any_transformer>);

// ---- auth_verifier models and non-models --------------------------------------------------------

struct custom_verifier {
    asio::awaitable<sc::auth_result> operator()(tcp::socket&) const {
        co_return sc::auth_result{.ok = true, .leftover = {}};
    }
};

struct returns_bool {
    bool operator()(tcp::socket&) const { return true; }
};

struct returns_awaitable_bool {
    asio::awaitable<bool> operator()(tcp::socket&) const { co_return true; }
};

struct takes_no_socket {
    asio::awaitable<sc::auth_result> operator()() const { co_return sc::auth_result{}; }
};

struct returns_auth_result_directly {
    sc::auth_result operator()(tcp::socket&) const { return {}; }
};

static_assert(sc::auth_verifier<sc::accept_all_verifier, tcp::socket>);
static_assert(sc::auth_verifier<sc::token_verifier, tcp::socket>);
static_assert(sc::auth_verifier<custom_verifier, tcp::socket>);
static_assert(!sc::auth_verifier<returns_bool, tcp::socket>);
static_assert(!sc::auth_verifier<returns_awaitable_bool, tcp::socket>);
static_assert(!sc::auth_verifier<takes_no_socket, tcp::socket>);
static_assert(!sc::auth_verifier<returns_auth_result_directly, tcp::socket>);
static_assert(!sc::auth_verifier<int, tcp::socket>);
// A verifier for TCP sockets is not one for another socket type.
static_assert(!sc::auth_verifier<custom_verifier, int>);

static_assert(std::is_constructible_v<sc::any_auth_verifier<tcp::socket>, sc::token_verifier>);
static_assert(std::is_constructible_v<sc::any_auth_verifier<tcp::socket>, custom_verifier>);
static_assert(std::is_convertible_v<sc::accept_all_verifier, sc::any_auth_verifier<tcp::socket>>);
static_assert(!std::is_constructible_v<sc::any_auth_verifier<tcp::socket>, returns_bool>);
static_assert(!std::is_constructible_v<sc::any_auth_verifier<tcp::socket>, returns_awaitable_bool>);
static_assert(!std::is_constructible_v<sc::any_auth_verifier<tcp::socket>, takes_no_socket>);

// ---- the connector alias ------------------------------------------------------------------------

static_assert(std::is_same_v<sc::connector, sc::basic_connector<tcp, asio::any_io_executor>>);
static_assert(std::is_same_v<sc::connector, sc::basic_connector<>>);
static_assert(std::is_same_v<sc::options, sc::basic_options<tcp, asio::any_io_executor>>);

std::vector<char> run_through(sc::any_transformer& t, std::span<const char> in) {
    std::vector<char> out;
    t.transform(in, out);
    t.finish(out);
    return out;
}

} // namespace

TEST_CASE("an any_transformer wrapping identity copies bytes, and an empty one is false",
          "[concepts]") {
    sc::any_transformer empty;
    CHECK_FALSE(empty);

    sc::any_transformer identity = sc::identity_transformer{};
    REQUIRE(identity);
    const std::vector<char> in{'a', '\0', 'b', '\n', static_cast<char>(0xff)};
    auto out = run_through(identity, in);
    CHECK(out == in);

    sc::any_transformer twice = doubling{};
    REQUIRE(twice);
    auto doubled = run_through(twice, in);
    CHECK(doubled.size() == 2 * in.size());
    CHECK(doubled[0] == 'a');
    CHECK(doubled[1] == 'a');
    CHECK(doubled[9] == static_cast<char>(0xff));
}

TEST_CASE("a transformer_factory makes a transformer each call, and an empty one makes none",
          "[concepts]") {
    sc::transformer_factory none;
    CHECK_FALSE(none);
    CHECK_FALSE(none());

    sc::transformer_factory from_prototype = doubling{};
    REQUIRE(from_prototype);
    auto t1 = from_prototype();
    CHECK(t1);
    sc::transformer_factory from_callable = make_identity;
    REQUIRE(from_callable);
    auto t2 = from_callable();
    REQUIRE(t2);
    const std::vector<char> in{'x', 'y'};
    CHECK(run_through(t2, in) == in);

    sc::any_auth_verifier<tcp::socket> no_verifier;
    CHECK_FALSE(no_verifier);
    sc::any_auth_verifier<tcp::socket> token = sc::token_verifier("secret");
    CHECK(token);
}
