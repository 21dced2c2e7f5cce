# A logging HTTP/1.1 proxy for bench/fixedcost.sh: keeps the client's connections alive (one
# upstream connection per client connection, TCP_NODELAY on both so that it adds no delay of
# its own) and appends one line per request to LOG: its start (epoch seconds), its latency,
# the connection, the status and the request line.
# Usage: python3 request_log_proxy.py LISTEN_PORT UPSTREAM_PORT LOG
import socket, threading, time, sys, os
UP = ('127.0.0.1', int(sys.argv[2])); LISTEN = int(sys.argv[1]); LOG = open(sys.argv[3], 'a', buffering=1)
cid = [0]
def recv_head(s, buf):
    while b'\r\n\r\n' not in buf:
        d = s.recv(65536)
        if not d: return None, buf
        buf += d
    i = buf.index(b'\r\n\r\n') + 4
    return buf[:i], buf[i:]
def clen(head):
    for l in head.split(b'\r\n')[1:]:
        k, _, v = l.partition(b':')
        if k.strip().lower() == b'content-length': return int(v.strip())
    return None
def chunked(head):
    for l in head.split(b'\r\n')[1:]:
        k, _, v = l.partition(b':')
        if k.strip().lower() == b'transfer-encoding' and b'chunked' in v.lower(): return True
    return False
def read_body(s, rest, n, out):
    out.sendall(rest[:n]); got = len(rest[:n]); rest = rest[n:]
    while got < n:
        d = s.recv(min(1 << 20, n - got))
        if not d: raise EOFError
        out.sendall(d); got += len(d)
    return rest
def read_chunked(s, rest, out):
    buf = rest
    while True:
        while b'\r\n' not in buf:
            d = s.recv(65536)
            if not d: raise EOFError
            buf += d
        i = buf.index(b'\r\n'); size = int(buf[:i].split(b';')[0], 16)
        need = i + 2 + size + 2
        while len(buf) < need:
            d = s.recv(65536)
            if not d: raise EOFError
            buf += d
        out.sendall(buf[:need]); buf = buf[need:]
        if size == 0: return buf
def handle(c):
    cid[0] += 1; me = cid[0]
    u = socket.create_connection(UP)
    u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    crest = b''; urest = b''
    try:
        while True:
            head, crest = recv_head(c, crest)
            if head is None: return
            t = time.time()
            line = head.split(b'\r\n')[0].decode()
            u.sendall(head)
            if chunked(head): crest = read_chunked(c, crest, u)
            else: crest = read_body(c, crest, clen(head) or 0, u)
            rh, urest = recv_head(u, urest)
            if rh is None: return
            c.sendall(rh)
            status = rh.split(b'\r\n')[0].decode().split(' ')[1]
            if line.startswith('HEAD') or status in ('204', '304'): pass
            elif chunked(rh): urest = read_chunked(u, urest, c)
            else: urest = read_body(u, urest, clen(rh) or 0, c)
            LOG.write('%.4f %.4f c%d %s %s\n' % (t, time.time() - t, me, status, line))
    except Exception as e:
        LOG.write('ERR c%d %r\n' % (me, e))
    finally:
        c.close(); u.close()
L = socket.socket(); L.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
L.bind(('127.0.0.1', LISTEN)); L.listen(64)
while True:
    c, _ = L.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
