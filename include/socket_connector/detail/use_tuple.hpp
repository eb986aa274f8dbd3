#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace socket_connector::detail {

/// Completion token for a coroutine that takes expected outcomes (end of stream, abort, timeout)
/// as values: `auto [ec, n] = co_await s.async_read_some(buf, use_tuple);`.
inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

} // namespace socket_connector::detail
