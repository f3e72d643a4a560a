"""Keystone setup of the lab over its REST API (stdlib only, idempotent).

  KS_URL=http://127.0.0.1:P/v3 COMPUTE_URL=http://127.0.0.1:Q/v2.1 python3 ksinit.py init
      points the identity endpoints at KS_URL, creates project 'service' + user
      'nova'/novapass (role service; Nova's keystonemiddleware), project 'demo'
      + user 'demo'/demopass (role member), the 'compute' service with
      public/internal/admin endpoints -> COMPUTE_URL (region RegionOne).
  KS_URL=... python3 ksinit.py project NAME USER PASSWORD [ROLE]
      project + user with ROLE (default member) on it.

Prints one JSON object of ids (admin_project_id, admin_user_id, ...).
Admin credentials: admin / s3cret (ADMIN_PASSWORD), project admin.
"""
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

KS = os.environ['KS_URL'].rstrip('/')
ADMIN_PW = os.environ.get('ADMIN_PASSWORD', 's3cret')


def call(method, path, body=None, token=None):
    req = urllib.request.Request(
        KS + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={'Content-Type': 'application/json'})
    if token:
        req.add_header('X-Auth-Token', token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return r, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        if e.code == 409:          # already exists
            return e, None
        sys.exit('ksinit: %s %s -> %s %s' % (method, path, e.code, e.read()[:300]))


def token(user, pw, project):
    r, _ = call('POST', '/auth/tokens', {'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': user, 'domain': {'id': 'default'}, 'password': pw}}},
        'scope': {'project': {'name': project, 'domain': {'id': 'default'}}}}})
    return r.headers['X-Subject-Token']


def find(tok, coll, name, extra=''):
    _, d = call('GET', '/%s?name=%s%s' % (coll, urllib.parse.quote(name), extra), token=tok)
    items = d[coll]
    return items[0]['id'] if items else None


def ensure(tok, coll, key, body):
    oid = find(tok, coll, body['name'])
    if not oid:
        _, d = call('POST', '/' + coll, {key: body}, tok)
        oid = d[key]['id']
    return oid


def project(tok, name, user, pw, role):
    pid = ensure(tok, 'projects', 'project', {'name': name, 'domain_id': 'default'})
    uid = ensure(tok, 'users', 'user', {'name': user, 'password': pw,
                                        'domain_id': 'default'})
    rid = find(tok, 'roles', role)
    if not rid:
        rid = ensure(tok, 'roles', 'role', {'name': role})
    call('PUT', '/projects/%s/users/%s/roles/%s' % (pid, uid, rid), token=tok)
    return pid, uid


def endpoints(tok, service_id, url):
    _, d = call('GET', '/endpoints?service_id=%s' % service_id, token=tok)
    have = {e['interface']: e for e in d['endpoints']}
    for iface in ('public', 'internal', 'admin'):
        if iface in have:
            if have[iface]['url'] != url:
                call('PATCH', '/endpoints/%s' % have[iface]['id'],
                     {'endpoint': {'url': url}}, tok)
        else:
            call('POST', '/endpoints', {'endpoint': {
                'service_id': service_id, 'interface': iface, 'url': url,
                'region_id': 'RegionOne', 'enabled': True}}, tok)


def main():
    t = token('admin', ADMIN_PW, 'admin')
    ids = {'admin_project_id': find(t, 'projects', 'admin'),
           'admin_user_id': find(t, 'users', 'admin')}
    if sys.argv[1:2] == ['project']:
        name, user, pw = sys.argv[2:5]
        role = sys.argv[5] if len(sys.argv) > 5 else 'member'
        ids['project_id'], ids['user_id'] = project(t, name, user, pw, role)
    elif sys.argv[1:2] == ['init']:
        _, d = call('GET', '/services?type=identity', token=t)
        endpoints(t, d['services'][0]['id'], KS)
        project(t, 'service', 'nova', 'novapass', 'service')
        ids['demo_project_id'], ids['demo_user_id'] = project(
            t, 'demo', 'demo', 'demopass', 'member')
        sid = ensure(t, 'services', 'service', {'name': 'nova', 'type': 'compute',
                                                'enabled': True})
        endpoints(t, sid, os.environ['COMPUTE_URL'])
    else:
        sys.exit(__doc__)
    print(json.dumps(ids))


if __name__ == '__main__':
    main()
