#pragma once

// The library's version. CMakeLists.txt reads the project version from this line.
#define SOCKET_CONNECTOR_VERSION "0.2.0"

#include <string_view>

namespace socket_connector {

/// "MAJOR.MINOR.PATCH", as the CMake package and `socket-connector --version` report it.
inline constexpr std::string_view version = SOCKET_CONNECTOR_VERSION;

} // namespace socket_connector
