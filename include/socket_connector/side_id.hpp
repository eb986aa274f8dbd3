#pragma once

#include <string_view>

namespace socket_connector {

/// Which side of a connector: A or B.
enum class side_id { a, b };

/// The other side.
constexpr side_id other(side_id side) noexcept {
    return side == side_id::a ? side_id::b : side_id::a;
}

/// "A" or "B", as logs and messages name the sides.
constexpr std::string_view to_string(side_id side) noexcept {
    return side == side_id::a ? "A" : "B";
}

} // namespace socket_connector
