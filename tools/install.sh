#!/bin/sh
# postroom's production install: `make install` and `make uninstall` run this.
#
# Usage: tools/install.sh install|uninstall, from the repository root, with
#   DESTDIR        staging root for packaging; empty = the live system
#   PREFIX         the application's virtualenv (default /opt/postroom)
#   SYSTEM_PYTHON  the interpreter the virtualenv is made from (default /usr/bin/python3)
#   EXTRAS         the package's extras to install (default postgresql: psycopg)
#   BUILD_PYTHON   a Python with a current pip (the checkout's .venv) that installs into it
#
# What goes where (each path under $DESTDIR when it is set):
#   $PREFIX/                            virtualenv: postroom and its dependencies, nothing else
#   /usr/bin/postroom                   symlink to $PREFIX/bin/postroom (the unit's ExecStart)
#   /usr/lib/systemd/system/postroom.service, /usr/lib/sysusers.d/postroom.conf,
#   /usr/lib/tmpfiles.d/postroom.conf   from systemd/
#   /usr/share/doc/postroom/            README.md, and postroom.toml: the reference config of
#                                       this version, to compare the live one with after upgrades
#   /etc/postroom/postroom.toml         the reference config, only when absent: never overwritten
#
# Why a virtualenv of its own: the dependencies are pinned by what was tested, not by what
# Debian ships, and an upgrade replaces them all at once. Its scripts and pyvenv.cfg name
# its own path, so it is built at $DESTDIR$PREFIX.new and the few files naming that
# staging path are rewritten to $PREFIX (bytecode is compiled with that path too, so
# tracebacks name real files), then it is renamed into place. The same steps serve
# packaging (DESTDIR) and the live system: what the test checks in a DESTDIR is what a
# live install does. Building beside the target and renaming means an upgrade whose pip
# fails leaves the running install as it was.
# Why a symlink in /usr/bin rather than a wrapper script: one exec, and `readlink` shows
# which virtualenv runs; the script's shebang names $PREFIX/bin/python, which finds its
# pyvenv.cfg, so nothing else needs to know where the virtualenv lives.
#
# With DESTDIR empty it also creates the postroom user (systemd-sysusers), fixes the
# owner and modes of /etc/postroom (systemd-tmpfiles), and, when systemd runs, reloads
# it and restarts a running postroom (migrations run in its ExecStartPre). With DESTDIR
# set it never touches the live system. Reinstalling is upgrading: the virtualenv is
# replaced, the config kept. Uninstall removes what install put and keeps the config,
# the state (/var/lib/postroom: database, mail, secret key) and the postroom user.
set -eu
umask 022

PREFIX=${PREFIX:-/opt/postroom}
SYSTEM_PYTHON=${SYSTEM_PYTHON:-/usr/bin/python3}
EXTRAS=${EXTRAS-postgresql}
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}
DESTDIR=${DESTDIR:-}

BIN_LINK=/usr/bin/postroom
UNIT=/usr/lib/systemd/system/postroom.service
SYSUSERS=/usr/lib/sysusers.d/postroom.conf
TMPFILES=/usr/lib/tmpfiles.d/postroom.conf
DOCDIR=/usr/share/doc/postroom
CONFDIR=/etc/postroom
CONFIG=$CONFDIR/postroom.toml

fail() {
    echo "install.sh: $*" >&2
    exit 2
}

say() {
    echo "postroom: $*"
}

