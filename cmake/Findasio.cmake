# Findasio.cmake: standalone Asio (header-only; Debian's libasio-dev ships no CMake package).
#
# Result variables: asio_FOUND, asio_VERSION, asio_INCLUDE_DIR.
# Imported target:  asio::asio (INTERFACE; links Threads::Threads, defines ASIO_STANDALONE and
#                   ASIO_NO_DEPRECATED, and on clang the defines that turn coroutine support on).

find_path(asio_INCLUDE_DIR NAMES asio.hpp)
mark_as_advanced(asio_INCLUDE_DIR)

if(asio_INCLUDE_DIR AND EXISTS "${asio_INCLUDE_DIR}/asio/version.hpp")
    file(STRINGS "${asio_INCLUDE_DIR}/asio/version.hpp" _asio_version_line
        REGEX "^#define[ \t]+ASIO_VERSION[ \t]+[0-9]+")
    string(REGEX REPLACE "^#define[ \t]+ASIO_VERSION[ \t]+([0-9]+).*$" "\\1"
        _asio_version_number "${_asio_version_line}")
    # ASIO_VERSION is major * 100000 + minor * 100 + patch (102201 is 1.22.1).
    math(EXPR _asio_major "${_asio_version_number} / 100000")
    math(EXPR _asio_minor "${_asio_version_number} / 100 % 1000")
    math(EXPR _asio_patch "${_asio_version_number} % 100")
    set(asio_VERSION "${_asio_major}.${_asio_minor}.${_asio_patch}")
    unset(_asio_version_line)
    unset(_asio_version_number)
    unset(_asio_major)
    unset(_asio_minor)
    unset(_asio_patch)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(asio
    REQUIRED_VARS asio_INCLUDE_DIR
    VERSION_VAR asio_VERSION)

if(asio_FOUND AND NOT TARGET asio::asio)
    include(CMakeFindDependencyMacro)
    find_dependency(Threads)
    add_library(asio::asio INTERFACE IMPORTED)
    set_target_properties(asio::asio PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${asio_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES Threads::Threads
        # Asio 1.22 looks for clang coroutines only via <experimental/coroutine> (libc++), so with
        # clang 14 and libstdc++'s <coroutine> they must be switched on by hand.
        INTERFACE_COMPILE_DEFINITIONS
            "ASIO_STANDALONE;ASIO_NO_DEPRECATED;$<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>;$<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_STD_COROUTINE=1>")
endif()
