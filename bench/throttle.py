"""A TCP forwarder on loopback that stands for the internet between a host and a registry.

Every byte the registry sends back shares one token bucket (the link's bandwidth, e.g.
100 Mbit/s for all connections together) and every chunk a client sends waits the link's
latency first (one request, one round trip's worth). Counts the bytes sent back.

  t = Throttle(("127.0.0.1", upstream_port), rate=100e6 / 8, latency=0.020).start()
  t.address ... t.bytes ... t.stop()
"""

from __future__ import annotations

import socket
import threading
import time


class Bucket:
    def __init__(self, rate: float | None):
        self.rate, self.lock, self.next_free = rate, threading.Lock(), time.monotonic()

    def take(self, n: int) -> None:
        """Wait until `n` bytes may go: one link, shared by every connection."""
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class Throttle:
    def __init__(self, upstream: tuple[str, int], *, rate: float | None, latency: float):
        self.upstream, self.latency, self.bucket = upstream, latency, Bucket(rate)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.bytes, self.count_lock, self.stopped = 0, threading.Lock(), False

    def start(self) -> "Throttle":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()

    def reset(self) -> int:
        with self.count_lock:
            n, self.bytes = self.bytes, 0
        return n

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upward:
                    time.sleep(self.latency)  # a request crosses the link
                else:
                    self.bucket.take(len(data))
                    with self.count_lock:
                        self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