# Paths end up in shebangs, sed expressions and systemd units: keep them plain.
check_path() {
    case $2 in
        /*) ;;
        *) fail "$1=$2: must be an absolute path" ;;
    esac
    case $2 in
        *[!A-Za-z0-9._/+-]*) fail "$1=$2: only letters, digits and . _ / + - are allowed" ;;
    esac
}

# $PREFIX is replaced or removed only when it is a virtualenv holding postroom;
# $PREFIX.new and $PREFIX.old (install.sh's own names) when they are virtualenvs.
is_postroom_venv() {
    [ -f "$1/pyvenv.cfg" ] && [ -e "$1/bin/postroom" ]
}

remove_venv() {
    if [ -f "$1/pyvenv.cfg" ]; then
        rm -rf "$1"
    elif [ -e "$1" ]; then
        fail "$1 exists and is not a virtualenv: refusing to remove it"
    fi
}

systemd_running() {
    [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]
}

build_venv() {
    stage=$1
    remove_venv "$stage"
    "$SYSTEM_PYTHON" -m venv --without-pip "$stage"
    spec=.
    [ -z "$EXTRAS" ] || spec=".[$EXTRAS]"
    # pip builds the wheel in the checkout's build/, where setuptools never removes the
    # copy of a module deleted since the last build: start from an empty one.
    rm -rf build
    # pip runs from the build environment and installs into the new one (`--python`), so
    # the application's virtualenv holds no pip; bytecode is compiled below.
    "$BUILD_PYTHON" -m pip --python "$stage/bin/python" install --quiet --no-compile "$spec"
    pattern=$(printf '%s' "$stage" | sed 's/\./\\./g')
    for file in "$stage"/bin/* "$stage/pyvenv.cfg"; do
        if [ -f "$file" ] && [ ! -L "$file" ] && grep -qF "$stage" "$file"; then
            sed -i "s|$pattern|$PREFIX|g" "$file"
        fi
    done
    "$stage/bin/python" -m compileall -q -j 0 -s "$stage" -p "$PREFIX" "$stage/lib"
    leftover=$(grep -rlF "$stage" "$stage" | head -n 3 || true)
    [ -z "$leftover" ] || fail "the staging path is still named in: $leftover"
}

# Checked before anything is built or removed.
check_target() {
    if [ -e "$1" ] && ! is_postroom_venv "$1"; then
        fail "$1 exists and is not a postroom virtualenv: refusing to $2 it (set PREFIX)"
    fi
}

# Renames the new virtualenv into place; the old one is left at $target.old for the caller
# to remove once a running service has been restarted.
swap_venv() {
    stage=$1 target=$2
    remove_venv "$target.old"
    [ ! -e "$target" ] || mv "$target" "$target.old"
    mv "$stage" "$target"
}

install_config() {
    if [ -e "$DESTDIR$CONFIG" ]; then
        say "kept $CONFIG (compare it with $DOCDIR/postroom.toml for new keys)"
        return
    fi
    [ -d "$DESTDIR$CONFDIR" ] || install -d -m 0750 "$DESTDIR$CONFDIR"
    install -m 0640 config/postroom.toml "$DESTDIR$CONFIG"
    # Packaging tools set owners themselves; on the live system the group exists by now
    # (systemd-sysusers ran), and systemd-tmpfiles below enforces the same again.
    if [ -z "$DESTDIR" ] && getent group postroom >/dev/null; then
        chown root:postroom "$DESTDIR$CONFDIR" "$DESTDIR$CONFIG"
    fi
    say "wrote $CONFIG from the reference config: edit it before starting the service"
}

do_install() {
    [ -x "$SYSTEM_PYTHON" ] || fail "SYSTEM_PYTHON=$SYSTEM_PYTHON: not an executable"
    [ -x "$BUILD_PYTHON" ] || fail "BUILD_PYTHON=$BUILD_PYTHON: not an executable (make venv)"
    target=$DESTDIR$PREFIX
    check_target "$target" replace
    link=$DESTDIR$BIN_LINK
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        fail "$BIN_LINK exists and is not a symlink (another install?): refusing to replace it"
    fi
    mkdir -p "$(dirname "$target")"
    say "building the virtualenv for $PREFIX"
    build_venv "$target.new"
    swap_venv "$target.new" "$target"

    install -d "$(dirname "$link")"
    ln -sfn "$PREFIX/bin/postroom" "$link"
    install -D -m 0644 systemd/postroom.service "$DESTDIR$UNIT"
    install -D -m 0644 systemd/postroom.sysusers "$DESTDIR$SYSUSERS"
    install -D -m 0644 systemd/postroom.tmpfiles "$DESTDIR$TMPFILES"
    install -D -m 0644 README.md "$DESTDIR$DOCDIR/README.md"
    install -D -m 0644 config/postroom.toml "$DESTDIR$DOCDIR/postroom.toml"

    if [ -z "$DESTDIR" ] && command -v systemd-sysusers >/dev/null; then
        systemd-sysusers "$SYSUSERS"
    fi
    install_config
    if [ -z "$DESTDIR" ] && command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --create "$TMPFILES"
    fi
    if systemd_running; then
        systemctl daemon-reload
        # An upgrade: a running postroom restarts on the new code (ExecStartPre migrates).
        systemctl try-restart postroom.service
    elif [ -z "$DESTDIR" ]; then
        say "systemd is not running here: no daemon-reload, nothing restarted"
    fi
    remove_venv "$target.old"
    say "installed into ${DESTDIR:-/}: $PREFIX, $BIN_LINK, $UNIT"
}

do_uninstall() {
    target=$DESTDIR$PREFIX
    check_target "$target" remove
    if systemd_running && systemctl cat postroom.service >/dev/null 2>&1; then
        systemctl disable --now postroom.service
    fi
    link=$DESTDIR$BIN_LINK
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/bin/postroom" ]; then
        rm -f "$link"
    fi
    rm -f "$DESTDIR$UNIT" "$DESTDIR$SYSUSERS" "$DESTDIR$TMPFILES"
    rm -f "$DESTDIR$DOCDIR/README.md" "$DESTDIR$DOCDIR/postroom.toml"
    [ ! -d "$DESTDIR$DOCDIR" ] || rmdir "$DESTDIR$DOCDIR" 2>/dev/null ||
        say "left $DOCDIR: it holds files install did not put there"
    remove_venv "$target"
    remove_venv "$target.new"
    remove_venv "$target.old"
    if systemd_running; then
        systemctl daemon-reload
    fi
    say "uninstalled; kept $CONFDIR (config), /var/lib/postroom (database, mail, secret key)" \
        "and the postroom user: remove them by hand to erase everything"
}

check_path PREFIX "$PREFIX"
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || fail "PREFIX=/: the virtualenv needs a directory of its own"
if [ -n "$DESTDIR" ]; then
    case $DESTDIR in
        /*) ;;
        *) DESTDIR=$(pwd)/$DESTDIR ;;
    esac
    check_path DESTDIR "$DESTDIR"
    DESTDIR=${DESTDIR%/}
fi
# Relative paths below (systemd/, config/, README.md, the package) are the checkout's.
cd "$(dirname "$0")/.."

case ${1:-} in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) fail "usage: tools/install.sh install|uninstall" ;;
esac
