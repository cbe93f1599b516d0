#!/usr/bin/env python3
"""clusterkit's example application: a tiny web service with a Prometheus
/metrics endpoint (standard library only, so its image needs no registry)."""
import http.server
import os
import socket
import threading
import time

LOCK = threading.Lock()
REQUESTS = {}
STARTED = time.time()
HOST = socket.gethostname()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/metrics":
            with LOCK:
                lines = [
                    "# HELP app_requests_total Requests served, by path.",
                    "# TYPE app_requests_total counter",
                ]
                lines += [
                    f'app_requests_total{{path="{p}"}} {n}' for p, n in sorted(REQUESTS.items())
                ]
            lines += [
                "# HELP app_uptime_seconds Seconds since the process started.",
                "# TYPE app_uptime_seconds gauge",
                f"app_uptime_seconds {time.time() - STARTED:.3f}",
                "# HELP app_up Always 1 while the app serves.",
                "# TYPE app_up gauge",
                "app_up 1",
            ]
            body = ("\n".join(lines) + "\n").encode()
            ctype = "text/plain; version=0.0.4"
        else:
            with LOCK:
                REQUESTS[path] = REQUESTS.get(path, 0) + 1
            body = f"hello from {HOST}\n".encode()
            ctype = "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    http.server.ThreadingHTTPServer(("", port), Handler).serve_forever()
