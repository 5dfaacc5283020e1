"""A tiny HTTP server whose answer is MESSAGE: edit it and watch the pod serve the new text."""

import http.server

MESSAGE = "hello from flotilla dev v1"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (MESSAGE + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


print(f"serving {MESSAGE!r} on :8000", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
