"""Threaded WSGI runner for the lab: python serve.py {keystone|nova|stub} PORT

Environment:
  LAB_PARENT_PID  exit when this process is no longer our parent (the test
                  harness died without cleaning up: no orphans survive it)
  LAB_SERIALIZE   1 (default): one request at a time (sqlite locking)
  OS_KEYSTONE_CONFIG_FILES / OS_NOVA_CONFIG_DIR / OS_NOVA_CONFIG_FILES as usual

The nova app also answers POST /_lab/seed and POST /_lab/state (no auth,
loopback lab only; see seed.py): seeding in the API process itself avoids a
second sqlite writer and the seconds a fresh `import nova` costs.
"""
import json
import os
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server

which, port = sys.argv[1], int(sys.argv[2])
sys.argv = sys.argv[:1]          # nova's config.parse_args() reads sys.argv
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

parent = os.environ.get('LAB_PARENT_PID')
if parent:
    def watch_parent(pid=int(parent)):
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch_parent, daemon=True).start()

if which == 'keystone':
    from keystone.server.wsgi import initialize_public_application
    app = initialize_public_application()
elif which == 'nova':
    from nova.wsgi.osapi_compute import application as nova_app
    import seed

    def app(environ, start_response):
        path = environ.get('PATH_INFO', '')
        if not path.startswith('/_lab/'):
            return nova_app(environ, start_response)
        try:
            length = int(environ.get('CONTENT_LENGTH') or 0)
            body = json.loads(environ['wsgi.input'].read(length) or b'{}')
            if path == '/_lab/seed':
                result = seed.seed(body)
            elif path == '/_lab/state':
                result = seed.set_state(body)
            else:
                raise LookupError('unknown lab call %s' % path)
            status, data = '200 OK', json.dumps(result).encode()
        except Exception as e:  # noqa: BLE001 - reported to the harness
            status, data = '500 Internal Server Error', json.dumps(
                {'error': '%s: %s' % (type(e).__name__, e)}).encode()
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(data)))])
        return [data]
elif which == 'stub':
    from stub import app
else:
    raise SystemExit('unknown app %s' % which)


if os.environ.get('LAB_SERIALIZE', '1') == '1':
    # sqlite + concurrent writers in one process -> sporadic "database is
    # locked". Accept connections in threads, run the app one at a time.
    _lock, _inner = threading.Lock(), app

    def app(environ, start_response):
        with _lock:
            return list(_inner(environ, start_response))


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128     # default 5 drops bursts of connections


class Handler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write('%s %s\n' % (which, fmt % args))


server = make_server('127.0.0.1', port, app, server_class=ThreadingWSGIServer,
                     handler_class=Handler)
print('%s listening on 127.0.0.1:%d' % (which, port), flush=True)
server.serve_forever()
