"""A TCP relay from the machine's loopback into a network namespace (hack/testenv/realnode.py).

Run inside the target namespace (`nsenter --net=...`) with a listening socket that was bound
*before* entering it, in the caller's namespace, and passed as an inherited file descriptor:
connections accepted there are relayed to `--to HOST:PORT` as seen from inside. So the test
reaches the real node's apiserver on 127.0.0.1 and nothing is connected to the machine's network.

    python -m hack.testenv.relay --listen-fd 3 --to 127.0.0.1:6443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _serve(listener: socket.socket, host: str, port: int) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()  # the client sees the refusal as a reset, as it would directly
            return
        await asyncio.gather(_pipe(client_reader, target_writer), _pipe(target_reader, client_writer))

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hack.testenv.relay", description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True, help="inherited listening TCP socket")
    parser.add_argument("--to", required=True, help="HOST:PORT inside this process's network namespace")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    listener = socket.socket(fileno=args.listen_fd)
    asyncio.run(_serve(listener, host, int(port)))


if __name__ == "__main__":
    main()
