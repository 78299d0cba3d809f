#!/usr/bin/python3
"""Echo server peers for cio's echo benchmarks (asyncio and uvloop).

Usage: py_echo.py PORT [--uvloop] [--streams] [--tls CERT KEY]
  (default)   an asyncio.Protocol whose data_received calls transport.write
  --streams   asyncio.start_server; each handler loops reader.read(65536),
              writer.write, await writer.drain()
  --uvloop    the same on uvloop's event loop
  --tls       over TLS (the ssl module's SSLContext with the PEM files
              CERT and KEY, passed as ssl= to the server; uvloop runs TLS
              in its own Cython SSL protocol over memory BIOs)

Listens on 127.0.0.1; prints only errors; runs until killed (SIGTERM).
Both loops set TCP_NODELAY on TCP transports themselves.
"""
import argparse
import asyncio


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_stream(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def tls_context(files):
    if not files:
        return None
    import ssl  # imported only when asked
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*files)
    return ctx


async def serve(port, streams, tls):
    ctx = tls_context(tls)
    if streams:
        server = await asyncio.start_server(echo_stream, "127.0.0.1", port,
                                            ssl=ctx)
    else:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port,
                                          ssl=ctx)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--uvloop", action="store_true",
                   help="run on uvloop's event loop instead of asyncio's")
    p.add_argument("--streams", action="store_true",
                   help="a streams server instead of a Protocol")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                   help="serve TLS with this certificate chain and key")
    a = p.parse_args()
    if a.uvloop:
        import uvloop  # imported only when asked
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(a.port, a.streams, a.tls))


if __name__ == "__main__":
    main()
