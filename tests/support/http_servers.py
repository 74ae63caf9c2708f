"""Real HTTP servers on 127.0.0.1 for tests: an OpenAI-compatible chat endpoint and a file server."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 (set `self.httpd` in __init__), served from a thread
    while the `with` block runs."""

    httpd: http.server.ThreadingHTTPServer

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class ChatServer(LocalServer):
    """/v1/chat/completions answering with `reply(messages)`; `script` lists what to send first:
    status codes (e.g. [429, 500]) or "html", a 200 carrying a proxy's HTML error page; every
    request is recorded."""

    def __init__(self, reply, script=(), delay_s: float = 0.0, malformed: bool = False):
        self.reply, self.script, self.delay_s, self.malformed = reply, list(script), delay_s, malformed
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = server.script.pop(0) if server.script else 200
                time.sleep(server.delay_s)
                if status == "html":
                    status, payload = 200, b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                elif status != 200:
                    payload = json.dumps({"error": {"message": f"status {status}"}}).encode()
                elif server.malformed:
                    payload = b'{"choices": []}'
                else:
                    payload = json.dumps(
                        {
                            "choices": [
                                {"message": {"role": "assistant", "content": server.reply(body["messages"])}}
                            ]
                        }
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "0.05")
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@contextlib.contextmanager
def file_server(directory):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
