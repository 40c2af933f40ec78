"""Micro-benchmark of the pgwire hot path: frames per second through FrameReader (run by hand).

    python bench/pgwire_frames.py [--rows N] [--chunk BYTES] [--seconds S]

Feeds a stream of DataRow-sized backend messages, cut into socket-sized chunks, and reports frames/s for
framing alone, framing plus Session.backend_frames (the state tracking a proxy does), and full decoding
for comparison. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from borealis import pgwire as pw


def make_stream(rows: int) -> tuple[bytes, int]:
    """A server response: RowDescription, ``rows`` DataRows, CommandComplete, ReadyForQuery."""
    row = pw.DataRow((b"42", b"some text value", None, b"2024-01-01 00:00:00+00"))
    messages = [
        pw.RowDescription(tuple(pw.FieldDescription(f"c{i}") for i in range(4))),
        *[row] * rows,
        pw.CommandComplete(f"SELECT {rows}"),
        pw.ReadyForQuery("I"),
    ]
    return b"".join(pw.encode(m) for m in messages), len(messages)


def run(label: str, seconds: float, frames_per_pass: int, one_pass: Callable[[], None]) -> None:
    """Repeat ``one_pass`` for about ``seconds`` and print the frame rate."""
    passes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        one_pass()
        passes += 1
    elapsed = time.perf_counter() - start
    rate = passes * frames_per_pass / elapsed
    print(f"{label:<34} {rate / 1e6:8.2f} M frames/s  ({passes * frames_per_pass:,} frames)")


def main() -> None:
    """Parse arguments and run the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per feed(), like a socket read")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    stream, count = make_stream(args.rows)
    chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]
    frame_size = len(pw.encode(pw.DataRow((b"42", b"some text value", None, b"2024-01-01 00:00:00+00"))))
    print(f"{count:,} frames of ~{frame_size} bytes, {len(stream):,} bytes in {len(chunks)} chunks")

    def framing() -> None:
        reader = pw.FrameReader.for_server()
        for chunk in chunks:
            reader.feed(chunk)
            reader.read_frames()

    def framing_and_session() -> None:
        reader = pw.FrameReader.for_server()
        session = pw.Session(pw.Phase.READY)
        session.frontend(ord("Q"), pw.encode(pw.Query("SELECT ...")))
        for chunk in chunks:
            reader.feed(chunk)
            session.backend_frames(reader.read_frames())

    def framing_and_decoding() -> None:
        reader = pw.FrameReader.for_server()
        for chunk in chunks:
            reader.feed(chunk)
            for t, frame in reader.read_frames():
                pw.decode_backend(t, frame[5:])

    run("framing (FrameReader)", args.seconds, count, framing)
    run("framing + Session.backend_frames", args.seconds, count, framing_and_session)
    run("framing + decode_backend", args.seconds, count, framing_and_decoding)


if __name__ == "__main__":
    main()
