#!/usr/bin/env python3
"""SSH ProxyCommand: relay stdin/stdout to HOST:PORT. Run inside the lab's controller namespace
(`ip netns exec kflab-<lab>-ctl lab_proxy.py %h %p`) so no packet to a lab address leaves the
root namespace."""
import os
import selectors
import socket
import sys


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port), timeout=15)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(sys.stdin.fileno(), 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    sel.unregister(sys.stdin.fileno())
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)


if __name__ == "__main__":
    main()
