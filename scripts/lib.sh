# Shared by scripts/test and scripts/demo (source it; it is not a program).
# Sets SC_ROOT to the repository root and cds there.

SC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SC_ROOT"

SC_PACKAGES=(libasio-dev libfmt-dev catch2 cmake g++ clang ncat)

sc_log() { printf '==> %s\n' "$*" >&2; }

# Installs whichever of SC_PACKAGES is missing (apt-get; sudo only when not root).
sc_ensure_deps() {
    local missing=() pkg
    for pkg in "${SC_PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "error: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    sc_log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# sc_configure BUILD_DIR CXX [CMAKE_ARGS...]: configures the project in BUILD_DIR (RelWithDebInfo).
sc_configure() {
    local dir="$1" cxx="$2"
    shift 2
    sc_log "configuring $dir with $cxx"
    cmake -S "$SC_ROOT" -B "$dir" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER="$cxx" \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
        "$@"
}
