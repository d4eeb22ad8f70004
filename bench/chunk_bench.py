"""What a worker's bookkeeping costs per chunk: Redis round trips and seconds, the network left out.

A GPU worker takes a chunk of ``--chunk`` images of one job per task; around the engine, ``ChunkRunner`` starts
each item (lease, attempt), reads its stored name and input, writes each result and records and ends it in
Redis. This runs real chunks of a real job against an embedded Redis with an engine that returns a ready
result at once, counts the round trips to Redis (each command, or each pipeline, is one) and times the
chunk. ``--latency-ms`` adds that much to every round trip, as a Redis across a network (a Kubernetes
service, a managed Redis) would. Prints numbers; never fails on time.

    .venv/bin/python bench/chunk_bench.py --chunk 16 --chunks 40 --latency-ms 0.5
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class ReadyEngine:
    """An engine whose every result is ready: a worker's bookkeeping with nothing else in the way."""

    def process_many(self, datas: list[bytes], options: Any, backdrop: Any = None) -> list[Any]:
        from matteflow.core.engine import MatteResult

        return [MatteResult(b"\x89PNG result", None, "png", "image/png", 4, 4, 0.9, timings={}) for _ in datas]


class RoundTrips:
    """Counts (and delays, by ``latency_s``) every request redis-py sends: a command or a whole pipeline."""

    def __init__(self, latency_s: float) -> None:
        from redis.connection import Connection

        self.count = 0
        self.latency_s = latency_s
        self._original = Connection.send_packed_command
        counter = self

        def send(connection: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            if counter.latency_s:
                time.sleep(counter.latency_s)
            return counter._original(connection, command, check_health)

        Connection.send_packed_command = send  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk", type=int, default=16, help="images per task")
    parser.add_argument("--chunks", type=int, default=40, help="chunks timed")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every Redis round trip")
    args = parser.parse_args()

    from matteflow.core.options import parse_options
    from matteflow.settings import Settings
    from matteflow.workers.client import JobClient
    from matteflow.workers.processing import ChunkRunner
    from matteflow.workers.procs import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="matteflow-chunk-bench-"))
    redis = EmbeddedRedis(work / "redis").start()
    try:
        settings = Settings(redis_url=redis.url, storage_dir=work / "storage", max_files_per_job=100_000)
        client = JobClient(settings)
        total = args.chunk * args.chunks
        # Tiny real PNGs (the intake checks them): the engine never decodes them; the worker reads each.
        tiny = io.BytesIO()
        Image.new("RGB", (4, 4)).save(tiny, "PNG")
        files = [(f"photo_{i:05d}.png", tiny.getvalue()) for i in range(total)]
        job_id = client.create_job(files, parse_options(format="png"))
        trips = RoundTrips(args.latency_ms / 1000.0)
        engine = ReadyEngine()
        seconds, counts = [], []
        for start in range(0, total, args.chunk):
            before = trips.count
            runner = ChunkRunner(client.store, settings, lambda: engine, job_id)
            started = time.perf_counter()
            outcome = runner.run(list(range(start, start + args.chunk)))
            seconds.append(time.perf_counter() - started)
            counts.append(trips.count - before)
            assert len(outcome.done) == args.chunk, outcome.summary()
    finally:
        redis.kill()
    print(
        f"chunk of {args.chunk} images, {args.chunks} chunks, +{args.latency_ms:g} ms per Redis round trip: "
        f"{statistics.median(counts):.0f} round trips per chunk ({statistics.median(counts) / args.chunk:.2f} per "
        f"image), median {statistics.median(seconds) * 1000:.1f} ms per chunk "
        f"({statistics.median(seconds) * 1000 / args.chunk:.2f} ms per image)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
