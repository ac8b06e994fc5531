"""FakeOpenAIServer (no delay, echo) in a process of its own, for benchmarks that run
the graph in the benchmark process: its request threads then take no GIL from the
code being measured.

    python -m tests.bench.fake_model     prints `BASE_URL=http://127.0.0.1:PORT`, then
                                         serves until SIGTERM or SIGINT
"""

from __future__ import annotations

import signal

from tests.fakes.openai_server import FakeOpenAIServer

BASE_URL_PREFIX = "BASE_URL="


def main() -> None:
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server's threads exist
    with FakeOpenAIServer() as server:
        print(f"{BASE_URL_PREFIX}{server.base_url}", flush=True)
        signal.sigwait(stop)


if __name__ == "__main__":
    main()
