#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace socket_connector::detail {

/// Bytes as a traffic log shows them: printable ASCII kept, every other byte (control bytes,
/// DEL, bytes >= 0x80) shown as '.', so a peer can never put escape sequences on a terminal.
inline std::string printable(std::span<const char> bytes) {
    std::string text(bytes.size(), '.');
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        auto c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f) text[i] = static_cast<char>(c);
    }
    return text;
}

/// "1 connection", "2 connections": a count and a noun that takes an -s in the plural.
inline std::string count_of(std::size_t n, std::string_view noun) {
    std::string text = std::to_string(n);
    text += ' ';
    text += noun;
    if (n != 1) text += 's';
    return text;
}

} // namespace socket_connector::detail
