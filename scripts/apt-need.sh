# Sourced: `apt_need PACKAGE...` installs Debian packages when run as root, else says which.
# Returns 1 (without installing) when they are missing and cannot be installed.
apt_need() {
    (($#)) || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing $* with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
        return 0
    fi
    echo "setup: missing Debian packages: $* (run as root to have them installed)" >&2
    return 1
}
