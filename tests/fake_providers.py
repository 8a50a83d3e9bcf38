"""Fake Telegram Bot API and Twilio API servers on loopback.

Our code talks to them through the real clients (python-telegram-bot's ``Bot``, the twilio
client) with their base URLs pointed here. Each server records every request it gets and can be
told to fail the next requests (``fail_next(status, n, body)``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (content, content type)
        self.downloads: list[dict] = []
        self._failures: list[tuple[int, dict]] = []
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                params = server.parse_body(self.headers.get("Content-Type", ""), raw)
                status, body = server.respond(self.path, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_DELETE(self) -> None:  # noqa: N802 - Twilio deletes a stored message
                status, body = server.respond(self.path, {"method": "DELETE"})
                data = b"" if status == 204 else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.unquote(self.path)
                if path in server.files:
                    data, content_type = server.files[path]
                    server.downloads.append(
                        {"path": path, "authorization": self.headers.get("Authorization")}
                    )
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.do_POST()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def parse_body(content_type: str, raw: bytes) -> dict:
        if not raw:
            return {}
        if "json" in content_type:
            return json.loads(raw)
        if "multipart/form-data" in content_type:
            boundary = content_type.split("boundary=")[1].encode()
            params = {}
            for part in raw.split(b"--" + boundary):
                if b"name=" not in part:
                    continue
                head, _, value = part.partition(b"\r\n\r\n")
                name = head.split(b'name="')[1].split(b'"')[0].decode()
                params[name] = value.rstrip(b"\r\n").decode()
            return params
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}

    def fail_next(self, status: int, n: int = 1, body: dict | None = None) -> None:
        with self._lock:
            self._failures += [(status, body or {})] * n

    def respond(self, path: str, params: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append({"path": path, "params": params})
            if self._failures:
                return self._failures.pop(0)
        return self.answer(path, params)

    def answer(self, path: str, params: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def sent(self, method: str) -> list[dict]:
        return [r["params"] for r in self.requests if r["path"].endswith(method)]

    def wait_for(self, method: str, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.sent(method)
            if len(sent) >= n:
                return sent
            time.sleep(0.1)
        return self.sent(method)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeTelegram(FakeServer):
    def __init__(self) -> None:
        self.updates: list[dict] = []  # handed out once by getUpdates
        super().__init__()

    def answer(self, path: str, params: dict) -> tuple[int, dict]:
        method = path.rsplit("/", 1)[-1]
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            pending = [u for u in self.updates if u["update_id"] >= offset]
            if not pending:
                time.sleep(0.2)  # a short "long poll"
            return 200, {"ok": True, "result": pending}
        if method == "getMe":
            user = {"id": 1, "is_bot": True, "first_name": "Helpline", "username": "helpline_bot"}
            return 200, {"ok": True, "result": user}
        if method == "getFile":
            file_id = params.get("file_id", "")
            path = f"files/{file_id}.bin"
            size = 0
            for key, (data, _) in self.files.items():
                if key.endswith(f"/{file_id}.bin"):
                    size = len(data)
            result = {"file_id": file_id, "file_unique_id": "u" + file_id, "file_size": size,
                      "file_path": path}  # fmt: skip
            return 200, {"ok": True, "result": result}
        if method == "sendMessage":
            chat = {"id": int(params.get("chat_id", 0)), "type": "private"}
            result = {"message_id": next(self._ids), "date": int(time.time()), "chat": chat,
                      "text": params.get("text", "")}  # fmt: skip
            return 200, {"ok": True, "result": result}
        return 200, {"ok": True, "result": True}


class FakeTwilio(FakeServer):
    def answer(self, path: str, params: dict) -> tuple[int, dict]:
        if params.get("method") == "DELETE":
            return 204, {}
        sid = f"SM{next(self._ids):032d}"
        return 201, {"sid": sid, "status": "queued", "to": params.get("To"),
                     "from": params.get("From"), "body": params.get("Body")}  # fmt: skip


def twilio_error(status: int, code: int) -> dict:
    return {"code": code, "message": "error", "more_info": "", "status": status}


TWILIO_WEBHOOK = "/webhooks/twilio/webhook"


def signed_twilio_post(base: str, form: dict, *, auth_token: str, public_url: str,
                       timeout: float = 30) -> int | None:  # fmt: skip
    """The webhook call as Twilio makes it: ``form`` signed with twilio's ``RequestValidator``
    over ``public_url`` + path. Its status, or None when the server did not answer."""
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(auth_token).compute_signature(public_url + TWILIO_WEBHOOK, form)
    request = urllib.request.Request(
        base + TWILIO_WEBHOOK,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "X-Twilio-Signature": signature},
        method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # refused, reset: the server is down
        return None
